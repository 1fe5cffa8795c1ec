"""#22: a sweep's duels - a pair the rounds leave undecided, settled by neighbouring passes (harness.engine.duels):
how their rows are kept and read (synthetic rows), which configuration a label names, and the duels themselves
on tiny models in real workers."""

from __future__ import annotations

import math

import pytest

from harness.engine.cells import label_of
from harness.recommend import ties
from harness.store import intervals, results
from harness.store.rows import RoundRow
from tests.rows import speed_row

PIN = "openvino-qint8 [ov_precision=f32]"


def _row(backend, throughput, round_, variant="", dataset="short"):
    return speed_row(
        backend, throughput, round=round_, dataset=dataset, variant=variant, cell_key=f"{backend}-{variant}-{dataset}",
        cell_id=f"{backend}-{variant}-{dataset}-r{round_}", n_texts=100, pass_s=[100.0 / throughput],
        latencies_ms=[1000.0 / throughput] * 300, n_batches=300, latency_p99_ms=1000.0 / throughput,
        per_request_throughput=throughput,
    )  # fmt: skip


def _duel_row(of: dict, round_: int, duels: dict) -> dict:
    identity = {k: v for k, v in of.items() if k in RoundRow.columns()}
    return results.new_row(**{**identity, "cell_id": f"{of['cell_key']}-r{round_}", "kind": results.ROUND_KIND,
                              "round": round_, "reason": "duel", "round_reason": "duel", "duels": duels})  # fmt: skip


# Measured seconds apart, the host moved: openvino-qint8 and its f32 pin swap places from round to round
# (undecided); in neighbouring passes the pin is 2-3 % slower every time.
TABLE = {("torch-fp32", ""): [100, 100], ("openvino-qint8", ""): [320, 290], ("openvino-qint8", "ov_precision=f32"): [
    300, 310]}  # fmt: skip


def _store(tmp_path, duel_ratios=None, recorded_by="pin"):
    rows = {}
    for (backend, variant), values in TABLE.items():
        for r, v in enumerate(values):
            rows[(backend, variant, r)] = _row(backend, v, r, variant)
            results.write_row(tmp_path, rows[(backend, variant, r)])
    if duel_ratios:
        for i, ratios in enumerate(duel_ratios):  # each sweep round's duel rounds
            if recorded_by == "pin":
                of, duels = rows[("openvino-qint8", "ov_precision=f32", 0)], {"openvino-qint8": {"throughput": ratios}}
            else:
                of, duels = rows[("openvino-qint8", "", 0)], {PIN: {"throughput": [1 / v for v in ratios]}}
            results.write_row(tmp_path, _duel_row(of, 2 + i, duels))
    return results.load(tmp_path)


def _labelled(df):
    return df.assign(label=[results.label(b, v or "") for b, v in zip(df["backend"], df["variant"], strict=True)])


def test_without_duels_the_rounds_leave_the_pair_undecided(tmp_path):
    (verdict,) = intervals.verdicts(_labelled(_store(tmp_path)))
    assert {verdict.leader, verdict.runner_up} == {"openvino-qint8", PIN} and verdict.status == "undecided"


@pytest.mark.parametrize("recorded_by", ["pin", "openvino-qint8"])
def test_duels_decide_the_verdict_whichever_side_recorded_them(tmp_path, recorded_by):
    df = _labelled(_store(tmp_path, [[0.975, 0.98], [0.972, 0.978]], recorded_by))
    pin = df[df["label"] == PIN].iloc[0]
    default = df[df["label"] == "openvino-qint8"].iloc[0]
    # the duels' spread: pooled over the run's duel rounds (here one pair, two sweep rounds of two)
    assert pin["spread"]["duel:throughput"][1] == 3 and default["spread"]["duel:throughput"][1] == 3
    e = intervals.compare(default, pin)
    mean = sum(math.log(v) for v in (0.975, 0.98, 0.972, 0.978)) / 4
    assert e.n == 4 and e.ratio == pytest.approx(math.exp(-mean))
    (verdict,) = intervals.verdicts(df)
    assert (verdict.leader, verdict.runner_up) == ("openvino-qint8", PIN)
    assert verdict.status == "tied" and e.within(0.05)  # 2-3 % apart, known to +-1 %: a stated tie


