"""The `server` scenario's core: a Poisson schedule, a dynamic batcher served by ONE thread, M/D/1 theory,
replays of the batching policy, and the search for the highest rate served within a p99 budget.

Pure stdlib + numpy (and its M/D/1 theory, `harness.engine.queueing`), so it runs against a fake backend in tests.

Definitions (all times in seconds, measured from the serve loop's origin):
- *Schedule*: arrival times drawn before the run (`poisson_schedule`); a request's latency is counted from
  its scheduled arrival, so a loop that notices an arrival late cannot hide the delay.
- *Policy* (`_next_batch`): when the server is free at `free`, the oldest waiting request `i` decides. The
  batch starts at max(free, arrival[i]); if fewer than `max_batch` have arrived by then and max_wait > 0, it
  starts at the earlier of arrival[i] + max_wait and the arrival that fills the batch (never earlier than
  free). It takes the arrivals up to that moment, at most `max_batch`. max_batch 1 / max_wait 0 is FIFO.
- *Batch start* is that policy moment; *service time* = completion - start: the server's occupancy, which
  includes the loop's own bookkeeping between batches (microseconds) and a late wake-up, both real time
  during which the server could not serve. `backend_times` (completion - the clock read just before the
  call) is the backend alone. Because the loop's "free" is the real completion, replaying the policy from
  the schedule and the service times reproduces the run request by request.
- *Idle waiting*: sleep until SPIN_S before the moment, then spin on the clock. Sleep alone overshoots by
  tens of microseconds (ms on a busy machine), which would count as latency; spinning only ever happens
  while the server is idle, never during a service, so it cannot distort service times. The spin costs at
  most SPIN_S of CPU per idle gap.
- *Several instances* (M/D/k, later): the policy only needs the time a server is free, so a k-server loop
  keeps k free times (a heap) and hands each batch to the earliest-free instance's worker, and the replay
  does the same with k free times; `serve` is the k=1 case, calling the backend in the serving thread.
"""

from __future__ import annotations

import math
import time
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from harness.engine.queueing import (  # noqa: F401 - the theory, where callers of serving find it
    MAX_SERVICES,
    md1_mean_sojourn,
    md1_rate_for_p99,
    md1_sojourn_quantile,
    md1_wait_cdf,
    positive,
)
from harness.engine.queueing import (
    bad as invalid,
)

SPIN_S = 0.002  # spin (don't sleep) for the last 2 ms before a scheduled moment
LEAD_S = 0.01  # the origin is set this far after serve() starts, so the first arrival is not already late
TAIL_FRACTION = 0.1  # backlog: the last tenth of the arrivals
MIN_N = 100  # a rate point needs at least this many measured requests for its p99
THROUGHPUT_FRACTION = 0.98


def _check_batcher(max_batch: int, max_wait_s: float) -> None:
    if isinstance(max_batch, bool) or not isinstance(max_batch, (int, np.integer)) or max_batch < 1:
        raise invalid("max_batch", max_batch, "an integer >= 1")
    if not (max_wait_s >= 0 and math.isfinite(max_wait_s)):
        raise invalid("max_wait_s", max_wait_s, "a finite number of seconds >= 0")


def poisson_schedule(rate: float, n: int, seed: int = 0) -> np.ndarray:
    """`n` arrival times of a Poisson process at `rate` per second. The same seed at another rate gives the
    same draws scaled by 1/rate (common random numbers), so latency grows monotonically with the rate."""
    positive("rate", rate)
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise invalid("n", n, "an integer >= 1")
    return np.cumsum(np.random.default_rng(seed).standard_exponential(int(n)) / rate)


def requests_for(rate: float, duration_s: float, discard: int = 500, min_measured: int = 1000) -> int:
    """Requests to schedule at `rate` for about `duration_s`, never fewer than discard + min_measured."""
    positive("rate", rate)
    positive("duration_s", duration_s)
    return max(int(discard) + int(min_measured), math.ceil(rate * duration_s))


