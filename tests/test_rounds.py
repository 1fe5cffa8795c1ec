"""rounds=auto: a third round only where the ranking is not settled after two; the decision is a row."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from harness.engine import rounds
from harness.store import results
from harness.store.rows import RoundRow

BASE = "torch-fp32"


def _rows(throughputs: dict[str, list[float]]) -> list[dict]:
    return [
        {"kind": "speed", "status": "ok", "backend": b.split(" [")[0], "variant": b.partition(" [")[2].rstrip("]"),
         "round": r, "throughput": t}
        for b, per_round in throughputs.items() for r, t in enumerate(per_round)
    ]  # fmt: skip


def test_clear_leader_and_steady_baseline_is_settled():
    rows = _rows({BASE: [100, 102], "onnx": [120, 118], "openvino-qint8": [280, 270]})
    assert rounds.unsettled(rows, 0.1, BASE) is None


def test_overlapping_leaders_ask_for_another_round():
    rows = _rows({BASE: [100, 100], "onnx-O1": [130, 121], "onnx-O2": [124, 127]})
    why = rounds.unsettled(rows, 0.1, BASE)
    assert why and "onnx-O1" in why and "onnx-O2" in why and "overlap" in why


def test_leaders_are_judged_on_per_round_ratios_so_drift_cancels():
    # the whole machine 20 % faster in round 1: raw ranges overlap, per-round speedups do not
    rows = _rows({BASE: [100, 109], "a": [150, 163], "b": [130, 142]})
    assert rounds.unsettled(rows, 0.1, BASE) is None


def test_a_moving_baseline_asks_for_another_round():
    rows = _rows({BASE: [100, 120], "onnx": [150, 180]})
    why = rounds.unsettled(rows, 0.1, BASE)
    assert why and BASE in why and "moved" in why


def test_a_configuration_missing_a_round_asks_for_another():
    rows = _rows({BASE: [100, 100], "onnx": [150]})
    assert "onnx" in rounds.unsettled(rows, 0.1, BASE)


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
    _store(tmp_path, {BASE: [100, 101], "onnx": [150, 152]})
    prefix = "speed-tiny-short-bs4-"
    assert rounds.decide(_cfg(tmp_path, 1), prefix, {"machine": "m1"}, 0.1, BASE) is None  # first two always run
    assert rounds.decide(_cfg(tmp_path, 2, adaptive=False), prefix, {"machine": "m1"}, 0.1, BASE) is None
    decision = rounds.decide(_cfg(tmp_path, 2), prefix, {"machine": "m1"}, 0.1, BASE)
    assert decision.skip and "settled after 2 rounds" in decision.why
    # another machine's rows are not this group's
    assert rounds.decide(_cfg(tmp_path, 2), prefix, {"machine": "m2"}, 0.1, BASE).skip is False


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
