"""Timing: warm-up, timed passes until a minimum time and count, latency statistics,
CPU accounting (this process vs everything else), and where the time goes.

The timed loop does nothing but call the model and read the clock, so the reported throughput
is the throughput of `encode`/`predict` itself (see `harness overhead`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import psutil


@dataclass
class Latency:
    """Raw per-call values (seconds) and the statistics derived from them."""

    values: list[float]

    def stats(self) -> dict[str, float]:
        ms = np.asarray(self.values) * 1000.0
        return {
            "latency_mean_ms": float(ms.mean()),
            "latency_p50_ms": float(np.percentile(ms, 50)),
            "latency_p90_ms": float(np.percentile(ms, 90)),
            "latency_p99_ms": float(np.percentile(ms, 99)),
        }


class CpuMeter:
    """CPU time of this process and of everything else on the machine over an interval, in cores."""

    def __init__(self) -> None:
        self._proc = psutil.Process()

    @staticmethod
    def _busy() -> float:
        t = psutil.cpu_times()
        return t.user + t.nice + t.system + getattr(t, "irq", 0) + getattr(t, "softirq", 0) + getattr(t, "steal", 0)

    def _self(self) -> float:
        t = self._proc.cpu_times()
        return t.user + t.system

    def __enter__(self) -> CpuMeter:
        self._wall0, self._busy0, self._self0 = time.perf_counter(), self._busy(), self._self()
        return self

    def __exit__(self, *exc: object) -> None:
        wall = max(time.perf_counter() - self._wall0, 1e-9)
        self_s = self._self() - self._self0
        other_s = max(0.0, (self._busy() - self._busy0) - self_s)
        self.cpu_self = self_s / wall
        self.cpu_other = other_s / wall


@dataclass
class Timing:
    latencies: list[float] = field(default_factory=list)  # per call, seconds
    pass_seconds: list[float] = field(default_factory=list)  # per pass over all batches
    texts_per_pass: int = 0
    cpu_self: float = 0.0
    cpu_other: float = 0.0

    @property
    def throughput(self) -> float:
        return self.texts_per_pass * len(self.pass_seconds) / sum(self.pass_seconds)

    @property
    def cv(self) -> float:
        """Coefficient of variation of per-pass throughput: the cell's own noise."""
        if len(self.pass_seconds) < 2:
            return float("nan")
        rates = self.texts_per_pass / np.asarray(self.pass_seconds)
        return float(rates.std(ddof=1) / rates.mean())

    def fields(self) -> dict[str, Any]:
        return {
            "throughput": self.throughput,
            "cv": self.cv,
            "repeats": len(self.pass_seconds),
            "n_batches": len(self.latencies),
            "measure_s": sum(self.pass_seconds),
            "cpu_self": self.cpu_self,
            "cpu_other": self.cpu_other,
            "latencies_ms": [round(v * 1000.0, 4) for v in self.latencies],
            "pass_s": [round(v, 6) for v in self.pass_seconds],
            **Latency(self.latencies).stats(),
        }


def batched(items: Sequence[Any], size: int) -> list[list[Any]]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def warm_up(call: Callable[[list[Any]], Any], batches: list[list[Any]], n: int) -> None:
    for batch in (batches * n)[:n]:
        call(batch)


def timed_passes(
    call: Callable[[list[Any]], Any],
    batches: list[list[Any]],
    min_time_s: float,
    min_repeats: int,
    max_repeats: int,
    max_time_s: float = float("inf"),
) -> Timing:
    """Whole passes over `batches` until both minimums are met (or max_repeats / max_time_s)."""
    timing = Timing(texts_per_pass=sum(len(b) for b in batches))
    clock = time.perf_counter
    with CpuMeter() as meter:
        while (
            len(timing.pass_seconds) < max_repeats
            and sum(timing.pass_seconds) < max_time_s
            and (len(timing.pass_seconds) < min_repeats or sum(timing.pass_seconds) < min_time_s)
        ):
            pass_start = clock()
            for batch in batches:
                t0 = clock()
                call(batch)
                timing.latencies.append(clock() - t0)
            timing.pass_seconds.append(clock() - pass_start)
    timing.cpu_self, timing.cpu_other = meter.cpu_self, meter.cpu_other
    return timing


def merge(timings: list[Timing]) -> Timing:
    """Pool the repeats of several rounds of the same cell (interleaved measurement)."""
    out = Timing(texts_per_pass=timings[0].texts_per_pass)
    wall = 0.0
    for t in timings:
        out.latencies += t.latencies
        out.pass_seconds += t.pass_seconds
        w = sum(t.pass_seconds)
        out.cpu_self += t.cpu_self * w
        out.cpu_other += t.cpu_other * w
        wall += w
    out.cpu_self /= wall
    out.cpu_other /= wall
    return out


def breakdown(model: Any, batches: list[list[Any]], timing: Timing, max_batches: int = 2) -> dict[str, float]:
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