def _next_batch(arrivals: Sequence[float], i: int, free: float, max_batch: int, max_wait: float) -> tuple[float, int]:
    """The policy: (start, j) for the batch of requests i..j-1 when the server is free at `free`."""
    n = len(arrivals)
    cap = min(i + max_batch, n)
    start = arrivals[i] if arrivals[i] > free else free
    j = bisect_right(arrivals, start, i, cap)
    if j < i + max_batch and max_wait > 0:
        due = arrivals[i] + max_wait
        if i + max_batch - 1 < n and arrivals[i + max_batch - 1] < due:
            due = arrivals[i + max_batch - 1]
        if due > start:
            start = due
            j = bisect_right(arrivals, start, i, cap)
    return start, j


def _wait_until(target: float, clock: Callable[[], float]) -> None:
    remaining = target - clock()
    if remaining > SPIN_S:
        time.sleep(remaining - SPIN_S)
    while clock() < target:
        pass


@dataclass
class ServeResult:
    """One run: per-request and per-batch records (seconds from the origin) and the statistics over the
    requests after the first `discard`. `backlog` is the fewest requests found waiting (arrived, batch not
    started) by any arrival in the last tenth of the schedule: a server that keeps up catches up at some
    moment near the end; an overloaded one never does. `queue_at_end` is what the last arrival found."""

    arrival: np.ndarray = field(repr=False)
    start: np.ndarray = field(repr=False)  # each request's batch start
    completion: np.ndarray = field(repr=False)
    batch_start: np.ndarray = field(repr=False)
    batch_call: np.ndarray = field(repr=False)  # clock read just before service() was called
    batch_end: np.ndarray = field(repr=False)
    batch_size: np.ndarray = field(repr=False)
    max_batch: int
    max_wait_s: float
    discard: int
    latencies: np.ndarray = field(init=False, repr=False)
    n: int = field(init=False)
    mean: float = field(init=False)
    p50: float = field(init=False)
    p90: float = field(init=False)
    p99: float = field(init=False)
    offered_rate: float = field(init=False)
    throughput: float = field(init=False)
    backlog: int = field(init=False)
    queue_at_end: int = field(init=False)

    def __post_init__(self) -> None:
        self.latencies = (self.completion - self.arrival)[self.discard :]
        self.n = len(self.latencies)
        self.mean = float(self.latencies.mean())
        self.p50, self.p90, self.p99 = (float(v) for v in np.percentile(self.latencies, [50, 90, 99]))
        # over the measured requests: offered = their count over their arrival span, achieved = over the
        # span from the first of them arriving to the last completing (so the ratio is the drain's share)
        first, count = self.arrival[self.discard], self.n
        span = self.arrival[-1] - first
        self.offered_rate = float(count / span) if span > 0 else math.inf
        self.throughput = float(count / (self.completion.max() - first))
        waiting = self.waiting_at_arrival()
        self.backlog = int(waiting[-max(1, int(len(waiting) * TAIL_FRACTION)) :].min())
        self.queue_at_end = int(waiting[-1])

    def waiting_at_arrival(self) -> np.ndarray:
        """For each request, how many earlier requests had arrived but not started when it arrived."""
        started_before = np.searchsorted(self.start, self.arrival, side="right")  # starts are FIFO-ordered
        return np.arange(len(self.arrival)) - np.minimum(started_before, np.arange(len(self.arrival)))

    @property
    def service_times(self) -> np.ndarray:
        """Per batch: completion - start, the server's occupancy (what the replays take)."""
        return self.batch_end - self.batch_start

    @property
    def backend_times(self) -> np.ndarray:
        """Per batch: the backend call alone."""
        return self.batch_end - self.batch_call


