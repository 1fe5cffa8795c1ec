"""Ties are ties: the order of the candidates, where a difference inside the measurement's resolution does
not decide anything.

Any two candidates are compared directly: the 95 % rerun interval of their per-round paired ratio A / B on
the cells both were measured in (torch-fp32 cancels; harness.store.stats, harness.store.intervals). They are
tied when that interval contains 1 or lies within +-2 %, and whatever it says when they run the same kernels
(harness.store.kernels: e.g. `onnx` and `onnx-O1` on a CPU). Candidates are ranked by the scenario's number
(bulk: speedup, online: p99 latency); the qualifying candidates tied with the best one form the tie set, and
of those the recommender takes the one a user gets with the least: the plain name before an export step
(an O-level or a quantized export) before a pinned knob (a variant); then the documented flowchart's answer;
then the name. The others of the set are named with it: "tied with X within the
measurement's resolution". Not the better measured number: inside a tie that is noise, and the same
question asked of a second sweep should get the same answer.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from harness import backends
from harness.store import kernels, stats
from harness.store.intervals import by_round, spread_of
from harness.store.stats import Estimate

CELL = ["model", "dataset", "batch_size", "machine", "threads", "device"]
METRIC = {"bulk": "throughput", "online": "latency_p99_ms"}
EXPORT_KNOBS = ("optimization", "quantization")  # a registered name that sets one needs an export step


def cells_of(rows: pd.DataFrame) -> list[dict[str, Any]]:
    """A candidate's cells as its pairwise comparisons need them: where, per-round values, the spread."""
    out = []
    for _, r in rows.iterrows():
        out.append({"cell": tuple(str(r.get(k)) for k in CELL), "per_round": r.get("per_round"),
                    "spread": r.get("spread"), "signature": kernels.signature(r.get("runtime"))})  # fmt: skip
    return out


def same_kernels(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> bool:
    """Whether two candidates run the same kernels in every cell both were measured in (harness.store.kernels)."""
    theirs = {c["cell"]: c.get("signature") for c in b}
    shared = [(c.get("signature"), theirs[c["cell"]]) for c in a if c["cell"] in theirs]
    return bool(shared) and all(x is not None and x == y for x, y in shared)


def compare(a: list[dict[str, Any]], b: list[dict[str, Any]], scenario: str) -> Estimate | None:
    """A / B over the cells both have (bulk: throughput, above 1 = A faster; online: B's p99 / A's, above 1 =
    A answers faster), paired per round; None when they share no measured round."""
    metric = METRIC[scenario]
    theirs = {c["cell"]: c for c in b}
    logs: list[float] = []
    spread = None
    for mine in a:
        other = theirs.get(mine["cell"])
        if other is None:
            continue
        x, y = by_round(mine, metric), by_round(other, metric)
        pair = stats.log_ratios(x, y) if scenario == "bulk" else stats.log_ratios(y, x)
        logs += pair.values()
        spread = spread or spread_of(mine, metric) or spread_of(other, metric)
    return stats.rerun_interval(logs, spread)


def effort(label: str) -> int:
    """What a user does beyond `backend=`: 0 a plain name, 1 an export step (O-level, quantized), 2 a knob."""
    name, _, variant = label.partition(" [")
    config = backends.named().get(name)
    export = bool(config is not None and any(getattr(config, k, None) for k in EXPORT_KNOBS))
    return (2 if variant else 0) + (1 if export else 0)


def is_tied(a: Any, b: Any, scenario: str, score: Any) -> bool:
    """The tie rule on two candidates; rows without per-round values (written before rows kept them) have no
    interval, and only numbers equal at the printed precision (0.01) are tied there. Two that run the same
    kernels are tied whatever their numbers."""
    if same_kernels(a.cells, b.cells):
        return True
    e = compare(a.cells, b.cells, scenario)
    if e is None or e.low != e.low:  # no interval
        return round(score(a), 2) == round(score(b), 2)
    return e.tied


def order(candidates: list[Any], scenario: str, preferred: str, score: Any) -> list[Any]:
    """The candidates best first: by `score` (lower is better), then the tie set of the best qualifying one
    resolved by effort and the flowchart; sets `tied_with` and `tie` on the members of that set."""
    ranked = sorted(candidates, key=lambda c: (score(c), c.label != preferred, c.label))
    qualifying = [c for c in ranked if c.qualifies]
    if not qualifying:
        return ranked
    best = qualifying[0]
    tied = [best]
    for c in qualifying[1:]:
        if is_tied(c, best, scenario, score):
            tied.append(c)
    # not the measured number: inside a tie it is noise, and a rerun would flip the answer
    chosen = min(tied, key=lambda c: (effort(c.label), c.label != preferred, c.label))
    for c in tied:
        if c is chosen:
            continue
        e = compare(c.cells, chosen.cells, scenario)
        c.tied_with = chosen.label
        c.tie = stats.fmt(e) if e is not None else "equal at the printed precision"
        if same_kernels(c.cells, chosen.cells):
            c.tie = f"the same kernels, measured {c.tie}"
    if len(tied) > 1:
        chosen.tied_with = ", ".join(c.label for c in tied if c is not chosen)
        chosen.tie = "; ".join(f"{c.label} {c.tie}" for c in tied if c is not chosen)
    rest = [c for c in ranked if c is not chosen]
    return [chosen, *rest]
