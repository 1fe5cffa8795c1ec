"""Variants and cell ids (harness.sweep): which knobs make a variant, a new cell or a new accuracy cell."""

from __future__ import annotations


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
