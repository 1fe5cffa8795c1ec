"""The sweep engine's isolation: one worker per (model, backend, round) must not cost what one process
per cell bought. A worker killed mid-cell (as a segfault would) records that cell as failed with the
signal while every other backend's cells are ok and the same backend's next cell runs in a new worker;
a hung cell is cut at its timeout and the rest of that backend's cells still run.

Each test runs a real sweep on the tiny model in a subprocess, watches its log for the worker it wants
("worker pid N started for tiny onnx, round 0") and signals that process while it measures.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from harness.store import results

STARTED = re.compile(r"worker pid (\d+) started for tiny ([^\s,]+)(?: \[[^\]]*\])?, round (\d+)")  # backend, no knobs


def sweep(model: Path, tmp_path: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "harness.cli", "sweep", "rounds=1", "model.name=tiny", f"model.source={model}",
        "backend=torch-fp32,onnx,openvino", "dataset=short", "batch_sizes=[2,4]", "accuracy.enabled=false",
        "dataset.samples=16", "measure.min_time_s=4", "measure.min_repeats=2", "measure.max_repeats=100000",
        "measure.warmup_batches=1",
        "measure.request_min_time_s=0.2", "measure.max_time_s=8", "measure.breakdown=false",
        # pinned, so a CPU where OpenVINO would choose bf16 adds no `openvino [ov_precision=f32]` companion:
        # the same cells and workers on every machine
        "backend.ov_precision=f32",
        f"results_dir={tmp_path / 'results'}", "run=w", f"hydra.sweep.dir={tmp_path / 'multirun'}", *extra,
    ]  # fmt: skip


def run_and_signal(command: list[str], tmp_path: Path, backend: str, sig: signal.Signals) -> tuple[int, str, int]:
    """Run the sweep; 1.5 s into the first cell of `backend`'s worker, send it `sig`. Returns
    (exit code, its output, the signalled pid)."""
    env = {
        **os.environ,
        "HARNESS_CACHE_DIR": str(tmp_path / "cache"),
        "HARNESS_LOCK_DIR": str(tmp_path),
        "PYTHONUNBUFFERED": "1",
    }  # fmt: skip  (the log lines must arrive while the sweep runs)
    env.pop("HARNESS_DATA_DIR", None)
    proc = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    signalled: list[int] = []
    out: list[str] = []
    streams = (proc.stdout, proc.stderr)
    readers = [threading.Thread(target=lambda s=s: out.append(s.read()), daemon=True) for s in streams]
    for reader in readers:
        reader.start()
    log_file = tmp_path / "multirun" / "sweep.log"  # the jobs' INFO lines go to the sweep's log file
    try:
        deadline = time.monotonic() + 900
        while proc.poll() is None and time.monotonic() < deadline and not signalled:
            lines = log_file.read_text().splitlines(keepends=True) if log_file.exists() else []
            for line in lines:
                match = STARTED.search(line)
                if match and match.group(2) == backend:
                    time.sleep(1.5)  # model loaded and warmed up: now inside the first cell's timed passes
                    os.kill(int(match.group(1)), sig)
                    signalled.append(int(match.group(1)))
                    break
            time.sleep(0.05)
        proc.wait(timeout=900)
    finally:
        if proc.poll() is None:
            proc.kill()
    for reader in readers:
        reader.join(5)
    text = "".join(out) + (log_file.read_text() if log_file.exists() else "")
    assert signalled, "the worker was never seen starting:\n" + text[-3000:]
    return proc.returncode, text, signalled[0]


def speed_rows(tmp_path: Path) -> list[dict]:
    return [r for r in results.read_rows(tmp_path / "results") if r["kind"] == "speed"]


def test_a_worker_killed_mid_cell_fails_only_that_cell(tiny_models, tmp_path):
    code, log, pid = run_and_signal(sweep(tiny_models[0], tmp_path), tmp_path, "onnx", signal.SIGSEGV)
    assert code == 1, log[-3000:]  # every job ran; one cell did not finish, and the sweep says so
    assert "1 of 6 cells of this sweep did not finish (1 failed)" in log
    rows = {(r["backend"], r["batch_size"]): r for r in speed_rows(tmp_path)}
    assert len(rows) == 6  # every cell has its row
    killed = rows[("onnx", 2)]
    assert killed["status"] == "failed" and "SIGSEGV" in killed["reason"], killed["reason"]
    assert rows[("onnx", 4)]["status"] == "ok"  # the backend's next cell ran in a new worker
    for backend in ("torch-fp32", "openvino"):
        for bs in (2, 4):
            assert rows[(backend, bs)]["status"] == "ok", rows[(backend, bs)]["reason"]
    onnx_workers = [m for m in STARTED.finditer(log) if m.group(2) == "onnx"]
    assert len(onnx_workers) == 2 and int(onnx_workers[0].group(1)) == pid


def test_a_hung_cell_is_cut_at_its_timeout_and_the_backend_goes_on(tiny_models, tmp_path):
    command = sweep(tiny_models[0], tmp_path, "measure.cell_timeout_s=45")
    code, log, _ = run_and_signal(command, tmp_path, "openvino", signal.SIGSTOP)  # stopped: hangs forever
    assert code == 1 and "(1 timeout)" in log, log[-3000:]
    rows = {(r["backend"], r["batch_size"]): r for r in speed_rows(tmp_path)}
    hung = rows[("openvino", 2)]
    assert hung["status"] == "timeout" and "45s timeout" in hung["reason"]
    assert 45 <= hung["duration_s"] < 120
    assert rows[("openvino", 4)]["status"] == "ok", rows[("openvino", 4)]["reason"]
    others = {k: (r["status"], r["reason"]) for k, r in rows.items() if k[0] != "openvino"}
    assert all(status == "ok" for status, _ in others.values()), others


@pytest.mark.parametrize("rounds", [2])
def test_one_worker_per_backend_and_round_measures_all_its_cells(tiny_models, tmp_path, rounds):
    """Two datasets x two batch sizes per backend and round: one worker each, and the rows say which cell of
    its process each was (the model is loaded and read back once per process). The time breakdown is
    measured in the first round only (it says where time goes, the same in every round). The sweep ends
    without "resource_tracker: There appear to be N leaked semaphore objects"."""
    command = sweep(
        tiny_models[0],
        tmp_path,
        f"rounds={rounds}",
        "dataset=short,medium",
        "measure.min_time_s=0.2",
        "measure.max_repeats=50",
    )
    command.remove("measure.breakdown=false")
    env = {**os.environ, "HARNESS_CACHE_DIR": str(tmp_path / "cache"), "HARNESS_LOCK_DIR": str(tmp_path)}
    env.pop("HARNESS_DATA_DIR", None)
    proc = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = (tmp_path / "multirun" / "sweep.log").read_text()  # the jobs' INFO lines: the sweep's log file
    started = [(m.group(2), int(m.group(3))) for m in STARTED.finditer(log)]
    assert sorted(started) == sorted((b, r) for b in ("torch-fp32", "onnx", "openvino") for r in range(rounds))
    rows = speed_rows(tmp_path)
    assert len(rows) == 3 * 2 * 2 * rounds and all(r["status"] == "ok" for r in rows)
    for backend in ("torch-fp32", "onnx", "openvino"):
        for r in range(rounds):
            cells = sorted(x["settings"]["process_cell"] for x in rows if x["backend"] == backend and x["round"] == r)
            assert cells == [1, 2, 3, 4]
    assert all((r["tokenize_share"] is not None) == (r["round"] == 0) for r in rows)
    assert re.search(r"timed \d+ s of \d+ s \(\d+%\)", proc.stdout), proc.stdout[-2000:]
    # the last round's workers are terminated at exit: they must not have made a semaphore (tqdm's lock)
    assert "leaked semaphore" not in proc.stderr, proc.stderr[-1000:]


def test_a_unit_over_the_memory_limit_is_recorded_with_its_reason(tiny_models, tmp_path):
    """Under a lowered memory limit every unit's process goes over it: the speed worker (torch-fp32) and
    the export process (onnx) are stopped and their rows say so, instead of the kernel killing something."""
    env = {**os.environ, "HARNESS_CACHE_DIR": str(tmp_path / "cache"), "HARNESS_LOCK_DIR": str(tmp_path)}
    env.pop("HARNESS_DATA_DIR", None)
    command = [a for a in sweep(tiny_models[0], tmp_path, "measure.memory_limit_mb=50") if not a.startswith("backend=")]
    proc = subprocess.run([*command, "backend=torch-fp32,onnx"], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 1 and "4 of 4 cells of this sweep did not finish (4 failed)" in proc.stderr, proc.stderr[
        -3000:
    ]
    rows = {(r["backend"], r["batch_size"]): r for r in speed_rows(tmp_path)}
    assert len(rows) == 4, rows.keys()
    for (backend, _), row in rows.items():
        unit = "speed" if backend == "torch-fp32" else "export"
        assert row["status"] == "failed", (backend, row["status"], row["reason"])
        expected = rf"out of memory: the {unit} process reached [\d,]+ MB, over the limit of 50 MB"
        assert re.search(expected, row["reason"]), row["reason"]


def test_the_fork_server_is_offline_and_this_process_keeps_its_environment(monkeypatch):
    """The preloaded server (speed workers, exports) starts with the thread budget and the offline flags,
    but the sweep's own environment is left alone: an accuracy pass spawned after a worker may read its
    evaluation sets from the Hub. (The server used to be configured through the sweep's os.environ, so
    every later spawned process inherited HF_DATASETS_OFFLINE=1.)"""
    import multiprocessing.forkserver

    from harness.engine import isolation as cell

    seen: dict[str, str] = {}
    monkeypatch.setattr(multiprocessing.forkserver, "ensure_running", lambda: seen.update(os.environ))
    for var in (*cell.OFFLINE_ENV, *cell.THREAD_ENV):
        monkeypatch.delenv(var, raising=False)
    cell.preloaded_context(3)
    assert {var: seen.get(var) for var in cell.OFFLINE_ENV} == dict.fromkeys(cell.OFFLINE_ENV, "1")
    assert seen["OMP_NUM_THREADS"] == "3"
    assert [var for var in (*cell.OFFLINE_ENV, *cell.THREAD_ENV) if var in os.environ] == []