def test_duels_that_put_the_runner_up_ahead_make_it_the_leader(tmp_path):
    # the pooled rounds rank openvino-qint8 first (305 vs 305 -> by the order); the duels say the pin is 6 % faster
    df = _labelled(_store(tmp_path, [[1.06, 1.065], [1.058, 1.062]]))
    (verdict,) = intervals.verdicts(df)
    assert (verdict.leader, verdict.runner_up, verdict.status) == (PIN, "openvino-qint8", "decided")
    assert verdict.estimate.ratio == pytest.approx(1.061, abs=0.002)
    # the recommender's comparison reads the same duels
    cells = {label: ties.cells_of(df[df["label"] == label]) for label in ("openvino-qint8", PIN)}
    e = ties.compare(cells[PIN], cells["openvino-qint8"], "bulk")
    assert e.n == 4 and e.low > 1.0


@pytest.mark.parametrize("label", ["openvino-qint8", PIN, "onnx", "onnx [ort_spinning=False]", "torch-fp16"])
def test_a_label_names_the_configuration_its_rows_came_from(label):
    from harness.engine.duels import backend_config

    assert label_of(backend_config(label)) == label


def test_a_sweep_duels_the_pair_its_first_round_left_undecided(tiny_models, tmp_path):
    """Through the CLI on a tiny model: round 0 of torch-fp32 and onnx, their numbers then set 1 % apart (as two
    close configurations measure); `rounds=auto` goes on from there and round 1 runs their duels - bulk passes
    and the per-request loop at batch size 1, in fresh workers - recorded beside torch-fp32's round-1 row."""
    import json
    import os

    from tests.test_sweep import QUICK, harness

    env = {**os.environ, "HARNESS_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("HARNESS_DATA_DIR", None)
    quick = [a for a in QUICK if not a.startswith(("rounds=", "batch_sizes="))]
    args = [
        "model.name=tiny",
        f"model.source={tiny_models[0]}",
        "backend=torch-fp32,onnx",
        "accuracy.enabled=false",
        f"results_dir={tmp_path / 'results'}",
        "run=dd",
        "batch_sizes=[1]",
        "measure.agreement_texts=0",
        *quick,
    ]
    proc = harness("sweep", "rounds=1", *args, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    files = {json.loads(p.read_text())["backend"]: p for p in (tmp_path / "results" / "dd").glob("speed-*.json")}
    base = json.loads(files["torch-fp32"].read_text())
    onnx = json.loads(files["onnx"].read_text())
    onnx.update(throughput=base["throughput"] * 1.01, latency_p99_ms=base["latency_p99_ms"] * 0.99,
                latencies_ms=base["latencies_ms"])  # fmt: skip
    files["onnx"].write_text(json.dumps(onnx))

    proc = harness("sweep", "rounds=auto", *args, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    raw = results.read_rows(tmp_path / "results")
    (duel,) = [r for r in raw if r["kind"] == results.ROUND_KIND and r["round"] == 1 and r.get("duels")]
    assert duel["backend"] == "torch-fp32" and duel["cell_id"].endswith("-duel") and duel["status"] == "ok"
    from harness.engine.rounds import FIRST_DUEL_ROUNDS as FIRST

    for metric in ("throughput", "latency_p99_ms"):
        ratios = duel["duels"]["onnx"][metric]
        assert len(ratios) == FIRST and all(math.isfinite(v) and v > 0 for v in ratios)
    pooled = results.load(tmp_path / "results").set_index("backend")
    assert pooled.loc["torch-fp32", "duels"]["onnx"]["throughput"][:FIRST] == duel["duels"]["onnx"]["throughput"]
