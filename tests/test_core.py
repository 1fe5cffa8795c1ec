"""Fast unit tests of the core pieces: store, ratios, export cache, config validation, texts, timing."""

from __future__ import annotations

import json
import time

import pytest
from omegaconf import OmegaConf

from harness import measure, results
from harness.config import BACKENDS, ConfigError, DatasetConfig, ModelConfig, SweepConfig, validate
from harness.exports import ExportCache
from harness.hardware import Hardware, qint8_config_for
from harness.texts import as_pairs, builtin_texts


def _row(**kw):
    base = dict(run="r", cell_id=f"c{time.perf_counter_ns()}", kind="speed", model="m", dataset="d",
                batch_size=32, machine="x", status="ok")  # fmt: skip
    base.update(kw)
    return results.new_row(**base)


def test_new_row_rejects_unknown_columns():
    with pytest.raises(KeyError):
        results.new_row(throughput_typo=1)


def test_store_roundtrip_and_speedup(tmp_path):
    results.write_row(tmp_path, _row(backend="torch-fp32", throughput=100.0))
    results.write_row(tmp_path, _row(backend="onnx", throughput=250.0))
    results.write_row(tmp_path, _row(backend="onnx", throughput=50.0, machine="other"))  # no baseline there
    results.write_row(tmp_path, _row(backend="openvino", status="unsupported", reason="no"))
    df = results.load(tmp_path).set_index(["backend", "machine"])
    assert df.loc[("onnx", "x"), "speedup"] == pytest.approx(2.5)
    assert df.loc[("torch-fp32", "x"), "speedup"] == pytest.approx(1.0)
    assert df.loc[("onnx", "other"), "speedup"] != df.loc[("onnx", "other"), "speedup"]  # NaN
    assert df.loc[("openvino", "x"), "speedup"] != df.loc[("openvino", "x"), "speedup"]


def test_accuracy_ratio(tmp_path):
    acc = dict(kind="accuracy", batch_size=None, metric="sts_spearman")
    results.write_row(tmp_path, _row(backend="torch-fp32", accuracy=0.80, **acc))
    results.write_row(tmp_path, _row(backend="onnx-qint8", accuracy=0.78, **acc))
    df = results.load(tmp_path).set_index("backend")
    assert df.loc["onnx-qint8", "accuracy_ratio"] == pytest.approx(0.975)


def test_corrupt_files_are_skipped_with_their_path(tmp_path, caplog):
    path = results.write_row(tmp_path, _row(backend="torch-fp32", throughput=1.0))
    (path.parent / "broken.json").write_text('{"run": "r", "cell_')
    (path.parent / "list.json").write_text("[1, 2]")
    assert len(results.load(tmp_path)) == 1
    assert "broken.json" in caplog.text and "list.json" in caplog.text


def test_write_is_atomic_no_temp_left(tmp_path):
    results.write_row(tmp_path, _row(backend="torch-fp32"))
    assert not list(tmp_path.rglob(".tmp-*"))


def test_export_cache_marks_complete_last(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "config.json").write_text("{}")
    (src / "onnx").mkdir()  # pre-exported files of someone else are not copied
    (src / "onnx" / "model.onnx").write_text("theirs")
    cache = ExportCache(tmp_path / "cache")
    folder = cache.model_dir("m", src)
    assert (folder / "config.json").exists() and not (folder / "onnx").exists()

    def crash(staging):
        (staging / "onnx").mkdir(parents=True)
        (staging / "onnx" / "model_O3.onnx").write_text("half")
        raise RuntimeError("killed mid-export")

    with pytest.raises(RuntimeError):
        cache.produce(folder, "onnx-O3", {"o": 3}, crash)
    assert cache.lookup(folder, "onnx-O3", {"o": 3}) is None
    assert not (folder / "onnx" / "model_O3.onnx").exists()

    calls = []

    def export(staging):
        calls.append(1)
        (staging / "onnx").mkdir(parents=True)
        (staging / "onnx" / "model_O3.onnx").write_text("ok")

    assert cache.produce(folder, "onnx-O3", {"o": 3}, export) == ["onnx/model_O3.onnx"]
    assert cache.produce(folder, "onnx-O3", {"o": 3}, export) == ["onnx/model_O3.onnx"]
    assert len(calls) == 1  # the second call re-exports nothing
    assert cache.lookup(folder, "onnx-O3", {"o": 4}) is None  # other settings: not the same export
    (folder / "onnx" / "model_O3.onnx").unlink()  # a marker whose file vanished is not trusted
    assert cache.lookup(folder, "onnx-O3", {"o": 3}) is None


