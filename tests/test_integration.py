"""Integration on the real all-MiniLM-L6-v2 (PyPI) and the ../shared cross-encoder and data, via the CLI."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import shared_dir

from harness.store import results

pytestmark = pytest.mark.slow
SHARED = shared_dir()
needs_shared = pytest.mark.skipif(SHARED is None, reason="../shared (or HARNESS_SHARED_DIR) is not present")
QUICK = ["dataset=short", "dataset.samples=64", "batch_sizes=[32]", "measure.min_time_s=1", "measure.min_repeats=2",
         "measure.warmup_batches=1", "accuracy.tasks=[sts]"]  # fmt: skip


def sweep(*args: str, tmp_path, env_extra=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "HARNESS_CACHE_DIR": str(tmp_path / "cache"), **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", "sweep", "rounds=1", f"results_dir={tmp_path / 'results'}", "run=it",
         *args],
        capture_output=True, text=True, env=env, timeout=1800,
    )  # fmt: skip


@needs_shared
def test_real_minilm_speed_accuracy_and_warm_rerun(tmp_path):
    backends = "backend=torch-fp32,onnx,onnx-qint8,openvino-qint8"
    env = {"HARNESS_DATA_DIR": str(SHARED / "data")}
    first = sweep(backends, *QUICK, tmp_path=tmp_path, env_extra=env)
    assert first.returncode == 0, first.stderr[-3000:]
    df = results.load(tmp_path / "results")
    assert set(df["status"]) == {"ok"}, df[["backend", "variant", "reason"]].to_string()
    df = df[df["variant"] == ""]  # the names as sentence-transformers runs them (an AMX CPU adds f32-pinned OpenVINO)
    speed = df[df["kind"] == "speed"].set_index("backend")
    assert speed.loc["onnx-qint8", "precision"] == "int8" and speed.loc["openvino-qint8", "precision"] == "int8"
    assert (speed["throughput"] > 0).all() and speed.loc["torch-fp32", "speedup"] == pytest.approx(1.0)
    assert speed.loc["onnx", "text_chars_mean"] < 100 and speed.loc["onnx", "max_seq_length"] == 256
    acc = df[df["kind"] == "accuracy"].set_index("backend")
    assert set(acc["status"]) == {"ok"}, acc["reason"].to_dict()
    # the score all-MiniLM-L6-v2 is known for on STSb test (../shared/README.md): 0.8203
    assert acc.loc["torch-fp32", "accuracy"] == pytest.approx(0.8203, abs=0.002)
    assert acc.loc["onnx", "accuracy_ratio"] == pytest.approx(1.0, abs=0.002)
    assert acc.loc["onnx", "fidelity_min_cos"] > 0.9999
    assert 0.95 < acc.loc["onnx-qint8", "accuracy_ratio"] < 1.02
    assert acc.loc["openvino-qint8", "fidelity_mean_cos"] > 0.95

    cache_files = sorted(p for p in (tmp_path / "cache").rglob("*") if p.is_file())
    stamps = [p.stat().st_mtime_ns for p in cache_files]
    again = sweep(backends, *QUICK, "run=it2", "accuracy.enabled=false", tmp_path=tmp_path, env_extra=env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert [p.stat().st_mtime_ns for p in cache_files] == stamps  # a warm rerun re-exports nothing
    assert sorted(p for p in (tmp_path / "cache").rglob("*") if p.is_file() and ".lock" not in p.name) == [
        p for p in cache_files if ".lock" not in p.name
    ]


@needs_shared
def test_shared_cross_encoder_reproduces_its_stsb_score(tmp_path):
    env = {"HARNESS_DATA_DIR": str(SHARED / "data"), "HARNESS_SHARED_DIR": str(SHARED)}
    run = sweep("model=minilm-ce", "backend=torch-fp32,onnx,openvino", *QUICK, tmp_path=tmp_path, env_extra=env)
    assert run.returncode == 0, run.stderr[-3000:]
    df = results.load(tmp_path / "results")
    assert set(df["status"]) == {"ok"}, df[["backend", "variant", "reason"]].to_string()
    df = df[df["variant"] == ""]  # an AMX CPU adds `openvino [ov_precision=f32]` beside `openvino`
    acc = df[df["kind"] == "accuracy"].set_index("backend")
    assert acc.loc["torch-fp32", "accuracy"] == pytest.approx(0.786, abs=0.003)  # as ../shared/README.md states
    assert acc.loc["onnx", "fidelity_spearman"] > 0.999
    speed = df[df["kind"] == "speed"].set_index("backend")
    assert speed.loc["openvino", "model_kind"] == "cross-encoder" and speed.loc["openvino", "throughput"] > 0
