"""Two runs of the store side by side, to see how repeatable they are (`harness compare RUN_A RUN_B`).

Speed cells are matched on (machine, model, dataset, batch_size, threads, backend, variant), ok rows
only; a backend with swept knobs is its own configuration, named by its label
("openvino [ov_precision=bf16]") in the rankings and tables. For each matched cell: throughput in A
and B, the ratio B/A, and whether it *moved beyond its own spread*:

    moved  <=>  |B/A - 1| > 2 * sqrt(cv_a**2 + cv_b**2)

`cv` is a row's coefficient of variation of per-pass throughput (`store.rows.speed_stats`). To first
order the relative noise of a ratio of two independent measurements is the root sum of squares of
their relative noises, so the band is two of those "sigmas" (~95% if the noise were normal). The
per-pass cv, not the (smaller) cv of the mean, is used on purpose: passes within a run are not
independent of the run's conditions (clock, cache, neighbours), so the narrower band would flag
ordinary run-to-run drift. A cell whose cv is unknown (fewer than 2 passes) has `moved` = None.

Calibration of the rerun intervals (harness.store.intervals): for each cell, whether B's speedup lies inside
A's 95 % rerun interval (`inside_a`); a well-calibrated interval holds 90-99 % of them.

The ratio a user acts on is a backend's speedup over torch-fp32 *within* a run; for each cell
the change of that speedup between the runs is `speedup_diff_pct` (none for torch-fp32 itself).
Its mean and largest absolute value across cells say how steady the ratios are, which is what
decides between measuring a grid once and in interleaved rounds (`harness sweep rounds=N`).

For each (machine, model, dataset, batch_size, threads) group: Kendall's tau (scipy, tau-b) between the two
runs' orderings of the configurations (backend labels) by throughput, over those measured ok in both. 1 = same order,
-1 = reversed; one swap among three backends gives 1/3.

Rows measured under contention (`contended`, see `harness.engine.units.speed`) are kept and flagged: their
differences say more about the neighbours than about the backend.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from harness.store import results
from harness.store.analysis import contended_mask, find_machine

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
    for column in ("speedup_low", "speedup_high"):
        out[column] = pd.to_numeric(rows[column], errors="coerce") if column in rows else float("nan")
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
    # calibration of the rerun intervals: B's speedup inside A's 95 % interval (None: no interval, or torch-fp32)
    inside = (cells["speedup_b"] >= cells["speedup_low_a"]) & (cells["speedup_b"] <= cells["speedup_high_a"])
    known = cells["speedup_low_a"].notna() & cells["speedup_b"].notna() & (cells["backend"] != results.BASELINE)
    cells["inside_a"] = pd.Series([bool(v) if k else None for v, k in zip(inside, known, strict=True)],
                                  index=cells.index, dtype=object)  # fmt: skip
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
        "inside": int(cells["inside_a"].isin([True]).sum()) if "inside_a" in cells else 0,
        "with_interval": int(cells["inside_a"].notna().sum()) if "inside_a" in cells else 0,
    }
    for column, name in (("diff_pct", "diff"), ("speedup_diff_pct", "speedup_diff")):
        diffs = cells[column].abs()
        summary[f"max_abs_{name}_pct"] = summary[f"max_abs_{name}_cell"] = None
        summary[f"mean_abs_{name}_pct"] = float(diffs.mean()) if diffs.notna().any() else None
        if diffs.notna().any():
            worst = cells.loc[diffs.idxmax()]
            summary[f"max_abs_{name}_pct"] = float(diffs.max())
            summary[f"max_abs_{name}_cell"] = {k: plain(worst[k]) for k in CELL_KEYS}
    return summary


def select_machine(df: pd.DataFrame, machine: str) -> pd.DataFrame:
    """Rows of the machine `machine` names (the full fingerprint or a unique prefix)."""
    return df[df["machine"] == find_machine(df, machine)]


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def plain(value: Any) -> Any:
    """JSON-safe scalars: numpy -> Python, NaN -> None."""
    if value is pd.NA:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
