"""#22: the tie rule on real rows - the default sweep's short texts at batch 32 on the 2-core AMD EPYC Zen 4
(run s1 of this issue's three sweeps: torch-fp32, onnx, onnx-O1, onnx-O2, openvino-qint8, every round's row
as stored). onnx and onnx-O1 read back the same executed graph (290 nodes) and settings: tied, whatever they
measured; onnx-O2 (54 nodes: fused attention) is another computation."""

from __future__ import annotations

import json
from pathlib import Path

from harness import recommend
from harness.core.hardware import Hardware
from harness.recommend import Query
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
    df = _store(tmp_path, lambda r: r["backend"] in ("torch-fp32", "onnx", "onnx-O1", "onnx-O2"))
    (verdict,) = intervals.verdicts(df)
    if verdict.leader in ("onnx", "onnx-O1"):
        assert verdict.twins == tuple({"onnx", "onnx-O1"} - {verdict.leader})
        assert verdict.runner_up == "onnx-O2"
    else:  # O2 leads: its runner-up is the better of the twins, and the twins are named with nothing
        assert verdict.leader == "onnx-O2" and verdict.runner_up in ("onnx", "onnx-O1") and verdict.twins == ()


def test_the_recommender_takes_plain_onnx_over_its_o1_twin(tmp_path):
    df = _store(tmp_path, lambda r: r["backend"] in ("torch-fp32", "onnx", "onnx-O1"))
    machine = str(df["machine"].iloc[0])
    zen4 = Hardware("AMD EPYC", "amd", ("avx2", "avx512f", "avx512_vnni", "avx512_bf16"), 2, 2, 23.0)
    rec = recommend.recommend(df, Query(tolerance=0.01, text_length=50, batch_size=32), zen4, machine=machine)
    assert rec.backend == "onnx"
    o1 = next(c for c in rec.evidence.candidates if c.label == "onnx-O1")
    assert o1.tied_with == "onnx" and "the same kernels" in o1.tie
