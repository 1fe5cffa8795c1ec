"""Effort where the answer is undecided (`rounds=auto`, the default): after the first round, a configuration is
measured again - a new round, in a fresh process - only while its place in its group is still open.

A group is the configurations measured on the same (machine, threads, model, dataset, batch size). After
round r - 1 every configuration's per-round values are compared with the group's leaders, paired by round
(harness.store.stats: torch-fp32 and the round's host phase cancel), in each scenario the group serves:
bulk (throughput) and, at batch size 1, online (p99 latency). The leaders are the best configuration and the
best one that is not int8 (the answer when a tolerance rules quantization out). Round r is measured for

- a configuration whose paired interval with a leader is *undecided* (it contains 1 and is wider than +-5 %),
  and that leader - unless the two run the same kernels (harness.store.kernels: tied, nothing to measure);
- a leader whose own interval (against torch-fp32) reaches beyond +-LEADER_WIDTH: its number is the answer;
- torch-fp32, whenever anything of its group is measured (every ratio of the round rests on it).

Neither is measured again when the rounds left before the cap cannot settle it (`settles`: at the measured
spread, the interval around the ratio so far would still contain 1 and reach beyond +-5 % at the cap): on a
noisy machine more rounds would end undecided all the same, and the sweep names the group so.
Everything else stops and says why (`round_reason`): "decided after 1 round(s): 0.26x (0.22-0.31) of onnx".
The sweep's last round (`rounds=N`, default 3) is the cap; a group still undecided there is named by the
sweep's summary. The spread behind the intervals is pooled over the run's configurations of the model
measured in two or more rounds (stats.pooled); before anything has two rounds it is PRIOR, a deliberately wide
guess (+-30 % at one round) that only decides what to measure next, never a reported interval.

A round that is not needed is recorded as a row of kind "round" (results.ROUND_KIND) with the reason, so a
resumed sweep does not decide again and the pooled row says how many rounds it got and why. Once a
configuration has stopped it stays stopped.
"""

from __future__ import annotations

import glob
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.store import kernels, stats
from harness.store.labels import BASELINE
from harness.store.labels import label as label_of_row
from harness.store.stats import Spread

PRIOR = Spread(0.08, 4)  # the spread assumed before any configuration of the run has two rounds
LEADER_WIDTH = 0.10  # a leader is measured again while its own interval reaches beyond +-10 % of its estimate


@dataclass(frozen=True)
class Decision:
    skip: bool
    why: str


@dataclass(frozen=True)
class Scenario:
    name: str  # bulk | online
    metric: str  # the per-round value compared: throughput (higher is better) or latency_p99_ms (lower)
    higher_is_better: bool


BULK = Scenario("bulk", "throughput", True)
ONLINE = Scenario("online", "latency_p99_ms", False)


def decide(cfg: Any, prefixes: tuple[str, str], match: dict[str, Any], baseline: str, label: str,
           batch_size: int) -> Decision | None:  # fmt: skip
    """Whether configuration `label`'s round `cfg.round` of the group is needed; None when rounds are fixed.
    `prefixes`: the cell ids of the group (model, dataset, batch size) and of the model's cells in the run;
    `match`: the values its rows must have (machine, threads, model source)."""
    round_ = cfg.round
    if not cfg.adaptive_rounds or round_ < 1:
        return None
    folder = Path(cfg.results_dir) / cfg.run
    group_prefix, model_prefix = prefixes
    group = [r for r in _rows(folder, group_prefix, round_) if all(r.get(k) == v for k, v in match.items())]
    stopped = [r for r in group if r.get("kind") == "round" and _label(r) == label and r.get("status") == "ok"]
    if stopped:
        return Decision(True, str(stopped[-1].get("reason")))
    spreads = run_spreads(_rows(folder, model_prefix, round_), match, baseline)
    return judge(group, label, baseline, batch_size, spreads, round_, cfg.get("round_cap"))


