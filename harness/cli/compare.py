"""`harness compare RUN_A RUN_B`: the command line and the text of the comparison (`harness.store.compare`)."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from harness.core.usage import Parser, UsageError, did_you_mean
from harness.store import results
from harness.store.compare import (
    pair_cells,
    plain,
    rank_agreement,
    select_machine,
    summarize,
)
from harness.store.stats import span


def store_runs(results_dir: Path) -> list[str]:
    """Run names in the store: its folders that hold at least one result file."""
    if not results_dir.is_dir():
        return []
    return sorted(
        p.name for p in results_dir.iterdir() if p.is_dir() and not p.name.startswith(".") and any(p.glob("[!.]*.json"))
    )


def check_run(run: str, known: list[str]) -> None:
    if run not in known:
        raise UsageError(
            f"run: {run!r} is not in the store; runs: {', '.join(known) or 'none'}." + did_you_mean(run, known)
        )


def build_parser(prog: str = "harness compare") -> argparse.ArgumentParser:
    p = Parser(
        prog=prog,
        description="Set two runs side by side: per-cell throughput ratio B/A and whether it moved beyond "
        "the cells' own spread (|B/A-1| > 2*sqrt(cv_a^2+cv_b^2)), and per group Kendall's tau of the "
        "backend ranking.",
    )
    p.add_argument("run_a", metavar="RUN_A", help="the reference run")
    p.add_argument("run_b", metavar="RUN_B", help="the run compared with it (ratios are B/A)")
    p.add_argument("--results", type=Path, default=Path("results"), help="result store (results/)")
    p.add_argument("--machine", metavar="FP", help="only this machine fingerprint (a unique prefix is enough)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    return p


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: plain(v) for k, v in row.items()} for row in df.to_dict(orient="records")]


def _fmt(x: Any, spec: str) -> str:
    return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, spec)


def _interval(x: Any, low: Any, high: Any) -> str:
    return _fmt(x, ".2f") + span(low, high)


def format_text(run_a: str, run_b: str, cells: pd.DataFrame, ranks: pd.DataFrame, summary: dict[str, Any]) -> str:
    machines = cells["machine"].nunique()
    table = pd.DataFrame({
        **({"machine": cells["machine"].str[:12]} if machines > 1 else {}),
        "model": cells["model"],
        "dataset": cells["dataset"],
        "bs": cells["batch_size"].astype(str),
        "backend": cells["label"],
        f"{run_a} /s": cells["throughput_a"].map(lambda x: _fmt(x, ".1f")),
        f"{run_b} /s": cells["throughput_b"].map(lambda x: _fmt(x, ".1f")),
        "B/A": cells["ratio"].map(lambda x: _fmt(x, ".3f")),
        "diff": cells["diff_pct"].map(lambda x: _fmt(x, "+.1f") + "%"),
        "speedup A (95% rerun)": list(map(_interval, cells["speedup_a"], cells["speedup_low_a"],
                                          cells["speedup_high_a"])),
        "speedup B": cells["speedup_b"].map(lambda x: _fmt(x, ".2f")),
        "speedup diff": cells["speedup_diff_pct"].map(lambda x: _fmt(x, "+.1f") + ("%" if math.isfinite(x) else "")),
        "spread": cells["spread_pct"].map(lambda x: "?" if not math.isfinite(x) else f"±{x:.1f}%"),
        "moved": cells["moved"].map({True: "MOVED", False: "", None: "?"}.get),
        "contended": cells["contended"].map({True: "contended", False: ""}.get),
    })  # fmt: skip
    lines = [f"harness compare {run_a} -> {run_b}: {len(cells)} speed cells in both runs", ""]
    lines += table.to_string(index=False).splitlines()
    lines += ["", "Backend ranking by throughput (Kendall's tau between the runs):"]
    for r in ranks.itertuples(index=False):
        where = f"{r.model} / {r.dataset} / bs {r.batch_size}" + (f" [{r.machine[:12]}]" if machines > 1 else "")
        same = "same order" if r.order_a == r.order_b else f"{' > '.join(r.order_a)}  vs  {' > '.join(r.order_b)}"
        flag = f"  ({r.contended} contended)" if r.contended else ""
        if r.n_backends < 2:
            lines.append(f"  {where}: tau - (only {r.n_backends} backend in both runs){flag}")
        else:
            lines.append(f"  {where}: tau {r.tau:.3f} over {r.n_backends} backends; {same}{flag}")

    def where(cell: dict[str, Any] | None) -> str:
        if not cell:
            return ""
        name = results.label(cell["backend"], cell["variant"] or "")
        return f" ({name}, {cell['model']} / {cell['dataset']} / bs {cell['batch_size']})"

    lines += [
        "",
        "Summary:",
        f"  mean tau:                 {_fmt(summary['mean_tau'], '.3f')} "
        f"over {summary['groups_ranked']} of {summary['groups']} group(s)",
        f"  largest |difference|:     {_fmt(summary['max_abs_diff_pct'], '.1f')}%{where(summary['max_abs_diff_cell'])}"
        f"; mean {_fmt(summary['mean_abs_diff_pct'], '.1f')}%",
        f"  speedup vs {results.BASELINE} moved: largest {_fmt(summary['max_abs_speedup_diff_pct'], '.1f')}%"
        f"{where(summary['max_abs_speedup_diff_cell'])}; mean {_fmt(summary['mean_abs_speedup_diff_pct'], '.1f')}%",
        f"  moved beyond own spread:  {summary['moved']} of {summary['cells']} cells "
        f"({summary['moved_contended']} of them contended; rule |B/A-1| > 2*sqrt(cv_a^2+cv_b^2))",
    ]
    if summary["with_interval"]:
        share = summary["inside"] / summary["with_interval"]
        lines.append(f"  rerun intervals:          {summary['inside']} of {summary['with_interval']} speedups of "
                     f"{run_b} inside {run_a}'s 95 % rerun intervals ({share:.0%}; calibrated: 90-99 %)")  # fmt: skip
    if summary["spread_unknown"]:
        n = summary["spread_unknown"]
        lines.append(f"  spread unknown:           {n} cell(s) with fewer than 2 timed passes")
    if summary["contended"]:
        n = summary["contended"]
        lines.append(f"  contended:                {n} cell(s) measured under CPU contention in A or B")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        known = store_runs(args.results)
        check_run(args.run_a, known)
        check_run(args.run_b, known)
        df = results.load(args.results, [args.run_a, args.run_b])
        if args.machine:
            df = select_machine(df, args.machine)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    cells = pair_cells(df, args.run_a, args.run_b)
    if cells.empty:
        on = f" on machine {args.machine}" if args.machine else ""
        print(f"error: no ok speed cell was measured in both {args.run_a} and {args.run_b}{on}.", file=sys.stderr)
        return 1
    ranks = rank_agreement(cells)
    summary = summarize(cells, ranks)
    if args.json:
        out = {
            "run_a": args.run_a,
            "run_b": args.run_b,
            "rule": "moved = |B/A - 1| > 2 * sqrt(cv_a^2 + cv_b^2)",
            "summary": summary,
            "cells": _records(cells),
            "rankings": _records(ranks),
        }
        print(json.dumps(out, default=str))
    else:
        print(format_text(args.run_a, args.run_b, cells, ranks, summary))
    return 0
