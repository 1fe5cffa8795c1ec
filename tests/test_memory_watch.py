"""The parent's memory watch over a unit's process (harness.engine.isolation.wait_for), fast and without a model.

A sweep's reranker O4 export was killed by the kernel (SIGKILL, no reason on the row) although it
needed 10.8 GB of a 24 GB machine: idle workers held the rest, and the watch only compared one process
against 90 % of the machine. These tests pin down what replaced that: the watch counts the unit's
process tree, stops a unit when the machine is about to run out, and idle workers are closed before an
export.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest

from harness.engine import isolation as cell
from harness.engine import sweep

# A process that starts a child holding ~300 MB, then waits: its own resident memory stays small.
PARENT_OF_A_BIG_CHILD = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "b = bytearray(300 * 2**20); import time; time.sleep(60)"])
time.sleep(60)
"""


def _running(code: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code])


def _stop(proc: subprocess.Popen) -> None:
    for child in psutil.Process(proc.pid).children(recursive=True):
        child.kill()
    proc.kill()
    proc.wait()


def test_memory_held_by_a_units_child_process_counts():
    proc = _running(PARENT_OF_A_BIG_CHILD)
    try:
        watch = cell.wait_for(proc.pid, lambda s: proc.poll() is not None or time.sleep(s), 30, 200, poll_s=0.1)
    finally:
        _stop(proc)
    assert watch.ended == "memory", watch
    assert watch.peak_mb > 200
    status, reason = cell.stopped("export", watch, 200, 30)
    assert status == "failed"
    assert reason.startswith("out of memory: the export process reached ") and "over the limit of 200 MB" in reason


def test_a_unit_is_stopped_when_the_machine_runs_short(monkeypatch):
    """Under its own limit, but the machine has (here: pretends to have) too little left: stopped, and
    the reason says how much it held and how much was left."""
    monkeypatch.setattr(cell, "available_mb", lambda: 100.0)
    proc = _running("import time; time.sleep(60)")
    try:
        watch = cell.wait_for(proc.pid, lambda s: proc.poll() is not None or time.sleep(s), 30, 10**9, poll_s=0.1)
    finally:
        _stop(proc)
    assert watch.ended == "memory", watch
    status, reason = cell.stopped("speed", watch, 10**9, 30)
    assert status == "failed"
    assert "out of memory: the speed process held" in reason and "only 100 MB left" in reason


def test_a_unit_that_ends_in_time_is_done():
    proc = _running("pass")
    watch = cell.wait_for(proc.pid, lambda s: proc.poll() is not None or time.sleep(s), 30, 10**9, poll_s=0.05)
    proc.wait()
    assert watch.ended == "done"


def test_a_sigkill_death_says_what_the_unit_held():
    watch = cell.Watch("done", peak_mb=10_839.0, available_mb=212.0)
    reason = cell.death_reason("export", -signal.SIGKILL, watch)
    assert reason == ("export process died with signal SIGKILL (likely out of memory: it held 10,839 MB "
                      "with 212 MB of the machine free)")  # fmt: skip
    assert cell.death_reason("speed", -signal.SIGSEGV) == "speed process died with signal SIGSEGV"


def test_units_ask_the_kernel_to_kill_them_first():
    code = (
        "from harness.engine import isolation; isolation.configure_process(1, True); "
        "print(open('/proc/self/oom_score_adj').read())"
    )
    if not Path("/proc/self/oom_score_adj").exists():
        pytest.skip("no /proc/self/oom_score_adj on this system")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "1000"


def test_idle_workers_are_closed_before_an_export(monkeypatch, tmp_path):
    """The export runs with no idle worker left holding a model."""
    closed: list[str] = []
    workers_at_export: list[int] = []
    monkeypatch.setitem(sweep.POOL.workers, "w-r0", SimpleNamespace(close=lambda: closed.append("w-r0")))

    def run_isolated(task, spec, timeout):
        workers_at_export.append(len(sweep.POOL.workers))
        return "ok", {}, None

    monkeypatch.setattr(sweep, "run_isolated", run_isolated)
    backend = SimpleNamespace(needs_export=lambda cache, folder: True)
    job = sweep.Job(hw=None, threads=1, backend=backend, cache=None, export_dir=tmp_path, spec={})
    assert job.export(60) == ("ok", None)
    assert closed == ["w-r0"] and workers_at_export == [0]
