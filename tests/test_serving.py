"""The server scenario's core (harness.engine.serving): M/D/1 theory, the batching policy, the search, and the
real-clock serving loop against a fake backend that busy-waits (no sleep, no model).

Sampling noise, measured with exact-D simulations over seeds (so a failure can be told from bad luck):
- mean latency of 20,000 requests: sd across seeds 0.8 % at rho 0.5 and 3.5 % at rho 0.8 (at rho 0.8, one
  seed in seven misses 5 % with a perfect server); seed 0 is 0.4 % and 1.4 % above theory;
- the search with 8,000 requests a point at budget 20 D (rho* 0.886): found rate sd 2.7 % across seeds,
  one seed in ten misses 5 %; seed 0's ideal search lands 1 % low.
So the real-clock tests keep seed 0 and the stated tolerances, and report the ideal (exact-D replay of the
same schedule) beside the measurement. When a real-clock measurement misses while the machine was busy (other
processes' CPU, or this process preempted), it is measured once more after waiting for a quiet moment.
"""

from __future__ import annotations

import math
import os
import time
from decimal import Decimal, localcontext

import numpy as np
import psutil
import pytest

from harness.engine import serving as sv

clock = time.perf_counter
SEED = 0


def busy_backend(d0: float, d1: float = 0.0):
    """A service that busy-waits until its own start + d0 + d1 * batch size."""

    def service(batch) -> None:
        end = clock() + d0 + d1 * len(batch)
        while clock() < end:
            pass

    return service


def exact_waits(arrivals: np.ndarray, service: np.ndarray) -> np.ndarray:
    """FIFO waits without a loop (independent of sv.lindley_replay): W_n = P_n - min_{k<=n} P_k."""
    steps = np.concatenate([[0.0], service[:-1] - np.diff(arrivals)])
    path = np.cumsum(steps)
    return path - np.minimum.accumulate(path)


def ideal_result(schedule: np.ndarray, d: float, discard: int = 500) -> sv.ServeResult:
    """What a perfect server with service time d would have recorded (no clock)."""
    completion = schedule + exact_waits(schedule, np.full(len(schedule), d)) + d
    start = completion - d
    ones = np.ones(len(schedule), dtype=int)
    return sv.ServeResult(schedule, start, completion, start, start, completion, ones, 1, 0.0, discard)


# --- M/D/1 theory ---------------------------------------------------------------------------------------


