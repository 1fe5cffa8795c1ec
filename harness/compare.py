"""`harness compare RUN_A RUN_B`: two runs of the store side by side, to see how repeatable they are.

Speed cells are matched on (machine, model, dataset, batch_size, threads, backend, variant), ok rows
only; a backend with swept knobs is its own configuration, named by its label
("openvino [ov_precision=bf16]") in the rankings and tables. For each matched cell: throughput in A
and B, the ratio B/A, and whether it *moved beyond its own spread*:

    moved  <=>  |B/A - 1| > 2 * sqrt(cv_a**2 + cv_b**2)

`cv` is a row's coefficient of variation of per-pass throughput (`measure.Timing.cv`). To first
order the relative noise of a ratio of two independent measurements is the root sum of squares of
their relative noises, so the band is two of those "sigmas" (~95% if the noise were normal). The
per-pass cv, not the (smaller) cv of the mean, is used on purpose: passes within a run are not
independent of the run's conditions (clock, cache, neighbours), so the narrower band would flag
ordinary run-to-run drift. A cell whose cv is unknown (fewer than 2 passes) has `moved` = None.

The ratio a user acts on is a backend's speedup over torch-fp32 *within* a run; for each cell
the change of that speedup between the runs is `speedup_diff_pct` (none for torch-fp32 itself).
Its mean and largest absolute value across cells say how steady the ratios are, which is what
decides between measuring a grid once and in interleaved rounds (`harness sweep rounds=N`).

For each (machine, model, dataset, batch_size, threads) group: Kendall's tau (scipy, tau-b) between the two
runs' orderings of the configurations (backend labels) by throughput, over those measured ok in both. 1 = same order,
-1 = reversed; one swap among three backends gives 1/3.

Rows measured under contention (`contended`, see `harness.work.speed`) are kept and flagged: their
differences say more about the neighbours than about the backend.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness import results
from harness.analysis import contended_mask, find_machine
from harness.usage import Parser, UsageError, did_you_mean

CELL_KEYS = ["machine", "model", "dataset", "batch_size", "threads", "backend", "variant"]
GROUP_KEYS = ["machine", "model", "dataset", "batch_size", "threads"]
SPREAD_SIGMAS = 2.0  # the band is this many combined cvs wide (see the module docstring)


# --------------------------------------------------------------------------------------------
# Pure functions: DataFrame in, DataFrame out
# --------------------------------------------------------------------------------------------


def speed_cells(df: pd.DataFrame, run: str) -> pd.DataFrame:
    """The ok speed rows of `run`, one per cell key (the latest when a cell was measured twice)."""
    rows = df[(df["run"] == run) & (df["kind"] == "speed") & (df["status"] == "ok")]
    rows = rows.sort_values("timestamp", kind="stable", na_position="first")
    rows = rows.drop_duplicates(CELL_KEYS, keep="last")
    out = rows[CELL_KEYS].copy()
    # float in the store's frame (accuracy rows have none); whole numbers again here
    out["batch_size"] = pd.to_numeric(out["batch_size"], errors="coerce").astype("Int64")
    out["throughput"] = pd.to_numeric(rows["throughput"], errors="coerce")
    out["cv"] = pd.to_numeric(rows["cv"], errors="coerce")
    out["speedup"] = pd.to_numeric(rows["speedup"], errors="coerce")
    out["contended"] = contended_mask(df).loc[rows.index].to_numpy()  # own, or its torch-fp32's
    return out.reset_index(drop=True)


def moved_beyond_spread(ratio: float, cv_a: float, cv_b: float) -> bool | None:
    """|ratio - 1| > SPREAD_SIGMAS * sqrt(cv_a² + cv_b²); None when a cv is unknown."""
    if any(x is None or not math.isfinite(x) for x in (ratio, cv_a, cv_b)):
        return None
    return bool(abs(ratio - 1.0) > SPREAD_SIGMAS * math.hypot(cv_a, cv_b))


def pair_cells(df: pd.DataFrame, run_a: str, run_b: str) -> pd.DataFrame:
    """One row per cell measured ok in both runs: throughputs, ratio B/A, spread, moved, contended."""
    a, b = speed_cells(df, run_a), speed_cells(df, run_b)
    cells = a.merge(b, on=CELL_KEYS, suffixes=("_a", "_b"))
    cells["ratio"] = cells["throughput_b"] / cells["throughput_a"]
    cells["diff_pct"] = (cells["ratio"] - 1.0) * 100.0
    cells["spread_pct"] = SPREAD_SIGMAS * np.hypot(cells["cv_a"], cells["cv_b"]) * 100.0
    triples = zip(cells["ratio"], cells["cv_a"], cells["cv_b"], strict=True)
    moved = [moved_beyond_spread(r, ca, cb) for r, ca, cb in triples]
    cells["moved"] = pd.Series(moved, index=cells.index, dtype=object)  # True / False / None (unknown)
    cells["contended"] = cells["contended_a"] | cells["contended_b"]
    # the ratio users act on: how far a backend's speedup over torch-fp32 moved between the runs
    cells["speedup_diff_pct"] = (cells["speedup_b"] / cells["speedup_a"] - 1.0) * 100.0
    cells.loc[cells["backend"] == results.BASELINE, "speedup_diff_pct"] = float("nan")
    cells["label"] = [results.label(b, v) for b, v in zip(cells["backend"], cells["variant"], strict=True)]
    return cells.sort_values(CELL_KEYS, kind="stable").reset_index(drop=True)


def kendall_tau(a: list[float] | np.ndarray, b: list[float] | np.ndarray) -> float:
    """Kendall's tau-b between two orderings of the same items; NaN for fewer than two items."""
    from scipy.stats import kendalltau

    if len(a) < 2:
        return float("nan")
    return float(kendalltau(a, b).statistic)


