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


def test_batch_1_request_passes_take_at_least_min_samples_calls():
    timing = measure.Passes(texts_per_pass=64)
    measure.request_passes(lambda b: None, [[i] for i in range(64)], timing, 0.0, 1, 50, 5.0, min_samples=300)
    assert len(timing.latencies) == 320  # whole passes until 300 requests: 5 passes of 64


def test_a_slow_batch_1_cell_stops_its_requests_at_the_time_cap_but_not_below_a_p99s_need():
    """#22: 300 requests of a slow configuration (medium texts, ~25-70 ms each on 2 cores) were 8-21 s of a
    cell; past `samples_time_s` the passes stop once a p99 has its 100 requests (whole passes of 64: 128)."""
    import time

    timing = measure.Passes(texts_per_pass=64)
    measure.request_passes(lambda b: time.sleep(0.001), [[i] for i in range(64)], timing, 0.0, 1, 50, 5.0,
                           min_samples=300, samples_time_s=0.01, floor_samples=100)  # fmt: skip
    assert len(timing.latencies) == 128
    fast = measure.Passes(texts_per_pass=64)
    measure.request_passes(lambda b: None, [[i] for i in range(64)], fast, 0.0, 1, 50, 5.0, min_samples=300,
                           samples_time_s=3.0, floor_samples=100)  # fmt: skip
    assert len(fast.latencies) == 320  # a fast one still gets its 300 within the cap


def test_every_batch_shape_runs_untimed_before_the_timed_passes(monkeypatch):
    """#22: a shape first run inside a timed pass made pass 1 the slowest in 56 % of cells."""
    from types import SimpleNamespace

    from harness.config import MeasureConfig
    from harness.engine import units

    batches = [["a" * n] * 2 for n in (9, 7, 5, 3)]
    inputs = [t for b in batches for t in b]
    calls: list[int] = []
    seen_before_timing: list[set[int]] = []

    def fake_workload(spec, model):
        return inputs, inputs, batches, lambda b: calls.append(len(b[0])), lambda: None

    def fake_timed(call, call_all, batches_, n, m, bs):
        seen_before_timing.append(set(calls))
        raise RuntimeError("stop after the warm-up")

    loaded = SimpleNamespace(model=_chars_model(), kind="bi-encoder", warm=True)
    state = SimpleNamespace(load=lambda job: loaded, cells=0)
    monkeypatch.setattr(units, "_workload", fake_workload)
    monkeypatch.setattr(units, "_timed", fake_timed)
    spec = SimpleNamespace(job=SimpleNamespace(measure=MeasureConfig()), batch_size=2)
    with pytest.raises(RuntimeError, match="stop after"):
        units.speed(spec, state)
    assert seen_before_timing == [{9, 7, 5, 3}]  # a later cell of the process too (loaded.warm already)


def _chars_model(limit: int = 512):
    """A stand-in whose tokenizer counts one token per character (plus two special tokens)."""
    from types import SimpleNamespace

    def tokenizer(texts, truncation=False):
        return {"input_ids": [[0] * (len(t) + 2) for t in texts]}

    return SimpleNamespace(tokenizer=tokenizer, max_seq_length=limit)


def test_warm_up_runs_one_batch_of_each_shape_the_timed_passes_run():
    """#22: warming every batch of a batch-1 cell ran each of 256 short texts once (1.5 s of torch-fp32 a
    round); a shape is the batch's length and its longest input's tokens (capped at the limit), so one of
    each warms every timed shape."""
    from harness.engine import measure
    from harness.engine.units import shapes_of

    texts = ["abc", "xyz", "abcd", "ab", "qq", "abcdefgh", "abcdefghij"]
    warm = shapes_of(_chars_model(), "bi-encoder", texts, 1)
    assert [len(b[0]) for b in warm] == [3, 4, 2, 8, 10]  # the first text of each length, in order
    capped = shapes_of(_chars_model(limit=6), "bi-encoder", texts, 1)
    assert [len(b[0]) for b in capped] == [3, 4, 2]  # 6, 10 and 12 tokens all run as 6: one shape
    pairs = measure.one_per_shape([["a", "b"], ["c", "d"], ["e"]], [[5, 3], [4, 5], [5]], 512)
    assert pairs == [["a", "b"], ["e"]]  # (2, 5) twice, then a batch of one: another shape


def test_warm_shapes_runs_each_shape_then_batches_until_the_minimum_time(monkeypatch):
    """A warm-up of a few milliseconds left the first timed pass 1-2 % slower than the next (short texts, batch
    1): after every shape, the cell's batches run until `min_s` has passed, never more than one pass."""
    from harness.engine import measure

    clock = iter(range(100))
    monkeypatch.setattr(measure.time, "perf_counter", lambda: float(next(clock)))
    calls: list[str] = []
    batches = [["a"], ["b"], ["c"], ["d"]]
    assert measure.warm_shapes(calls.extend, [["x"], ["y"]], batches, 2.5) == 4  # shapes, then 2 batches
    assert calls == ["x", "y", "a", "b"]
    calls.clear()
    assert measure.warm_shapes(calls.extend, [["x"]], batches, 100.0) == 5  # one pass at most
    assert measure.warm_shapes(calls.extend, [["x"]], batches, 0.0) == 1  # no minimum: the shapes alone
