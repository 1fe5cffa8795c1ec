"""#22: paired per-round speedups with rerun intervals, pooled spread, and the tie rule (synthetic rows)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.store import intervals, results, stats
from tests.rows import speed_row


def _round_row(backend, throughput, round_, dataset="short", variant="", n_lat=300, **kw):
    """One round's stored row of a cell: throughput from one pass over 100 texts."""
    return speed_row(
        backend, throughput, round=round_, dataset=dataset, variant=variant, cell_key=f"{backend}-{variant}-{dataset}",
        cell_id=f"{backend}-{variant}-{dataset}-r{round_}", n_texts=100, pass_s=[100.0 / throughput],
        latencies_ms=[1000.0 / throughput] * n_lat, n_batches=n_lat, latency_p99_ms=1000.0 / throughput,
        per_request_throughput=throughput, **kw,
    )  # fmt: skip


def _store(tmp_path, table):
    """table: {(backend, variant): [throughput per round]} for datasets short and medium alike."""
    for dataset in ("short", "medium"):
        for (backend, variant), values in table.items():
            for r, v in enumerate(values):
                results.write_row(tmp_path, _round_row(backend, v, r, dataset=dataset, variant=variant))
    return results.load(tmp_path)


def test_pooled_spread_and_rerun_interval_by_hand():
    spread = stats.pooled([[0.0, 0.2], [1.0, 1.1, 1.2]])
    assert spread.df == 3
    assert spread.s == pytest.approx(math.sqrt((0.02 + 0.02) / 3))
    e = stats.rerun_interval([0.1, 0.3], spread)
    half = spread.t * spread.s * math.sqrt(2 / 2)  # a rerun's mean of 2 rounds: variance 2 s^2 / n
    assert e.ratio == pytest.approx(math.exp(0.2))
    assert (e.low, e.high) == pytest.approx((math.exp(0.2 - half), math.exp(0.2 + half)))
    assert stats.rerun_interval([0.1], None).low != stats.rerun_interval([0.1], None).low  # nan: no spread


def test_speedup_is_paired_per_round_and_carries_its_interval(tmp_path):
    # torch-fp32 drifts 100 -> 80 -> 90; onnx is exactly 2x of it in every round: the paired ratio is 2.0
    # (a pooled ratio of sums would be too), and qint8 moves around 3x.
    df = _store(tmp_path, {("torch-fp32", ""): [100, 80, 90], ("onnx", ""): [200, 160, 180],
                           ("onnx-qint8", ""): [300, 256, 261]})  # fmt: skip
    onnx = df[(df["backend"] == "onnx") & (df["dataset"] == "short")].iloc[0]
    qint8 = df[(df["backend"] == "onnx-qint8") & (df["dataset"] == "short")].iloc[0]
    base = df[(df["backend"] == "torch-fp32") & (df["dataset"] == "short")].iloc[0]
    assert onnx["speedup"] == pytest.approx(2.0)
    assert qint8["speedup"] == pytest.approx(math.exp(np.mean(np.log([3.0, 3.2, 2.9]))))
    assert qint8["speedup_low"] < qint8["speedup"] < qint8["speedup_high"]
    assert onnx["paired_rounds"] == 3
    assert base["speedup"] == 1.0 and base["speedup_low"] == pytest.approx(1.0)
    # the spread is pooled over onnx and qint8 on both datasets (df = 4 x 2), torch-fp32 not counted
    assert onnx["spread"]["throughput"][1] == 8


def test_a_configuration_measured_once_borrows_the_spread_of_those_measured_more(tmp_path):
    df = _store(tmp_path, {("torch-fp32", ""): [100, 100, 100], ("onnx", ""): [200, 190, 210],
                           ("torch-fp16", ""): [25]})  # fmt: skip
    fp16 = df[(df["backend"] == "torch-fp16") & (df["dataset"] == "short")].iloc[0]
    onnx = df[(df["backend"] == "onnx") & (df["dataset"] == "short")].iloc[0]
    assert fp16["paired_rounds"] == 1
    assert fp16["spread"]["throughput"] == onnx["spread"]["throughput"]
    width_one = math.log(fp16["speedup_high"] / fp16["speedup_low"])
    width_three = math.log(onnx["speedup_high"] / onnx["speedup_low"])
    assert width_one == pytest.approx(width_three * math.sqrt(3))  # sqrt(2/1) vs sqrt(2/3)


def test_same_kernels_are_tied_and_a_real_difference_is_not(tmp_path):
    df = _store(tmp_path, {("torch-fp32", ""): [100, 90, 110], ("onnx", ""): [200, 185, 216],
                           ("onnx-O1", ""): [204, 180, 220], ("onnx-qint8", ""): [300, 270, 330]})  # fmt: skip
    short = df[df["dataset"] == "short"].set_index("backend")
    same = intervals.compare(short.loc["onnx-O1"], short.loc["onnx"])
    assert same.tied and same.contains_one()
    faster = intervals.compare(short.loc["onnx-qint8"], short.loc["onnx"])
    assert not faster.tied and faster.decided and faster.low > 1
    # within +-2 % is a tie even when the interval excludes 1
    assert stats.Estimate(1.01, 1.005, 1.015, 3).tied
    assert not stats.Estimate(1.04, 1.02, 1.06, 3).tied
    # contains 1 but wider than +-5 %: undecided
    assert not stats.Estimate(1.0, 0.9, 1.1, 2).decided