def erlang_sum(t: float, d: float, rho: float) -> float:
    """Erlang's alternating sum, evaluated with 120 significant digits."""
    with localcontext() as ctx:
        ctx.prec = 120
        t_, d_, rho_ = Decimal(repr(t)), Decimal(repr(d)), Decimal(repr(rho))
        lam, total = rho_ / d_, Decimal(0)
        for k in range(int(t // d) + 1):
            x = lam * (k * d_ - t_)
            total += (x**k if k else Decimal(1)) / math.factorial(k) * (-x).exp()
        return float((1 - rho_) * total)


@pytest.mark.parametrize("rho", [0.3, 0.5, 0.8, 0.95])
def test_md1_cdf_equals_erlangs_sum_where_floats_cannot_evaluate_it(rho):
    for t in (0.0, 0.3, 1.0, 2.5, 7.2, 30.7, 80.1):
        assert sv.md1_wait_cdf(t * 2e-3, 2e-3, rho) == pytest.approx(erlang_sum(t, 1.0, rho), abs=1e-12), t


def test_md1_cdf_known_values():
    # below one service time Erlang's sum has one term: (1 - rho) e^{lam t}; at t = 0 the atom is 1 - rho
    assert sv.md1_wait_cdf(0.0, 1.0, 0.8) == pytest.approx(0.2, abs=1e-15)
    assert sv.md1_wait_cdf(0.6, 1.0, 0.5) == pytest.approx(0.5 * math.exp(0.3), abs=1e-15)
    assert sv.md1_wait_cdf(-1.0, 1.0, 0.5) == 0.0
    # its 75th percentile then solves 0.5 e^{t/2} = 0.75: t = 2 ln 1.5, sojourn = D + t
    assert sv.md1_sojourn_quantile(1.0, 0.5, 0.75) == pytest.approx(1 + 2 * math.log(1.5), rel=1e-10)
    assert sv.md1_sojourn_quantile(1.0, 0.005, 0.99) == 1.0  # 99.5 % never wait


@pytest.mark.parametrize("rho", [0.5, 0.8, 0.95])
def test_md1_mean_from_the_cdf_is_the_formula(rho):
    """E[W] = integral of P(W > t); between multiples of D the CDF is a polynomial times an exponential, so
    20-point Gauss-Legendre per interval is exact to rounding (the tail past 400 D is below 1e-12)."""
    x, w = np.polynomial.legendre.leggauss(20)
    nodes = (np.arange(400)[:, None] + (x + 1) / 2).ravel()
    tail = np.dot(np.tile(w / 2, 400), 1 - sv.md1_wait_cdf(nodes, 1.0, rho))
    assert 1.0 + tail == pytest.approx(sv.md1_mean_sojourn(1.0, rho), rel=1e-9)


@pytest.mark.parametrize("rho", [0.5, 0.8])
def test_md1_cdf_matches_a_discrete_event_simulation(rho):
    """2,000,000 FIFO customers with exact D (no clock); tolerance 0.006 is ~5 sd of the simulation's noise
    across seeds (an off-by-one-D mistake in the CDF would be off by ~0.1)."""
    gaps = np.random.default_rng(7).standard_exponential(2_000_000) / rho
    waits = exact_waits(np.cumsum(gaps), np.ones(len(gaps)))
    for t in (0.0, 0.5, 1.0, 1.7, 2.0, 4.0, 8.3, 16.0):
        assert np.mean(waits <= t) == pytest.approx(sv.md1_wait_cdf(t, 1.0, rho), abs=0.006), t


def test_rate_for_p99_inverts_the_quantile():
    d = 0.25e-3
    for rho in (0.3, 0.7, 0.886, 0.97):
        budget = sv.md1_sojourn_quantile(d, rho, 0.99)
        assert sv.md1_rate_for_p99(d, budget) == pytest.approx(rho / d, rel=1e-8)
        assert sv.md1_wait_cdf(budget - d, d, rho) == pytest.approx(0.99, abs=1e-10)


# --- the batching policy, replayed exactly --------------------------------------------------------------

HAND = [0.0, 0.4, 0.5, 0.6, 3.0, 3.2, 6.0, 6.1, 6.2, 6.3]
HAND_SERVICE = [2.0, 0.5, 0.5, 1.0, 0.2]
# max batch 3, max wait 1: filled by the 3rd arrival at 0.5 | alone: its deadline 1.6 passed while busy |
# waits to its deadline 4.0 and takes 2 | filled at 6.2 | the last waits its deadline though none can come
HAND_SIZES, HAND_STARTS = [3, 1, 2, 3, 1], [0.5, 2.5, 4.0, 6.2, 7.3]
HAND_LATENCY = [2.5, 2.1, 2.0, 2.4, 1.5, 1.3, 1.2, 1.1, 1.0, 1.2]


def test_batcher_policy_on_a_hand_made_schedule():
    latency, sizes, starts = sv.batched_replay(HAND, HAND_SERVICE, max_batch=3, max_wait_s=1.0)
    assert sizes.tolist() == HAND_SIZES
    assert starts == pytest.approx(HAND_STARTS, abs=1e-12)
    assert latency == pytest.approx(HAND_LATENCY, abs=1e-12)
    # max wait 0: take what has arrived when the server is free, at most max batch
    latency, sizes, _ = sv.batched_replay(HAND[:5], [1.0, 1.0, 1.0], max_batch=3, max_wait_s=0.0)
    assert sizes.tolist() == [1, 3, 1] and latency == pytest.approx([1.0, 1.6, 1.5, 1.4, 1.0], abs=1e-12)
    with pytest.raises(ValueError, match="service_times"):
        sv.batched_replay(HAND, HAND_SERVICE[:4], max_batch=3, max_wait_s=1.0)


def test_fifo_replay_is_lindley():
    rng = np.random.default_rng(3)
    arrivals = np.cumsum(rng.standard_exponential(5000))
    service = rng.uniform(0.2, 1.6, 5000)
    lindley = sv.lindley_replay(arrivals, service)
    assert lindley == pytest.approx(exact_waits(arrivals, service) + service, abs=1e-9)
    assert sv.batched_replay(arrivals, service, 1, 0.0)[0] == pytest.approx(lindley, abs=1e-9)


def test_serve_follows_the_policy_on_a_fake_clock():
    """The loop itself (not a replay) on a clock that advances 0.1 us a read and by the service time."""
    now = [100.0]

    def fake_clock() -> float:
        now[0] += 1e-7
        return now[0]

    services = iter(HAND_SERVICE)

    def service(batch) -> None:
        now[0] += next(services) * 1e-3

    result = sv.serve(np.asarray(HAND) * 1e-3, service, max_batch=3, max_wait_s=1e-3, discard=0, clock=fake_clock)
    assert result.batch_size.tolist() == HAND_SIZES
    assert result.batch_start == pytest.approx(np.asarray(HAND_STARTS) * 1e-3, abs=1e-6)  # + clock ticks
    assert result.completion - result.arrival == pytest.approx(np.asarray(HAND_LATENCY) * 1e-3, abs=1e-6)
    assert result.n == 10 and result.p99 == pytest.approx(np.percentile(result.latencies, 99))


# --- statistics, verdicts and the search (simulated server, no clock) -----------------------------------


def test_backlog_throughput_and_verdicts():
    d = 1.0
    stable = ideal_result(sv.poisson_schedule(0.5, 3000, SEED), d)
    assert stable.backlog == 0 and stable.throughput >= 0.98 * stable.offered_rate
    assert sv.judge(stable, budget_p99_s=100.0) == ""
    assert "p99" in sv.judge(stable, budget_p99_s=1.5)
    overloaded = ideal_result(sv.poisson_schedule(1.25, 3000, SEED), d)  # 25 % more than it can serve
    assert overloaded.backlog > 100 and overloaded.queue_at_end >= overloaded.backlog
    why = sv.judge(overloaded, budget_p99_s=1e9)
    assert "throughput" in why and "backlog" in why and "p99" not in why
    assert "n=99 < 100" in sv.judge(ideal_result(sv.poisson_schedule(0.5, 599, SEED), d), 100.0)
    # on the hand schedule: an arrival finds waiting those arrived before it whose batch starts after it
    # (a batch starting at the very moment it arrives has started)
    ends = np.asarray(HAND_STARTS) + np.asarray(HAND_SERVICE)
    per_request = np.repeat(HAND_STARTS, HAND_SIZES), np.repeat(ends, HAND_SIZES)
    hand = sv.ServeResult(np.asarray(HAND), *per_request, *(np.asarray(HAND_STARTS),) * 2, ends, HAND_SIZES, 3, 1.0, 0)
    assert hand.waiting_at_arrival().tolist() == [0, 1, 0, 0, 0, 1, 0, 1, 0, 0]


def ideal_server(d: float):
    """measure_at(rate) of a perfect server with service time d: 8,000 measured requests after 500."""

    def measure_at(rate):
        return ideal_result(sv.poisson_schedule(rate, sv.requests_for(rate, 1.0, 500, 8000), SEED), d)

    return measure_at


def test_search_brackets_then_bisects_to_the_sample_boundary():
    d, budget = 1.0, 20.0
    theory = sv.md1_rate_for_p99(d, budget)

    measure_at = ideal_server(d)

    found = sv.sustainable_rate(measure_at, budget, theory / 2, theory * 2)
    good, bad = found.bracket
    assert found.rate == good and bad / good - 1 <= 0.02
    assert [p.rate for p in found.points] == sorted(p.rate for p in found.points)
    assert all(p.sustainable == (p.rate <= good) for p in found.points)  # common random numbers: monotone
    assert all(p.why_not.startswith("p99") for p in found.points if not p.sustainable)
    assert abs(found.rate / theory - 1) < 0.05 and len(found.points) <= 10
    capped = sv.sustainable_rate(measure_at, 1e9, theory / 2, theory / 1.5)
    assert capped.rate == theory / 1.5 and capped.bracket[1] is None
    nothing = sv.sustainable_rate(measure_at, 1.5, theory / 2, theory)
    assert nothing.rate is None and len(nothing.points) == 1


def test_search_from_a_start_above_or_below_the_answer_finds_the_same_rate():
    d, budget = 1.0, 20.0
    theory = sv.md1_rate_for_p99(d, budget)

    measure_at = ideal_server(d)

    plain = sv.sustainable_rate(measure_at, budget, theory / 16, theory * 2)
    for start in (theory * 1.7, theory / 3, theory / 100, theory * 50):
        found = sv.sustainable_rate(measure_at, budget, theory / 16, theory * 2, start=start)
        good, bad = found.bracket
        assert bad / good - 1 <= 0.02 and abs(found.rate / theory - 1) < 0.05
        assert all(p.sustainable == (p.rate <= good) for p in found.points)
        assert found.points[0].rate >= theory / 16 and found.points[-1].rate <= theory * 2
    near = sv.sustainable_rate(measure_at, budget, theory / 16, theory * 2, start=theory * 0.9)
    assert len(near.points) < len(plain.points)  # a start near the answer measures fewer points
    none = sv.sustainable_rate(measure_at, 1.5, theory / 4, theory, start=theory / 2)
    assert none.rate is None and none.bracket == (None, theory / 4)


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda: sv.poisson_schedule(0, 10), "rate=0"),
        (lambda: sv.poisson_schedule(-2.0, 10), "rate=-2.0"),
        (lambda: sv.requests_for(float("nan"), 1.0), "rate=nan"),
        (lambda: sv.serve([0.1, 0.2], busy_backend(0), max_batch=0), "max_batch=0"),
        (lambda: sv.serve([0.1, 0.2], busy_backend(0), max_wait_s=-0.001), "max_wait_s=-0.001"),
        (lambda: sv.serve([0.1, 0.2], busy_backend(0), discard=2), "discard=2"),
        (lambda: sv.serve([0.2, 0.1], busy_backend(0), discard=0), "schedule="),
        (lambda: sv.batched_replay([0.0], [1.0], max_batch=2.5, max_wait_s=0), "max_batch=2.5"),
        (lambda: sv.md1_mean_sojourn(1e-3, 1.0), "rho=1.0"),
        (lambda: sv.md1_sojourn_quantile(1e-3, 0.5, 1.0), "q=1.0"),
        (lambda: sv.md1_rate_for_p99(1e-3, 0), "budget=0"),
        (lambda: sv.md1_rate_for_p99(1e-3, 5e-4), "budget=0.0005: must be > D"),
        (lambda: sv.md1_rate_for_p99(1e-3, 10.0), "budget=10.0"),
        (lambda: sv.md1_sojourn_quantile(1e-3, 1 - 1e-7, 0.99), "rho=0.9999999"),
        (lambda: sv.md1_wait_cdf(100.0, 1e-3, 0.5), "t=100.0"),
        (lambda: sv.sustainable_rate(lambda r: None, 0, 1.0, 2.0), "budget_p99_s=0"),
        (lambda: sv.sustainable_rate(lambda r: None, 0.01, 0, 2.0), "lo=0"),
        (lambda: sv.sustainable_rate(lambda r: None, 0.01, 3.0, 2.0), "hi=2.0"),
    ],
)
def test_bad_input_is_a_one_line_value_error_naming_the_field(call, field):
    with pytest.raises(ValueError) as err:
        call()
    assert str(err.value).startswith(field) and "must be" in str(err.value) and "\n" not in str(err.value)


