"""M/D/1 theory for the `server` scenario (`harness.engine.serving`): the mean sojourn time, the waiting-time
distribution (Erlang's formula, evaluated with positive terms only so it stays exact far into the tail),
its quantiles, and the arrival rate whose p99 meets a latency budget. The real-clock tests hold the serving
loop to these numbers."""

from __future__ import annotations

import math

import numpy as np
from scipy import optimize, stats

MAX_SERVICES = 20_000  # the M/D/1 functions look at most this many service times ahead (O(k^2))


def bad(name: str, value: object, allowed: str) -> ValueError:
    """The one-line error for a bad argument: its name, the value given and what is allowed."""
    return ValueError(f"{name}={value!r}: must be {allowed}")


def positive(name: str, value: float) -> None:
    if not (value > 0 and math.isfinite(value)):
        raise bad(name, value, "a finite number > 0")


def _check_md1(D: float, rho: float) -> None:
    positive("D", D)
    if not 0 <= rho < 1:
        raise bad("rho", rho, "in [0, 1) (utilisation; 1 or more never settles)")


def md1_mean_sojourn(D: float, rho: float) -> float:
    """Mean time in an M/D/1 system (wait + service): D + rho D / (2 (1 - rho))."""
    _check_md1(D, rho)
    return D + rho * D / (2 * (1 - rho))


def _md1_number(rho: float, kmax: int) -> np.ndarray:
    """P(N = 0..kmax) for the number in an M/D/1 system, by level crossing: p[j+1] a0 = p0 A>j + sum p[i] A>j-i+1,
    positive terms only, so tail values keep their relative precision (the textbook recursion subtracts; its
    values below ~1e-15 are rounding noise)."""
    tail = stats.poisson.sf(np.arange(kmax + 1), rho)  # P(A > m), arrivals during one service
    p = np.zeros(kmax + 1)
    p[0] = 1 - rho
    for j in range(kmax):
        p[j + 1] = (p[0] * tail[j] + np.dot(p[1 : j + 1], tail[j:0:-1])) * math.exp(rho)
    return p


def _md1_wait_cdf(t: float, D: float, rho: float, p: np.ndarray) -> float:
    if t < 0:
        return 0.0
    k = int(t // D)
    s = (k + 1) * D - t  # in (0, D]
    q = p[1 : k + 2].copy()  # max(N, 1) - 1 = m
    q[0] += p[0]
    return float(np.dot(q, stats.poisson.cdf(np.arange(k, -1, -1), rho * s / D)))


def md1_wait_cdf(t: float | np.ndarray, D: float, rho: float) -> float | np.ndarray:
    """P(Wq <= t) in M/D/1 (t a number or an array). Erlang's sum (1-rho) sum_k (lam(kD-t))^k/k! e^{-lam(kD-t)}
    alternates and cancels for t >> D, so this evaluates the same function with positive terms: for t = kD + u,
    0 <= u < D, a request waits at most t iff max(N, 1) + A <= k + 1, N the number in system D - u before it
    arrives (stationary) and A ~ Poisson(lam (D - u)) the arrivals since (independent of N)."""
    _check_md1(D, rho)
    ts = np.asarray(t, dtype=float)
    if ts.size and ts.max() > MAX_SERVICES * D:
        raise bad("t", float(ts.max()), f"<= {MAX_SERVICES} D = {MAX_SERVICES * D!r} s")
    p = _md1_number(rho, max(0, int(ts.max() // D)) + 1)
    out = np.array([_md1_wait_cdf(x, D, rho, p) for x in ts.ravel()]).reshape(ts.shape)
    return float(out) if out.ndim == 0 else out


def md1_sojourn_quantile(D: float, rho: float, q: float) -> float:
    """The q-quantile of the M/D/1 sojourn time (wait + D)."""
    _check_md1(D, rho)
    if not 0 < q < 1:
        raise bad("q", q, "in (0, 1)")
    if 1 - rho >= q:  # the atom at zero wait covers q
        return D
    hi = D
    while _md1_wait_cdf(hi, D, rho, _md1_number(rho, int(hi // D) + 1)) < q:
        hi *= 2
        if hi > MAX_SERVICES * D:
            raise bad("rho", rho, f"further from 1 for q={q!r} (the quantile is beyond {MAX_SERVICES} D)")
    p = _md1_number(rho, int(hi // D) + 1)
    return D + optimize.brentq(lambda t: _md1_wait_cdf(t, D, rho, p) - q, 0.0, hi, xtol=1e-12 * D, rtol=1e-12)


def md1_rate_for_p99(D: float, budget: float, q: float = 0.99) -> float:
    """The arrival rate (per second) whose M/D/1 q-quantile sojourn equals `budget`."""
    positive("D", D)
    positive("budget", budget)
    if budget <= D:
        raise bad("budget", budget, f"> D={D!r} (no rate serves a request faster than its service)")
    if budget > MAX_SERVICES / 4 * D:
        raise bad("budget", budget, f"<= {MAX_SERVICES // 4} D = {MAX_SERVICES / 4 * D!r} s")
    lo, hi = 1 - q, 0.5
    while md1_sojourn_quantile(D, hi, q) < budget:
        lo, hi = hi, 1 - (1 - hi) / 2
    rho = optimize.brentq(lambda r: md1_sojourn_quantile(D, r, q) - budget, lo, hi, xtol=1e-10, rtol=1e-10)
    return rho / D
