"""`harness overhead`: is the harness's reported throughput the throughput of encode() itself?

Runs the harness speed cell and a bare loop (the same model, backend, threads, texts, batches and
calls, one clock around everything) in alternating rounds, each in its own fresh process, and
reports harness / bare. Alternating cancels slow drift of the machine.
"""

from __future__ import annotations

import argparse
import statistics

from harness.compose import compose
from harness.config import validate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="harness overhead", description=__doc__.split("\n\n")[0])
    parser.add_argument("overrides", nargs="*", help="sweep overrides, e.g. backend=onnx dataset=medium")
    parser.add_argument("--rounds", type=int, default=3, help="alternating harness/bare rounds (default 3)")
    args = parser.parse_args(argv)

    from harness.cell import run_isolated
    from harness.sweep import batch_sizes, prepare

    cfg = compose(args.overrides)
    validate(cfg)
    job = prepare(cfg)
    status, reason = job.export(cfg.measure.export_timeout_s)
    if status != "ok":
        print(f"error: export failed: {reason}")
        return 1
    bs = batch_sizes(cfg)[0]
    spec = {**job.spec, "batch_size": bs, "measure": {**job.spec["measure"], "breakdown": False}}
    harness_tp, bare_tp = [], []
    for i in range(args.rounds):
        status, out, reason = run_isolated("speed", spec, cfg.measure.cell_timeout_s)
        if status != "ok":
            print(f"error: harness cell {status}: {reason}")
            return 1
        harness_tp.append(out["throughput"])
        status, ref, reason = run_isolated("bare", {**spec, "passes": out["repeats"]}, cfg.measure.cell_timeout_s)
        if status != "ok":
            print(f"error: bare loop {status}: {reason}")
            return 1
        bare_tp.append(ref["throughput"])
        print(f"round {i + 1}: harness {harness_tp[-1]:.1f}/s  bare {bare_tp[-1]:.1f}/s  "
              f"ratio {harness_tp[-1] / bare_tp[-1]:.3f}  (cpu_other {out['cpu_other']:.2f} cores)")  # fmt: skip
    ratio = statistics.median(h / b for h, b in zip(harness_tp, bare_tp, strict=True))
    print(f"{cfg.model.name} / {cfg.dataset.name} / bs {bs} / {cfg.backend.name} / {job.threads} threads: "
          f"harness throughput = {ratio:.1%} of a bare encode loop (median of {args.rounds} rounds)")  # fmt: skip
    return 0
