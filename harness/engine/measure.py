"""Timing: warm-up, timed passes until a minimum time and count, latency statistics,
CPU accounting (this process vs everything else), and where the time goes.

Two ways of timing, both real calls a user makes:
- *bulk*: one `encode(texts, batch_size=B)` call over all the texts per pass, as a user encodes a
  corpus; its throughput is the row's `throughput` (sentence-transformers' per-call overhead is paid
  once per pass, as it is for that user);
- *per request*: one call per batch of B, the way a server answers requests; its per-call latencies
  give p50/p90/p99 and `per_request_throughput`.
The timed loops do nothing but call the model and read the clock (see `harness overhead`).
"""

from __future__ import annotations

import contextlib
import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import psutil

from harness.core import hardware
from harness.store.rows import speed_stats


class CpuMeter:
    """CPU time of this process and of everything else on the CPUs it may use over an interval, in cores.

    Only the CPUs of this process's affinity count (taskset, a cpuset, a SLURM allocation): another tenant's
    work on other cores takes nothing from the cell. Under a cgroup CPU quota (cpu.max), where the CPUs are
    shared by time rather than by number, "everything else" is the time this cgroup's tasks waited for a CPU
    (cpu.pressure "some"), which is what a neighbour or the quota's throttling costs the cell."""

    def __init__(self) -> None:
        self._proc = psutil.Process()
        self._cpus = hardware.allowed_cpus()
        self._pressure = hardware.cgroup_cpu_pressure_us() is not None and hardware.cgroup_cpu_quota() is not None

    def _busy(self) -> float:
        if self._pressure:
            return (hardware.cgroup_cpu_pressure_us() or 0.0) / 1e6
        per_cpu = psutil.cpu_times(percpu=True)
        return sum(_busy_s(per_cpu[i]) for i in self._cpus if i < len(per_cpu))

    def _self(self) -> float:
        t = self._proc.cpu_times()
        return t.user + t.system

    def __enter__(self) -> CpuMeter:
        self._wall0, self._busy0, self._self0 = time.perf_counter(), self._busy(), self._self()
        return self

    def __exit__(self, *exc: object) -> None:
        wall = max(time.perf_counter() - self._wall0, 1e-9)
        self_s = self._self() - self._self0
        busy_s = self._busy() - self._busy0
        other_s = max(0.0, busy_s if self._pressure else busy_s - self_s)
        self.cpu_self = self_s / wall
        self.cpu_other = other_s / wall


def _busy_s(t: Any) -> float:
    return t.user + t.nice + t.system + getattr(t, "irq", 0) + getattr(t, "softirq", 0) + getattr(t, "steal", 0)


@dataclass
class Passes:
    """One try's raw times: bulk passes and per-request calls, and the CPU used meanwhile. Its statistics
    come from `store.rows.speed_stats`, the same function that pools rounds."""

    latencies: list[float] = field(default_factory=list)  # per request (one call per batch), seconds
    pass_seconds: list[float] = field(default_factory=list)  # per bulk pass (one call over all texts)
    texts_per_pass: int = 0
    batches_per_pass: int = 0
    cpu_self: float = 0.0
    cpu_other: float = 0.0
    outputs: Any = None  # the last bulk pass's outputs (fidelity: the outputs of what was timed)

    def fields(self) -> dict[str, Any]:
        latencies_ms = [v * 1000.0 for v in self.latencies]
        return {
            **speed_stats(latencies_ms, self.pass_seconds, self.texts_per_pass, self.batches_per_pass),
            "measure_s": sum(self.pass_seconds) + sum(self.latencies),
            "cpu_self": self.cpu_self,
            "cpu_other": self.cpu_other,
            "latencies_ms": [round(v, 4) for v in latencies_ms],
            "pass_s": [round(v, 6) for v in self.pass_seconds],
        }


def batched(items: Sequence[Any], size: int) -> list[list[Any]]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def one_per_shape(batches: list[list[Any]], tokens: list[list[int]], limit: int) -> list[list[Any]]:
    """The first batch of each distinct padded shape, in order: (inputs in the batch, its longest input's tokens
    up to the model's limit) is what the runtime is given (sentence-transformers pads a batch to its longest
    input and truncates at the limit), so these are every shape the timed passes run."""
    seen: dict[tuple[int, int], list[Any]] = {}
    for batch, counts in zip(batches, tokens, strict=True):
        seen.setdefault((len(batch), min(max(counts), limit)), batch)
    return list(seen.values())


def warm_up(call: Callable[[list[Any]], Any], batches: list[list[Any]], n: int) -> None:
    for batch in (batches * n)[:n]:
        call(batch)


def warm_shapes(call: Callable[[list[Any]], Any], shapes: list[list[Any]], batches: list[list[Any]],
                min_s: float) -> int:  # fmt: skip
    """Every shape once (`one_per_shape`), then the cell's batches in order until `min_s` of warm-up have passed
    (one pass at most): a few dozen shapes run in milliseconds, and a first timed pass that follows an idle
    moment ran 1-2 % slower than the next. Returns the calls made."""
    start = time.perf_counter()
    for batch in shapes:
        call(batch)
    calls = len(shapes)
    for batch in batches:
        if time.perf_counter() - start >= min_s:
            break
        call(batch)
        calls += 1
    return calls