def test_export_cache_removes_staging_left_by_a_killed_export(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "config.json").write_text("{}")
    cache = ExportCache(tmp_path / "cache")
    folder = cache.model_dir("m", src)
    parent = folder.parent
    dead = parent / f".staging-{folder.name}-onnx-O3-{'a' * 32}"  # a SIGKILLed export of the same key
    other_key = parent / f".staging-{folder.name}-onnx-O3x-{'b' * 32}"  # another key: its own lock
    other_versions = parent / f".staging-0ther-onnx-O3-{'c' * 32}"  # another install's versions folder
    for d in (dead, other_key, other_versions):
        d.mkdir()

    def export(staging):
        (staging / "onnx").mkdir(parents=True)
        (staging / "onnx" / "model_O3.onnx").write_text("ok")

    cache.produce(folder, "onnx-O3", {"o": 3}, export)
    assert not dead.exists()
    assert other_key.exists() and other_versions.exists()
    assert not list(parent.glob(f".staging-{folder.name}-onnx-O3-*"))  # its own staging is gone too


def _cfg(**overrides):
    cfg = OmegaConf.structured(SweepConfig)
    cfg.model = OmegaConf.structured(ModelConfig(name="m", source="x"))
    cfg.dataset = OmegaConf.structured(DatasetConfig(name="short", bucket="short"))
    cfg.backend = OmegaConf.structured(BACKENDS["onnx"])
    for key, value in overrides.items():
        OmegaConf.update(cfg, key, value, force_add=True)
    return cfg


@pytest.mark.parametrize(
    "key,value,needle",
    [
        ("batch_sizes", [0], "batch_sizes: 0"),
        ("batch_sizes", [-4], "batch_sizes: -4"),
        ("batch_sizes", [], "batch_sizes: \\[\\] is not allowed"),
        ("model.kind", "bi-encodr", "Did you mean 'bi-encoder'"),
        ("backend.quantization", "avx513", "Did you mean 'avx512'"),
        ("dataset.bucket", "tiny", "dataset.bucket"),
        ("accuracy.tasks", ["sts", "retreival"], "Did you mean 'retrieval'"),
    ],
)
def test_validate_names_field_value_and_allowed(key, value, needle):
    with pytest.raises(ConfigError, match=needle):
        validate(_cfg(**{key: value}))


def test_validate_accepts_defaults():
    validate(_cfg())


@pytest.mark.parametrize(
    "flags,vendor,expected",
    [
        (("avx2", "avx512f", "avx512_vnni"), "intel", "avx512_vnni"),
        (("avx2", "avx512f"), "intel", "avx512"),
        (("avx", "avx2"), "amd", "avx2"),
        (("asimd",), "arm", "arm64"),
    ],
)
def test_qint8_config_follows_cpu_flags(flags, vendor, expected):
    hw = Hardware("cpu", vendor, flags, 2, 2, 8.0)
    assert qint8_config_for(hw) == expected


def test_qint8_config_without_any_fit_says_what_to_set():
    with pytest.raises(ValueError, match="backend.quantization"):
        qint8_config_for(Hardware("old", "intel", ("avx",), 2, 2, 8.0))


def test_builtin_texts_are_deterministic_and_in_their_length_buckets():
    assert builtin_texts("short", 50) == builtin_texts("short", 50)
    lengths = {b: sum(map(len, builtin_texts(b, 50))) / 50 for b in ("short", "medium", "long")}
    assert 25 <= lengths["short"] <= 70
    assert 300 <= lengths["medium"] <= 700
    assert lengths["long"] >= 3000
    assert as_pairs(["a", "b", "c"]) == [("a", "b"), ("b", "c"), ("c", "a")]


