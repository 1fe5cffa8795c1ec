"""`harness overhead`: is the harness's reported throughput the throughput a user's `encode` gets?

For each backend, rounds in fresh processes: the harness's side (the model loaded by the harness's code, timed
by the cells' pass loop, in a worker forked from the preloaded server as a sweep's cells are) and a plain side
(`SentenceTransformer(path, backend=..., model_kwargs={"file_name": ...})`, `model.encode(texts,
batch_size=B)` with one clock around it, in a worker of its own) are both loaded and warmed as a cell is, then
time whole passes over the same texts in turn: harness, plain, plain, harness, ... Each pair of neighbouring
passes ran within a second or two of each other, so the host's swings (±10-30 % on a shared VM, over seconds)
cancel in their ratio; the round's ratio is the geometric mean of its pairs, the answer the median of the
rounds'. What neighbouring passes cannot cancel is a runtime's own pass-to-pass swing (ONNX Runtime's on 2
vCPUs: README, "How steady are the ratios"); a round times more pairs while its ratio is uncertain. Both
sides meter the CPU: a pair that shared it with another process is timed again (`measure.contention_retries`
per round).
"""

from __future__ import annotations

import argparse
import statistics

from harness import backends
from harness.core.usage import did_you_mean
from harness.engine.grid import compose
from harness.engine.interleave import MAX_PAIRS, MIN_PAIRS
from harness.engine.preflight import check_config

SIDES = ("harness", "plain")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="harness overhead", description=__doc__.split("\n\n")[0])
    parser.add_argument("overrides", nargs="*", help="sweep overrides, e.g. backend=onnx dataset=medium")
    parser.add_argument("--rounds", type=int, default=3, help="rounds in fresh processes (default 3; 9 to check)")
    parser.add_argument("--backends", help="comma-separated backends, each measured in turn (default: backend=)")
    add_max_pairs(parser)
    args = parser.parse_args(argv)
    if too_few_pairs(args.max_pairs):
        return 2
    names = args.backends.split(",") if args.backends else [None]
    for name in names:
        if name is not None and name not in backends.names():
            print(f"error: --backends: {name!r} is not a backend; choose from {', '.join(backends.names())}."
                  + did_you_mean(name, list(backends.names())))  # fmt: skip
            return 2
    if args.rounds < 1:
        print(f"error: --rounds: {args.rounds} is not a round count; use 1 or more (9 to check the harness).")
        return 2
    lines = []
    for name in names:
        overrides = [*args.overrides, f"backend={name}"] if name else args.overrides
        line = _one(overrides, args.rounds, args.max_pairs)
        if line is None:
            return 1
        lines.append(line)
    print("\n".join(lines))
    return 0


def add_max_pairs(parser: argparse.ArgumentParser) -> None:
    """`--max-pairs`, as `harness overhead` and `harness duel` both take it."""
    more = "more where passes swing"
    parser.add_argument("--max-pairs", type=int, default=MAX_PAIRS,
                        help=f"pairs of passes a round times at most (default {MAX_PAIRS}; {more})")  # fmt: skip


def too_few_pairs(max_pairs: int) -> bool:
    """A `--max-pairs` below the rounds' minimum, said in one line."""
    if max_pairs < MIN_PAIRS:
        print(f"error: --max-pairs: {max_pairs} is too few; use {MIN_PAIRS} or more (default {MAX_PAIRS}).")
        return True
    return False


def _one(overrides: list[str], rounds: int, max_pairs: int = MAX_PAIRS) -> str | None:
    from harness.engine.cells import batch_sizes
    from harness.engine.interleave import speed_ratio, worker_round
    from harness.engine.specs import BareSpec
    from harness.engine.sweep import dataset_texts, prepare

    cfg = compose(overrides)
    check_config(cfg)
    job = prepare(cfg)
    status, reason = job.export(cfg.measure.export_timeout_s)
    if status != "ok":
        print(f"error: export failed: {reason}")
        return None
    bs = batch_sizes(cfg)[0]
    texts = tuple(dataset_texts(cfg))
    specs = {side: BareSpec(job.spec, bs, texts, 1, side) for side in SIDES}
    ratios, spreads, contended = [], [], 0
    for i in range(rounds):
        pairs, busy, why = worker_round(f"overhead-{cfg.backend.name}", specs, i, job.threads, cfg.measure, max_pairs)
        if why:
            print(f"error: {why}")
            return None
        contended += busy
        ratio, spread = speed_ratio(pairs)  # harness throughput / plain
        ratios.append(ratio)
        spreads.append(spread)
        print(f"{cfg.backend.name} round {i + 1} ({SIDES[i % 2]} first): {len(pairs)} pairs, harness "
              f"{statistics.median(h for h, _ in pairs):.3f} s/pass, plain {statistics.median(p for _, p in pairs):.3f}"
              f" s/pass, ratio {ratios[-1]:.3f} (pair to pair ±{spreads[-1]:.1%})", flush=True)  # fmt: skip
    busy_note = f"; {contended} pairs timed again after contention" if contended else ""
    return (f"{cfg.model.name} / {cfg.dataset.name} / bs {bs} / {cfg.backend.name} / {job.threads} threads: "
            f"harness bulk throughput = {statistics.median(ratios):.1%} of a plain encode(texts) loop (median of "
            f"{rounds} rounds: {', '.join(f'{r:.3f}' for r in ratios)}; pair to pair within a round "
            f"±{statistics.fmean(spreads):.1%}{busy_note})")  # fmt: skip