def serve(
    schedule: Sequence[float],
    service: Callable[[range], object],
    max_batch: int = 1,
    max_wait_s: float = 0.0,
    discard: int = 500,
    clock: Callable[[], float] = time.perf_counter,
) -> ServeResult:
    """Serve the scheduled requests in this thread: `service(range(i, j))` per batch (the harness encodes
    texts[i:j]). `clock` must tick in real seconds (long idle waits use time.sleep)."""
    arrivals = np.asarray(schedule, dtype=float)
    _check_batcher(max_batch, max_wait_s)
    if arrivals.ndim != 1 or len(arrivals) == 0 or not np.all(np.isfinite(arrivals)):
        raise invalid("schedule", f"<{arrivals.shape} array>", "a non-empty 1-D array of finite times")
    if arrivals[0] < 0 or np.any(np.diff(arrivals) < 0):
        raise invalid("schedule", f"<{len(arrivals)} times>", "non-decreasing times >= 0")
    if isinstance(discard, bool) or not isinstance(discard, (int, np.integer)) or not 0 <= discard < len(arrivals):
        raise invalid("discard", discard, f"an integer in [0, {len(arrivals)}) (the schedule's length)")
    n = len(arrivals)
    origin = clock() + LEAD_S
    due = (arrivals + origin).tolist()  # absolute clock times: no subtraction inside the loop
    starts, calls, ends, sizes = [], [], [], []
    free, i = -math.inf, 0
    while i < n:
        start, j = _next_batch(due, i, free, max_batch, max_wait_s)
        if start > free:  # idle (or waiting for the batch to fill): the moment is a scheduled one
            _wait_until(start, clock)
        call = clock()
        service(range(i, j))
        free = clock()
        starts.append(start)
        calls.append(call)
        ends.append(free)
        sizes.append(j - i)
        i = j
    size = np.asarray(sizes)
    b_start, b_end = np.asarray(starts) - origin, np.asarray(ends) - origin
    return ServeResult(
        arrival=arrivals,
        start=np.repeat(b_start, size),
        completion=np.repeat(b_end, size),
        batch_start=b_start,
        batch_call=np.asarray(calls) - origin,
        batch_end=b_end,
        batch_size=size,
        max_batch=int(max_batch),
        max_wait_s=float(max_wait_s),
        discard=int(discard),
    )


# --- replays -------------------------------------------------------------------------------------------


def lindley_replay(arrivals: Sequence[float], service_times: Sequence[float]) -> np.ndarray:
    """Latency of each request of a FIFO single server (max batch 1): W' = max(0, W + S - A)."""
    a, s = np.asarray(arrivals, dtype=float), np.asarray(service_times, dtype=float)
    if a.shape != s.shape:
        raise invalid("service_times", f"<{s.size} values>", f"one per arrival ({a.size})")
    wait = np.zeros(len(a))
    for k in range(1, len(a)):
        wait[k] = max(0.0, wait[k - 1] + s[k - 1] - (a[k] - a[k - 1]))
    return wait + s


