"""Adaptive rounds (`rounds=auto`): after two interleaved rounds, another round only for the groups whose
ranking is not settled yet, up to the sweep's last round.

A group is the backends measured on the same (machine, model, dataset, batch size, threads). Its
ranking is judged on speedups over torch-fp32 *within each round* (a slow drift of the machine moves
every backend of a round alike, so per-round ratios cancel it). Another round is measured when

- the two fastest configurations' ranges of per-round speedups overlap (which one leads is open), or
- the baseline's own throughput moved by more than `measure.settle_tolerance` between rounds (every
  ratio of the group rests on it), or
- a configuration has fewer ok rounds than the others (a round failed or is still missing).

A round that is not needed is recorded as a row of kind "round" (results.ROUND_KIND) (status ok, reason = why), so a
resumed sweep does not decide again and the pooled row says how many rounds it got and why.
"""

from __future__ import annotations

import glob
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Decision:
    skip: bool
    why: str


def decide(cfg: Any, cell_id_prefix: str, match: dict[str, Any], tolerance: float, baseline: str) -> Decision | None:
    """Whether this job's round of the group (speed cells whose ids start with `cell_id_prefix` and whose
    rows have the values in `match`, e.g. machine and threads) is needed; None when rounds are fixed."""
    round_ = cfg.round
    if not cfg.adaptive_rounds or round_ < 2:
        return None
    rows = [r for r in _group_rows(Path(cfg.results_dir) / cfg.run, cell_id_prefix, round_)
            if all(r.get(k) == v for k, v in match.items())]  # fmt: skip
    why = unsettled(rows, tolerance, baseline)
    if why:
        return Decision(False, f"round {round_ + 1}: {why}")
    return Decision(True, f"settled after {round_} rounds: the leading ranking and the baseline held")


def _group_rows(folder: Path, prefix: str, round_: int) -> list[dict[str, Any]]:
    rows = []
    for path in glob.glob(str(folder / f"{glob.escape(prefix)}*.json")):
        try:
            row = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if row.get("kind") == "speed" and (row.get("round") or 0) < round_:
            rows.append(row)
    return rows


def unsettled(rows: list[dict[str, Any]], tolerance: float, baseline: str) -> str | None:
    """Why the group's ranking is not settled by these rounds' rows, or None when it is."""
    by_config: dict[str, dict[int, float]] = {}
    for row in rows:
        if row.get("status") == "ok" and row.get("throughput"):
            label = f"{row['backend']} [{row['variant']}]" if row.get("variant") else row["backend"]
            by_config.setdefault(label, {})[row.get("round") or 0] = float(row["throughput"])
    if not by_config:
        return "no ok rows yet"
    rounds = sorted({r for per in by_config.values() for r in per})
    short = sorted(label for label, per in by_config.items() if len(per) < len(rounds))
    if short:
        return f"{', '.join(short)} has fewer ok rounds than the others"
    base = by_config.get(baseline)
    if base:
        moved = (max(base.values()) - min(base.values())) / (sum(base.values()) / len(base))
        if moved > tolerance:
            return f"{baseline} moved {moved:.1%} between rounds (> {tolerance:.0%})"
        ratios = {label: [per[r] / base[r] for r in rounds] for label, per in by_config.items()}
    else:
        ratios = {label: [per[r] for r in rounds] for label, per in by_config.items()}
    ranked = sorted(ratios, key=lambda label: -sum(ratios[label]) / len(rounds))
    if len(ranked) >= 2:
        first, second = ranked[0], ranked[1]
        if min(ratios[first]) <= max(ratios[second]):
            return f"the two fastest, {first} and {second}, overlap across rounds"
    return None
