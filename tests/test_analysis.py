"""The analysis layer: where a row ran, which torch-fp32 it is compared with, what counts as contended,
the accuracy of a configuration and which machine a prefix names - one rule each, for report,
recommend and compare alike."""

from __future__ import annotations

import pandas as pd
from rows import accuracy_row, speed_row

from harness import recommend
from harness.core.hardware import Hardware
from harness.report import charts, pages
from harness.store import results

GPU_HW = Hardware("AMD EPYC 9654", "amd", ("avx2", "avx512f"), 16, 32, 128.0, gpu="NVIDIA H100 80GB HBM3")
FP = GPU_HW.fingerprint


def load(tmp_path, *rows) -> pd.DataFrame:
    for row in rows:
        results.write_row(tmp_path, row)
    return results.load(tmp_path)


def test_device_is_read_back_from_the_runtime(tmp_path):
    """A torch cell run with backend.device=cpu on a GPU machine is a CPU cell; an ONNX cell whose
    session runs CUDAExecutionProvider first is a GPU cell, whatever the machine probe recorded."""
    gpu = GPU_HW.to_dict()  # ort_providers empty, as the sweep records it
    df = load(
        tmp_path,
        speed_row("torch-fp32", 100.0, hardware=gpu, runtime={"device": "cpu"}, settings={"st_backend": "torch"}),
        speed_row(
            "onnx", 150.0, hardware=gpu, runtime={"device": "cuda"},
            settings={"st_backend": "onnx", "model_kwargs": {"file_name": "onnx/model.onnx"}},
        ),
    )  # fmt: skip
    sp = charts.speed_rows(df).set_index("backend")
    assert sp.loc["torch-fp32", "device"] == "CPU"
    assert sp.loc["onnx", "device"] == "GPU"


def test_baseline_is_torch_fp32_in_its_default_configuration(tmp_path):
    """A torch-fp32 measured with a swept knob is a variant, not the baseline, wherever it sorts."""
    df = load(
        tmp_path,
        speed_row("torch-fp32", 100.0),
        speed_row("onnx", 150.0),
        speed_row("torch-fp32", 50.0, variant="some_knob=1", contended=True, cell_id="zz-variant"),
    )
    speed = df[df["kind"] == "speed"]
    onnx = speed[speed["backend"] == "onnx"].iloc[0]
    assert onnx["speedup"] == 1.5
    sp = charts.speed_rows(df)
    assert not sp.loc[sp["backend"] == "onnx", "is_contended"].iloc[0]  # the variant's contention is its own


def docs_gpu_rows(variant: str) -> list[dict]:
    """What `+experiment=docs-gpu` writes on a GPU machine for a short-text bi-encoder."""
    common = dict(machine=FP, hardware=GPU_HW.to_dict(), text_chars_mean=39.0, variant=variant, threads=16)
    rows = []
    for backend, x, a in (("torch-fp32", 100.0, 1.0), ("torch-fp16", 150.0, 0.999), ("onnx-O4", 180.0, 0.998)):
        family = backend.split("-")[0]
        rows.append(speed_row(backend, x, runtime={"device": "cuda"}, settings={"st_backend": family}, **common))
        rows.append(accuracy_row(backend, 0.8 * a, **common))
    return rows


def test_docs_gpu_rows_are_not_device_variants():
    from harness.engine.cells import variant
    from harness.engine.grid import compose

    cfg = compose(["+experiment=docs-gpu", "backend=onnx-O4", "hydra.mode=RUN"])
    assert cfg.backend.device == "cuda"
    assert variant(cfg.backend) == ""


def test_recommender_finds_onnx_o4_on_a_gpu_machine(tmp_path):
    for variant in ("", "device=cuda"):  # as written from now on, and as written before
        df = load(tmp_path / (variant or "new"), *docs_gpu_rows(variant))
        rec = recommend.recommend(df, recommend.Query(text_length=39, tolerance=0.01), GPU_HW, machine=FP)
        assert rec.backend == "onnx-O4", rec.reasons
        assert "this agrees with the documented flowchart" in rec.reasons


def test_a_cell_smaller_than_one_batch_says_so(tmp_path):
    """A one-line text file measured at batch size 32: ok, but not a batch-32 measurement."""
    rows = [
        speed_row(b, x, model_kind="cross-encoder", n_texts=1, batch_size=32, text_chars_mean=20.0)
        for b, x in (("torch-fp32", 10.0), ("onnx", 12.0))
    ]
    df = load(tmp_path, *rows)
    notes = df.loc[df["kind"] == "speed", "note"]
    assert all("1 pair" in n and "fewer than one batch of 32" in n for n in notes), list(notes)
    table = pages.cells_table(df, "cross-encoder")
    status = table.rows[0][table.columns.index("status")]
    assert status.startswith("ok") and "fewer than one batch of 32" in status
