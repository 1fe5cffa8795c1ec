"""Pure chart functions: a result DataFrame (`results.load`) in, a matplotlib Figure out.

Nothing here saves, shows or touches global pyplot state: figures are built with
`matplotlib.figure.Figure` (rendered by Agg when the caller saves them). A function returns None
when the store holds nothing it could draw, so callers can skip the section.

Shared rules:
* backends appear in `BACKEND_ORDER`, always with the same colour;
* speed rows with a status other than ok are never drawn as zero: they are listed in a footnote;
* contended measurements are excluded from means (noted in the footnote); in the heatmaps a cell
  measured only under contention is drawn hatched and marked with '~';
* the device (CPU / GPU) of a row comes from `device_of`; one panel per device, and per machine
  when the data holds several.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from harness.report.layout import (
    BACKEND_COLORS,
    BACKEND_ORDER,
    FONT,
    FOOT_LINE_IN,
    KIND_TITLES,
    ROW_IN,
    SHARE_COLORS,
    SHARES,
    UNIT,
    acc_label,
    accuracy_by_backend,
    backend_order,
    baseline_note,
    by_label,
    color_of,
    dataset_order,
    finish,
    footnote,
    mean_interval,
    not_run,
    panels,
    short,
    speed_rows,
    stacked_axes,
)  # fmt: skip
from harness.report.pareto import accuracy_vs_speedup, fidelity_vs_speedup, marker_of, pareto_front
from harness.report.sizes import speedup_by_model_size
from harness.store.analysis import device_of

__all__ = [
    "BACKEND_COLORS", "BACKEND_ORDER", "KIND_TITLES", "UNIT", "accuracy_by_backend", "accuracy_vs_speedup",
    "all_charts", "backend_order", "by_label", "color_of", "dataset_order", "device_of", "fidelity_vs_speedup",
    "marker_of", "not_run",
    "panels", "pareto_front", "speed_rows", "speedup_by_batch_size", "speedup_by_dataset", "speedup_chart",
    "time_breakdown",
]  # fmt: skip


# --------------------------------------------------------------------------------------------
# 1. docs-style speedup chart
# --------------------------------------------------------------------------------------------


def _backends_by_panel(rows: pd.DataFrame) -> tuple[list[str], dict[str, list[str]]]:
    """The chart's panels and, in each, the backends it has rows of (in the report's backend order)."""
    names = panels(rows)
    order = backend_order(rows["backend"].unique())
    return names, {p: [b for b in order if (rows.loc[rows["panel"] == p, "backend"] == b).any()] for p in names}


def speedup_chart(df: pd.DataFrame, model_kind: str = "bi-encoder") -> Figure | None:
    """Speedup per backend vs torch-fp32 (mean over models, datasets and batch sizes) with its 95 % rerun
    interval (how far a second sweep on this machine would move it), one panel per device, accuracy retained
    per backend beside each bar."""
    sp = speed_rows(df, model_kind)
    if sp.empty:
        return None
    ok = sp[(sp["status"] == "ok") & sp["speedup"].notna()]
    clean = ok[~ok["is_contended"]]
    if clean.empty:
        return None
    names, per_panel = _backends_by_panel(clean)
    width = 8.0
    foot_lines = [
        "Bars: mean speedup over cells (models \u00d7 datasets \u00d7 batch sizes; paired with torch-fp32 per "
        "round); whiskers: the 95 % rerun interval, where a second sweep on this machine would put it; "
        "n = cells. Accuracy retained: score / torch-fp32 score, mean over metrics; n/a = not evaluated.",
        *baseline_note(sp),
    ]
    skipped = not_run(sp)
    if skipped:
        foot_lines.append("Not plotted - " + "; ".join(skipped))
    n_cont = int(ok["is_contended"].sum())
    if n_cont:
        foot_lines.append(f"{n_cont} contended measurement(s) excluded (not evidence).")
    rows_total = sum(len(v) for v in per_panel.values())
    height = ROW_IN * rows_total + 1.05 * len(names) + 0.6 + FOOT_LINE_IN * (len(foot_lines) + 2)
    fig = Figure(figsize=(width, height), layout="constrained")
    axes = stacked_axes(fig, [len(per_panel[p]) for p in names])
    for ax, panel in zip(axes, names, strict=True):
        rows = clean[clean["panel"] == panel]
        acc = accuracy_by_backend(df, rows["model"].unique(), rows["machine"].unique())
        present = per_panel[panel]
        stats = {b: mean_interval(rows[rows["backend"] == b]) for b in present}
        xmax = max(max(h for _, _, h, _ in stats.values()), 1.0)
        for i, b in enumerate(present):
            mean, low, high, n = stats[b]
            ax.barh(
                i,
                mean,
                xerr=[[mean - low], [high - mean]] if high > low else None,
                color=color_of(b),
                height=0.72,
                error_kw={"elinewidth": 1, "capsize": 2.5, "ecolor": "#333333"},
            )
            span = f" ({low:.2f}-{high:.2f})" if high > low else ""
            ax.text(high + xmax * 0.015, i, f"{mean:.2f}x{span}  (n={n})", va="center", fontsize=FONT - 0.5)
            label = acc_label(acc.get(b))
            ax.annotate(
                label,
                xy=(1.02, i),
                xycoords=("axes fraction", "data"),
                va="center",
                fontsize=FONT - 0.5,
                color="#999999" if label == "n/a" else "#222222",
            )
        ax.annotate(
            "accuracy\nretained",
            xy=(1.02, 1.0),
            xycoords="axes fraction",
            va="bottom",
            fontsize=FONT - 1,
            color="#555555",
        )
        ax.axvline(1.0, color="#333333", lw=0.9, ls="--", zorder=0)
        ax.set_yticks(range(len(present)), present, fontsize=FONT)
        ax.set_ylim(len(present) - 0.5, -0.5)
        ax.set_xlim(0, xmax * 1.22)
        ax.set_xlabel("speedup vs torch-fp32 (\u00d7, higher is faster)", fontsize=FONT)
        ax.tick_params(axis="x", labelsize=FONT - 1)
        ax.set_title(panel, fontsize=FONT + 1, loc="left")
        ax.grid(axis="x", alpha=0.3)
        ax.spines[["top", "right"]].set_visible(False)
    fig.suptitle(
        f"{KIND_TITLES.get(model_kind, model_kind)}: speedup vs torch-fp32 and accuracy retained",
        fontsize=FONT + 3,
        x=0.01,
        ha="left",
    )
    finish(fig, footnote(fig, foot_lines, width))
    return fig


# --------------------------------------------------------------------------------------------
# 2. breakdowns: by dataset (text length) and by batch size
# --------------------------------------------------------------------------------------------


def _heatmap(df: pd.DataFrame, model_kind: str, column: str, title: str) -> Figure | None:
    sp = speed_rows(df, model_kind)
    if sp.empty:
        return None
    ok = sp[(sp["status"] == "ok") & sp["speedup"].notna()]
    if ok.empty:
        return None
    if column == "dataset":
        cols = dataset_order(sp)
        keys: list[Any] = [c for c, _ in cols]
        labels = [f"{c}\n{chars:,.0f} chars" if chars is not None else f"{c}\n? chars" for c, chars in cols]
        xlabel = "dataset (mean text length in characters, shortest first)"
    else:
        keys = sorted({int(b) for b in sp[column].dropna()})
        labels = [str(k) for k in keys]
        xlabel = "batch size"
    names = panels(sp)
    order = backend_order(sp["backend"].unique())
    per_panel = {p: [b for b in order if (sp.loc[sp["panel"] == p, "backend"] == b).any()] for p in names}
    vals = ok["speedup"].astype(float)
    norm = TwoSlopeNorm(vcenter=1.0, vmin=min(float(vals.min()), 0.8), vmax=max(float(vals.max()), 1.25))
    cmap = colormaps["RdBu"]
    cell_w = max(0.95, 0.085 * max(len(lbl.split("\n")[0]) for lbl in labels))
    width = max(5.5, len(keys) * cell_w + 3.4)
    foot = [
        f"Cells: mean speedup over models and {'batch sizes' if column == 'dataset' else 'datasets'}; "
        "blue = faster than torch-fp32, red = slower.",
        *baseline_note(sp),
    ]
    rows_total = sum(len(v) for v in per_panel.values())
    height = ROW_IN * 1.15 * rows_total + 1.25 * len(names) + 0.6 + FOOT_LINE_IN * 5
    fig = Figure(figsize=(width, height), layout="constrained")
    axes = stacked_axes(fig, [len(per_panel[p]) for p in names])
    n_hatched = n_excl = 0
    image = None
    for ax, panel in zip(axes, names, strict=True):
        rows = sp[sp["panel"] == panel]
        present = per_panel[panel]
        grid = np.full((len(present), len(keys)), np.nan)
        for i, b in enumerate(present):
            for j, k in enumerate(keys):
                cell = rows[(rows["backend"] == b) & (rows[column] == k)]
                good = cell[(cell["status"] == "ok") & cell["speedup"].notna()]
                clean = good[~good["is_contended"]]
                text, color, hatch = "", "#999999", False
                if len(clean):
                    grid[i, j] = clean["speedup"].astype(float).mean()
                    text = f"{grid[i, j]:.2f}x"
                    n_excl += len(good) - len(clean)
                elif len(good):  # only contended measurements: drawn hatched, marked '~'
                    grid[i, j] = good["speedup"].astype(float).mean()
                    text, hatch = f"~{grid[i, j]:.2f}x", True
                    n_hatched += 1
                elif len(cell):
                    text = short("/".join(sorted(cell["status"].dropna().unique())), 12)
                if not np.isnan(grid[i, j]):
                    r, g, bl, _ = cmap(norm(grid[i, j]))
                    color = "white" if (0.299 * r + 0.587 * g + 0.114 * bl) < 0.5 else "black"
                if hatch:
                    ax.add_patch(
                        Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="////", ec="#555555", lw=0, zorder=2)
                    )
                box = {"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.9} if hatch else None
                if hatch:
                    color = "black"
                ax.text(j, i, text, ha="center", va="center", fontsize=FONT - 1, color=color, zorder=3, bbox=box)
        image = ax.imshow(grid, cmap=cmap, norm=norm, aspect="auto")
        ax.set_xticks(range(len(keys)), labels, fontsize=FONT - 0.5)
        ax.set_yticks(range(len(present)), present, fontsize=FONT)
        ax.set_xlabel(xlabel, fontsize=FONT)
        ax.set_title(panel, fontsize=FONT + 1, loc="left")
        ax.set_xticks(np.arange(-0.5, len(keys)), minor=True)
        ax.set_yticks(np.arange(-0.5, len(present)), minor=True)
        ax.tick_params(which="both", length=0)
        ax.grid(which="minor", color="white", lw=1.5)
        ax.spines[:].set_visible(False)
    if image is not None:
        bar = fig.colorbar(image, ax=axes, shrink=0.9, pad=0.02)
        bar.set_label("speedup vs torch-fp32 (\u00d7)", fontsize=FONT)
        bar.ax.tick_params(labelsize=FONT - 1)
    if n_hatched:
        foot.append(f"Hatched '~' cells ({n_hatched}): measured only while the CPU was contended; not evidence.")
    if n_excl:
        foot.append(f"{n_excl} contended measurement(s) excluded from the means of the other cells.")
    skipped = not_run(sp)
    if skipped:
        foot.append("Not measured - " + "; ".join(skipped))
    fig.suptitle(f"{KIND_TITLES.get(model_kind, model_kind)}: {title}", fontsize=FONT + 3, x=0.01, ha="left")
    finish(fig, footnote(fig, foot, width))
    return fig


def speedup_by_dataset(df: pd.DataFrame, model_kind: str = "bi-encoder") -> Figure | None:
    """Heatmap: speedup per backend (rows) and dataset (columns, ordered by text length)."""
    return _heatmap(df, model_kind, "dataset", "speedup by text length")


def speedup_by_batch_size(df: pd.DataFrame, model_kind: str = "bi-encoder") -> Figure | None:
    """Heatmap: speedup per backend (rows) and batch size (columns)."""
    return _heatmap(df, model_kind, "batch_size", "speedup by batch size")


# --------------------------------------------------------------------------------------------
# 4. time breakdown
# --------------------------------------------------------------------------------------------


def time_breakdown(df: pd.DataFrame, model_kind: str = "bi-encoder") -> Figure | None:
    """Share of time in tokenize / forward / other per backend (mean over cells), where recorded."""
    sp = speed_rows(df, model_kind)
    if sp.empty:
        return None
    ok = sp[(sp["status"] == "ok") & ~sp["is_contended"]]
    cols = [c for c, _ in SHARES]
    shares = ok[cols].apply(pd.to_numeric, errors="coerce")
    ok = ok[shares.notna().any(axis=1)]
    if ok.empty:
        return None
    names, per_panel = _backends_by_panel(ok)
    width = 8.0
    rows_total = sum(len(v) for v in per_panel.values())
    height = ROW_IN * rows_total + 1.0 * len(names) + 1.0 + FOOT_LINE_IN * 3
    fig = Figure(figsize=(width, height), layout="constrained")
    axes = stacked_axes(fig, [len(per_panel[p]) for p in names])
    for ax, panel in zip(axes, names, strict=True):
        rows = ok[ok["panel"] == panel]
        present = per_panel[panel]
        means = rows.groupby("backend")[cols].apply(lambda g: g.apply(pd.to_numeric, errors="coerce").mean())
        means = means.reindex(present).fillna(0.0)
        totals = means.sum(axis=1).replace(0, np.nan)
        pct = means.div(totals, axis=0).fillna(0.0) * 100
        left = np.zeros(len(present))
        for (col, label), color in zip(SHARES, SHARE_COLORS, strict=True):
            vals = pct[col].to_numpy()
            ax.barh(range(len(present)), vals, left=left, color=color, height=0.7, label=label)
            for i, v in enumerate(vals):
                if v >= 8:
                    ax.text(left[i] + v / 2, i, f"{v:.0f}%", ha="center", va="center", fontsize=FONT - 1.5)
            left += vals
        ax.set_yticks(range(len(present)), present, fontsize=FONT)
        ax.set_ylim(len(present) - 0.5, -0.5)
        ax.set_xlim(0, 100)
        ax.set_xlabel("share of encode time (%)", fontsize=FONT)
        ax.tick_params(axis="x", labelsize=FONT - 1)
        ax.set_title(panel, fontsize=FONT + 1, loc="left")
        ax.spines[["top", "right"]].set_visible(False)
    handles = [Patch(color=c, label=lbl) for (_, lbl), c in zip(SHARES, SHARE_COLORS, strict=True)]
    axes[0].legend(
        handles=handles,
        loc="lower right",  # opposite the left-aligned panel title
        bbox_to_anchor=(1.0, 1.0),
        ncols=3,
        fontsize=FONT - 1,
        frameon=False,
        borderaxespad=0.2,
        handlelength=1.2,
    )
    foot = ["Shares of the measured encode time, mean over cells; contended cells excluded."]
    missing = backend_order(set(sp.loc[sp["status"] == "ok", "backend"]) - set(ok["backend"]))
    if missing:
        foot.append("No breakdown recorded for: " + ", ".join(missing))
    finish(fig, footnote(fig, foot, width))
    fig.suptitle(
        f"{KIND_TITLES.get(model_kind, model_kind)}: where the time goes (mean over cells)",
        fontsize=FONT + 3,
        x=0.01,
        ha="left",
    )
    return fig


def all_charts(df: pd.DataFrame, model_kind: str) -> dict[str, Figure]:
    """Every chart for one model kind that has something to draw, by short name."""
    charts = {
        "speedup": speedup_chart(df, model_kind),
        "by-dataset": speedup_by_dataset(df, model_kind),
        "by-batch-size": speedup_by_batch_size(df, model_kind),
        "accuracy-vs-speedup": accuracy_vs_speedup(df, model_kind),
        "fidelity-vs-speedup": fidelity_vs_speedup(df, model_kind),
        "time-breakdown": time_breakdown(df, model_kind),
        "by-model-size": speedup_by_model_size(df, model_kind),
    }
    return {name: fig for name, fig in charts.items() if fig is not None}