def test_bulk_and_request_passes_meet_minimums_and_count_calls():
    calls = []
    timing = measure.Timing(texts_per_pass=3)
    last = measure.bulk_passes(lambda: calls.append(3) or "out", timing, 0.0, 4, 10)
    assert last == "out" and len(timing.pass_seconds) == 4 and calls == [3] * 4  # one call per bulk pass
    measure.request_passes(lambda b: calls.append(len(b)), [[1, 2], [3]], timing, 0.0, 2, 10)
    assert calls[4:] == [2, 1, 2, 1] and timing.batches_per_pass == 2  # one call per batch (request)
    fields = timing.fields()
    assert fields["throughput"] > 0 and fields["per_request_throughput"] > 0 and fields["n_batches"] == 4
    assert fields["measure_s"] == pytest.approx(sum(timing.pass_seconds) + sum(timing.latencies))


def test_slow_passes_stop_at_max_time_even_below_min_repeats():
    timing = measure.Timing(texts_per_pass=1)
    measure.bulk_passes(lambda: time.sleep(0.05), timing, 0.0, 10, 50, max_time_s=0.01)
    assert len(timing.pass_seconds) == 1  # the pass that crossed max_time_s was the last


def test_latency_percentiles_from_raw_values():
    stats = measure.Latency([i / 1000 for i in range(1, 101)]).stats()
    assert stats["latency_p50_ms"] == pytest.approx(50.5)
    assert stats["latency_p99_ms"] == pytest.approx(99.01)


def test_row_json_has_every_column(tmp_path):
    path = results.write_row(tmp_path, _row(backend="onnx"))
    assert set(json.loads(path.read_text())) == set(results.COLUMNS)


def test_interleaved_rounds_pool_from_raw_values(tmp_path):
    common = dict(backend="onnx", cell_key="k", n_texts=10, cpu_self=1.0, contended=False, tries=1)
    results.write_row(tmp_path, _row(round=0, pass_s=[1.0, 1.0], latencies_ms=[10.0, 20.0], throughput=10.0,
                                     cpu_other=0.0, tokenize_share=0.1, forward_share=0.8, other_share=0.1,
                                     forward_throughput=12.0, **common))  # fmt: skip
    results.write_row(tmp_path, _row(round=1, pass_s=[2.0], latencies_ms=[30.0], throughput=5.0,
                                     cpu_other=0.3, tokenize_share=0.2, forward_share=0.6, other_share=0.2,
                                     forward_throughput=8.0, **{**common, "contended": True}))  # fmt: skip
    df = results.load(tmp_path)
    assert len(df) == 1
    row = df.iloc[0]
    assert row["rounds"] == 2 and row["repeats"] == 3
    assert row["throughput"] == pytest.approx(30 / 4.0)  # all texts / all timed seconds
    assert row["latency_p50_ms"] == pytest.approx(20.0)
    assert row["cpu_other"] == pytest.approx(0.3 * 2 / 4)  # weighted by timed seconds
    assert bool(row["contended"]) is True
    # where the time goes: the mean of the rounds, not round 0's alone
    assert row["tokenize_share"] == pytest.approx(0.15) and row["forward_share"] == pytest.approx(0.7)
    assert row["forward_throughput"] == pytest.approx(10.0)


@pytest.mark.parametrize(
    "args, expected",
    [
        ([], ["+experiment=default"]),
        (["run=x"], ["+experiment=default", "run=x"]),
        (["-m", "run=x"], ["-m", "+experiment=default", "run=x"]),
        (["run=x", "--cfg", "job"], ["+experiment=default", "run=x", "--cfg", "job"]),
        (["--cfg", "job", "run=x"], ["--cfg", "job", "+experiment=default", "run=x"]),
        (["--cfg", "job"], ["--cfg", "job", "+experiment=default"]),
    ],
)
def test_default_experiment_joins_the_overrides_wherever_flags_stand(args, expected):
    from harness.cli import with_default_experiment

    assert with_default_experiment(args) == expected


def test_sweep_cfg_job_after_overrides_prints_the_config(capsys):
    from harness.cli import main

    assert main(["sweep", "run=x", "backend=onnx", "--cfg", "job"]) == 0
    out = capsys.readouterr().out
    assert "run: x" in out and "onnx" in out


def test_default_sweep_measures_in_three_interleaved_rounds(capsys):
    """The default measured steadiest on the reference machine (README); `round` must stay outermost."""
    from harness.cli import main

    assert main(["sweep", "--cfg", "hydra"]) == 0
    out = capsys.readouterr().out
    params = out[out.index("params:") :].splitlines()[1:3]
    assert params[0].strip() == "round: 0,1,2", params