# --- the real clock: the loop against a busy-waiting backend --------------------------------------------


class Meter:
    """CPU used by other processes (cores) and this process's involuntary context switches over a run."""

    def __enter__(self):
        self._proc = psutil.Process()
        self._t, self._busy, self._self = clock(), self._machine(), self._own()
        self._switches = self._proc.num_ctx_switches().involuntary
        return self

    def __exit__(self, *exc):
        wall = clock() - self._t
        self.others = max(0.0, self._machine() - self._busy - (self._own() - self._self)) / wall
        self.preempted = (self._proc.num_ctx_switches().involuntary - self._switches) / wall

    @staticmethod
    def _machine() -> float:
        t = psutil.cpu_times()
        return sum(getattr(t, k, 0.0) for k in ("user", "nice", "system", "irq", "softirq", "steal"))

    def _own(self) -> float:
        t = self._proc.cpu_times()
        return t.user + t.system

    @property
    def contended(self) -> bool:
        return self.others > 0.3 or self.preempted > 20  # 2-14/s idle here, 25-70/s beside a busy one

    def __str__(self) -> str:
        return f"others used {self.others:.2f} cores, {self.preempted:.1f} preemptions/s"


def wait_for_quiet(max_s: float = 30.0) -> None:
    end = clock() + max_s
    while clock() < end:
        with Meter() as m:
            time.sleep(1.0)
        if m.others < 0.3:
            return


