"""`harness overhead`: is the harness's reported throughput the throughput a user's `encode` gets?

For each backend: the harness's speed cell, run exactly as a sweep runs it (in a worker forked from
the preloaded server, harness.engine.workers), and a bare loop — `model.encode(texts, batch_size=B)` over
all the texts, one clock around it, in a freshly spawned process — in alternating rounds (which one
goes first alternates too), each round in new processes. Reports harness bulk throughput / bare
throughput; alternating cancels slow drift of the machine. Both sides meter the CPU: a bare loop that
shared it with another process is run again (`measure.contention_retries`), as a speed cell re-measures.
"""

from __future__ import annotations

import argparse
import statistics
from typing import Any

from harness import backends
from harness.core.usage import did_you_mean
from harness.engine.grid import compose
from harness.engine.preflight import check_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="harness overhead", description=__doc__.split("\n\n")[0])
    parser.add_argument("overrides", nargs="*", help="sweep overrides, e.g. backend=onnx dataset=medium")
    parser.add_argument("--rounds", type=int, default=3, help="alternating harness/bare rounds (default 3)")
    parser.add_argument("--backends", help="comma-separated backends, each measured in turn (default: backend=)")
    args = parser.parse_args(argv)
    names = args.backends.split(",") if args.backends else [None]
    for name in names:
        if name is not None and name not in backends.names():
            print(f"error: --backends: {name!r} is not a backend; choose from {', '.join(backends.names())}."
                  + did_you_mean(name, list(backends.names())))  # fmt: skip
            return 2
    lines = []
    for name in names:
        overrides = [*args.overrides, f"backend={name}"] if name else args.overrides
        line = _one(overrides, args.rounds)
        if line is None:
            return 1
        lines.append(line)
    print("\n".join(lines))
    return 0


def _one(overrides: list[str], rounds: int) -> str | None:
    from harness.engine.cells import batch_sizes
    from harness.engine.isolation import run_isolated
    from harness.engine.specs import BareSpec, SpeedSpec
    from harness.engine.sweep import dataset_texts, prepare
    from harness.engine.workers import POOL

    cfg = compose(overrides)
    check_config(cfg)
    job = prepare(cfg)
    status, reason = job.export(cfg.measure.export_timeout_s)
    if status != "ok":
        print(f"error: export failed: {reason}")
        return None
    bs = batch_sizes(cfg)[0]
    texts = tuple(dataset_texts(cfg))
    spec = SpeedSpec(job=job.spec, batch_size=bs, texts=texts, breakdown=False)
    harness_tp, bare_tp = [], []
    contended = 0
    passes = cfg.measure.min_repeats  # the bare loop times as many passes as the last harness cell did
    for i in range(rounds):
        # which of the two goes first alternates too, so drift within a round favours neither
        order = ("harness", "bare") if i % 2 == 0 else ("bare", "harness")
        out: dict = {}
        for side in order:
            if side == "harness":
                status, out, reason = POOL.run(f"overhead-{cfg.backend.name}-r{i}", i, job.threads, "speed", spec,
                                               cfg.measure.cell_timeout_s)  # fmt: skip
                POOL.close()
                passes = out["repeats"] if status == "ok" else passes
            else:
                status, ref, reason = bare_loop(run_isolated, BareSpec(job.spec, bs, texts, passes), cfg.measure)
            if status != "ok":
                print(f"error: {'harness cell' if side == 'harness' else 'bare loop'} {status}: {reason}")
                return None
        harness_tp.append(out["throughput"])
        bare_tp.append(ref["throughput"])
        busy = max(out["cpu_other"], ref["cpu_other"])
        contended += busy > cfg.measure.contention_threshold
        ratio = harness_tp[-1] / bare_tp[-1]
        print(f"{cfg.backend.name} round {i + 1} ({order[0]} first): harness {harness_tp[-1]:.1f}/s  "
              f"bare {bare_tp[-1]:.1f}/s  ratio {ratio:.3f}  (cpu_other {out['cpu_other']:.2f} / "
              f"{ref['cpu_other']:.2f} cores)", flush=True)  # fmt: skip
    ratio = statistics.median(h / b for h, b in zip(harness_tp, bare_tp, strict=True))
    busy_note = f"; {contended} still contended after retries" if contended else ""
    medians = f"harness {statistics.median(harness_tp):.1f}/s, bare {statistics.median(bare_tp):.1f}/s"
    return (f"{cfg.model.name} / {cfg.dataset.name} / bs {bs} / {cfg.backend.name} / {job.threads} threads: "
            f"harness bulk throughput = {ratio:.1%} of a bare encode(texts) loop (median of {rounds} rounds"
            f"{busy_note}; {medians})")  # fmt: skip


def bare_loop(run: Any, spec: Any, m: Any) -> tuple[str, dict[str, Any], str]:
    """The bare loop in a spawned process (`run`: `isolation.run_isolated`), run again while another process
    shared the CPU with it, up to `m.contention_retries` more times, as a speed cell re-measures."""
    for _ in range(m.contention_retries + 1):
        status, ref, reason = run("bare", spec, m.cell_timeout_s)
        if status != "ok" or ref["cpu_other"] <= m.contention_threshold:
            break
    return status, ref, reason
