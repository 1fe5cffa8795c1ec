"""Work that runs in a process of its own: exports (forked from the preloaded server) and accuracy passes
(spawned); speed cells and `harness overhead`'s passes run in workers (harness.engine.workers); and what every
such process sets up first.

One process per unit means a backend's threads, allocator state or crash (segfault, OOM kill)
never touches another's, and a hang is cut off by the timeout. The child gets a typed spec
(`harness.engine.specs`) and writes its `UnitResult` to a file; the parent reads it or, if the child died,
records how it died.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import fcntl
import logging
import multiprocessing as mp
import os
import pickle
import signal
import tempfile
import time
import traceback
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from harness.core import hardware
from harness.engine.measure import peak_rss_mb, reset_peak_rss
from harness.engine.specs import UnitResult

log = logging.getLogger(__name__)

THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "RAYON_NUM_THREADS")
OFFLINE_ENV = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
TIMED = ("speed",)  # units whose numbers are timings
# Units forked from the preloaded server instead of a new interpreter: an export pays no imports (3-9 s on
# 2 cores). An accuracy pass stays spawned (it may read evaluation sets from the Hub; the server is offline).
# Speed cells and `harness overhead`'s passes run in workers forked from the same server (harness.engine.workers).
FORKED = ("export",)  # forked from the preloaded server: imports done, no runtime created
PRELOAD = ["harness.engine.preload"]
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def preloaded_context(threads: int) -> Any:
    """The fork server's context: processes forked from a server that has imported torch,
    sentence-transformers and the runtimes' Python layers (harness/preload.py; no runtime created).

    The server starts once per sweep process with the thread budget and the offline flags in its
    environment, since libraries read both when they are imported there. This process's environment
    is left as it was: a spawned accuracy pass after it may need the Hub."""
    from multiprocessing import forkserver

    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    saved = dict(os.environ)
    try:
        for var in THREAD_ENV:
            os.environ.setdefault(var, str(threads))
        for var in OFFLINE_ENV:
            os.environ[var] = "1"  # its processes load local folders and are handed their texts
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
        forkserver.ensure_running()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return ctx


@contextlib.contextmanager
def machine_lock(exclusive: bool) -> Iterator[None]:
    """One timed unit at a time per machine, and nothing else of ours beside it.

    Timed units take the lock exclusively; exports and accuracy passes take it shared, so they
    run in parallel with each other (many workers) but never while something is being timed.
    The lock file is local to the machine (HARNESS_LOCK_DIR, default the temp dir), so workers of
    one sweep on different hosts do not wait for each other.
    """
    path = Path(os.environ.get("HARNESS_LOCK_DIR", tempfile.gettempdir())) / "harness-machine.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("waiting for the machine lock (%s)", "a timed cell runs alone" if exclusive else "a cell is timed")
            fcntl.flock(handle, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# Advice that is noise here (the harness saves exports itself; deprecations are the libraries' business).
# Everything else, e.g. a RuntimeWarning for an fp16 overflow, is kept and lands in the row's `warnings`.
QUIET_WARNINGS = (DeprecationWarning, PendingDeprecationWarning, FutureWarning)


def die_with_parent() -> None:
    """Ask the kernel to kill this process when its parent dies (Linux PR_SET_PDEATHSIG): a unit never outlives
    the sweep that waits for it, even a sweep killed with SIGKILL. A worker's parent is the fork server, which
    exits when the sweep does, so the chain holds for forked units too."""
    parent = os.getppid()
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def configure_process(threads: int, offline: bool) -> None:
    """Before torch is used: the thread budget for every runtime in this process, and its death with the sweep."""
    die_with_parent()
    for var in THREAD_ENV:
        os.environ[var] = str(threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
    if offline:
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["HF_DATASETS_OFFLINE"] = "1"
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # If the machine runs out of memory anyway, the kernel should kill this unit (a row with its reason),
    # not the sweep that records it. Raising one's own score needs no privilege.
    with contextlib.suppress(OSError):
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write("1000")
    # Third-party advice ("save the exported model", tracer notes) is noise here: the harness saves
    # exports itself. Errors still surface, and as the row's reason.
    for noisy in ("sentence_transformers", "transformers", "optimum", "nncf", "datasets"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    for category in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", category=category)
    with contextlib.suppress(ImportError):
        from torch.jit import TracerWarning

        warnings.filterwarnings("ignore", category=TracerWarning)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    import torch

    torch.set_num_threads(threads)  # the thread budget; torch's inter-op pool is left as a user's code has it


def recorded_warnings(caught: list[warnings.WarningMessage], limit: int = 10) -> list[str]:
    """The distinct warnings a unit raised, as "Category: message" lines (first `limit`)."""
    seen: dict[str, None] = {}
    for w in caught:
        seen.setdefault(f"{w.category.__name__}: {str(w.message).splitlines()[0][:200]}")
    return list(seen)[:limit]


def run_unit(task: str, spec: Any, *args: Any) -> UnitResult:
    """`harness.engine.units.<task>(spec, *args)` as a `UnitResult`: its fields or why it failed, with the
    warnings it raised and its peak memory. What a child process or a worker sends back."""
    reset_peak_rss()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for category in QUIET_WARNINGS:
            warnings.filterwarnings("ignore", category=category)
        try:
            from harness.engine import units

            result = UnitResult(fields=getattr(units, task)(spec, *args))
        except Exception as exc:  # noqa: BLE001 - every failure becomes a row with its reason
            from harness.core.usage import ConfigError

            error = str(exc) if isinstance(exc, ConfigError) else f"{type(exc).__name__}: {exc}"
            result = UnitResult(error=error, traceback=traceback.format_exc())
    result.warnings = recorded_warnings(caught)
    result.peak_memory_mb = peak_rss_mb()
    return result


def _child(task: str, spec: Any, out_path: str) -> None:
    configure_process(spec.job.threads, getattr(spec, "offline", spec.job.offline))
    result = run_unit(task, spec)
    tmp = out_path + ".tmp"
    with open(tmp, "wb") as f:
        pickle.dump(result, f)
    os.replace(tmp, out_path)


def run_isolated(task: str, spec: Any, timeout_s: float) -> tuple[str, dict[str, Any] | None, str | None]:
    """Run `harness.engine.units.<task>(spec)` in a fresh process. Returns (status, result, reason)."""
    if mp.get_start_method(allow_none=True) not in mp.get_all_start_methods():
        # inside a joblib (loky) worker the inherited start method is unknown to multiprocessing
        mp.set_start_method("spawn", force=True)
    ctx = preloaded_context(spec.job.threads) if task in FORKED else mp.get_context("spawn")
    fd, out_path = tempfile.mkstemp(prefix="harness-cell-", suffix=".pickle")
    os.close(fd)
    os.unlink(out_path)
    proc = ctx.Process(target=_child, args=(task, spec, out_path), name=f"harness-{task}")
    with machine_lock(exclusive=task in TIMED):
        start = time.monotonic()
        proc.start()
        limit = memory_limit_mb(spec)
        try:
            watch = wait_for(proc.pid, lambda s: (proc.join(s), not proc.is_alive())[1], timeout_s, limit,
                             POLL_S if task in TIMED else POLL_UNTIMED_S)  # fmt: skip
            if watch.ended != "done":
                proc.kill()
                proc.join()
                status, reason = stopped(task, watch, limit, timeout_s)
                return status, None, reason
        except BaseException:  # Ctrl-C: take the child down with us
            proc.kill()
            proc.join()
            raise
        finally:
            log.debug("%s took %.1fs", task, time.monotonic() - start)
    path = Path(out_path)
    if not path.exists():
        return "failed", None, death_reason(task, proc.exitcode, watch)
    result: UnitResult = pickle.loads(path.read_bytes())
    path.unlink(missing_ok=True)
    if result.error is not None:
        log.debug("%s failed:\n%s", task, result.traceback)
        return "failed", None, result.error
    return "ok", result.outcome(), None


MEMORY_SHARE = 0.9  # measure.memory_limit_mb unset: this share of the machine's memory
MIN_FREE_SHARE = 0.03  # a unit is also stopped when the machine has less than this share available
POLL_S = 0.5  # how often a timed unit's memory is looked at (a /proc read: nothing on the timed CPU)
POLL_UNTIMED_S = 0.1  # exports and accuracy passes: nothing is timed, and an export can grow GBs a second


def total_mb() -> float:
    """The memory this sweep may use: the machine's, or its cgroup's limit (memory.max) where that is less."""
    total = psutil.virtual_memory().total
    limit = hardware.cgroup_memory_limit()
    return min(total, limit) / 2**20 if limit else total / 2**20


def memory_limit_mb(spec: Any) -> float:
    limit = spec.job.measure.memory_limit_mb
    return float(limit) if limit else MEMORY_SHARE * total_mb()


def rss_mb(pid: int) -> float:
    """Resident memory of a unit's process and every process it started (an exporter may fork), in MB."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            total += proc.memory_info().rss
    return total / 2**20


