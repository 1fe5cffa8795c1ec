"""Effort where the answer is undecided (`rounds=auto`, the default): after the first round, a group's place
is settled only where it is still open - by duels between two configurations, or a new full round.

A group is the configurations measured on the same (machine, threads, model, dataset, batch size). After
round r - 1, in each scenario the group serves - bulk (throughput) and, at batch size 1, online (p99
latency) - the configurations are ranked by their rounds (paired with torch-fp32 per round: the round's host
phase cancels; harness.store.stats), a pair whose duels say otherwise in the duels' order. For the group's
answer, and its answer without int8 (the one a tolerance that rules quantization out gets), round r asks:

- the leader against its runner-up (the best configuration that does not run the leader's kernels,
  harness.store.kernels) while their interval is *undecided* (it contains 1 and reaches beyond +-5 %): a
  *duel* (harness.engine.duels: neighbouring passes of the two in fresh workers, which the host's swings over
  seconds cancel in), run by the runner-up's job - one duel round the first time, DUEL_ROUNDS later. A pair
  that has duelled is judged by its duels, with the spread pooled over the run's duels;
- the leader's own interval against torch-fp32 while it reaches beyond +-LEADER_WIDTH: a full round of the
  leader, and of torch-fp32 (every ratio of the round rests on it).

Neither is asked again when what the sweep still measures before its cap cannot settle it (`settles`: at the
measured spread, the interval around the ratio so far would still contain 1 and reach beyond +-5 % at the
cap): on a noisy machine more would end undecided all the same, and the sweep names the group so.
Everything else stops and says why (`round_reason`): "decided after 1 round(s): 0.26x (0.22-0.31) of onnx".
The sweep's last round (`rounds=N`, default 4) is the cap; a group still undecided there is named by the
sweep's summary. The spread behind the rounds' intervals is pooled over the run's configurations of the model
measured in two or more rounds (stats.pooled); before anything has two rounds it is PRIOR, a deliberately wide
guess (+-30 % at one round) that only decides what to measure next, never a reported interval (DUEL_PRIOR
likewise for duels).

A round that is not needed is recorded as a row of kind "round" (results.ROUND_KIND) with the reason, so a
resumed sweep does not decide again and the pooled row says how many rounds it got and why; once a
configuration has stopped it stays stopped. A round of duels is a row of that kind too, with its `duels`
(it stops nothing).
"""

from __future__ import annotations

import glob
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.engine.cells import slug
from harness.store import kernels, stats
from harness.store.intervals import DUEL
from harness.store.labels import BASELINE
from harness.store.labels import label as label_of_row
from harness.store.stats import Spread

PRIOR = Spread(0.08, 4)  # the spread assumed before any configuration of the run has two rounds
LEADER_WIDTH = 0.10  # a leader is measured again while its own interval reaches beyond +-10 % of its estimate


@dataclass(frozen=True)
class Decision:
    skip: bool  # the configuration's full round is not needed
    why: str
    duels: tuple[tuple[str, str, int], ...] = ()  # (opponent label, scenario, duel rounds) this round runs for it


DUEL_PRIOR = Spread(0.03, 4)  # duels' spread before any pair has duelled twice: only decides what to measure
# duel rounds (each in two fresh workers, harness.engine.duels) a pair gets in a sweep round: one the first time
# (most pairs the first round leaves open are 10-20 % apart, which one duel round settles), then DUEL_ROUNDS
FIRST_DUEL_ROUNDS = 1
DUEL_ROUNDS = 3


@dataclass(frozen=True)
class Scenario:
    name: str  # bulk | online
    metric: str  # the per-round value compared: throughput (higher is better) or latency_p99_ms (lower)
    higher_is_better: bool


BULK = Scenario("bulk", "throughput", True)
ONLINE = Scenario("online", "latency_p99_ms", False)


def for_cell(cfg: Any, cell: Any, machine: str, threads: int, label: str) -> Decision | None:
    """With rounds=auto, whether this round of the cell's configuration is needed in full and which duels it
    runs (None: fixed rounds, it always is)."""
    group = slug("speed", cfg.model.name, cfg.dataset.name, f"bs{cell.batch_size}") + "-"
    match = {"machine": machine, "threads": threads, "model_source": cfg.model.source, "model": cfg.model.name}
    prefixes = (group, slug("speed", cfg.model.name) + "-")
    return decide(cfg, prefixes, match, BASELINE, label, int(cell.batch_size or 0))


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
    stopped = [r for r in group if r.get("kind") == "round" and _label(r) == label and r.get("status") == "ok"
               and not r.get("duels")]  # fmt: skip
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
    needed: dict[str, str] = {}  # label -> why its full round is needed
    duels: dict[str, list[tuple[str, str, int, str]]] = {}  # label -> (opponent, scenario, rounds, why) to duel
    for scenario in scenarios:
        spread = spreads.get(scenario.metric) or PRIOR
        duel_spread = spreads.get(DUEL + scenario.metric) or DUEL_PRIOR
        for q in open_questions(values, scenario, spread, left, duel_spread):
            if q.against is None:
                needed.setdefault(q.label, q.why)
            else:
                duels.setdefault(q.label, []).append((q.against, scenario.name, q.rounds, q.why))
    mine = tuple((against, name, n) for against, name, n, _ in duels.get(label, []))
    if label in needed:
        return Decision(False, f"round {round_ + 1}: {needed[label]}", mine)
    if label == baseline and needed:
        why = f"round {round_ + 1}: the group's ratios rest on {baseline} ({len(needed)} undecided)"
        return Decision(False, why, mine)
    if mine:
        return Decision(True, f"round {round_ + 1}: {duels[label][0][3]}", mine)
    own = values.get(BULK.metric, {}).get(label)
    if not own:
        return Decision(False, f"round {round_ + 1}: {label} has no ok round yet")
    if any(d[0] == label for asked in duels.values() for d in asked):
        return Decision(True, f"round {round_ + 1}: not measured in full; its place is settled by duels")
    place = _place(values, label, baseline, spreads.get(BULK.metric) or PRIOR)
    return Decision(True, f"decided after {len(own)} round(s): {place}")


