"""A sweep on a scheduled machine (issue 23, item 4): SIGTERM (SLURM's preemption) ends the current cell and
every process the sweep started within seconds, keeps the finished rows and exits 143; the rerun completes.
A second sweep on the same run is refused in one line while the first runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil

from harness.store import results

SLOW = ["rounds=1", "dataset=short", "dataset.samples=16", "batch_sizes=[2,4]", "measure.min_time_s=2",
        "measure.min_repeats=2", "measure.warmup_batches=1", "accuracy.enabled=false",
        "backend=torch-fp32,onnx", "measure.contention_threshold=64"]  # fmt: skip


def _command(tiny_models, tmp_path, *extra, slow=tuple(SLOW)):
    return [sys.executable, "-m", "harness.cli", "sweep", *slow, "model.name=tiny", f"model.source={tiny_models[0]}",
            f"results_dir={tmp_path / 'r'}", "run=s", f"hydra.sweep.dir={tmp_path / 'multirun'}", *extra]  # fmt: skip


# The first sweep must still be measuring when the second has started and planned (imports and a plan take
# 10-20 s on a 2-core machine that the first sweep keeps busy): with four cells of ~5 s it once had finished
# them all, and the second found "nothing to run" (exit 0). Eight cells of ~10 s leave a minute.
SLOWER = [o for o in SLOW if not o.startswith(("batch_sizes=", "measure.min_time_s="))]
SLOWER += ["batch_sizes=[1,2,4,8]", "measure.min_time_s=5"]


def _env(tmp_path):
    return {**os.environ, "HARNESS_CACHE_DIR": str(tmp_path / "cache"), "HARNESS_LOCK_DIR": str(tmp_path)}


def _wait_for_rows(tmp_path, n, proc, timeout=300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if len(list((tmp_path / "r" / "s").glob("speed-*.json"))) >= n:
            return
        time.sleep(0.1)
    raise AssertionError(f"no {n} rows before the sweep ended ({proc.poll()})")


def test_sigterm_ends_the_sweep_and_its_processes_keeps_rows_and_the_rerun_completes(tiny_models, tmp_path):
    proc = subprocess.Popen(_command(tiny_models, tmp_path), env=_env(tmp_path), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        _wait_for_rows(tmp_path, 1, proc)
        time.sleep(1.0)  # inside the next cell's timed passes
        descendants = psutil.Process(proc.pid).children(recursive=True)
        assert descendants, "the sweep had started no process"
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143 and took < 10, (proc.returncode, took, err[-2000:])
    assert "stopped by SIGTERM: every finished cell is saved" in err and "Traceback" not in err
    time.sleep(2.0)
    alive = [p.pid for p in descendants if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert alive == [], f"left running after the sweep ended: {alive}"
    kept = [r for r in results.read_rows(tmp_path / "r") if r["status"] == "ok"]
    assert kept, "the finished rows were not kept"

    rerun = subprocess.run(_command(tiny_models, tmp_path), env=_env(tmp_path), capture_output=True, text=True,
                           timeout=600)  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    rows = [r for r in results.read_rows(tmp_path / "r") if r["kind"] == "speed"]
    assert len(rows) == 4 and all(r["status"] == "ok" for r in rows)


def test_a_second_sweep_on_the_same_run_is_refused_in_one_line(tiny_models, tmp_path):
    command = _command(tiny_models, tmp_path, slow=tuple(SLOWER))
    first = subprocess.Popen(command, env=_env(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_rows(tmp_path, 1, first)
        second = subprocess.run(command, env=_env(tmp_path), capture_output=True, text=True, timeout=300)
    finally:
        first.kill()
        first.wait()
    assert second.returncode == 2, second.stderr[-2000:]
    assert second.stderr.startswith("error: run: 's' is being measured by another sweep (pid ")
    assert len(second.stderr.strip().splitlines()) == 1