def available_mb() -> float:
    """What is left before the machine, or this cgroup (memory.max - memory.current), runs out."""
    free = psutil.virtual_memory().available
    limit, current = hardware.cgroup_memory_limit(), hardware.cgroup_memory_current()
    if limit and current is not None:
        free = min(free, max(0, limit - current))
    return free / 2**20


@dataclass
class Watch:
    """How a watched unit ended ("done" | "timeout" | "memory"), the most resident memory seen in its
    process tree, and the machine's available memory at that moment (MB)."""

    ended: str
    peak_mb: float = 0.0
    available_mb: float = 0.0


def wait_for(pid: int, finished: Any, timeout_s: float, limit_mb: float, poll_s: float = POLL_S) -> Watch:
    """Wait for a unit's process: `finished(seconds)` waits up to that long and says whether it is done.
    The unit is stopped ("memory") when its process tree goes over `limit_mb` or the machine is about to
    run out (under MIN_FREE_SHARE available), so the row says so instead of the kernel killing something."""
    deadline = time.monotonic() + timeout_s
    floor = MIN_FREE_SHARE * total_mb()
    watch = Watch("done")
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            watch.ended = "timeout"
            return watch
        if finished(min(poll_s, remaining)):
            return watch
        rss, free = rss_mb(pid), available_mb()
        if rss >= watch.peak_mb:
            watch.peak_mb, watch.available_mb = rss, free
        if rss > limit_mb or free < floor:
            watch.ended, watch.available_mb = "memory", free  # peak_mb already counts this reading
            return watch