def measure(run, passes):
    """run() -> value; measured again once, after a quiet moment, when it missed on a busy machine."""
    with Meter() as meter:
        value = run()
    if not passes(value) and meter.contended:
        wait_for_quiet()
        with Meter() as meter:
            value = run()
    return value, meter


RUNS: dict = {}  # the M/D/1 runs, shared by the mean and the Lindley tests
# Latency against theory is a timing target: it holds on a quiet machine (+1.4..+3.1 % of M/D/1 there) and
# fails beside a neighbour using a fifth of a core. Such targets belong in a benchmark run on a quiet
# machine, not in CI's unit tests: `scripts/serving-theory.sh` runs them (HARNESS_TIMING_TESTS=1). The replay
# tests below compare the loop with its own measured service times and run everywhere.
TIMING = pytest.mark.skipif(
    os.environ.get("HARNESS_TIMING_TESTS") != "1",
    reason="a timing target: run scripts/serving-theory.sh on a quiet machine",
)
MD1_CASES = {0.5: 0.25e-3, 0.8: 0.5e-3}  # rho: D (20,500 requests: 10 s and 13 s)


def md1_run(rho):
    if rho not in RUNS:
        d = MD1_CASES[rho]
        schedule = sv.poisson_schedule(rho / d, 20_500, SEED)
        theory = sv.md1_mean_sojourn(d, rho)
        RUNS[rho] = measure(
            lambda: sv.serve(schedule, busy_backend(d), discard=500),
            lambda r: abs(r.mean / theory - 1) < 0.05,
        )
    return RUNS[rho]


