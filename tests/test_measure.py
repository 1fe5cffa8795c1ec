"""Timing: passes meet their minimums, stop at the maximum time, percentiles from raw values."""

from __future__ import annotations

import time

import pytest

from harness.engine import measure
from harness.store import rows


def test_bulk_and_request_passes_meet_minimums_and_count_calls():
    calls = []
    timing = measure.Passes(texts_per_pass=3)
    last = measure.bulk_passes(lambda: calls.append(3) or "out", timing, 0.0, 4, 10)
    assert last == "out" and len(timing.pass_seconds) == 4 and calls == [3] * 4  # one call per bulk pass
    measure.request_passes(lambda b: calls.append(len(b)), [[1, 2], [3]], timing, 0.0, 2, 10)
    assert calls[4:] == [2, 1, 2, 1] and timing.batches_per_pass == 2  # one call per batch (request)
    fields = timing.fields()
    assert fields["throughput"] > 0 and fields["per_request_throughput"] > 0 and fields["n_batches"] == 4
    assert fields["measure_s"] == pytest.approx(sum(timing.pass_seconds) + sum(timing.latencies))


def test_slow_passes_stop_at_max_time_even_below_min_repeats():
    timing = measure.Passes(texts_per_pass=1)
    measure.bulk_passes(lambda: time.sleep(0.05), timing, 0.0, 10, 50, max_time_s=0.01)
    assert len(timing.pass_seconds) == 1  # the pass that crossed max_time_s was the last


def test_latency_percentiles_from_raw_values():
    stats = rows.latency_stats([float(i) for i in range(1, 101)])
    assert stats["latency_p50_ms"] == pytest.approx(50.5)
    assert stats["latency_p99_ms"] == pytest.approx(99.01)
