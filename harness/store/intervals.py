"""Rerun intervals on the rows: every pooled speed row's speedups (bulk and per request) and p99 latency get
the paired estimate and the 95 % interval a second sweep on this machine would fall in (harness.store.stats),
and two rows of one group can be compared directly (`compare`): the one rule for ties that the summary
table, `harness compare`, the report and `harness recommend` all use.

Columns added by `with_intervals`:
  speedup, speedup_low, speedup_high                     bulk throughput over torch-fp32, paired per round
  speedup_per_request, speedup_per_request_low, _high    one call per batch, paired per round
  latency_p99_low_ms, latency_p99_high_ms                the p99's rerun interval
  paired_rounds                                          rounds the row shares with its torch-fp32
  spread                                                 {metric: [s, df]}: the pooled spread it borrowed
  latency_requests                                       requests its percentiles rest on; a p99 from fewer
                                                         than stats.MIN_P99_SAMPLES is not reported (NaN)
Rows without per-round values (written before rows kept them, or built by hand) keep the pooled ratio
(`analysis.with_ratios`) and no interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from harness import backends
from harness.store import kernels, stats
from harness.store.analysis import SPEED_PAIRING, baselines, with_keys
from harness.store.labels import BASELINE
from harness.store.stats import Estimate, Spread

# metric (a per_round key) -> (estimate column, low column, high column)
METRICS = {
    "throughput": ("speedup", "speedup_low", "speedup_high"),
    "per_request_throughput": ("speedup_per_request", "speedup_per_request_low", "speedup_per_request_high"),
    "latency_p99_ms": (None, "latency_p99_low_ms", "latency_p99_high_ms"),
}
# the spread is pooled over a group's configurations and its datasets (their noise is alike), per batch size;
# over the whole run and machine where that leaves fewer than stats.MIN_DF degrees of freedom
SCOPE = ["run", "machine", "model", "batch_size", "threads", "device", "model_key", "versions_key"]
WIDE_SCOPE = ["run", "machine", "versions_key"]


def by_round(row: Any, metric: str) -> dict[int, float]:
    """{round: value} of a pooled row's per-round values (empty when it has none)."""
    per = row.get("per_round") if hasattr(row, "get") else None
    if not isinstance(per, dict) or metric not in per:
        return {}
    return {int(r): float(v) for r, v in zip(per["round"], per[metric], strict=True) if _number(v)}


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v) and v > 0


def _logs(df: pd.DataFrame) -> dict[str, dict[Any, dict[int, float]]]:
    """metric -> row index -> {round: log(value / its torch-fp32's value in that round)}."""
    base = baselines(df)
    base_rows = {tuple(map(str, r[SPEED_PAIRING])): r for _, r in base.iterrows()}
    out: dict[str, dict[Any, dict[int, float]]] = {m: {} for m in METRICS}
    ok = df[(df["kind"] == "speed") & (df["status"] == "ok")]
    for i, row in ok.iterrows():
        b = base_rows.get(tuple(map(str, row[SPEED_PAIRING])))
        if b is None:
            continue
        for metric in METRICS:
            logs = stats.log_ratios(by_round(row, metric), by_round(b, metric))
            if logs:
                out[metric][i] = logs
    return out


def _spreads(df: pd.DataFrame, logs: dict[Any, dict[int, float]], is_base: pd.Series) -> dict[Any, Spread | None]:
    """row index -> the spread it borrows (its scope's, else its run's): torch-fp32's own rows, whose log ratio
    is 0 by definition, do not count."""
    own = {i: list(v.values()) for i, v in logs.items() if not is_base.get(i, False)}
    out: dict[Any, Spread | None] = {}
    wide: dict[tuple, Spread | None] = {}
    for _, group in df.loc[list(logs)].groupby(SCOPE, dropna=False, sort=False):
        spread = stats.pooled(own[i] for i in group.index if i in own)
        for i in group.index:
            if spread is None or spread.df < stats.MIN_DF:
                key = tuple(map(str, df.loc[i, WIDE_SCOPE]))
                if key not in wide:
                    members = df.loc[list(logs)]
                    members = members[(members[WIDE_SCOPE].astype(str) == list(key)).all(axis=1)]
                    wide[key] = stats.pooled(own[j] for j in members.index if j in own)
                out[i] = wide[key] if wide[key] is not None else spread
            else:
                out[i] = spread
    return out


