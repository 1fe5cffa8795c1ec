"""The whole pipeline on tiny models, through the real CLI: every backend, bi-encoder and cross-encoder.

Each sweep: exports into a fresh cache, one process per cell, speed + accuracy rows, then a rerun
that must find every cell done and re-export nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from harness.backends import names as _names
from harness.backends.openvino import default_precision
from harness.store import results

BACKEND_NAMES = _names()


EXPECTED_PRECISION = {
    "torch-fp32": "fp32", "torch-fp16": "fp16", "torch-bf16": "bf16", "onnx": "fp32", "onnx-O1": "fp32",
    "onnx-O2": "fp32", "onnx-O3": "fp32", "onnx-qint8": "int8", "openvino": "fp32", "openvino-qint8": "int8",
}  # fmt: skip
QUICK = [
    "rounds=1", "dataset=short", "dataset.samples=8", "batch_sizes=[4]", "measure.min_time_s=0",
    "measure.min_repeats=2", "measure.warmup_batches=1", "measure.max_time_s=5", "backend.calibration_samples=16",
]  # fmt: skip


def harness(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, env=env, timeout=1200
    )


@pytest.mark.parametrize("kind", ["bi-encoder", "cross-encoder"])
def test_every_backend_on_a_tiny_model(kind, tiny_models, tiny_data, tmp_path):
    folder = tiny_models[0] if kind == "bi-encoder" else tiny_models[1]
    env = {**os.environ, "HARNESS_CACHE_DIR": str(tmp_path / "cache"), "HARNESS_DATA_DIR": str(tiny_data)}
    args = ["sweep", f"model.name=tiny-{kind}", f"model.source={folder}", f"model.kind={kind}",
            f"results_dir={tmp_path / 'results'}", "run=t", *QUICK]  # fmt: skip
    first = harness(*args, env=env)
    assert first.returncode == 0, first.stderr[-3000:]

    df = results.load(tmp_path / "results")
    # OpenVINO left alone computes in the CPU's choice (bf16 on AMX); where that is not fp32, the f32-pinned
    # run of both OpenVINO backends is measured beside it, and only there (QUICK's calibration_samples=16
    # is a variant of the OpenVINO rows too)
    every_speed = df[df["kind"] == "speed"]
    is_pinned = every_speed["variant"].str.contains("ov_precision=f32")
    speed = every_speed[~is_pinned].set_index("backend")  # the names as sentence-transformers runs them
    assert sorted(speed.index) == sorted(BACKEND_NAMES)
    chosen = default_precision()
    companions = ["openvino", "openvino-qint8"] if chosen not in (None, "fp32") else []
    assert sorted(every_speed[is_pinned]["backend"]) == companions
    expected = {**EXPECTED_PRECISION, "openvino": chosen or "fp32"}
    for backend, precision in expected.items():
        row = speed.loc[backend]
        assert row["status"] == "ok", f"{backend}: {row['reason']}"
        assert row["precision"] == precision, backend
        assert row["throughput"] > 0 and row["latency_p50_ms"] > 0 and row["peak_memory_mb"] > 0
        assert row["threads"] >= 1 and row["runtime"]["precision"] == precision
        assert 0 <= row["tokenize_share"] <= 1 and row["forward_throughput"] > 0
    # O4 is an fp16 GPU optimization: it runs here or says why not, never a made-up number
    o4 = speed.loc["onnx-O4"]
    assert (o4["status"] == "ok" and o4["throughput"] > 0) or (o4["status"] == "unsupported" and o4["reason"])
    assert speed.loc["torch-fp32", "speedup"] == pytest.approx(1.0)
    assert speed.loc["onnx", "settings"]["model_kwargs"]["file_name"] == "onnx/model.onnx"

    acc = df[df["kind"] == "accuracy"]
    assert set(acc["status"]) == {"ok"}, acc[["backend", "reason"]].to_string()
    assert len(acc) == 2 * (len(BACKEND_NAMES) + len(companions))
    onnx = acc[(acc["backend"] == "onnx") & (acc["metric"] == "sts_spearman")].iloc[0]
    fidelity = onnx["fidelity_mean_cos"] if kind == "bi-encoder" else onnx["fidelity_spearman"]
    assert fidelity > 0.99  # the same fp32 weights through ONNX Runtime agree with torch
    assert onnx["accuracy_ratio"] == pytest.approx(1.0, abs=0.05)

    # the exported folder loads directly in sentence-transformers, with the file names it uses
    exported = speed.loc["onnx-O3", "settings"]
    assert os.path.exists(os.path.join(exported["model_path"], "onnx", "model_O3.onnx"))
    # QUICK calibrates on 16 texts, not the default 128: its own file beside sentence-transformers' name
    assert os.path.exists(os.path.join(exported["model_path"], "openvino", "openvino_model_qint8_quantized_c16.xml"))

    files = sorted((tmp_path / "results" / "t").glob("*.json"))
    mtimes = [f.stat().st_mtime_ns for f in files]
    again = harness(*args, env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert sorted((tmp_path / "results" / "t").glob("*.json")) == files
    assert [f.stat().st_mtime_ns for f in files] == mtimes  # nothing measured twice
    # every cell (speed and accuracy) is in the store: no Hydra job is started at all
    assert "nothing to run: all" in again.stdout, again.stdout[-2000:]
    assert "export" not in again.stderr.lower() or "exporting" not in again.stderr.lower()


def test_interleaved_rounds_run_every_backend_before_repeating_and_pool(tiny_models, tmp_path):
    """`rounds=2`: round 0 of every backend is timed before any round 1; the store pools each cell."""
    env = {**os.environ, "HARNESS_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("HARNESS_DATA_DIR", None)
    quick = [a for a in QUICK if not a.startswith("rounds=")]
    proc = harness("sweep", "rounds=2", "model.name=tiny", f"model.source={tiny_models[0]}",
                   "backend=torch-fp32,onnx", "accuracy.enabled=false", f"results_dir={tmp_path / 'results'}",
                   "run=rr", *quick, env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]

    raw = sorted(results.read_rows(tmp_path / "results"), key=lambda r: (r.get("timed_window") or [0])[0])
    speed = [r for r in raw if r["kind"] == "speed"]
    assert [(r["round"], r["backend"]) for r in speed] == [
        (0, "torch-fp32"), (0, "onnx"), (1, "torch-fp32"), (1, "onnx")
    ]  # fmt: skip
    pooled = results.load(tmp_path / "results").query("kind == 'speed'").set_index("backend")
    assert list(pooled["rounds"]) == [2, 2]
    for backend in ("torch-fp32", "onnx"):
        rows = [r for r in speed if r["backend"] == backend]
        assert pooled.loc[backend, "repeats"] == sum(r["repeats"] for r in rows)
    assert pooled.loc["torch-fp32", "speedup"] == pytest.approx(1.0)
    summary = [line for line in proc.stdout.splitlines() if line.strip().startswith("tiny ")]  # not the verdicts
    assert len(summary) == 2, proc.stdout  # the end-of-sweep table: one line per pooled cell