@dataclass(frozen=True)
class Question:
    """What is still open in a scenario: `label`'s place against `against` (a duel between the two, run by
    `label`'s job), or, with `against` None, a leader's own interval too wide to place (a full round)."""

    label: str
    against: str | None
    why: str
    rounds: int = 0  # the duel rounds asked for (a duel)


def open_questions(values: dict[str, Any], scenario: Scenario, spread: Spread, left: int | None = None,
                   duel_spread: Spread = DUEL_PRIOR) -> list[Question]:  # fmt: skip
    """The questions a round must answer in `scenario`, for the group's answer and its answer without int8
    (the one a tolerance that rules quantization out gets): whether its leader is ahead of its runner-up - the
    best configuration that does not run the leader's kernels - while that is undecided (a duel, run by the
    runner-up's job: harness.engine.duels), and the leader's own interval against torch-fp32 while too wide
    (a full round). A pair that has duelled is judged by its duels (with `duel_spread`), else by its rounds
    (with `spread`); duels that put the runner-up ahead make it the leader. `left`: the rounds the sweep still
    measures; with a measured spread (not a prior), a question that cannot be settled within them (`settles`)
    is not asked: more rounds would end undecided all the same."""
    per = values.get(scenario.metric, {})
    if len(per) < 2:
        return []
    ranked = _ranked(values, scenario, duel_spread)
    precision, runs = values.get("precision", {}), values.get("signature", {})  # the same kernels are tied
    measured = None if spread is PRIOR else spread  # the prior decides what to measure, it never gives up
    out: list[Question] = []
    base = per.get(BASELINE)
    for pool in (ranked, [n for n in ranked if precision.get(n) != "int8"]):
        if not pool or any(q.label == pool[0] and q.against is None for q in out):
            continue
        leader = pool[0]
        own = stats.paired(per[leader], base, spread) if base and leader != BASELINE else None
        if own is not None and not own.within_of_itself(LEADER_WIDTH) and _narrows(own, measured, left):
            out.append(Question(leader, None, f"leads in {scenario.name} at {stats.fmt(own)}: too wide to place"))
        runner = next((n for n in pool[1:] if runs.get(n) is None or runs.get(n) != runs.get(leader)), None)
        if runner is None or any(q.label == runner and q.against == leader for q in out):
            continue
        logs = duel_logs(values, runner, leader, scenario.metric)
        # not duelled yet: always asked (a first duel tells more than rounds measured seconds apart)
        e = stats.rerun_interval(logs, duel_spread) if logs else stats.paired(per[runner], per[leader], spread)
        s = None if not logs or duel_spread is DUEL_PRIOR else duel_spread
        if e is not None and not e.decided and settles(e, s, None if left is None else left * DUEL_ROUNDS):
            how = "duel rounds" if logs else "rounds"
            why = f"undecided against {leader} in {scenario.name}: {stats.fmt(e)} over {e.n} {how}"
            out.append(Question(runner, leader, why, DUEL_ROUNDS if logs else FIRST_DUEL_ROUNDS))
    return out


def open_places(values: dict[str, Any], scenario: Scenario, spread: Spread, left: int | None = None,
                duel_spread: Spread = DUEL_PRIOR) -> dict[str, str]:  # fmt: skip
    """label -> why it is still open in `scenario` (both sides of an open pair)."""
    out: dict[str, str] = {}
    for q in open_questions(values, scenario, spread, left, duel_spread):
        out.setdefault(q.label, q.why)
        if q.against is not None:
            out.setdefault(q.against, q.why.replace(f"against {q.against}", f"against {q.label}", 1))
    return out


def duel_logs(values: dict[str, Any], a: str, b: str, metric: str) -> list[float]:
    """log(A / B) of every duel round between `a` and `b` in `metric`, whichever side recorded it."""
    duels = values.get("duels", {})
    own = duels.get((a, b), {}).get(metric, [])
    return [*own, *(-v for v in duels.get((b, a), {}).get(metric, []))]


