"""A sweep's duels: two configurations whose order in a group is still open after round 0, settled by
neighbouring passes instead of more rounds of each measured seconds apart.

On a shared VM the host's speed moves by 10-30 % within seconds, so two configurations measured in the same
round but a few seconds apart differ by that much whatever they run: paired by round, `openvino-qint8` and its
f32 pin read 0.68-1.41 from round to round; timed in neighbouring passes of two loaded workers, 0.96-1.00
(README, "How steady are the ratios"). So from round 1 on, a pair the rounds leave undecided
(harness.engine.rounds) duels: each duel round loads both in two fresh workers, warms them as a cell is
warmed, then times whole passes over the cell's texts in turn (harness.engine.interleave): bulk passes at the
cell's batch size for the bulk scenario, the per-request loop for the online one (its p99 from every request
of the round's passes, 100 or more on each side). Each duel round gives one ratio, this configuration over the
opponent; the comparison is their geometric mean with the rerun interval of the spread pooled over the run's
duels (harness.store.intervals). The job of the configuration ranked lower runs the pair's duels and records
them in a row of kind "round" with `duels`.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from omegaconf import DictConfig, OmegaConf

from harness import backends
from harness.core.files import digest
from harness.engine.interleave import MIN_PAIRS, speed_ratio, worker_round
from harness.engine.rounds import BULK, DUEL_ROUNDS, FIRST_DUEL_ROUNDS, ONLINE
from harness.engine.specs import BareSpec, JobSpec
from harness.store.stats import MIN_P99_SAMPLES

# pairs of passes in a duel round at most (`harness duel` times up to interleave.MAX_PAIRS): measured in a
# default sweep, duel rounds of one pair differ by ~3-4 % (the processes differ), pairs within one by ~1-2 %
# (OpenVINO), so time goes to more duel rounds in fresh processes, not to more pairs in one
MAX_PAIRS = 4


def backend_config(label: str) -> DictConfig:
    """The backend configuration a label names: `openvino-qint8 [ov_precision=f32]` -> openvino-qint8 as
    registered with ov_precision=f32 (the knobs a label lists are those that differ from the name's own)."""
    name, _, knobs = label.partition(" [")
    cfg = OmegaConf.structured(backends.named()[name])
    pins = [p.strip() for p in knobs.rstrip("]").split(",") if p.strip()]
    for key, value in OmegaConf.from_dotlist(pins).items():
        cfg[key] = value
    return cfg


def run(me: JobSpec, opponents: dict[str, JobSpec], asked: tuple[tuple[str, str, int], ...], batch_size: int,
        texts: tuple[str, ...], round_: int) -> tuple[dict[str, dict[str, list[float]]], list[str]]:  # fmt: skip
    """`asked`'s duels ((opponent, scenario, duel rounds)) of one cell in sweep round `round_`: opponent ->
    metric -> each duel round's ratio of `me` over the opponent (throughput: above 1 faster; latency_p99_ms:
    below 1 answers faster), and the reasons of the duels that failed."""
    found: dict[str, dict[str, list[float]]] = {}
    failed: list[str] = []
    m = me.measure
    for opponent, scenario, count in asked:
        online = scenario == ONLINE.name
        # online: enough passes a call that the fewest pairs a round times give each side a p99's requests
        passes = math.ceil(MIN_P99_SAMPLES / (MIN_PAIRS * math.ceil(len(texts) / batch_size))) if online else 1
        specs = {side: BareSpec(job, batch_size, texts, passes, "harness", per_request=online)
                 for side, job in (("me", me), ("them", opponents[opponent]))}  # fmt: skip
        name = f"duel-{digest([dataclasses.asdict(me.model), me.backend, opponents[opponent].backend, batch_size])}"
        for i in range(count):
            latencies: dict[str, list[float]] = {}
            key = round_ * (DUEL_ROUNDS + FIRST_DUEL_ROUNDS) + i  # fresh workers' keys, the first side turning
            pairs, _, why = worker_round(name, specs, key, me.threads, m, MAX_PAIRS, latencies)
            if why or not pairs:
                failed.append(f"duel against {opponent}: {why or 'no pair timed'}")
                break
            metrics = found.setdefault(opponent, {})
            if not online:
                metrics.setdefault(BULK.metric, []).append(speed_ratio(pairs)[0])
            elif min(len(latencies.get("me", [])), len(latencies.get("them", []))) >= MIN_P99_SAMPLES:
                p99 = {side: float(np.percentile(v, 99)) for side, v in latencies.items()}
                if p99["them"] > 0 and math.isfinite(p99["me"] / p99["them"]):
                    metrics.setdefault(ONLINE.metric, []).append(p99["me"] / p99["them"])
    return found, failed
