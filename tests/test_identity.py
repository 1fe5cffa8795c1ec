"""A row is what it measured: same-named datasets, models and library versions never share a baseline
(issue 23, item 1). Each test fails on the code before `with_identity` (rows paired by names alone)."""

from __future__ import annotations

from rows import speed_row

from harness.store import results

V1 = {"torch": "2.13.0", "sentence-transformers": "5.7.0"}


def _file_rows(name: str, key: str, fp32: float, onnx: float) -> list[dict]:
    common = dict(dataset="file", dataset_key=key, dataset_source=f"/data/{name}", model_key="mk", versions=V1)
    return [speed_row("torch-fp32", fp32, cell_id=f"t-{key}", **common),
            speed_row("onnx", onnx, cell_id=f"o-{key}", **common)]  # fmt: skip


def _store(tmp_path, rows_):
    for row in rows_:
        results.write_row(tmp_path, row)
    return results.load(tmp_path)


def test_two_text_files_in_one_run_get_two_baselines_and_two_labels(tmp_path):
    df = _store(tmp_path, _file_rows("a.txt", "ka", 100.0, 200.0) + _file_rows("b.txt", "kb", 10.0, 30.0))
    speedup = df.set_index(["dataset", "backend"])["speedup"]
    # paired by name, torch-fp32 on a.txt read 10x over itself (the "torch-fp32 reads 11.35x")
    assert speedup[("file [a.txt]", "torch-fp32")] == 1.0 and speedup[("file [b.txt]", "torch-fp32")] == 1.0
    assert speedup[("file [a.txt]", "onnx")] == 2.0 and speedup[("file [b.txt]", "onnx")] == 3.0


def test_two_model_folders_with_one_name_are_two_models(tmp_path):
    rows_ = []
    for folder, key, base in (("/m/one", "k1", 100.0), ("/m/two", "k2", 50.0)):
        common = dict(model_key=key, model_source=folder, dataset_key="d", versions=V1)
        rows_ += [speed_row("torch-fp32", base, cell_id=f"t{key}", **common),
                  speed_row("onnx", 2 * base, cell_id=f"o{key}", **common)]  # fmt: skip
    df = _store(tmp_path, rows_)
    assert sorted(df["model"].unique()) == ["m [one]", "m [two]"]
    assert (df.loc[df["backend"] == "onnx", "speedup"] == 2.0).all()


def test_rows_of_other_library_versions_are_not_paired_or_pooled(tmp_path):
    new = {**V1, "torch": "2.14.0"}
    df = _store(tmp_path, [
        speed_row("torch-fp32", 100.0, cell_id="t", dataset_key="d", model_key="m", versions=V1),
        speed_row("onnx", 300.0, cell_id="o", dataset_key="d", model_key="m", versions=new),
    ])  # fmt: skip
    onnx = df[df["backend"] == "onnx"].iloc[0]
    assert onnx["speedup"] != onnx["speedup"]  # NaN: no torch-fp32 under the same versions


def test_old_rows_pair_with_each_other_but_not_with_rows_that_carry_a_key(tmp_path):
    old = [speed_row("torch-fp32", 100.0, cell_id="t-old"), speed_row("onnx", 150.0, cell_id="o-old")]
    new = [speed_row("onnx", 400.0, cell_id="o-new", dataset_key="d", model_key="m", versions=V1)]
    df = _store(tmp_path, old + new)
    by_model = df.set_index(["model", "backend"])["speedup"]
    assert by_model[("m [?]", "onnx")] == 1.5  # the old rows, as before, under a label that says so
    assert by_model[("m [m]", "onnx")] != by_model[("m [m]", "onnx")]  # NaN: never over the old baseline


def test_a_round_with_a_null_number_pools_without_crashing(tmp_path):
    """An older round without cpu_other (or a time breakdown) beside a newer one: report, recommend and
    compare all load through this pooling (it raised TypeError: None * float)."""
    for r, cpu in ((0, 0.1), (1, None)):
        results.write_row(tmp_path, speed_row(
            "onnx", 100.0 + r, cell_id=f"c-r{r}", cell_key="c", round=r, pass_s=[1.0, 1.1], latencies_ms=[5.0, 6.0],
            cpu_self=1.0, cpu_other=cpu, n_texts=10, tokenize_share=None if r else 0.2,
        ))  # fmt: skip
    row = results.load(tmp_path).iloc[0]
    assert row["rounds"] == 2 and row["cpu_other"] == 0.1 and row["tokenize_share"] == 0.2


def test_two_text_files_swept_in_one_run_are_two_groups_with_their_own_baselines(tiny_models, tmp_path):
    import os
    import subprocess
    import sys

    for name, words in (("a.txt", "short words"), ("b.txt", "a much longer text " * 12)):
        (tmp_path / name).write_text("\n".join(f"{words} number {i}" for i in range(12)) + "\n")
    env = {**os.environ, "HARNESS_CACHE_DIR": str(tmp_path / "cache"), "HARNESS_LOCK_DIR": str(tmp_path)}
    store = tmp_path / "r"
    sweep = subprocess.run(
        [sys.executable, "-m", "harness.cli", "sweep", "rounds=1", "model.name=tiny", f"model.source={tiny_models[0]}",
         "dataset=file", f"dataset.path={tmp_path / 'a.txt'},{tmp_path / 'b.txt'}", "batch_sizes=[4]",
         "backend=torch-fp32,onnx", "measure.min_time_s=0", "measure.min_repeats=2", "accuracy.enabled=false",
         f"results_dir={store}", "run=two", f"hydra.sweep.dir={tmp_path / 'multirun'}"],
        env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert sweep.returncode == 0, sweep.stderr[-2000:]
    speed = results.load(store).query("kind == 'speed'").set_index(["dataset", "backend"])
    assert sorted(set(speed.index.get_level_values(0))) == ["file [a.txt]", "file [b.txt]"]
    assert speed.loc[("file [a.txt]", "torch-fp32"), "speedup"] == 1.0  # each over its own torch-fp32
    assert speed.loc[("file [b.txt]", "torch-fp32"), "speedup"] == 1.0
    command = [sys.executable, "-m", "harness.cli", "report", "--results", str(store), "--out", str(tmp_path / "rep")]
    report = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert report.returncode == 0, report.stderr[-2000:]
    text = (tmp_path / "rep" / "report.md").read_text()
    assert "file [a.txt]" in text and "file [b.txt]" in text
