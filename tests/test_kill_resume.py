"""Kill -9 in the middle of a sweep, then resume: finished cells are kept as they were, the rest run once.

The store's promises (harness.store.results): a file is whole or absent, a cell whose file exists is
skipped, and a file that is not a row is reported by path and skipped, never fatal.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from harness.store import results

BACKENDS = ("torch-fp32", "torch-bf16", "onnx")
BATCH_SIZES = (2, 4)


def sweep_command(model: Path, tmp_path: Path) -> list[str]:
    return [
        sys.executable, "-m", "harness.cli", "sweep", "rounds=1", "model.name=tiny", f"model.source={model}",
        "dataset=short",
        f"backend={','.join(BACKENDS)}", f"batch_sizes=[{','.join(map(str, BATCH_SIZES))}]", "accuracy.enabled=false",
        "dataset.samples=16", "measure.min_time_s=0.5", "measure.min_repeats=2", "measure.warmup_batches=1",
        "measure.max_time_s=5", "measure.breakdown=false", "backend.calibration_samples=16",
        f"results_dir={tmp_path / 'results'}", "run=k", f"hydra.sweep.dir={tmp_path / 'multirun'}",
    ]  # fmt: skip


def env_for(tmp_path: Path) -> dict[str, str]:
    env = {**os.environ, "HARNESS_CACHE_DIR": str(tmp_path / "cache"), "HARNESS_LOCK_DIR": str(tmp_path)}
    env.pop("HARNESS_DATA_DIR", None)
    return env


def cell_files(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Finished cells: name -> (content, mtime_ns); temp files are not cells."""
    if not folder.exists():
        return {}
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.glob("*.json") if not p.name.startswith(".")}


def group_alive(pgid: int) -> list[str]:
    """Processes of the group still running (zombies waiting for init to reap them do not count)."""
    alive = []
    for proc in psutil.process_iter(["pid", "status", "cmdline"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                alive.append(" ".join(proc.info["cmdline"] or [])[:120])
        except (ProcessLookupError, psutil.Error):
            continue
    return alive


def group_gone(pgid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not group_alive(pgid)


def test_kill_9_mid_sweep_then_resume(tiny_models, tmp_path):
    command, env = sweep_command(tiny_models[0], tmp_path), env_for(tmp_path)
    store = tmp_path / "results" / "k"
    grid = len(BACKENDS) * len(BATCH_SIZES)

    # run in its own process group (the sweep, its jobs and every cell process), kill the lot mid-sweep
    proc = subprocess.Popen(command, env=env, cwd=tmp_path, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.monotonic() + 900
    while proc.poll() is None and not cell_files(store) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, f"the sweep ended before the kill:\n{proc.stderr.read().decode()[-3000:]}"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert group_gone(proc.pid), f"still running after kill -9: {group_alive(proc.pid)}"
    before = cell_files(store)
    assert 1 <= len(before) < grid

    # the same command again: resumes, and must not touch a finished cell
    again = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    after = cell_files(store)
    for name, (content, mtime) in before.items():
        assert after[name] == (content, mtime), f"{name} was rewritten by the resumed sweep"
    assert len(after) == grid  # one file per cell: nothing missing, nothing twice

    rows = [json.loads(content) for content, _ in after.values()]
    assert sorted(f"{r['cell_id']}.json" for r in rows) == sorted(after)
    df = results.load(tmp_path / "results")
    assert len(df) == grid and df["cell_id"].is_unique
    assert set(df["status"]) == {"ok"}, df[["backend", "batch_size", "status", "reason"]].to_string()
    grid_cells = sorted((b, s) for b in BACKENDS for s in BATCH_SIZES)
    assert sorted(zip(df["backend"], df["batch_size"], strict=True)) == grid_cells
    assert not list((tmp_path / "results").rglob(".tmp-*")), "a temp file was left in the store"


def _row(run: str, backend: str, throughput: float) -> dict:
    from harness.core.hardware import detect

    hw = detect()
    return results.new_row(
        run=run, cell_id=f"speed-tiny-short-bs4-{backend}-0", kind="speed", model="tiny", model_kind="bi-encoder",
        model_source="/models/tiny", dataset="short", batch_size=4, backend=backend, status="ok",
        throughput=throughput, latency_mean_ms=10.0, latency_p50_ms=10.0, latency_p90_ms=11.0, latency_p99_ms=12.0,
        cv=0.01, n_texts=8, precision="fp32", threads=2, hardware=hw.to_dict(), machine=hw.fingerprint,
        timestamp="2026-01-01T00:00:00+00:00", duration_s=1.0,
    )  # fmt: skip


@pytest.fixture
def damaged_store(tmp_path):
    """Two good rows, and three files that are not rows: truncated, empty, a JSON list."""
    store = tmp_path / "results"
    for backend, throughput in (("torch-fp32", 100.0), ("onnx", 150.0)):
        results.write_row(store, _row("r", backend, throughput))
    good = (store / "r" / "speed-tiny-short-bs4-onnx-0.json").read_text()
    bad = {
        "speed-tiny-short-bs4-openvino-0.json": good[: len(good) // 2],  # cut off mid-write (not by write_row)
        "speed-tiny-short-bs4-torch-fp16-0.json": "",
        "speed-tiny-short-bs4-torch-bf16-0.json": "[1, 2, 3]",
    }
    for name, text in bad.items():
        (store / "r" / name).write_text(text)
    (store / "r" / ".tmp-k2j4.json").write_text(good[:10])  # a write cut off by kill -9: not a cell yet
    return store, [store / "r" / name for name in bad]


def test_damaged_result_files_are_reported_and_skipped(damaged_store, caplog):
    store, bad_paths = damaged_store
    with caplog.at_level(logging.WARNING, logger="harness.store.results"):
        df = results.load(store)
    assert sorted(df["backend"]) == ["onnx", "torch-fp32"]
    assert df.set_index("backend").loc["onnx", "speedup"] == pytest.approx(1.5)
    warned = "\n".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    for path in bad_paths:
        assert str(path) in warned
    assert ".tmp-" not in warned  # an unfinished write is silently not a row


def test_report_still_works_beside_damaged_files(damaged_store, tmp_path):
    store, bad_paths = damaged_store
    out = tmp_path / "reports"
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", "report", "--results", str(store), "--out", str(out)],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    for path in bad_paths:
        assert str(path) in proc.stderr  # the warning names each file that was skipped
    assert (out / "index.html").exists() and (out / "report.md").exists()
    assert "onnx" in (out / "report.md").read_text()