@TIMING
@pytest.mark.slow
@pytest.mark.parametrize("rho", sorted(MD1_CASES))
def test_mean_latency_is_md1(rho):
    d = MD1_CASES[rho]
    result, meter = md1_run(rho)
    theory = sv.md1_mean_sojourn(d, rho)
    ideal = ideal_result(result.arrival, d).mean
    said = (
        f"mean {result.mean * 1e3:.4f} ms vs M/D/1 {theory * 1e3:.4f} ms ({result.mean / theory - 1:+.2%}); "
        f"this schedule with exact D: {ideal / theory - 1:+.2%}; median occupancy - D "
        f"{(np.median(result.service_times) - d) * 1e6:.1f} us; {meter}"
    )
    print(f"rho {rho}, D {d * 1e3} ms: {said}")
    assert result.n == 20_000
    assert abs(result.mean / theory - 1) < 0.05, said


@pytest.mark.slow
@pytest.mark.parametrize("rho", sorted(MD1_CASES))
def test_every_latency_matches_lindley(rho):
    result, meter = md1_run(rho)
    measured = result.completion - result.arrival
    worst = np.abs(measured - sv.lindley_replay(result.arrival, result.service_times)).max()
    # for the record: with the backend's time alone, the loop's own ~1 us a batch accumulates over busy periods
    backend_only = np.abs(measured - sv.lindley_replay(result.arrival, result.backend_times)).max()
    print(
        f"rho {rho}: worst |measured - Lindley| {worst * 1e3:.2e} ms over {len(measured)} requests "
        f"({backend_only * 1e3:.3f} ms with backend times only); {meter}"
    )
    assert worst < 0.5e-3, f"worst {worst * 1e3:.4f} ms; {meter}"
    # the loop's own time per batch is small, so the spin does not distort service times
    d = MD1_CASES[rho]
    assert np.median(result.service_times) - d < 20e-6 and np.median(result.backend_times) - d < 20e-6, meter


