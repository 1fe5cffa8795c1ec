"""#22: configurations that run the same kernels are tied - in the verdicts, the effort rule and the
recommender - whatever their numbers (synthetic rows; the real ones: test_kernels_real.py)."""

from __future__ import annotations

import pytest

from harness.engine import rounds
from harness.store import intervals, kernels, results
from harness.store.stats import Spread
from tests.rows import speed_row

ORT = {"precision": "fp32", "precision_source": "optimized session graph", "kernels": {"MatMul:fp32": 36},
       "graph_ops": 260, "graph_fingerprint": "a1b2c3d4e5f60718", "intra_op_threads": 2, "allow_spinning": True,
       "allow_spinning_source": "onnxruntime default", "onnxruntime": "1.32.0"}  # fmt: skip
OV = {"precision": "fp32", "kernels": {"FullyConnected:f32:gemm_mlas_f32": 36}, "graph_ops": 300,
      "graph_fingerprint": "0f0e0d0c0b0a0908", "threads": "2", "performance_hint": "LATENCY"}  # fmt: skip


def test_the_same_read_back_is_the_same_kernels_and_how_it_was_learned_does_not_count():
    assert kernels.same(ORT, dict(ORT))
    assert kernels.same(ORT, {**ORT, "allow_spinning_source": "session option"})  # set to the default: the same
    assert not kernels.same(ORT, {**ORT, "allow_spinning": False})  # a setting that changes what runs
    assert not kernels.same(ORT, {**ORT, "graph_fingerprint": "ffffffffffffffff"})  # another graph (O2's)
    assert not kernels.same(ORT, OV)
    no_graph = {k: v for k, v in ORT.items() if not k.startswith("graph_")}  # torch, or a row from before
    assert kernels.signature(no_graph) is None and not kernels.same(no_graph, no_graph)


def _row(backend, throughput, round_, runtime, dataset="short"):
    return speed_row(
        backend, throughput, round=round_, dataset=dataset, cell_key=f"{backend}-{dataset}",
        cell_id=f"{backend}-{dataset}-r{round_}", n_texts=100, pass_s=[100.0 / throughput],
        latencies_ms=[1000.0 / throughput] * 300, n_batches=300, latency_p99_ms=1000.0 / throughput,
        per_request_throughput=throughput, runtime=runtime, precision=runtime.get("precision", "fp32"),
    )  # fmt: skip


# onnx-O1 measured 8 % above onnx in every round (a process-order effect, say), openvino 20 % below both
TABLE = {"torch-fp32": [100, 96, 104], "onnx": [200, 190, 210], "onnx-O1": [216, 205, 227], "openvino": [160, 150, 170]}


def _store(tmp_path, o1_runtime):
    runtimes = {"torch-fp32": {"precision": "fp32"}, "onnx": ORT, "onnx-O1": o1_runtime, "openvino": OV}
    for backend, values in TABLE.items():
        for r, v in enumerate(values):
            results.write_row(tmp_path, _row(backend, v, r, runtimes[backend]))
    return results.load(tmp_path)


def test_the_verdict_ties_the_leader_with_its_twins_and_weighs_it_against_the_next_computation(tmp_path):
    df = _store(tmp_path, ORT)
    o1 = df[df["backend"] == "onnx-O1"].iloc[0]
    assert o1["same_kernels"] == ("onnx",)
    assert df[df["backend"] == "openvino"].iloc[0]["same_kernels"] == ()
    (verdict,) = intervals.verdicts(df)
    assert (verdict.leader, verdict.twins, verdict.runner_up) == ("onnx-O1", ("onnx",), "openvino")
    assert verdict.status == "decided"
    assert "tied: same kernels as onnx" in verdict.line()


def test_without_a_shared_read_back_the_same_numbers_are_weighed_as_two_configurations(tmp_path):
    df = _store(tmp_path, {**ORT, "graph_fingerprint": "ffffffffffffffff"})
    (verdict,) = intervals.verdicts(df)
    assert (verdict.leader, verdict.twins, verdict.runner_up) == ("onnx-O1", (), "onnx")


def test_only_twins_left_is_a_tie():
    import pandas as pd

    rows = pd.DataFrame([{"_label": "onnx-O1", "same_kernels": ("onnx",)}, {"_label": "onnx", "same_kernels": ()}])
    (verdict,) = intervals._verdict(("r", "m", "model", "short", 32, 2, "cpu"), "bulk", rows, "throughput")
    assert verdict.runner_up is None and verdict.status == "tied" and "tied" in verdict.line()


@pytest.mark.parametrize("same", [True, False])
def test_the_effort_rule_spends_no_round_on_twins(tmp_path, same):
    rows = []
    for backend, values in {"torch-fp32": [100], "onnx": [200], "onnx-O1": [206], "openvino": [120]}.items():
        runtime = {"torch-fp32": {}, "onnx": ORT, "openvino": OV}.get(backend)
        if runtime is None:
            runtime = ORT if same else {**ORT, "graph_fingerprint": "ffffffffffffffff"}
        rows.append(_row(backend, values[0], 0, runtime))
    spread = Spread(0.05, 20)  # onnx-O1 / onnx = 1.03 (0.88-1.20): undecided by the numbers
    decision = rounds.judge(rows, "onnx", "torch-fp32", 32, spread, 1)
    assert decision.skip is same
    if same:
        assert "decided after 1 round" in decision.why
    else:
        assert "undecided against onnx-O1" in decision.why