def judge(rows: list[dict[str, Any]], label: str, baseline: str, batch_size: int,
          spreads: dict[str, Spread | None] | Spread, round_: int, cap: int | None = None) -> Decision:  # fmt: skip
    """The decision for `label` from its group's rows of earlier rounds; `spreads`: metric -> the pooled
    spread of its log ratios (PRIOR where none), or one spread for both; `cap`: the rounds the sweep measures
    at most (None: no limit known, nothing is given up as beyond the machine's resolution)."""
    values = _values(rows)
    if isinstance(spreads, Spread):
        spreads = dict.fromkeys((BULK.metric, ONLINE.metric), spreads)
    scenarios = [BULK, ONLINE] if batch_size == 1 else [BULK]
    left = None if cap is None else max(cap - round_, 0)
    needed: dict[str, str] = {}
    for scenario in scenarios:
        spread = spreads.get(scenario.metric) or PRIOR
        for name, why in open_places(values, scenario, spread, left).items():
            needed.setdefault(name, why)
    if label in needed:
        return Decision(False, f"round {round_ + 1}: {needed[label]}")
    if label == baseline and needed:
        return Decision(False, f"round {round_ + 1}: the group's ratios rest on {baseline} ({len(needed)} undecided)")
    own = values.get(BULK.metric, {}).get(label)
    if not own:
        return Decision(False, f"round {round_ + 1}: {label} has no ok round yet")
    place = _place(values, label, baseline, spreads.get(BULK.metric) or PRIOR)
    return Decision(True, f"decided after {len(own)} round(s): {place}")


def open_places(values: dict[str, dict[str, dict[int, float]]], scenario: Scenario, spread: Spread,
                left: int | None = None) -> dict[str, str]:  # fmt: skip
    """label -> why it needs another round in `scenario`: undecided against a leader (and that leader).
    `left`: the rounds the sweep still measures; with a measured spread (not the PRIOR), a question that
    cannot be settled within them (`settles`) gets none: more rounds would end undecided all the same."""
    per = values.get(scenario.metric, {})
    if len(per) < 2:
        return {}
    leaders = _leaders(per, values.get("precision", {}), scenario)
    runs = values.get("signature", {})  # what each configuration executes: the same kernels are tied
    measured = None if spread is PRIOR else spread  # the prior decides what to measure, it never gives up
    out: dict[str, str] = {}
    base = next((per[n] for n in per if n == BASELINE), None)
    for leader in leaders:
        own = stats.paired(per[leader], base, spread) if base and leader != BASELINE else None
        if own is not None and not own.within_of_itself(LEADER_WIDTH) and _narrows(own, measured, left):
            out[leader] = f"leads in {scenario.name} at {stats.fmt(own)}: too wide to place"
        for name in per:
            if name == leader or (runs.get(name) is not None and runs.get(name) == runs.get(leader)):
                continue
            e = stats.paired(per[name], per[leader], spread)
            if e is not None and not e.decided and settles(e, measured, left):
                why = f"undecided against {leader} in {scenario.name}: {stats.fmt(e)}"
                out.setdefault(name, why)
                out.setdefault(leader, f"undecided against {name} in {scenario.name}: {stats.fmt(e)}")
    return out


def settles(e: stats.Estimate, spread: Spread | None, left: int | None) -> bool:
    """Whether `left` more rounds could settle a comparison: at its rounds then, the rerun interval around the
    ratio measured so far would exclude 1 or lie within +-DECIDED_BAND. Without a measured spread or a known
    cap: always (the prior only decides what to measure, it never gives up)."""
    if spread is None or left is None:
        return True
    return stats.rounds_to_settle(e, spread) <= e.n + left


def _narrows(own: stats.Estimate, spread: Spread | None, left: int | None) -> bool:
    """Whether `left` more rounds would bring a leader's interval within +-LEADER_WIDTH; like `settles`, always
    without a measured spread or a known cap."""
    if spread is None or left is None:
        return True
    return spread.half_width(own.n + left) <= math.log(1.0 + LEADER_WIDTH)


def _leaders(per: dict[str, dict[int, float]], precision: dict[str, str], scenario: Scenario) -> list[str]:
    """The best configuration, and the best that is not int8 (when it differs)."""

    def score(name: str) -> float:
        mean = sum(math.log(v) for v in per[name].values()) / len(per[name])
        return -mean if scenario.higher_is_better else mean

    ranked = sorted(per, key=score)
    not_int8 = [n for n in ranked if precision.get(n) != "int8"]
    return list(dict.fromkeys([ranked[0], *not_int8[:1]]))


def _place(values: dict[str, Any], label: str, baseline: str, spread: Spread) -> str:
    """'0.26x (0.22-0.31) of torch-fp32 in bulk' for a stopped configuration's row; without a measured spread
    (the PRIOR) the estimate alone: the prior decides what to measure, it is never a printed interval."""
    per = values.get(BULK.metric, {})
    if label == baseline or baseline not in per:
        return "nothing left open in its group"
    e = stats.paired(per[label], per[baseline], None if spread is PRIOR else spread)
    where = stats.fmt(e).replace(" (interval unknown)", "")
    return f"{where} of {baseline} in bulk; nothing left open against the leaders"