def test_progress_counts_jobs_and_finds_every_swept_run(tmp_path):
    from rows import speed_row

    from harness import progress
    from harness.hardware import detect

    def cfg(task):
        return OmegaConf.create({
            "run": "default", "results_dir": str(tmp_path),
            "hydra": {"sweeper": {"params": {"round": "0,1,2", "backend": "onnx,openvino"}},
                      "overrides": {"task": task}},
        })  # fmt: skip

    swept = cfg(["run=a,b", "batch_sizes=[4,8]"])
    assert progress.count_jobs(swept) == 3 * 2 * 2  # a list value is one value, not a sweep
    assert progress.swept_runs(swept) == ["a", "b"]
    assert progress.swept_runs(cfg(["run=x"])) == ["x"]
    assert progress.swept_runs(cfg([])) == ["default"]

    here = detect().fingerprint
    for run in ("a", "b"):
        results.write_row(tmp_path, speed_row("torch-fp32", 100.0, run=run, machine=here, threads=2))
    text = progress.summary(str(tmp_path), ["a", "b"])
    lines = [line.split() for line in text.splitlines() if "torch-fp32" in line]
    assert [line[0] for line in lines] == ["a", "b"]  # a run column when several runs are shown
    assert "no results in run(s) c" in progress.summary(str(tmp_path), ["c"])


def test_knobs_of_another_family_do_not_make_a_variant_or_a_new_cell():
    """`harness sweep backend=torch-fp32,openvino backend.ov_precision=f32,null`: openvino gets a
    variant per precision; torch-fp32 has no such knob, so it stays one cell, measured once."""
    from harness.compose import compose
    from harness.sweep import cell_id_accuracy, cell_id_speed, variant

    def cfg(backend: str, *extra: str):
        return compose([f"backend={backend}", *extra])

    torch_default, torch_bf16 = cfg("torch-fp32"), cfg("torch-fp32", "backend.ov_precision=bf16")
    ov_default, ov_bf16 = cfg("openvino"), cfg("openvino", "backend.ov_precision=bf16")
    assert variant(torch_bf16.backend) == "" and variant(ov_default.backend) == ""
    assert variant(ov_bf16.backend) == "ov_precision=bf16"
    assert variant(cfg("onnx", "backend.ort_spinning=true").backend) == "ort_spinning=True"
    assert variant(cfg("onnx", "backend.ov_hint=THROUGHPUT").backend) == ""
    assert cell_id_speed(torch_default, "m", 32, 2) == cell_id_speed(torch_bf16, "m", 32, 2)
    assert cell_id_speed(ov_default, "m", 32, 2) != cell_id_speed(ov_bf16, "m", 32, 2)
    # a speed-only knob shares the accuracy cell; a precision knob has its own
    assert cell_id_accuracy(ov_default, "m", "sts", ov_default.backend) == cell_id_accuracy(
        ov_default, "m", "sts", cfg("openvino", "backend.ov_hint=THROUGHPUT").backend
    )
    assert cell_id_accuracy(ov_default, "m", "sts", ov_default.backend) != cell_id_accuracy(
        ov_default, "m", "sts", ov_bf16.backend
    )


def test_export_cache_follows_the_model_folders_content(tmp_path):
    """Retrain a model in place and its exports are made again, not taken from the stale cache."""
    import os

    src = tmp_path / "my-model"
    (src / "1_Pooling").mkdir(parents=True)
    (src / "config.json").write_text("{}")
    (src / "model.safetensors").write_bytes(b"weights-v1")
    (src / "1_Pooling" / "config.json").write_text("{}")
    cache = ExportCache(tmp_path / "cache")
    before = cache.model_dir("m", src)
    assert cache.model_dir("m", src) == before  # unchanged content: the same cached folder
    (src / "model.safetensors").write_bytes(b"weights-v2")  # same size, rewritten
    stat = (src / "model.safetensors").stat()
    os.utime(src / "model.safetensors", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    after = cache.model_dir("m", src)
    assert after != before
    assert (after / "model.safetensors").read_bytes() == b"weights-v2"
