"""#22: the tie rule on real rows - the default sweep's short texts at batch 32 on the 2-core AMD EPYC Zen 4
(run s1 of this issue's three sweeps: torch-fp32, onnx, onnx-O1, onnx-O2, openvino-qint8, every round's row
as stored). onnx and onnx-O1 read back the same executed graph (290 nodes) and settings: tied, whatever they
measured; onnx-O2 (54 nodes: fused attention) is another computation."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from harness.recommend import ties
from harness.store import intervals, kernels, results

ROWS = json.loads((Path(__file__).parent / "data" / "real_rows_short_bs32.json").read_text(encoding="utf-8"))


def _store(tmp_path, keep=lambda row: True):
    for row in ROWS:
        if keep(row):
            results.write_row(tmp_path, row)
    return results.load(tmp_path)


def test_onnx_and_onnx_o1_run_the_same_kernels_and_o2_does_not(tmp_path):
    df = _store(tmp_path).set_index("label")
    assert df.loc["onnx", "same_kernels"] == ("onnx-O1",)
    assert df.loc["onnx-O1", "same_kernels"] == ("onnx",)
    assert df.loc["onnx-O2", "same_kernels"] == () and df.loc["torch-fp32", "same_kernels"] == ()
    assert not kernels.same(df.loc["onnx", "runtime"], df.loc["onnx-O2", "runtime"])


def test_a_verdict_never_weighs_a_leader_against_its_twin(tmp_path):
    # on this machine torch-fp32 led the short texts at batch 32 (ONNX Runtime spinning on 2 cores): the
    # verdict among the three ONNX configurations is what the twins change
    df = _store(tmp_path, lambda r: r["backend"] in ("torch-fp32", "onnx", "onnx-O1", "onnx-O2"))
    onnx = df[df["backend"].str.startswith("onnx")].assign(_label=lambda d: d["label"])
    (verdict,) = intervals._verdict(("s1",), "bulk", onnx.sort_values("speedup", ascending=False), "throughput")
    if verdict.leader in ("onnx", "onnx-O1"):
        assert verdict.twins == tuple({"onnx", "onnx-O1"} - {verdict.leader})
        assert verdict.runner_up == "onnx-O2"
    else:  # O2 leads: its runner-up is the better of the twins, which it has none of
        assert verdict.leader == "onnx-O2" and verdict.runner_up in ("onnx", "onnx-O1") and verdict.twins == ()


def test_the_recommender_takes_plain_onnx_over_its_o1_twin(tmp_path):
    df = _store(tmp_path, lambda r: r["backend"] in ("torch-fp32", "onnx", "onnx-O1"))
    candidates = []
    for label in ("onnx-O1", "onnx"):  # O1 first, as if it had measured faster
        rows = df[df["label"] == label]
        candidates.append(SimpleNamespace(label=label, qualifies=True, cells=ties.cells_of(rows), tied_with=None,
                                          tie=None, speedup=float(rows["speedup"].iloc[0])))  # fmt: skip
    assert ties.same_kernels(candidates[0].cells, candidates[1].cells)
    chosen = ties.order(candidates, "bulk", preferred="", score=lambda c: -c.speedup if c.label == "onnx" else -1e9)
    assert chosen[0].label == "onnx"
    assert candidates[0].tied_with == "onnx" and "the same kernels" in candidates[0].tie
