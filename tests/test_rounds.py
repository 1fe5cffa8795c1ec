"""rounds=auto: a round after the first only for configurations whose place is undecided; the decision is a row."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from harness.engine import rounds
from harness.store import results, stats
from harness.store.rows import RoundRow
from harness.store.stats import Spread

BASE = "torch-fp32"


def _rows(throughputs: dict[str, list[float]]) -> list[dict]:
    return [
        {"kind": "speed", "status": "ok", "backend": b.split(" [")[0], "variant": b.partition(" [")[2].rstrip("]"),
         "round": r, "throughput": t}
        for b, per_round in throughputs.items() for r, t in enumerate(per_round)
    ]  # fmt: skip


def _judge(throughputs, label, spread=rounds.PRIOR, batch_size=32, precision=None):
    rows = _rows(throughputs)
    precision = precision or {"openvino-qint8": "int8", "onnx-qint8": "int8"}
    for r in rows:
        r["precision"] = precision.get(r["backend"], "fp32")
    return rounds.judge(rows, label, BASE, batch_size, spread, round_=len(next(iter(throughputs.values()))))


ROUND0 = {BASE: [100], "torch-fp16": [25], "onnx": [120], "onnx-O1": [125], "openvino-qint8": [280]}


def test_after_one_round_the_dominated_stop_and_the_close_go_on():
    # with the prior spread (+-30 % at one round) only what is within reach of a leader is measured again
    assert _judge(ROUND0, "torch-fp16").skip  # 0.25x: decided
    assert not _judge(ROUND0, "onnx").skip and not _judge(ROUND0, "onnx-O1").skip  # close to the best non-int8
    leader = _judge(ROUND0, "openvino-qint8")  # far ahead, but its one round's interval is too wide to place
    assert not leader.skip and "too wide to place" in leader.why
    assert not _judge(ROUND0, BASE).skip  # the round's ratios rest on it
    why = _judge(ROUND0, "torch-fp16").why
    assert why.startswith("decided after 1 round(s): 0.25x of torch-fp32") and "x (" not in why  # no prior interval


def test_a_tie_within_five_percent_is_decided_and_stops():
    spread = Spread(0.01, 20)  # a steady machine: +-3 % at two rounds
    rows = {BASE: [100, 100], "onnx": [150, 151], "onnx-O1": [151, 150], "torch-fp16": [25, 25]}
    assert _judge(rows, "onnx", spread).skip and _judge(rows, "onnx-O1", spread).skip
    assert _judge(rows, BASE, spread).skip  # nothing left open: torch-fp32 stops too


def test_ratios_are_paired_per_round_so_drift_cancels():
    # the whole machine 20 % faster in round 1: a and b keep their 1.5 / 1.3 ratio in each round
    spread = Spread(0.01, 20)
    rows = {BASE: [100, 120], "a": [150, 180], "b": [130, 156]}
    assert _judge(rows, "b", spread).skip


def test_online_latency_is_a_scenario_of_its_own_at_batch_size_1():
    spread = {"throughput": Spread(0.01, 20), "latency_p99_ms": Spread(0.1, 20)}  # p99s move more
    rows = _rows({BASE: [100, 100], "a": [150, 150], "b": [120, 120]})
    for r in rows:  # b is slower in bulk but its p99 is as good as a's: undecided online
        r["precision"] = "fp32"
        r["latencies_ms"] = [1.0] * 300
        r["latency_p99_ms"] = {"torch-fp32": 10.0, "a": 6.0, "b": 6.0 * (1.2 if r["round"] else 0.85)}[r["backend"]]
    assert rounds.judge(rows, "b", BASE, 32, spread, 2).skip
    assert not rounds.judge(rows, "b", BASE, 1, spread, 2).skip


def test_the_best_non_int8_is_a_leader_too():
    # int8 leads by far; onnx and openvino are close to each other: their order matters when int8 is ruled out
    rows = {BASE: [100], "onnx-qint8": [400], "onnx": [150], "openvino": [155]}
    precision = {"onnx-qint8": "int8"}
    assert not _judge(rows, "onnx", precision=precision).skip and not _judge(rows, "openvino", precision=precision).skip


def _cfg(tmp_path, round_: int, adaptive: bool = True):
    return OmegaConf.create({"adaptive_rounds": adaptive, "round": round_, "results_dir": str(tmp_path), "run": "r"})


def _store(tmp_path, throughputs: dict[str, list[float]], machine: str = "m1") -> None:
    from rows import speed_row

    for backend, per_round in throughputs.items():
        for r, t in enumerate(per_round):
            key = f"speed-tiny-short-bs4-{backend}-x"
            row = speed_row(backend=backend, throughput=t, machine=machine, run="r", round=r, batch_size=4,
                            cell_id=key if r == 0 else f"{key}-r{r}", cell_key=key, n_texts=4,
                            pass_s=[4 / t], latencies_ms=[1000 / t] * 4, measure_s=8 / t, cpu_self=1.0,
                            cpu_other=0.0)  # fmt: skip
            results.write_row(tmp_path, row)


def test_decide_reads_the_group_from_the_store(tmp_path):
    _store(tmp_path, {BASE: [100, 101], "onnx": [150, 152], "torch-fp16": [25, 25]})
    prefixes = ("speed-tiny-short-bs4-", "speed-tiny-")
    m1 = {"machine": "m1"}
    assert rounds.decide(_cfg(tmp_path, 0), prefixes, m1, BASE, "onnx", 4) is None  # the first round always runs
    assert rounds.decide(_cfg(tmp_path, 2, adaptive=False), prefixes, m1, BASE, "onnx", 4) is None
    decision = rounds.decide(_cfg(tmp_path, 2), prefixes, m1, BASE, "torch-fp16", 4)
    assert decision.skip and "decided after 2 round(s)" in decision.why
    # another machine's rows are not this group's: nothing measured there yet
    assert rounds.decide(_cfg(tmp_path, 2), prefixes, {"machine": "m2"}, BASE, "onnx", 4).skip is False


def test_a_stopped_configuration_stays_stopped(tmp_path):
    _store(tmp_path, {BASE: [100], "onnx": [150]})
    base = next(r for r in results.read_rows(tmp_path) if r["backend"] == "onnx")
    identity = {k: v for k, v in base.items() if k in RoundRow.columns()}
    stop = results.new_row(**{**identity, "cell_id": base["cell_id"] + "-r1", "kind": results.ROUND_KIND,
                              "round": 1, "reason": "decided after 1 round(s): x"})  # fmt: skip
    results.write_row(tmp_path, stop)
    decision = rounds.decide(_cfg(tmp_path, 2), ("speed-tiny-short-bs4-", "speed-tiny-"), {"machine": "m1"}, BASE,
                             "onnx", 4)  # fmt: skip
    assert decision.skip and decision.why == "decided after 1 round(s): x"


def test_a_round_not_needed_is_a_row_the_pooled_cell_reports(tmp_path):
    _store(tmp_path, {BASE: [100, 101]})
    base = next(r for r in results.read_rows(tmp_path) if r["round"] == 0)
    identity = {k: v for k, v in base.items() if k in RoundRow.columns()}  # a round row has no measurement
    skipped = results.new_row(**{**identity, "cell_id": base["cell_id"] + "-r2", "kind": results.ROUND_KIND,
                                 "round": 2, "reason": "settled x", "round_reason": "settled x"})  # fmt: skip
    results.write_row(tmp_path, skipped)
    df = results.load(tmp_path)
    assert list(df["kind"]) == ["speed"]  # the decision row is not a cell of its own
    assert df.iloc[0]["rounds"] == 2 and df.iloc[0]["round_reason"] == "settled x"


@pytest.mark.parametrize("value", ["0", "-1", "two", ""])
def test_bad_rounds_value_is_one_line(value):
    from harness.cli import main

    assert main(["sweep", f"rounds={value}", "--plan"]) == 2


def test_a_question_the_rounds_left_cannot_settle_gets_no_more():
    """#22: on a noisy machine (a 15 % spread between processes, as batch-1 cells on the 2-core EPYC), two
    configurations 3 % apart after two rounds stay undecided at a cap of 4 whatever is measured: no round is
    spent on them. A 40 % gap still gets its rounds while they can decide it, and without a known cap nothing
    is given up."""
    spread = Spread(0.15, 30)
    rows = {BASE: [100, 100], "a": [200, 200], "b": [194, 194], "c": [120, 120]}
    rows_ = _rows(rows)
    for r in rows_:
        r["precision"] = "fp32"
    assert rounds.judge(rows_, "b", BASE, 32, spread, 2, cap=4).skip
    assert not rounds.judge(rows_, "b", BASE, 32, spread, 2).skip  # no cap known: measured as before
    assert rounds.settles(stats.Estimate(1.4, 1.0, 1.9, 2), spread, 2)
    assert not rounds.settles(stats.Estimate(1.03, 0.8, 1.3, 2), spread, 2)
    assert rounds.settles(stats.Estimate(1.03, 0.8, 1.3, 2), None, 2)  # the prior never gives up