def _enough(seconds: list[float], min_time_s: float, min_repeats: int, max_repeats: int, max_time_s: float) -> bool:
    done, total = len(seconds), sum(seconds)
    return done >= max_repeats or total >= max_time_s or (done >= min_repeats and total >= min_time_s)


def passes_needed(pass_s: float, min_time_s: float, min_repeats: int, max_repeats: int,
                  max_time_s: float = float("inf")) -> int:  # fmt: skip
    """How many passes of `pass_s` seconds each the timed loops run (for plans: the rule they stop by)."""
    seconds: list[float] = []
    while not _enough(seconds, min_time_s, min_repeats, max_repeats, max_time_s):
        seconds.append(max(pass_s, 0.0))
    return len(seconds)


def bulk_passes(
    call_all: Callable[[], Any],
    timing: Passes,
    min_time_s: float,
    min_repeats: int,
    max_repeats: int,
    max_time_s: float = float("inf"),
) -> Any:
    """Whole bulk passes (one call over all texts) until both minimums are met (or a maximum);
    returns the last pass's outputs (for fidelity: the outputs of what was timed)."""
    clock = time.perf_counter
    out = None
    while not _enough(timing.pass_seconds, min_time_s, min_repeats, max_repeats, max_time_s):
        t0 = clock()
        out = call_all()
        timing.pass_seconds.append(clock() - t0)
    return out


def request_passes(
    call: Callable[[list[Any]], Any],
    batches: list[list[Any]],
    timing: Passes,
    min_time_s: float,
    min_repeats: int,
    max_repeats: int,
    max_time_s: float = float("inf"),
    min_samples: int = 0,
    samples_time_s: float = float("inf"),
    floor_samples: int = 0,
) -> None:
    """Whole passes over `batches`, one call per batch (per-request latency), until the minimums are met,
    or a maximum. Then more passes towards `min_samples` calls (a p99 needs ~100 or more) while they take
    less than `samples_time_s` in all - past it only until `floor_samples` - and never past `max_time_s`."""
    clock = time.perf_counter
    timing.batches_per_pass = len(batches)
    passes: list[float] = []

    def more_samples() -> bool:
        n, spent = len(timing.latencies), sum(passes)
        return n < min_samples and spent < max_time_s and (spent < samples_time_s or n < floor_samples)

    while not _enough(passes, min_time_s, min_repeats, max_repeats, max_time_s) or more_samples():
        for batch in batches:
            t0 = clock()
            call(batch)
            timing.latencies.append(clock() - t0)
        passes.append(float(np.sum(timing.latencies[-len(batches) :])))


def breakdown(model: Any, batches: list[list[Any]], timing: Passes, max_batches: int = 2) -> dict[str, float]:
    """Shares of end-to-end time in tokenization and the forward pass, and forward-only throughput.

    Measured after the timed loop (which stays bare) on up to `max_batches` batches spread over
    the pass (the longest and the shortest first): preprocess (tokenize) each, then run only
    `model.forward` on the prepared features, and compare with the timed end-to-end latency of
    those same batches.
    """
    import torch

    n_batches = len(batches)
    picks = sorted({int(round(i)) for i in np.linspace(0, n_batches - 1, min(max_batches, n_batches))})
    per_batch = np.asarray(timing.latencies).reshape(-1, n_batches).mean(axis=0)
    e2e = float(per_batch[picks].sum())
    tok_s = fwd_s = 0.0
    n = 0
    clock = time.perf_counter
    with torch.inference_mode():
        for i in picks:
            t0 = clock()
            features = model.preprocess(batches[i])
            t1 = clock()
            features = {k: v.to(model.device) if hasattr(v, "to") else v for k, v in features.items()}
            t2 = clock()
            model.forward(features)
            t3 = clock()
            tok_s += t1 - t0
            fwd_s += t3 - t2
            n += len(batches[i])
    tokenize_share = min(tok_s / e2e, 1.0)
    forward_share = min(fwd_s / e2e, 1.0 - tokenize_share)
    return {
        "tokenize_share": tokenize_share,
        "forward_share": forward_share,
        "other_share": max(0.0, 1.0 - tokenize_share - forward_share),
        "forward_throughput": n / fwd_s if fwd_s else float("nan"),
    }


def reset_peak_rss() -> None:
    """Start a new peak-RSS interval for this process (Linux: VmHWM), so a worker's cells each get their own."""
    with contextlib.suppress(OSError):
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")


def peak_rss_mb() -> float:
    """Peak resident memory since the last reset_peak_rss (or the process start), in MB."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def check_finite(outputs: Any) -> None:
    """A backend whose outputs hold NaN or inf computed nothing usable (an fp16 overflow, a broken export): its
    cell fails with that reason, never a throughput."""
    if outputs is None:
        return
    values = np.asarray(outputs, dtype=np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        rows = int(bad.reshape(len(values), -1).any(axis=1).sum()) if values.ndim else 1
        raise ValueError(f"outputs: {rows} of {len(values) if values.ndim else 1} texts gave NaN or inf; "
                         "the backend computed no usable result")  # fmt: skip