def _family_spreads(df: pd.DataFrame, logs: dict[Any, dict[int, float]], is_base: pd.Series) -> dict[Any, Spread]:
    """row index -> its runtime family's spread over the run at its batch size (torch / onnx / openvino), where
    that has stats.MIN_DF degrees of freedom: from its configurations measured in two or more rounds, and from its
    same-kernel twins measured in the same round (log(A_r / B_r) is the processes' noise alone: half its square
    per degree of freedom). ONNX Runtime's rows moved between processes by s 0.14-0.27 where OpenVINO's and
    torch's moved by 0.04-0.08: a one-round ONNX row must not borrow the leaders' steadier spread."""
    family = {i: backends.family_of(str(df.at[i, "backend"])) for i in logs if not is_base.get(i, False)}
    key = {i: (*map(str, df.loc[i, [*WIDE_SCOPE, "batch_size"]]), family[i]) for i in family}
    groups: dict[tuple, list[list[float]]] = {}
    for i in family:  # each configuration's rounds, around their own mean (stats.pooled)
        groups.setdefault(key[i], []).append(list(logs[i].values()))
    twins = df.loc[[i for i in family if kernels.signature(df.at[i, "runtime"]) is not None]]
    for _, cell in twins.groupby([*kernels.CELL, twins["runtime"].map(kernels.signature)], dropna=False):
        first, *others = list(cell.index)
        for j in others:  # a twin pair in one round: two values around their mean, 1 df, (l_A - l_B)^2 / 2
            groups[key[j]] += [[logs[first][r], logs[j][r]] for r in set(logs[first]) & set(logs[j])]
    spreads = {k: stats.pooled(g) for k, g in groups.items()}
    return {i: s for i in family if (s := spreads[key[i]]) is not None and s.df >= stats.MIN_DF}


def with_intervals(df: pd.DataFrame) -> pd.DataFrame:
    """`df` (with `analysis.with_ratios`' columns) with the paired estimates and rerun intervals above."""
    df = with_keys(df.copy())
    for _, low, high in METRICS.values():
        for column in (low, high):
            df[column] = float("nan")
    df["paired_rounds"] = float("nan")
    df["spread"] = None
    _requests(df)
    if df.empty or "per_round" not in df:
        return df
    is_base = _is_base(df)
    spreads: dict[Any, dict[str, list[float]]] = {}
    for metric, logs in _logs(df).items():
        estimate, low, high = METRICS[metric]
        borrowed = _spreads(df, logs, is_base)
        for i, floor in _family_spreads(df, logs, is_base).items():  # never narrower than the row's family's
            if borrowed.get(i) is None or floor.s > borrowed[i].s:
                borrowed[i] = floor
        for i, values in logs.items():
            e = stats.rerun_interval(values, borrowed.get(i))
            if e is None:
                continue
            p99 = pd.to_numeric(df.at[i, "latency_p99_ms"], errors="coerce") if not estimate else None
            if not estimate and (p99 is None or pd.isna(p99)):
                continue  # no p99 reported for this row (too few requests)
            scale = 1.0 if estimate else float(p99) / e.ratio
            if estimate:
                df.at[i, estimate] = e.ratio
            if estimate and is_base[i]:  # torch-fp32 over itself: 1 in every sweep
                df.at[i, low], df.at[i, high] = 1.0, 1.0
            else:
                df.at[i, low], df.at[i, high] = e.low * scale, e.high * scale
            if metric == "throughput":
                df.at[i, "paired_rounds"] = e.n
            s = borrowed.get(i)
            spreads.setdefault(i, {})[metric] = [s.s, s.df] if s else None
    for i, value in spreads.items():
        df.at[i, "spread"] = value
    return df


def _is_base(df: pd.DataFrame) -> pd.Series:
    variant = df["variant"].fillna("").astype(str) if "variant" in df else pd.Series("", index=df.index)
    return (df["backend"] == BASELINE) & (variant == "")


def _requests(df: pd.DataFrame) -> None:
    """`latency_requests`, and no p99 where too few requests support one."""
    n = pd.to_numeric(df["n_batches"], errors="coerce") if "n_batches" in df else pd.Series(float("nan"), df.index)
    df["latency_requests"] = n
    if "latency_p99_ms" in df:
        thin = (df["kind"] == "speed") & n.notna() & (n < stats.MIN_P99_SAMPLES)
        df.loc[thin, "latency_p99_ms"] = float("nan")


def spread_of(row: Any, metric: str = "throughput") -> Spread | None:
    value = row.get("spread") if hasattr(row, "get") else None
    pair = value.get(metric) if isinstance(value, dict) else None
    return Spread(float(pair[0]), int(pair[1])) if pair else None


def compare(a: Any, b: Any, metric: str = "throughput") -> Estimate | None:
    """A / B for two rows of one group (same dataset, batch size, machine), paired by round: torch-fp32
    cancels. For latency (`latency_p99_ms`) the ratio is A's p99 over B's (below 1: A answers faster).
    None when they share no round."""
    return stats.paired(by_round(a, metric), by_round(b, metric), pair_spread(a, b, metric))


