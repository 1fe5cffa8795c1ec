"""Neighbouring timed passes of two loaded workers: the comparison the host's swings cancel in.

On a shared VM the speed of the host moves by ±10-30 % over seconds (README, "How steady are the ratios"), so
two numbers measured a few seconds apart differ by that much whatever they measure. Here both sides are loaded
and warmed first (each in a worker of its own, `units.bare`), then time one whole pass each in turn, the order
turning every pair (a b, b a, a b ...): each pair's ratio saw one host. `harness overhead` (the harness's
loading against plain code) and `harness duel` (one configuration against another) are built on it.
"""

from __future__ import annotations

import math
import statistics
import time
from typing import Any

MIN_PAIRS = 3  # pairs of passes per round, at least ...
PAIR_TIME_S = 2.0  # ... and until the first side's passes add up to this ...
TARGET_SE = 0.015  # ... and the round's ratio is known to +-1.5 % (standard error of its mean log ratio) ...
MAX_PAIRS = 24  # ... or this many pairs (ONNX Runtime's passes swing +-15-35 % here: 24 pairs give +-3-7 %)
SETTLE_S = 0.1  # a pause before each timed pass: the other side's runtime threads stop spinning (not timed)


def timed_pairs(run: Any, order: tuple[str, str], m: Any,
                max_pairs: int = MAX_PAIRS) -> tuple[list[tuple[float, float]], int, str | None]:  # fmt: skip
    """One round: both sides loaded and warmed (`order[0]` first: `run(side)`'s first call times nothing), then
    neighbouring timed passes, the order turning each pair, each after a pause of SETTLE_S (with none,
    OpenVINO's threads still busy from the pass before showed as another process's CPU in 10 of ~55 pairs),
    until MIN_PAIRS pairs, PAIR_TIME_S of `order[0]`'s passes and a ratio known to TARGET_SE (`max_pairs` at
    most). Returns each pair's seconds as (order[0], order[1]), how many pairs were timed again because another
    process used the CPU (`m.contention_threshold`; up to `m.contention_retries` a round), and why the round
    failed (None if it did not)."""
    for side in order:
        status, _, reason = run(side)
        if status != "ok":
            return [], 0, f"{side} side {status}: {reason}"
    pairs: list[tuple[float, float]] = []
    retried = 0
    while len(pairs) < max_pairs and (len(pairs) < MIN_PAIRS or sum(a for a, _ in pairs) < PAIR_TIME_S
                                      or standard_error(pairs) > TARGET_SE):  # fmt: skip
        seconds, busy = {}, 0.0
        for side in order if len(pairs) % 2 == 0 else order[::-1]:
            time.sleep(SETTLE_S)
            status, out, reason = run(side)
            if status != "ok" or out is None:
                return pairs, retried, f"{side} side {status}: {reason}"
            seconds[side], busy = out["seconds"], max(busy, out["cpu_other"])
        if busy > m.contention_threshold and retried < m.contention_retries:
            retried += 1
            continue
        pairs.append((seconds[order[0]], seconds[order[1]]))
    return pairs, retried, None


def worker_round(name: str, specs: dict[str, Any], round_: int, threads: int, m: Any,
                 max_pairs: int = MAX_PAIRS) -> tuple[list[tuple[float, float]], int, str | None]:  # fmt: skip
    """`timed_pairs` between two fresh workers running `units.bare` with `specs` (side -> spec, in the order the
    pairs are returned); which side loads and times first alternates with `round_`. The workers are closed
    after the round: the next one starts in new processes."""
    from harness.engine.workers import POOL

    sides = tuple(specs)

    def run(side: str) -> tuple[str, dict[str, Any] | None, str | None]:
        return POOL.run(f"{name}-{side}-r{round_}", round_, threads, "bare", specs[side], m.cell_timeout_s)

    try:
        pairs, retried, why = timed_pairs(run, sides if round_ % 2 == 0 else sides[::-1], m, max_pairs)
    finally:
        POOL.close()
    if round_ % 2:
        pairs = [(a, b) for b, a in pairs]  # in `specs` order, whichever went first
    return pairs, retried, why


def standard_error(pairs: list[tuple[float, float]]) -> float:
    """The standard error of the mean log ratio of `pairs` (two or more)."""
    return speed_ratio(pairs)[1] / math.sqrt(len(pairs))


def speed_ratio(pairs: list[tuple[float, float]]) -> tuple[float, float]:
    """The round's speed of the first side over the second (the geometric mean of its pairs' ratios: second
    side's seconds / first side's) and the pair-to-pair spread of the log ratio (0 with one pair)."""
    logs = [math.log(b / a) for a, b in pairs]
    return math.exp(statistics.fmean(logs)), statistics.stdev(logs) if len(logs) > 1 else 0.0
