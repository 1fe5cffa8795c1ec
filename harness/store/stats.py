"""How far a second sweep on this machine would move a number: paired per-round ratios, a pooled
between-process spread, rerun (prediction) intervals, and the tie rule.

The model (README, "How numbers are kept honest"):

* A round measures every configuration of a group (model, dataset, batch size, threads, machine) in its own
  fresh process, torch-fp32 included. A configuration's per-round log ratio l_r = log(value_r / torch-fp32_r)
  cancels what moved the whole round (the host's phase), and its estimate is exp(mean over its rounds of l_r).
* The noise is between processes: l_r varies from round to round by more than one process's passes vary.
  Its variance s^2 is pooled over the configurations measured in two or more rounds,
  s^2 = sum_c sum_r (l_cr - mean_c)^2 / sum_c (n_c - 1), with those degrees of freedom, within a scope
  (run, machine, model, batch size, threads, device, versions; the whole run and machine when that scope has
  fewer than MIN_DF). A configuration measured in one round borrows it.
* A *rerun* interval is where a second sweep's estimate, itself a mean of n rounds, would land: the difference
  of two independent means of n has variance 2 s^2 / n, so the 95 % interval is
  exp(mean +- t(0.975, df) * s * sqrt(2 / n)): a prediction interval, sqrt(2) wider than the interval for the
  mean. Calibration is checked by three sweeps back to back (README).
* Two configurations are compared directly, per round: log(A_r / B_r) (torch-fp32 cancels) over their common
  rounds, with the same s (Var(l_A - l_B) = Var(l) when every process has the same noise). They are *tied*
  when the rerun interval of that ratio contains 1 or lies within +-TIE_BAND; a comparison is *decided* when the
  interval excludes 1 or lies within +-DECIDED_BAND (a stated tie), *undecided* otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from scipy import stats as st

LEVEL = 0.95
TIE_BAND = 0.02  # a paired ratio inside 1 +- 2 % is a tie whatever its interval
DECIDED_BAND = 0.05  # a tie is settled once the paired interval lies inside 1 +- 5 %
MIN_DF = 3  # fewer degrees of freedom in a scope: pool over the whole run and machine instead
MIN_P99_SAMPLES = 100  # a p99 from fewer requests is not reported


@dataclass(frozen=True)
class Spread:
    """The pooled between-round standard deviation of log ratios and its degrees of freedom."""

    s: float
    df: int

    @property
    def t(self) -> float:
        return float(st.t.ppf(0.5 + LEVEL / 2, self.df))

    def half_width(self, n: int) -> float:
        """The 95 % rerun interval's half-width (log scale) for a mean of n rounds: t * s * sqrt(2 / n)."""
        return self.t * self.s * math.sqrt(2.0 / n)


def pooled(groups: Iterable[Iterable[float]]) -> Spread | None:
    """The spread of log values around each group's own mean, pooled over groups of two or more."""
    ss, df = 0.0, 0
    for values in groups:
        values = [v for v in values if math.isfinite(v)]
        if len(values) < 2:
            continue
        mean = sum(values) / len(values)
        ss += sum((v - mean) ** 2 for v in values)
        df += len(values) - 1
    if df == 0:
        return None
    return Spread(math.sqrt(ss / df), df)


def log_ratios(values: Mapping[int, float], base: Mapping[int, float]) -> dict[int, float]:
    """log(value_r / base_r) for every round both have a positive value in."""
    out = {}
    for r, v in values.items():
        b = base.get(r)
        if v and b and v > 0 and b > 0 and math.isfinite(v) and math.isfinite(b):
            out[r] = math.log(v / b)
    return out


@dataclass(frozen=True)
class Estimate:
    """A ratio (estimate) with its 95 % rerun interval, from n paired rounds."""

    ratio: float
    low: float
    high: float
    n: int

    def contains_one(self) -> bool:
        return self.low <= 1.0 <= self.high

    def within(self, band: float) -> bool:
        return self.low >= 1.0 - band and self.high <= 1.0 + band

    def within_of_itself(self, band: float) -> bool:
        """The interval reaches no further than +-band (relative) from the estimate."""
        return self.low >= self.ratio * (1.0 - band) and self.high <= self.ratio * (1.0 + band)

    def inverse(self) -> Estimate:
        """B / A for this A / B: the same rounds, the interval's bounds swapped."""
        return Estimate(1.0 / self.ratio, 1.0 / self.high, 1.0 / self.low, self.n)

    @property
    def tied(self) -> bool:
        return self.contains_one() or self.within(TIE_BAND)

    @property
    def decided(self) -> bool:
        return not self.contains_one() or self.within(DECIDED_BAND)


def rerun_interval(logs: Mapping[int, float] | Iterable[float], spread: Spread | None) -> Estimate | None:
    """The estimate exp(mean log) and where a second sweep with as many rounds would put it (None: no
    rounds). Without a spread (nothing measured twice anywhere) the interval is unknown: low = high = nan."""
    values = list(logs.values()) if isinstance(logs, Mapping) else list(logs)
    if not values:
        return None
    n = len(values)
    mean = sum(values) / n
    if spread is None:
        return Estimate(math.exp(mean), math.nan, math.nan, n)
    half = spread.half_width(n)
    return Estimate(math.exp(mean), math.exp(mean - half), math.exp(mean + half), n)


def rounds_to_settle(e: Estimate, spread: Spread) -> int:
    """The rounds a comparison needs before its rerun interval around the ratio measured so far excludes 1
    (half-width below |log ratio|) or lies within +-DECIDED_BAND (|log ratio| + half-width inside the band's
    log): with half(n) = t s sqrt(2 / n), the least n of either; e.g. 1.02x at s 0.05 (40 df) needs 25."""
    m = abs(math.log(e.ratio))
    ts2 = 2.0 * (spread.t * spread.s) ** 2
    band = math.log(1.0 + DECIDED_BAND)
    need = math.floor(ts2 / m**2) + 1 if m > 0 else math.inf
    if m < band:
        need = min(need, math.ceil(ts2 / (band - m) ** 2 - 1e-9))
    return max(int(need), 1)


def paired(a: Mapping[int, float], b: Mapping[int, float], spread: Spread | None) -> Estimate | None:
    """A / B from their common rounds (values per round, e.g. throughput), with its rerun interval."""
    return rerun_interval(log_ratios(a, b), spread)


def span(low: object, high: object) -> str:
    """' (2.21-2.50)': an interval's bounds as every table and answer prints them; '' where either is missing."""
    try:
        low, high = float(low), float(high)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return ""
    return f" ({low:.2f}-{high:.2f})" if math.isfinite(low) and math.isfinite(high) else ""


def fmt(e: Estimate | None, unit: str = "x") -> str:
    """'2.35x (2.21-2.50)'; without an interval '2.35x (interval unknown)'."""
    if e is None:
        return "unknown"
    if math.isnan(e.low):
        return f"{e.ratio:.2f}{unit} (interval unknown)"
    return f"{e.ratio:.2f}{unit} ({e.low:.2f}-{e.high:.2f})"