def pair_spread(a: Any, b: Any, metric: str = "throughput") -> Spread | None:
    """The spread `compare` gives A / B's interval: A's, else B's."""
    return spread_of(a, metric) or spread_of(b, metric)


GROUP = kernels.CELL  # a verdict's group is the cell the same-kernel comparison stays inside


@dataclass(frozen=True)
class Verdict:
    """A group's leader against its runner-up in one scenario, paired by round. The runner-up is the best
    configuration that does not run the leader's kernels; those that do (`twins`) are tied with it by what
    they execute (harness.store.kernels), whatever their numbers."""

    group: tuple
    scenario: str  # bulk | online
    leader: str
    runner_up: str | None  # None: every other configuration runs the leader's kernels
    estimate: Estimate | None  # runner-up / leader (bulk: throughput; online: leader's p99 / runner-up's)
    twins: tuple[str, ...] = ()
    spread: Spread | None = None  # the one behind the estimate's interval

    @property
    def rounds_needed(self) -> int | None:
        """Undecided: the rounds (both measured in each) its interval would need at this spread to settle,
        around the ratio measured so far (stats.rounds_to_settle); None otherwise or without a spread."""
        if self.status != "undecided" or self.spread is None or self.estimate is None:
            return None
        return stats.rounds_to_settle(self.estimate, self.spread)

    @property
    def status(self) -> str:
        """'decided' (the interval excludes 1), 'tied' (within +-5 %, or the same kernels), or 'undecided'."""
        if self.runner_up is None:
            return "tied"
        e = self.estimate
        if e is None or math.isnan(e.low):
            return "undecided"
        if e.within(stats.DECIDED_BAND):
            return "tied"
        return "undecided" if e.contains_one() else "decided"

    def line(self) -> str:
        what = "/".join(str(g) for g in self.group[2:5])
        same = f" (tied: same kernels as {', '.join(self.twins)})" if self.twins else ""
        if self.runner_up is None:
            return f"{what} {self.scenario}: {self.leader}{same}: tied"
        return (
            f"{what} {self.scenario}: {self.leader}{same} leads {self.runner_up} by {stats.fmt(self.estimate)}: "
            f"{self.status}"
        )


def verdicts(df: pd.DataFrame) -> list[Verdict]:
    """Every group's leader vs runner-up, in bulk and (batch size 1) online, from uncontended ok rows."""
    speed = df[(df["kind"] == "speed") & (df["status"] == "ok") & df["speedup"].notna()]
    if "contended" in speed:
        speed = speed[~speed["contended"].isin([True])]
    out = []
    for group, rows in speed.groupby(GROUP, dropna=False, sort=True):
        labels = rows["label"] if "label" in rows else rows["backend"]
        bulk = rows.assign(_label=labels).sort_values("speedup", ascending=False)
        out += _verdict(group, "bulk", bulk, "throughput")
        if int(group[4]) == 1 and rows["latency_p99_ms"].notna().sum() >= 2:
            online = bulk[bulk["latency_p99_ms"].notna()].sort_values("latency_p99_ms")
            out += _verdict(group, "online", online, "latency_p99_ms")
    return out


def _verdict(group: tuple, scenario: str, ranked: pd.DataFrame, metric: str) -> list[Verdict]:
    if len(ranked) < 2:
        return []
    first = ranked.iloc[0]
    named = _twins_in(ranked, first)
    others = [r for _, r in ranked.iloc[1:].iterrows() if str(r["_label"]) not in named]
    if not others:
        return [Verdict(group, scenario, str(first["_label"]), None, None, tuple(named))]
    second = others[0]
    # as a ratio above 1 when the leader is ahead: throughput leader / runner-up, p99 runner-up / leader
    a, b = (first, second) if metric == "throughput" else (second, first)
    e, spread = compare(a, b, metric), pair_spread(a, b, metric)
    if e is not None and e.ratio < 1.0:
        # the ranking is by the pooled numbers, the ratio paired over the rounds both have: where they disagree
        # the line follows the paired ratio (never "X leads Y by 0.82x"); the status is the same either way
        first, second, e = second, first, e.inverse()
        named = _twins_in(ranked, first)
    return [Verdict(group, scenario, str(first["_label"]), str(second["_label"]), e, tuple(named), spread)]


def _twins_in(ranked: pd.DataFrame, leader: Any) -> list[str]:
    """The labels of `ranked` that run `leader`'s kernels (harness.store.kernels), best first."""
    twins = set(kernels.twins_of(leader))
    return [str(r["_label"]) for _, r in ranked.iterrows() if str(r["_label"]) in twins]
