"""Several instances behind one queue (M/D/k): the server scenario's deployment shapes.

k instances (forked worker processes, each with its own model and threads) serve one Poisson schedule.
There is no dispatcher: each instance, the moment it is free, claims the next batch from a counter shared
through a small file under an exclusive lock, by the same policy as the one-thread batcher
(`serving._next_batch` with `free` = now). Claims are therefore made in the order instances become free:
the batch goes to the earliest-free instance, which is one shared queue (M/D/k), not round-robin (which
would queue requests behind a busy instance while another idles). No load-generator thread or process
runs beside the instances, so on a 2-core machine nothing steals the cores being measured.

Every instance draws the same schedule from the same seed and reads the same monotonic clock (system-wide
on Linux), so their batch records merge into one `ServeResult`, and `shared_queue_replay` replays the
policy with k free times from the schedule and the measured service times.
"""

from __future__ import annotations

import contextlib
import fcntl
import heapq
import math
import os
import struct
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from harness.engine.serving import ServeResult, _check_batcher, _next_batch, _wait_until

CLOCK = time.monotonic  # one clock for every process of a shape


class SharedQueue:
    """The index of the next unclaimed request, in a file every instance opens; claims hold its lock."""

    def __init__(self, path: str | Path):
        self.path = str(path)

    def reset(self) -> None:
        with open(self.path, "wb") as f:
            f.write(struct.pack("q", 0))

    def remove(self) -> None:
        """The file gone (the shape is done): a sweep leaves nothing in the temporary folder."""
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.path)

    def claim(self, due: Sequence[float], max_batch: int, max_wait: float,
              clock: Callable[[], float]) -> tuple[float, float, int, int]:  # fmt: skip
        """(free, start, i, j): the batch of requests i..j-1 this instance, free now, takes; i == j at the end."""
        fd = os.open(self.path, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            free = clock()
            i = struct.unpack("q", os.pread(fd, 8, 0))[0]
            if i >= len(due):
                return free, free, i, i
            start, j = _next_batch(due, i, free, max_batch, max_wait)
            os.pwrite(fd, struct.pack("q", j), 0)
            return free, start, i, j
        finally:
            os.close(fd)  # closing releases the lock


def serve_instance(due: Sequence[float], service: Callable[[range], object], queue: SharedQueue, max_batch: int,
                   max_wait_s: float, clock: Callable[[], float] = CLOCK) -> dict[str, list[float]]:  # fmt: skip
    """One instance's loop over absolute `due` times (clock seconds): claim, wait for the batch's moment,
    serve it; the batches it served, as lists (they cross a process boundary)."""
    _check_batcher(max_batch, max_wait_s)
    out: dict[str, list[float]] = {"i": [], "j": [], "free": [], "start": [], "call": [], "end": []}
    while True:
        free, start, i, j = queue.claim(due, max_batch, max_wait_s, clock)
        if i >= j:
            return out
        if start > clock():
            _wait_until(start, clock)
        call = clock()
        service(range(i, j))
        end = clock()
        for key, value in zip(out, (i, j, free, start, call, end), strict=True):
            out[key].append(value)


def _busy_until(record: dict[str, list[float]]) -> list[float]:
    """Per batch, when its instance claimed again (its last: the batch's end): the instance's occupancy,
    bookkeeping included, which is what a replay must take as the service time."""
    return [*record["free"][1:], *record["end"][-1:]]


def merge(arrivals: np.ndarray, origin: float, records: Sequence[dict[str, list[float]]], max_batch: int,
          max_wait_s: float, discard: int) -> tuple[ServeResult, np.ndarray]:  # fmt: skip
    """One ServeResult from every instance's batches (times made relative to `origin`), and each batch's
    occupancy (see `_busy_until`) in the result's batch order."""
    batches = sorted((b for r in records for b in zip(*(r[k] for k in ("i", "j", "start", "call", "end")),
                                                      _busy_until(r), strict=True)), key=lambda b: b[0])  # fmt: skip
    covered = sum(b[1] - b[0] for b in batches)
    if covered != len(arrivals) or (batches and batches[0][0] != 0):
        raise RuntimeError(f"the instances served {covered} of {len(arrivals)} requests")
    size = np.array([b[1] - b[0] for b in batches])
    start, call, end = (np.array([b[k] for b in batches]) - origin for k in (2, 3, 4))
    occupancy = np.array([b[5] for b in batches]) - origin - start
    result = ServeResult(arrival=np.asarray(arrivals, dtype=float), start=np.repeat(start, size),
                         completion=np.repeat(end, size), batch_start=start, batch_call=call, batch_end=end,
                         batch_size=size, max_batch=int(max_batch), max_wait_s=float(max_wait_s),
                         discard=int(discard))  # fmt: skip
    return result, occupancy


def shared_queue_replay(arrivals: Sequence[float], service_times: Sequence[float], k: int, max_batch: int,
                        max_wait_s: float) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Replay M/D/k with one shared queue: each batch, in order, goes to the earliest-free of k servers.
    (latency per request, size per batch); k = 1 is `serving.batched_replay`."""
    _check_batcher(max_batch, max_wait_s)
    a = [float(x) for x in arrivals]
    free = [-math.inf] * int(k)
    latency, sizes, i = np.empty(len(a)), [], 0
    for s in service_times:
        if i >= len(a):
            break
        start, j = _next_batch(a, i, heapq.heappop(free), max_batch, max_wait_s)
        heapq.heappush(free, start + float(s))
        latency[i:j] = start + float(s) - np.asarray(a[i:j])
        sizes.append(j - i)
        i = j
    return latency, np.asarray(sizes)


def pss_mb(pid: int | None = None) -> float | None:
    """Proportional set size (MB): a forked instance's shared pages counted once across the instances."""
    try:
        import psutil

        return psutil.Process(pid).memory_full_info().pss / 2**20
    except Exception:  # noqa: BLE001 - not every platform has PSS (psutil's AccessDenied, no smaps)
        return None


def instance_result(records: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {**records, "pss_mb": pss_mb(), **extra}
