"""Variants and cell ids (harness.engine.sweep): which knobs make a variant, a new cell or a new accuracy cell."""

from __future__ import annotations


def test_knobs_of_another_family_do_not_make_a_variant_or_a_new_cell():
    """`harness sweep backend=torch-fp32,openvino backend.ov_precision=f32,null`: openvino gets a
    variant per precision; torch-fp32 has no such knob, so it stays one cell, measured once."""
    from harness.engine.cells import cell_id_accuracy, cell_id_speed, variant
    from harness.engine.grid import compose

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


# Cell ids of the default configurations as written by earlier sweeps: resume finds a cell by its id,
# so moving where the knobs are declared must not change one digest.
PINNED_CELL_IDS = {
    "torch-fp32": ("35f4061d47", "659bd8d312"),
    "torch-fp16": ("321c9bfc14", "17d39419f7"),
    "torch-bf16": ("859fc19fa5", "5ed9d82f43"),
    "onnx": ("f24df2b733", "1f206cfbde"),
    "onnx-O1": ("910691d310", "89b54faf4b"),
    "onnx-O2": ("4edf26030f", "7fbb1b322e"),
    "onnx-O3": ("5b08434db8", "4b12fdae25"),
    "onnx-O4": ("3d57fec042", "cc75707c40"),
    "onnx-qint8": ("a0d62b5740", "62606e2385"),
    "openvino": ("4ecb4b31c4", "b82de282b4"),
    "openvino-qint8": ("e49efec6aa", "da4e2b1e9d"),
}


# #22: the onnx names now run ORT's own spinning default; the ids they had before are the ids of the
# variant that pins spinning off, which is what those rows measured (resuming such a run finds them there).
FORMER_ONNX_SPEED_IDS = {
    "onnx": "c9a3305744",
    "onnx-O1": "48044a4089",
    "onnx-O2": "cb18686be4",
    "onnx-O3": "0c1656898c",
    "onnx-O4": "e4515cbeb1",
    "onnx-qint8": "44fa958aa4",
}


def test_onnx_rows_written_before_spinning_was_the_default_keep_their_ids_as_the_pinned_variant():
    from harness.engine.cells import cell_id_speed, variant
    from harness.engine.grid import compose

    for backend, former in FORMER_ONNX_SPEED_IDS.items():
        cfg = compose([f"backend={backend}", "backend.ort_spinning=false", "data_dir=null"])
        assert variant(cfg.backend) == "ort_spinning=False"
        assert cell_id_speed(cfg, "m" * 16, 32, 2) == f"speed-all-MiniLM-L6-v2-short-bs32-{backend}-{former}"


def test_cell_ids_of_the_default_configurations_do_not_change():
    from harness.engine.cells import cell_id_accuracy, cell_id_speed
    from harness.engine.grid import compose

    machine = "m" * 16
    for backend, (speed, accuracy) in PINNED_CELL_IDS.items():
        cfg = compose([f"backend={backend}", "data_dir=null"])
        assert cell_id_speed(cfg, machine, 32, 2) == f"speed-all-MiniLM-L6-v2-short-bs32-{backend}-{speed}"
        expected = f"accuracy-all-MiniLM-L6-v2-sts-{backend}-{accuracy}"
        assert cell_id_accuracy(cfg, machine, "sts", cfg.backend) == expected
    f32 = compose(["backend=openvino", "backend.ov_precision=f32", "data_dir=null"])
    assert cell_id_speed(f32, machine, 32, 2) == "speed-all-MiniLM-L6-v2-short-bs32-openvino-c11f40e7f8"


def test_each_family_owns_its_knobs():
    from harness import backends, config

    assert backends.knobs_of("torch") == ()
    assert backends.knobs_of("onnx") == ("ort_spinning",)
    assert backends.knobs_of("openvino") == ("ov_hint", "ov_precision", "calibration_samples")
    assert backends.knobs_of("not-registered") == backends.runtime_knobs()  # as before: every knob
    assert set(backends.speed_only_fields()) == {"ort_spinning", "ov_hint", "device"}
    assert not any(hasattr(config, t) for t in ("RUNTIME_KNOBS", "SPEED_ONLY_KNOBS", "FAMILY_KNOBS"))
