"""A speed row's statistics from its raw values: the one place they come from, for one try and for pooled
rounds alike (harness.store.rows re-exports them)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def latency_stats(latencies_ms: Sequence[float]) -> dict[str, float]:
    """Mean and percentiles of per-request latencies (ms)."""
    ms = np.asarray(latencies_ms, dtype=float)
    return {
        "latency_mean_ms": float(ms.mean()),
        "latency_p50_ms": float(np.percentile(ms, 50)),
        "latency_p90_ms": float(np.percentile(ms, 90)),
        "latency_p99_ms": float(np.percentile(ms, 99)),
    }


def per_request_throughput(latencies_s: Sequence[float], texts_per_pass: int, batches_per_pass: int) -> float:
    """Texts per second over the per-request loop's passes (every pass calls every batch once)."""
    if len(latencies_s) == 0 or not batches_per_pass:
        return float("nan")
    return texts_per_pass * (len(latencies_s) / batches_per_pass) / float(np.sum(latencies_s))


def speed_stats(latencies_ms: Sequence[float], pass_s: Sequence[float], n_texts: int,
                batches_per_pass: int) -> dict[str, float]:  # fmt: skip
    """Throughput, per-request throughput, latency percentiles and CV from raw per-batch latencies (ms)
    and per-pass times (s): the one place a speed row's statistics come from, for one try and for
    pooled rounds alike."""
    ms, passes = np.asarray(latencies_ms, dtype=float), np.asarray(pass_s, dtype=float)
    rates = n_texts / passes
    return {
        "throughput": n_texts * len(passes) / passes.sum(),
        "per_request_throughput": per_request_throughput(ms / 1000.0, n_texts, batches_per_pass),
        **latency_stats(ms),
        "cv": float(rates.std(ddof=1) / rates.mean()) if len(rates) > 1 else float("nan"),
        "repeats": len(passes),
        "n_batches": len(ms),
    }