def decisively_slower(folder: Path, groups: dict[int, str], match: dict[str, Any], label: str,
                      last: int) -> dict[str, float] | None:  # fmt: skip
    """For round 0's label-free task (harness.engine.agreement_unit): when `label` was decisively slower than
    torch-fp32 in round 0 at every batch size of a dataset but the `last` (its cell still to run) - bulk
    throughput, and p99 at batch size 1, beyond the PRIOR's one-round interval (x0.73) - the limits its last
    cell's numbers are judged against; None when any was not (or is not known yet): the task is measured.
    `groups`: batch size -> the cell-id prefix of its group (harness.engine.sweep.round_decision's)."""
    factor = math.exp(PRIOR.half_width(1))
    limits_last: dict[str, float] | None = None
    for bs, prefix in groups.items():
        values = _values([r for r in _rows(folder, prefix, 1) if all(r.get(k) == v for k, v in match.items())])
        limits: dict[str, float] = {}
        for scenario in [BULK, ONLINE] if bs == 1 else [BULK]:
            base = values[scenario.metric].get(BASELINE, {}).get(0)
            if base is not None:
                limits[scenario.metric] = base / factor if scenario.higher_is_better else base * factor
        if BULK.metric not in limits:
            return None
        if bs == last:
            limits_last = limits
            continue
        if not beyond({m: values[m].get(label, {}).get(0) for m in limits}, limits):
            return None
    return limits_last


def beyond(values: dict[str, Any], limits: dict[str, float]) -> bool:
    """Whether every limited metric lies past its limit: throughput below it, p99 above it (a missing one: no)."""
    for metric, limit in limits.items():
        value = values.get(metric)
        if value is None or not (value < limit if metric == BULK.metric else value > limit):
            return False
    return True


def run_spreads(rows: list[dict[str, Any]], match: dict[str, Any], baseline: str) -> dict[str, Spread | None]:
    """metric -> the spread pooled over the run's configurations of this model measured in two or more
    rounds (log ratios to their group's torch-fp32 per round), torch-fp32 itself not counted."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        if r.get("kind") == "speed" and all(r.get(k) == v for k, v in match.items()):
            groups.setdefault((r.get("dataset"), r.get("batch_size")), []).append(r)
    logs: dict[str, list[list[float]]] = {BULK.metric: [], ONLINE.metric: []}
    for group in groups.values():
        values = _values(group)
        for metric, lists in logs.items():
            base = values[metric].get(baseline, {})
            lists += [list(stats.log_ratios(v, base).values()) for n, v in values[metric].items() if n != baseline]
    return {metric: stats.pooled(lists) for metric, lists in logs.items()}


def _label(row: dict[str, Any]) -> str:
    return label_of_row(str(row["backend"]), row.get("variant") or "")


def _values(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """metric -> label -> {round: value} over ok speed rows (p99 only where 100+ requests support it),
    "precision" -> label -> its read-back precision and "signature" -> label -> what it executes (None:
    unknown; harness.store.kernels)."""
    out: dict[str, Any] = {BULK.metric: {}, ONLINE.metric: {}, "precision": {}, "signature": {}}
    for row in rows:
        if row.get("kind") != "speed" or row.get("status") != "ok" or not row.get("throughput"):
            continue
        label, round_ = _label(row), int(row.get("round") or 0)
        out[BULK.metric].setdefault(label, {})[round_] = float(row["throughput"])
        p99, n = row.get("latency_p99_ms"), len(row.get("latencies_ms") or [])
        if p99 and n >= stats.MIN_P99_SAMPLES:
            out[ONLINE.metric].setdefault(label, {})[round_] = float(p99)
        out["precision"][label] = row.get("precision")
        out["signature"][label] = kernels.signature(row.get("runtime"))
    return out


def _rows(folder: Path, prefix: str, round_: int) -> list[dict[str, Any]]:
    """Rows of earlier rounds (speed and round rows) whose cell ids start with `prefix`."""
    rows = []
    for path in glob.glob(str(folder / f"{glob.escape(prefix)}*.json")):
        try:
            row = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if row.get("kind") in ("speed", "round") and (row.get("round") or 0) < round_:
            rows.append(row)
    return rows