def batched_replay(
    arrivals: Sequence[float], service_times: Sequence[float], max_batch: int, max_wait_s: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Replay the batching policy from the arrivals and the per-batch service times, in batch order:
    (latency per request, size per batch, start per batch)."""
    _check_batcher(max_batch, max_wait_s)
    a = [float(x) for x in arrivals]
    s = [float(x) for x in service_times]
    latency, sizes, starts = np.empty(len(a)), [], []
    free, i = -math.inf, 0
    while i < len(a):
        if len(sizes) == len(s):
            raise invalid("service_times", f"<{len(s)} values>", "one per batch the policy forms (too few)")
        start, j = _next_batch(a, i, free, max_batch, max_wait_s)
        free = start + s[len(sizes)]
        latency[i:j] = free - np.asarray(a[i:j])
        sizes.append(j - i)
        starts.append(start)
        i = j
    return latency, np.asarray(sizes), np.asarray(starts)


# --- M/D/1 theory --------------------------------------------------------------------------------------


# --- the sustainable-rate search -----------------------------------------------------------------------


@dataclass
class RatePoint:
    rate: float  # offered (nominal) rate, requests per second
    p99: float
    n: int
    throughput: float
    backlog: int
    sustainable: bool
    why_not: str  # "" when sustainable
    offered: float = math.nan  # the schedule's actual arrivals per second


@dataclass
class RateSearch:
    rate: float | None  # the highest sustainable rate tried; None when even `lo` was not
    budget_p99_s: float
    bracket: tuple[float | None, float | None]  # (highest sustainable, lowest unsustainable above it) tried
    points: list[RatePoint]  # sorted by rate: the latency-vs-rate curve


def judge(result: ServeResult, budget_p99_s: float, min_n: int = MIN_N) -> str:
    """Why a run is not sustainable ("" when it is): p99 within budget, throughput >= 98 % of offered,
    backlog below one batch, and enough requests for a p99."""
    why = []
    if result.n < min_n:
        why.append(f"n={result.n} < {min_n} measured requests")
    if not result.p99 <= budget_p99_s:
        why.append(f"p99 {result.p99 * 1e3:.3f} ms > budget {budget_p99_s * 1e3:.3f} ms")
    if not result.throughput >= THROUGHPUT_FRACTION * result.offered_rate:
        why.append(f"throughput {result.throughput:.1f}/s < 98% of offered {result.offered_rate:.1f}/s")
    if result.backlog >= result.max_batch:
        why.append(f"backlog {result.backlog} >= max batch {result.max_batch}")
    return "; ".join(why)


def held_rate(points: dict[float, ServeResult], budget_p99_s: float, min_n: int = MIN_N
              ) -> tuple[float | None, float | None]:  # fmt: skip
    """(held, above): the highest measured rate at or below which every measured point met the budget (None
    when the lowest did not), and the lowest measured rate above it. Points are shared by a shape's budgets, so
    a budget's answer counts every point, not only its own search's: a point at 67 req/s within 50 ms is
    within 100 ms too, and a point at 44 req/s over 100 ms (noise: p99 rests on a few slow requests) caps both.
    The rule is monotone in the budget (a looser budget never holds less) and conservative: no rate is claimed
    above a rate that failed."""
    held = None
    for rate in sorted(points):
        if judge(points[rate], budget_p99_s, min_n):
            return held, rate
        held = rate
    return held, None


def _at_floor(points: list[RatePoint], budget_p99_s: float) -> bool:
    """The last two points (the rate halved, both served, both over the budget) say no lower rate meets the
    budget: halving the load at least halves the queueing part of the latency (M/D/1: ~rho / (1 - rho)), so all
    further halvings together take off at most the last drop; stop when the budget is over twice that away
    (lower rates are the slow points to measure)."""
    if len(points) < 2:
        return False
    a, b = points[-2], points[-1]
    served = all(p.throughput >= THROUGHPUT_FRACTION * p.offered for p in (a, b))
    return b.rate < a.rate and served and b.p99 > budget_p99_s and b.p99 - budget_p99_s > 2 * (a.p99 - b.p99)


def sustainable_rate(
    measure_at: Callable[[float], ServeResult],
    budget_p99_s: float,
    lo: float,
    hi: float,
    rel_tol: float = 0.02,
    growth: float = 2.0,
    min_n: int = MIN_N,
    start: float | None = None,
) -> RateSearch:
    """The highest rate in [lo, hi] that `measure_at(rate)` serves sustainably: from `start` (default lo,
    clamped to [lo, hi]) multiply by `growth` while sustainable (capped at hi), or, when `start` is not,
    divide by it until a rate is (never below lo); then bisect geometrically until bad/good - 1 <= rel_tol.
    A start near the answer saves the low rates' points, the slowest to measure (a point needs its requests).
    `measure_at` should draw its schedule with one seed at every rate (see `poisson_schedule`) and schedule
    `requests_for(rate, duration)` requests so each p99 rests on >= 1,000 of them."""
    positive("budget_p99_s", budget_p99_s)
    positive("lo", lo)
    if not (hi >= lo and math.isfinite(hi)):
        raise invalid("hi", hi, f"a finite rate >= lo={lo!r}")
    positive("rel_tol", rel_tol)
    if not growth > 1:
        raise invalid("growth", growth, "> 1")
    points: list[RatePoint] = []

    def ok(rate: float) -> bool:
        result = measure_at(rate)
        why = judge(result, budget_p99_s, min_n)
        points.append(RatePoint(rate, result.p99, result.n, result.throughput, result.backlog, not why, why,
                                result.offered_rate))  # fmt: skip
        return not why

    if start is not None:
        positive("start", start)
    good, bad = None, None
    rate = min(max(start or lo, lo), hi)
    while good is None:  # down from the start until a rate is sustainable (or lo is not)
        if ok(rate):
            good = rate
        else:
            bad = rate
            if rate <= lo or _at_floor(points, budget_p99_s):
                break
            rate = max(rate / growth, lo)
    while good is not None and bad is None:  # up while sustainable (capped at hi)
        if good >= hi:
            break
        rate = min(good * growth, hi)
        if ok(rate):
            good = rate
        else:
            bad = rate
    if good is not None and bad is not None:
        while bad / good - 1 > rel_tol:
            mid = math.sqrt(good * bad)
            if ok(mid):
                good = mid
            else:
                bad = mid
    return RateSearch(good, budget_p99_s, (good, bad), sorted(points, key=lambda p: p.rate))