def settles(e: stats.Estimate, spread: Spread | None, left: int | None) -> bool:
    """Whether `left` more rounds could settle a comparison: at its rounds then, the rerun interval around the
    ratio measured so far would exclude 1 or lie within +-DECIDED_BAND. Without a measured spread or a known
    cap: always (the prior only decides what to measure, it never gives up)."""
    if spread is None or left is None:
        return True
    half = spread.half_width(e.n + left)
    m = abs(math.log(e.ratio))
    return m > half or m + half <= math.log(1.0 + stats.DECIDED_BAND)


def _narrows(own: stats.Estimate, spread: Spread | None, left: int | None) -> bool:
    """Whether `left` more rounds would bring a leader's interval within +-LEADER_WIDTH; like `settles`, always
    without a measured spread or a known cap."""
    if spread is None or left is None:
        return True
    return spread.half_width(own.n + left) <= math.log(1.0 + LEADER_WIDTH)


def _ranked(values: dict[str, Any], scenario: Scenario, duel_spread: Spread) -> list[str]:
    """The configurations best first by their rounds, each pair whose duels say otherwise (the interval
    excludes 1) in the duels' order."""
    per = values.get(scenario.metric, {})

    def score(name: str) -> float:
        mean = sum(math.log(v) for v in per[name].values()) / len(per[name])
        return -mean if scenario.higher_is_better else mean

    ranked = sorted(per, key=score)
    for _ in range(len(ranked)):
        swapped = False
        for i in range(len(ranked) - 1):
            logs = duel_logs(values, ranked[i + 1], ranked[i], scenario.metric)  # the lower over the higher
            e = stats.rerun_interval(logs, duel_spread) if logs else None
            if e is not None and (e.low > 1.0 if scenario.higher_is_better else e.high < 1.0):
                ranked[i], ranked[i + 1], swapped = ranked[i + 1], ranked[i], True
        if not swapped:
            break
    return ranked


def _place(values: dict[str, Any], label: str, baseline: str, spread: Spread) -> str:
    """'0.26x (0.22-0.31) of torch-fp32 in bulk' for a stopped configuration's row; without a measured spread
    (the PRIOR) the estimate alone: the prior decides what to measure, it is never a printed interval."""
    per = values.get(BULK.metric, {})
    if label == baseline or baseline not in per:
        return "nothing left open in its group"
    e = stats.paired(per[label], per[baseline], None if spread is PRIOR else spread)
    where = stats.fmt(e).replace(" (interval unknown)", "")
    return f"{where} of {baseline} in bulk; nothing left open against the leaders"


def run_spreads(rows: list[dict[str, Any]], match: dict[str, Any], baseline: str) -> dict[str, Spread | None]:
    """metric -> the spread pooled over the run's configurations of this model measured in two or more
    rounds (log ratios to their group's torch-fp32 per round), torch-fp32 itself not counted."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        if r.get("kind") == "speed" and all(r.get(k) == v for k, v in match.items()):
            groups.setdefault((r.get("dataset"), r.get("batch_size")), []).append(r)
    logs: dict[str, list[list[float]]] = {BULK.metric: [], ONLINE.metric: []}
    duelled: dict[str, list[list[float]]] = {BULK.metric: [], ONLINE.metric: []}
    for r in rows:
        if r.get("kind") == "round" and r.get("duels") and all(r.get(k) == v for k, v in match.items()):
            for metrics in r["duels"].values():
                for metric, lists in duelled.items():
                    lists.append([math.log(v) for v in metrics.get(metric) or [] if v and v > 0])
    for group in groups.values():
        values = _values(group)
        for metric, lists in logs.items():
            base = values[metric].get(baseline, {})
            lists += [list(stats.log_ratios(v, base).values()) for n, v in values[metric].items() if n != baseline]
    return {**{metric: stats.pooled(lists) for metric, lists in logs.items()},
            **{DUEL + metric: stats.pooled(lists) for metric, lists in duelled.items()}}  # fmt: skip


def _label(row: dict[str, Any]) -> str:
    return label_of_row(str(row["backend"]), row.get("variant") or "")


def _values(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """metric -> label -> {round: value} over ok speed rows (p99 only where 100+ requests support it),
    "precision" -> label -> its read-back precision and "signature" -> label -> what it executes (None:
    unknown; harness.store.kernels)."""
    out: dict[str, Any] = {BULK.metric: {}, ONLINE.metric: {}, "precision": {}, "signature": {}, "duels": {}}
    for row in rows:
        if row.get("kind") == "round" and row.get("duels"):  # (label, opponent) -> metric -> [log ratio]
            for opponent, metrics in row["duels"].items():
                for metric, ratios in metrics.items():
                    logs = out["duels"].setdefault((_label(row), opponent), {}).setdefault(metric, [])
                    logs += [math.log(v) for v in ratios if v and v > 0]
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