def rank_agreement(cells: pd.DataFrame) -> pd.DataFrame:
    """Per (machine, model, dataset, batch_size, threads): Kendall's tau of the configurations' throughput order."""
    rows = []
    for key, group in cells.groupby(GROUP_KEYS, sort=True, dropna=False):
        group = group.sort_values("label")
        rows.append({
            **dict(zip(GROUP_KEYS, key, strict=True)),
            "n_backends": len(group),
            "tau": kendall_tau(group["throughput_a"].to_numpy(), group["throughput_b"].to_numpy()),
            "order_a": list(group.sort_values("throughput_a", ascending=False)["label"]),
            "order_b": list(group.sort_values("throughput_b", ascending=False)["label"]),
            "contended": int(group["contended"].sum()),
        })  # fmt: skip
    return pd.DataFrame(rows, columns=[*GROUP_KEYS, "n_backends", "tau", "order_a", "order_b", "contended"])


def summarize(cells: pd.DataFrame, ranks: pd.DataFrame) -> dict[str, Any]:
    """Mean tau, the largest per-cell |difference| (%), and how many cells moved beyond their spread."""
    moved = cells["moved"].isin([True])
    summary: dict[str, Any] = {
        "cells": len(cells),
        "groups": len(ranks),
        "groups_ranked": int(ranks["tau"].notna().sum()),  # groups with >= 2 backends (and not all tied)
        "mean_tau": float(ranks["tau"].mean()) if ranks["tau"].notna().any() else None,
        "moved": int(moved.sum()),
        "moved_contended": int((moved & cells["contended"]).sum()),
        "spread_unknown": int(cells["moved"].isna().sum()),
        "contended": int(cells["contended"].sum()),
    }
    for column, name in (("diff_pct", "diff"), ("speedup_diff_pct", "speedup_diff")):
        diffs = cells[column].abs()
        summary[f"max_abs_{name}_pct"] = summary[f"max_abs_{name}_cell"] = None
        summary[f"mean_abs_{name}_pct"] = float(diffs.mean()) if diffs.notna().any() else None
        if diffs.notna().any():
            worst = cells.loc[diffs.idxmax()]
            summary[f"max_abs_{name}_pct"] = float(diffs.max())
            summary[f"max_abs_{name}_cell"] = {k: _plain(worst[k]) for k in CELL_KEYS}
    return summary


def select_machine(df: pd.DataFrame, machine: str) -> pd.DataFrame:
    """Rows of the machine `machine` names (the full fingerprint or a unique prefix)."""
    return df[df["machine"] == find_machine(df, machine)]


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


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


def _plain(value: Any) -> Any:
    """JSON-safe scalars: numpy -> Python, NaN -> None."""
    if value is pd.NA:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: _plain(v) for k, v in row.items()} for row in df.to_dict(orient="records")]


def _fmt(x: Any, spec: str) -> str:
    return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, spec)


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
        "speedup A": cells["speedup_a"].map(lambda x: _fmt(x, ".2f")),
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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