def stopped(task: str, watch: Watch, limit_mb: float, timeout_s: float) -> tuple[str, str]:
    """(status, reason) of a unit the parent stopped: over its memory limit, or past its timeout."""
    if watch.ended == "memory":
        if watch.peak_mb > limit_mb:
            return "failed", (f"out of memory: the {task} process reached {watch.peak_mb:,.0f} MB, over the limit "
                              f"of {limit_mb:,.0f} MB (measure.memory_limit_mb; default 90 % of this machine's "
                              "memory), and was stopped")  # fmt: skip
        return "failed", (f"out of memory: the {task} process held {watch.peak_mb:,.0f} MB when the machine had "
                          f"only {watch.available_mb:,.0f} MB left, and was stopped")  # fmt: skip
    return "timeout", f"{task} exceeded the {timeout_s:g}s timeout and was killed"


def death_reason(task: str, code: int | None, watch: Watch | None = None) -> str:
    """How a unit's process died, from its exit code (a negative code is the signal that killed it)."""
    how = f"signal {signal.Signals(-code).name}" if code and code < 0 else f"exit code {code}"
    hint = ""
    if code == -signal.SIGKILL:
        hint = " (likely out of memory"
        if watch and watch.peak_mb:
            hint += f": it held {watch.peak_mb:,.0f} MB with {watch.available_mb:,.0f} MB of the machine free"
        hint += ")"
    return f"{task} process died with {how}{hint}"