def test_a_p99_on_fewer_than_100_requests_is_not_reported(tmp_path):
    results.write_row(tmp_path, _round_row("torch-fp32", 100, 0, n_lat=64))
    df = results.load(tmp_path)
    assert df["latency_requests"].iloc[0] == 64 and math.isnan(df["latency_p99_ms"].iloc[0])


def test_a_one_round_row_borrows_its_runtime_familys_spread_where_that_is_wider(tmp_path):
    """#22: ONNX Runtime's one-round rows moved between runs by s 0.14-0.27 while the configurations measured
    twice (OpenVINO, torch) moved by 0.04-0.08; borrowing their spread put 30 of 49 misses of three sweeps'
    calibration on ONNX rows. Same-kernel twins measured in one round are two processes of one computation."""
    same = {"graph_fingerprint": "g", "precision": "fp32"}
    table = {"torch-fp32": ([100, 100, 100], {}), "openvino": ([300, 306, 294], {}),
             "onnx-qint8": ([250, 190], {}), "onnx": ([150], same), "onnx-O1": ([100], same)}  # fmt: skip
    for dataset in ("short", "medium"):
        for backend, (values, runtime) in table.items():
            for r, v in enumerate(values):
                results.write_row(tmp_path, _round_row(backend, v, r, dataset=dataset, runtime=runtime))
    df = results.load(tmp_path).query("dataset == 'short'").set_index("backend")
    ort, ov = df.at["onnx", "spread"]["throughput"], df.at["openvino", "spread"]["throughput"]
    # ONNX Runtime: qint8's two rounds (1 df a dataset) and the twins' log(150 / 100) (1 df a dataset)
    expected = math.sqrt((2 * (math.log(250 / 190) ** 2 / 2) + 2 * (math.log(1.5) ** 2 / 2)) / 4)
    assert ort[1] == 4 and ort[0] == pytest.approx(expected)
    assert ov[1] == 6 and ov[0] < ort[0]  # OpenVINO keeps its group's (pooled over openvino and qint8): wider
    # than its own family's, which is only ever a floor
    width = math.log(df.at["onnx", "speedup_high"] / df.at["onnx", "speedup_low"])
    assert width == pytest.approx(2 * stats.Spread(expected, 4).half_width(1))


def test_the_verdict_names_as_leader_the_one_its_paired_ratio_puts_ahead(tmp_path):
    """Stop 32, run r8: the summary read "openvino-qint8 leads openvino-qint8 [ov_precision=f32] by 0.82x": the
    ranking is by each row's estimate over all its rounds, the ratio paired over the rounds both have. Here
    openvino ranks first on two rounds (1.94x) while onnx, measured in round 0 only (1.8x), beat it there."""
    df = _store(tmp_path, {("torch-fp32", ""): [100, 100], ("openvino", ""): [150, 250], ("onnx", ""): [180],
                           ("torch-fp16", ""): [30, 31]})  # fmt: skip
    assert df.set_index(["dataset", "backend"]).loc[("short", "openvino"), "speedup"] > 1.8  # ranked first
    verdict = next(v for v in intervals.verdicts(df) if v.group[3] == "short" and v.scenario == "bulk")
    assert (verdict.leader, verdict.runner_up) == ("onnx", "openvino")
    assert verdict.estimate.ratio == pytest.approx(180 / 150)
    assert "onnx leads openvino by 1.20x" in verdict.line()


@pytest.mark.parametrize("ratio", [1.0, 1.02, 1.04, 1.08, 1.3, 0.9])
def test_rounds_to_settle_is_the_first_round_count_whose_interval_decides(ratio):
    """The sweep's summary says what an undecided group would need; the effort rule gives up by the same rule."""
    spread = stats.Spread(0.05, 40)
    n = stats.rounds_to_settle(stats.Estimate(ratio, math.nan, math.nan, 1), spread)
    assert stats.rerun_interval([math.log(ratio)] * n, spread).decided
    if n > 1:
        assert not stats.rerun_interval([math.log(ratio)] * (n - 1), spread).decided


def test_an_undecided_verdict_says_how_many_rounds_would_settle_it():
    from harness.cli.progress import _needed

    group = ("r", "m", "all-MiniLM-L6-v2", "short", 32, 2, "cpu")
    spread = stats.Spread(0.05, 40)
    undecided = intervals.Verdict(group, "bulk", "a", "b", stats.rerun_interval([0.02, 0.0], spread), (), spread)
    assert undecided.status == "undecided"
    n = stats.rounds_to_settle(undecided.estimate, spread)
    assert n > 2 and _needed(undecided) == f" (needs ~{n} rounds at s 0.05, has 2)"
    decided = intervals.Verdict(group, "bulk", "a", "b", stats.rerun_interval([0.5, 0.5], spread), (), spread)
    assert decided.rounds_needed is None and _needed(decided) == ""