@pytest.mark.slow
def test_batched_latencies_match_the_policy_replay():
    """Max batch 8, max wait 1 ms, D(b) = 0.2 ms + b * 0.05 ms, 4,000 requests/s (10,500 requests)."""
    d0, d1, max_wait = 0.2e-3, 0.05e-3, 1e-3
    schedule = sv.poisson_schedule(4000.0, 10_500, SEED)

    def mismatch(result):
        latency, sizes, _ = sv.batched_replay(result.arrival, result.service_times, 8, max_wait)
        same = len(sizes) == len(result.batch_size) and np.array_equal(sizes, result.batch_size)
        return same, np.abs(result.completion - result.arrival - latency).max()

    result, meter = measure(
        lambda: sv.serve(schedule, busy_backend(d0, d1), max_batch=8, max_wait_s=max_wait),
        lambda r: mismatch(r)[0] and mismatch(r)[1] < 0.5e-3,
    )
    same, worst = mismatch(result)
    print(f"same batches {same}, worst {worst * 1e3:.2e} ms, mean batch {result.batch_size.mean():.2f}; {meter}")
    assert same and worst < 0.5e-3, f"same batches {same}, worst {worst * 1e3:.4f} ms; {meter}"
    assert 1 < result.batch_size.mean() < 8 and result.batch_size.max() == 8  # the batcher did batch
    assert np.median(result.backend_times - (d0 + d1 * result.batch_size)) < 20e-6, meter


@TIMING
@pytest.mark.slow
def test_search_finds_the_md1_rate_for_the_p99_budget():
    """D 0.25 ms, budget 20 D = 5 ms (rho* 0.886), 8,000 measured requests a point, seed 0 at every rate."""
    d, budget = 0.25e-3, 5e-3
    theory = sv.md1_rate_for_p99(d, budget)

    def search(measure_at):
        return sv.sustainable_rate(measure_at, budget, theory / 2, theory * 1.5)

    def schedule(rate):
        return sv.poisson_schedule(rate, sv.requests_for(rate, 1.0, 500, 8000), SEED)

    ideal = search(lambda rate: ideal_result(schedule(rate), d)).rate
    found, meter = measure(
        lambda: search(lambda rate: sv.serve(schedule(rate), busy_backend(d))),
        lambda f: f.rate is not None and abs(f.rate / theory - 1) < 0.05,
    )
    curve = ", ".join(f"{p.rate:.0f}/s p99 {p.p99 * 1e3:.2f} ms{'' if p.sustainable else ' x'}" for p in found.points)
    said = (
        f"found {found.rate} vs M/D/1 {theory:.1f}/s ({(found.rate or math.nan) / theory - 1:+.2%}); "
        f"exact-D search on the same schedules: "
        f"{ideal / theory - 1:+.2%}; {meter}; {curve}"
    )
    print(said)
    assert found.rate is not None and abs(found.rate / theory - 1) < 0.05, said
