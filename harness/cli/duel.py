"""`harness duel A B`: which of two configurations is faster on this machine, settled by neighbouring passes.

Each round loads A and B in two fresh workers (the harness's loading, as a sweep's cells), warms both as a cell
is warmed, then times whole passes over the same texts in turn: A, B, B, A, ... (harness.engine.interleave).
A pair's ratio saw one host, so the host's swings over seconds - what leaves a sweep's paired-by-round
comparisons of two close configurations undecided - cancel. The answer is the geometric mean of the rounds'
ratios with its 95 % rerun interval (the spread between rounds: processes differ), read as the sweep reads a
leader against its runner-up: decided (the interval excludes 1), tied (it lies within ±5 %), or undecided.

A and B are labels as the tables print them: `openvino-qint8`, `"openvino-qint8 [ov_precision=f32]"`.
"""

from __future__ import annotations

import argparse
import math
import re
import statistics

from harness import backends
from harness.cli.overhead import add_max_pairs, too_few_pairs
from harness.core.usage import ConfigError, did_you_mean
from harness.engine.grid import compose
from harness.engine.interleave import MAX_PAIRS
from harness.engine.preflight import check_config

LABEL = re.compile(r"^\s*([\w.-]+)\s*(?:\[([^\]]*)\])?\s*$")


def label_overrides(label: str) -> list[str]:
    """`openvino-qint8 [ov_precision=f32]` -> ["backend=openvino-qint8", "backend.ov_precision=f32"]."""
    match = LABEL.match(label)
    if not match:
        raise ConfigError(f"duel: {label!r} is not a configuration label; write NAME or 'NAME [knob=value,...]', "
                          "e.g. 'openvino-qint8 [ov_precision=f32]'.")  # fmt: skip
    name, knobs = match.group(1), match.group(2)
    if name not in backends.names():
        raise ConfigError(f"duel: {name!r} is not a backend; choose from {', '.join(backends.names())}."
                          + did_you_mean(name, list(backends.names())))  # fmt: skip
    pins = [k.strip() for k in (knobs or "").split(",") if k.strip()]
    for pin in pins:
        if "=" not in pin:
            raise ConfigError(f"duel: {pin!r} in {label!r} is not a knob setting; write knob=value.")
    return [f"backend={name}", *(f"backend.{p}" for p in pins)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="harness duel", description=__doc__.split("\n\n")[0])
    parser.add_argument("a", help="a configuration label, e.g. openvino-qint8")
    parser.add_argument("b", help="another, e.g. 'openvino-qint8 [ov_precision=f32]'")
    parser.add_argument("overrides", nargs="*", help="sweep overrides: model=..., dataset=short, batch_sizes=[32]")
    parser.add_argument("--rounds", type=int, default=3, help="rounds in fresh processes (default 3)")
    add_max_pairs(parser)
    args = parser.parse_args(argv)
    if too_few_pairs(args.max_pairs):
        return 2
    if args.rounds < 1:
        print(f"error: --rounds: {args.rounds} is not a round count; use 1 or more.")
        return 2
    sides = {"a": label_overrides(args.a), "b": label_overrides(args.b)}
    line = _duel(args.a, args.b, sides, args.overrides, args.rounds, args.max_pairs)
    if line is None:
        return 1
    print(line)
    return 0


def _duel(label_a: str, label_b: str, sides: dict[str, list[str]], overrides: list[str], rounds: int,
          max_pairs: int = MAX_PAIRS) -> str | None:  # fmt: skip
    from harness.engine.cells import batch_sizes
    from harness.engine.interleave import speed_ratio, worker_round
    from harness.engine.specs import BareSpec
    from harness.engine.sweep import dataset_texts, prepare

    specs, jobs = {}, {}
    for side, picks in sides.items():
        cfg = compose([*overrides, *picks])
        check_config(cfg)
        jobs[side] = prepare(cfg)
        status, reason = jobs[side].export(cfg.measure.export_timeout_s)
        if status != "ok":
            print(f"error: {side} ({label_a if side == 'a' else label_b}): export failed: {reason}")
            return None
        bs = batch_sizes(cfg)[0]
        specs[side] = BareSpec(jobs[side].spec, bs, tuple(dataset_texts(cfg)), 1, "harness")
    m, threads = cfg.measure, jobs["a"].threads
    logs: list[float] = []
    for i in range(rounds):
        pairs, _, why = worker_round("duel", specs, i, threads, m, max_pairs)
        if why:
            print(f"error: {why}")
            return None
        ratio, spread = speed_ratio(pairs)  # A's throughput / B's
        logs.append(math.log(ratio))
        print(f"round {i + 1}: {len(pairs)} pairs, {label_a} {statistics.median(a for a, _ in pairs):.3f} s/pass, "
              f"{label_b} {statistics.median(b for _, b in pairs):.3f} s/pass: {ratio:.3f} (pair to pair "
              f"±{spread:.1%})", flush=True)  # fmt: skip
    return verdict_line(label_a, label_b, logs, f"{cfg.model.name} / {cfg.dataset.name} / bs {bs} / {threads} threads")


def verdict_line(label_a: str, label_b: str, logs: list[float], where: str) -> str:
    """A / B over the rounds with its rerun interval, read as the sweep reads a leader against its runner-up."""
    from harness.store import stats

    estimate = stats.rerun_interval(logs, stats.pooled([logs]))
    assert estimate is not None
    if math.isnan(estimate.low):
        status = "one round: no interval (use --rounds 2 or more)"
    elif estimate.within(stats.DECIDED_BAND):
        status = "tied (the interval lies within ±5 %)"
    elif estimate.contains_one():
        status = "undecided (the interval contains 1 and reaches beyond ±5 %: more rounds)"
    else:
        status = f"decided: {label_a if estimate.ratio > 1 else label_b} is faster"
    return f"{where}: {label_a} / {label_b} = {stats.fmt(estimate)} over {len(logs)} rounds: {status}"
