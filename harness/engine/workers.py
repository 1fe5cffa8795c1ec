"""Speed workers: one process per (model, backend configuration, round), measuring every (dataset,
batch size) cell of that backend in that round.

Why this shape (README, "How the sweep spends its time"): a fresh process per *cell* paid spawn,
imports, model load, runtime warm-up and precision read-back for ~2 s of measurement. A worker pays
them once per backend and round, and its processes are forked from a server that has already
imported torch, sentence-transformers and the runtimes' Python packages (no runtime is created
there: no session, no compiled model, no thread pool), so a new worker starts in a fraction of a
second instead of several. What stays as before:

- every backend configuration in its own process, never two runtimes loaded in one;
- fresh processes per round (the noise is between processes, so rounds average processes);
- a per-cell timeout: a hung cell is killed with its worker and recorded; the next cell of that
  backend gets a new worker;
- a crash (segfault, OOM kill) is recorded with its signal; the backend's remaining cells go on in
  a new worker;
- the machine lock is held exclusively while a cell is timed.

Workers of a round are kept (least recently used first out) while the machine has memory to spare,
so a sweep that visits datasets before backends still reuses them; a new round closes the old ones.
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing.util  # noqa: F401  (registers its exit handler before POOL.close: see POOL)
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psutil

from harness.engine.isolation import (
    Watch,
    configure_process,
    death_reason,
    machine_lock,
    memory_limit_mb,
    preloaded_context,
    run_unit,
    stopped,
    wait_for,
)

log = logging.getLogger(__name__)

MAX_WORKERS = 16  # kept alive at once (idle ones cost memory, not CPU)
MIN_AVAILABLE = 0.35  # keep idle workers only while this share of the machine's memory is free


def _serve(conn: Any, threads: int) -> None:
    """The worker's loop: one (task, spec) at a time until the parent closes the pipe."""
    configure_process(threads, offline=True)
    from harness.engine import units as work

    state = work.State()
    while True:
        try:
            task, spec = conn.recv()
        except (EOFError, OSError):
            return
        conn.send(run_unit(task, spec, state))


class Worker:
    def __init__(self, key: str, threads: int):
        ctx = preloaded_context(threads)
        self.key = key
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(child, threads), name=f"harness-worker-{key[:8]}", daemon=True)
        self.proc.start()
        child.close()
        self.cells = 0

    def alive(self) -> bool:
        return self.proc.is_alive()

    def call(self, task: str, spec: Any, timeout_s: float) -> tuple[str, dict[str, Any] | None, str | None]:
        """Run `harness.engine.units.<task>(spec, state)` in this worker. Returns (status, result, reason)."""
        self.cells += 1
        start = time.monotonic()
        watch = None
        try:
            self.conn.send((task, spec))
            limit = memory_limit_mb(spec)
            watch = wait_for(self.proc.pid, self.conn.poll, timeout_s, limit)
            if watch.ended != "done":
                self.kill()
                status, reason = stopped(task, watch, limit, timeout_s)
                return status, None, reason
            result = self.conn.recv()
        except (EOFError, OSError, BrokenPipeError):
            return "failed", None, self._death(task, watch)
        except BaseException:  # Ctrl-C: take the worker down with us
            self.kill()
            raise
        finally:
            log.debug("%s in worker %s took %.1fs", task, self.key[:8], time.monotonic() - start)
        if result.error is not None:
            log.debug("%s failed:\n%s", task, result.traceback)
            return "failed", None, result.error
        return "ok", result.outcome(), None

    def _death(self, task: str, watch: Watch | None) -> str:
        self.proc.join(5)
        return death_reason(task, self.proc.exitcode, watch)

    def close(self) -> None:
        try:
            self.conn.close()
        finally:
            self.proc.join(10)
            if self.proc.is_alive():
                self.kill()

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join()
        self.conn.close()


class WorkerPool:
    """The workers of this sweep process, by key (model, backend configuration, round, thread budget)."""

    def __init__(self) -> None:
        self.workers: OrderedDict[str, Worker] = OrderedDict()
        self.started = 0

    def run(self, key: str, round_: int, threads: int, task: str, spec: Any, timeout_s: float,
            what: str = "") -> tuple[str, dict[str, Any] | None, str | None]:  # fmt: skip
        """Run one timed cell in the worker for `key` (started if needed), alone on the machine."""
        self._close_other_rounds(round_)
        worker = self._worker(key, threads, round_, what)
        with machine_lock(exclusive=True):
            status, out, reason = worker.call(task, spec, timeout_s)
        if status != "ok" and not worker.alive():
            del self.workers[key]  # the next cell of this backend gets a fresh worker
        return status, out, reason

    def _worker(self, key: str, threads: int, round_: int, what: str) -> Worker:
        worker = self.workers.get(key)
        if worker is None or not worker.alive():
            self._make_room()
            worker = Worker(key, threads)
            self.workers[key] = worker
            self.started += 1
            log.info("worker pid %d started for %s, round %d", worker.proc.pid, what or key, round_)
        self.workers.move_to_end(key)
        return worker

    def run_group(self, keys: list[str], round_: int, threads: int, task: str, specs: list[Any], timeout_s: float,
                  what: str = "") -> list[tuple[str, dict[str, Any] | None, str | None]]:  # fmt: skip
        """One unit in each of several workers at once (a deployment shape's instances, `threads` each), the
        group alone on the machine; each worker's (status, result, reason)."""
        self._close_other_rounds(round_)
        group = [self._worker(key, threads, round_, what) for key in keys]
        with machine_lock(exclusive=True), ThreadPoolExecutor(len(group)) as calls:
            outcomes = list(calls.map(lambda w, s: w.call(task, s, timeout_s), group, specs))
        for key, worker, outcome in zip(keys, group, outcomes, strict=True):
            if outcome[0] != "ok" and not worker.alive():
                self.workers.pop(key, None)
        return outcomes

    def pids(self, keys: list[str]) -> list[int]:
        return [self.workers[k].proc.pid for k in keys if k in self.workers and self.workers[k].alive()]

    def _close_other_rounds(self, round_: int) -> None:
        for key in [k for k in self.workers if not k.endswith(f"-r{round_}")]:
            self.workers.pop(key).close()

    def _make_room(self) -> None:
        """Close least recently used workers while too many are kept or memory runs short."""
        while self.workers and (
            len(self.workers) >= MAX_WORKERS
            or psutil.virtual_memory().available < MIN_AVAILABLE * psutil.virtual_memory().total
        ):
            _, worker = self.workers.popitem(last=False)
            worker.close()

    def close(self) -> None:
        while self.workers:
            self.workers.popitem()[1].close()

    def kill(self) -> None:
        """Every worker at once (the sweep was told to stop): no graceful close, no wait."""
        while self.workers:
            self.workers.popitem()[1].kill()


POOL = WorkerPool()
# atexit runs last-registered first. multiprocessing.util registers its exit handler, which terminates
# every daemonic child, when it is first imported - until now at the first worker's start, after this
# line - so the last round's workers were killed before POOL.close could close them: no finalizer ran,
# and each left its tqdm lock's semaphore behind ("There appear to be 13 leaked semaphore objects").
# Imported above, that handler runs after this one.
atexit.register(POOL.close)
