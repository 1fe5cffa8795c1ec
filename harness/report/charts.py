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

import math
import textwrap
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.colors import TwoSlopeNorm, to_hex, to_rgb
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from harness import results
from harness.recommend import BACKENDS, contended_mask
from harness.report import sizes  # a module: sizes reads this one's helpers

BACKEND_ORDER = BACKENDS
BACKEND_COLORS = {
    "torch-fp32": "#7f7f7f",
    "torch-fp16": "#f4a261",
    "torch-bf16": "#e76f51",
    "onnx": "#9ecae1",
    "onnx-O1": "#6baed6",
    "onnx-O2": "#4292c6",
    "onnx-O3": "#2171b5",
    "onnx-O4": "#08519c",
    "onnx-qint8": "#2a9d8f",
    "openvino": "#b39ddb",
    "openvino-qint8": "#6a3d9a",
}
_EXTRA_COLORS = ("#bcbd22", "#17becf", "#8c564b", "#e377c2", "#1f77b4")
SHARES = (("tokenize_share", "tokenize"), ("forward_share", "forward"), ("other_share", "other"))
SHARE_COLORS = ("#f4a261", "#2a9d8f", "#bdbdbd")
KIND_TITLES = {"bi-encoder": "Embedding models", "cross-encoder": "Cross-encoders"}
UNIT = {"bi-encoder": "texts/s", "cross-encoder": "pairs/s"}

FONT = 9
ROW_IN = 0.34  # inches per backend row
FOOT_LINE_IN = 0.17  # inches per footnote line


# --------------------------------------------------------------------------------------------
# data helpers
# --------------------------------------------------------------------------------------------


def backend_order(names: Iterable[str]) -> list[str]:
    """Known backends in canonical order, each followed by its swept variants; then any others by name."""
    rank = {b: i for i, b in enumerate(BACKEND_ORDER)}
    base = results.backend_of
    return sorted(set(names), key=lambda n: (rank.get(base(n), len(rank)), base(n), n))


def color_of(backend: str) -> str:
    """A backend's colour; a variant gets its backend's colour, lightened, so the family stays visible."""
    if backend in BACKEND_COLORS:
        return BACKEND_COLORS[backend]
    base = results.backend_of(backend)
    if base in BACKEND_COLORS:
        r, g, b = to_rgb(BACKEND_COLORS[base])
        return to_hex((r + (1 - r) * 0.45, g + (1 - g) * 0.45, b + (1 - b) * 0.45))
    return _EXTRA_COLORS[sum(map(ord, backend)) % len(_EXTRA_COLORS)]


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def device_of(row: dict[str, Any]) -> str:
    """'GPU' or 'CPU': where this row's backend ran.

    An explicit settings["device"] wins; without a GPU everything ran on the CPU; OpenVINO runs on
    the CPU; ONNX runs where its provider says (default: CUDA when ONNX Runtime has it); torch
    uses the GPU when there is one (sentence-transformers' default).
    """
    settings = _dict(row.get("settings"))
    device = settings.get("device")
    if isinstance(device, str) and device:
        return "GPU" if device.lower().startswith("cuda") else "CPU"
    hw = _dict(row.get("hardware"))
    if not hw.get("gpu"):
        return "CPU"
    backend = str(row.get("backend") or "")
    if backend.startswith("openvino"):
        return "CPU"
    if backend.startswith("onnx"):
        provider = _dict(settings.get("model_kwargs")).get("provider")
        if provider:
            return "GPU" if provider in ("CUDAExecutionProvider", "TensorrtExecutionProvider") else "CPU"
        return "GPU" if "CUDAExecutionProvider" in (hw.get("ort_providers") or ()) else "CPU"
    return "GPU"


def speed_rows(df: pd.DataFrame, model_kind: str | None = None) -> pd.DataFrame:
    """Speed rows (any status) with `device`, `panel` and `is_contended` (see `contended_mask`) added."""
    sp = df[df["kind"] == "speed"]
    if model_kind:
        sp = sp[sp["model_kind"] == model_kind]
    sp = sp.copy()
    records = sp.to_dict("records")
    sp["device"] = [device_of(r) for r in records]
    sp["is_contended"] = contended_mask(df).loc[sp.index] if len(sp) else pd.Series(dtype=bool)
    several = sp["machine"].nunique() > 1
    labels = []
    for r, device in zip(records, sp["device"], strict=True):
        hw = _dict(r.get("hardware"))
        name = hw.get("gpu") if device == "GPU" else hw.get("cpu_model")
        label = device + (f" - {name}" if name else "")
        if several:
            label += f"\nmachine {r.get('machine')}"
        labels.append(label)
    sp["panel"] = labels
    return sp


def panels(sp: pd.DataFrame) -> list[str]:
    """Panel labels, CPU before GPU."""
    keys = sp[["device", "panel"]].drop_duplicates()
    return [p for _, p in sorted(zip(keys["device"], keys["panel"], strict=True))]


def by_label(df: pd.DataFrame) -> pd.DataFrame:
    """Rows named by configuration: a backend with swept runtime knobs ("openvino [ov_precision=bf16]")
    is a backend of its own in every chart and table, never averaged with the backend's defaults."""
    if "label" not in df:
        df = results.with_labels(df)
    return df.assign(backend=df["label"])


def accuracy_by_backend(df: pd.DataFrame, models: Iterable[str], machines: Iterable[str]) -> pd.Series:
    """Mean accuracy_ratio per backend: mean per metric first, then over metrics. A variant that differs
    only in speed knobs (see `results.accuracy_variant`) has the accuracy of the configuration it shares."""
    acc = df[
        (df["kind"] == "accuracy")
        & (df["status"] == "ok")
        & df["model"].isin(list(models))
        & df["machine"].isin(list(machines))
        & df["accuracy_ratio"].notna()
    ]
    if acc.empty:
        return pd.Series(dtype=float)
    per_metric = acc.groupby(["backend", "metric"])["accuracy_ratio"].apply(lambda s: s.astype(float).mean())
    out = per_metric.groupby("backend").mean()
    if "accuracy_label" in df:
        speed = df[df["kind"] == "speed"]
        shared = {b: a for b, a in zip(speed["backend"], speed["accuracy_label"], strict=True) if b not in out}
        out = pd.concat([out, pd.Series({b: out[a] for b, a in shared.items() if a in out}, dtype=float)])
    return out


def not_run(sp: pd.DataFrame) -> list[str]:
    """Footnote items: 'backend: status (reason)' for each backend never measured ok in a panel
    (prefixed by the panel when there are several), plus a count of other cells that did not run."""
    items = []
    partial = 0
    several = sp["panel"].nunique() > 1
    for panel in panels(sp):
        rows = sp[sp["panel"] == panel]
        ok = set(rows.loc[rows["status"] == "ok", "backend"])
        bad = rows[(rows["status"] != "ok") & ~rows["backend"].isin(ok)]
        partial += int(((rows["status"] != "ok") & rows["backend"].isin(ok)).sum())
        where = str(rows["device"].iloc[0])
        if sp["machine"].nunique() > 1:
            where += f" {rows['machine'].iloc[0]}"
        for backend in backend_order(bad["backend"].unique()):
            mine = bad[bad["backend"] == backend]
            status = "/".join(sorted(mine["status"].dropna().unique()))
            reasons = [str(r) for r in mine["reason"].dropna().unique() if str(r)]
            reason = f" ({_short(reasons[0], 70)})" if reasons else ""
            items.append(f"{where + ' ' if several else ''}{backend}: {status}{reason}")
    if partial:
        items.append(f"{partial} further cell(s) of otherwise measured backends did not run (see the table)")
    return items


def _short(text: str, n: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "\u2026"


def _footnote(fig: Figure, lines: list[str], width_in: float) -> float:
    """Write footnote lines under the axes; return the fraction of the height they need."""
    if not lines:
        return 0.0
    chars = max(40, int(width_in * 17))
    wrapped = [w for line in lines for w in textwrap.wrap(line, chars, subsequent_indent="   ", break_on_hyphens=False)]
    fig.text(0.01, 0.01, "\n".join(wrapped), fontsize=FONT - 1.5, va="bottom", ha="left", color="#444444")
    height = fig.get_figheight()
    return min(0.6, (len(wrapped) * FOOT_LINE_IN + 0.15) / height)


def _finish(fig: Figure, foot: float) -> None:
    engine = fig.get_layout_engine()
    if engine is not None and foot:
        engine.set(rect=(0, foot, 1, 1 - foot))


def _stats(values: pd.Series) -> tuple[float, float, int]:
    v = values.astype(float).dropna()
    n = len(v)
    if not n:
        return math.nan, math.nan, 0
    se = float(v.std(ddof=1) / math.sqrt(n)) if n > 1 else 0.0
    return float(v.mean()), se, n


# --------------------------------------------------------------------------------------------
# 1. docs-style speedup chart
# --------------------------------------------------------------------------------------------


def _acc_label(a: Any) -> str:
    """'99.6%'; two decimals where one would round a loss away to 100.0%."""
    if a is None or pd.isna(a):
        return "n/a"
    a = float(a)
    return f"{a:.2%}" if a != 1.0 and round(a * 100, 1) == 100.0 else f"{a:.1%}"


def _baseline_note(sp: pd.DataFrame) -> list[str]:
    """Say so when a CPU panel comes from a GPU machine: its baseline is torch-fp32 on the GPU."""
    cpu_on_gpu = sp[(sp["device"] == "CPU") & sp["hardware"].map(lambda h: bool(_dict(h).get("gpu")))]
    if cpu_on_gpu.empty:
        return []
    return [
        "CPU panel of a GPU machine: speedups are relative to torch-fp32 as measured there (on the GPU), "
        "since the store keeps one torch-fp32 baseline per cell."
    ]


def _stacked_axes(fig: Figure, counts: list[int]) -> list:
    """One panel per entry, stacked vertically, heights proportional to their row counts."""
    return list(fig.subplots(len(counts), 1, squeeze=False, height_ratios=counts)[:, 0])


def speedup_chart(df: pd.DataFrame, model_kind: str = "bi-encoder") -> Figure | None:
    """Speedup per backend vs torch-fp32 (mean +/- standard error over models, datasets and batch
    sizes), one panel per device, accuracy retained per backend beside each bar."""
    sp = speed_rows(df, model_kind)
    if sp.empty:
        return None
    ok = sp[(sp["status"] == "ok") & sp["speedup"].notna()]
    clean = ok[~ok["is_contended"]]
    if clean.empty:
        return None
    names = panels(clean)
    order = backend_order(clean["backend"].unique())
    per_panel = {p: [b for b in order if (clean.loc[clean["panel"] == p, "backend"] == b).any()] for p in names}
    width = 8.0
    foot_lines = [
        "Bars: mean speedup (throughput / torch-fp32 throughput in the same cell) \u00b1 standard error "
        "over cells (models \u00d7 datasets \u00d7 batch sizes); n = cells. Accuracy retained: score / "
        "torch-fp32 score, mean over metrics; n/a = not evaluated.",
        *_baseline_note(clean),
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
    axes = _stacked_axes(fig, [len(per_panel[p]) for p in names])
    for ax, panel in zip(axes, names, strict=True):
        rows = clean[clean["panel"] == panel]
        acc = accuracy_by_backend(df, rows["model"].unique(), rows["machine"].unique())
        present = per_panel[panel]
        stats = {b: _stats(rows.loc[rows["backend"] == b, "speedup"]) for b in present}
        xmax = max(max(m + s for m, s, _ in stats.values()), 1.0)
        for i, b in enumerate(present):
            mean, se, n = stats[b]
            ax.barh(
                i,
                mean,
                xerr=se if n > 1 else None,
                color=color_of(b),
                height=0.72,
                error_kw={"elinewidth": 1, "capsize": 2.5, "ecolor": "#333333"},
            )
            ax.text(mean + se + xmax * 0.015, i, f"{mean:.2f}x  (n={n})", va="center", fontsize=FONT - 0.5)
            label = _acc_label(acc.get(b))
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
    _finish(fig, _footnote(fig, foot_lines, width))
    return fig


# --------------------------------------------------------------------------------------------
# 2. breakdowns: by dataset (text length) and by batch size
# --------------------------------------------------------------------------------------------


def dataset_order(sp: pd.DataFrame) -> list[tuple[str, float | None]]:
    """(dataset, mean characters) ordered by text length; datasets without a length last."""
    chars = pd.to_numeric(sp["text_chars_mean"], errors="coerce").groupby(sp["dataset"]).mean()
    known = sorted(((d, float(c)) for d, c in chars.items() if not pd.isna(c)), key=lambda t: (t[1], t[0]))
    unknown = sorted((d, None) for d, c in chars.items() if pd.isna(c))
    return known + unknown


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
        *_baseline_note(sp[sp["status"] == "ok"]),
    ]
    rows_total = sum(len(v) for v in per_panel.values())
    height = ROW_IN * 1.15 * rows_total + 1.25 * len(names) + 0.6 + FOOT_LINE_IN * 5
    fig = Figure(figsize=(width, height), layout="constrained")
    axes = _stacked_axes(fig, [len(per_panel[p]) for p in names])
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
                    text = _short("/".join(sorted(cell["status"].dropna().unique())), 12)
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
    _finish(fig, _footnote(fig, foot, width))
    return fig


def speedup_by_dataset(df: pd.DataFrame, model_kind: str = "bi-encoder") -> Figure | None:
    """Heatmap: speedup per backend (rows) and dataset (columns, ordered by text length)."""
    return _heatmap(df, model_kind, "dataset", "speedup by text length")


def speedup_by_batch_size(df: pd.DataFrame, model_kind: str = "bi-encoder") -> Figure | None:
    """Heatmap: speedup per backend (rows) and batch size (columns)."""
    return _heatmap(df, model_kind, "batch_size", "speedup by batch size")


# --------------------------------------------------------------------------------------------
# 3. accuracy vs speedup, Pareto front
# --------------------------------------------------------------------------------------------


def pareto_front(points: dict[str, tuple[float, float]]) -> list[str]:
    """Names of the points no other point beats on both speedup and accuracy, by speedup."""
    front = []
    for name, (x, y) in points.items():
        dominated = any((ox >= x and oy >= y) and (ox > x or oy > y) for o, (ox, oy) in points.items() if o != name)
        if not dominated:
            front.append(name)
    return sorted(front, key=lambda n: points[n][0])


def marker_of(backend: str) -> str:
    if backend.startswith("torch"):
        return "o"
    if backend == "onnx-qint8":
        return "D"
    if backend == "openvino-qint8":
        return "^"
    if backend.startswith("openvino"):
        return "v"
    return "s"


def accuracy_vs_speedup(df: pd.DataFrame, model_kind: str = "bi-encoder") -> Figure | None:
    """Accuracy retained vs speedup per backend, Pareto front marked; one panel per device."""
    sp = speed_rows(df, model_kind)
    if sp.empty:
        return None
    clean = sp[(sp["status"] == "ok") & sp["speedup"].notna() & ~sp["is_contended"]]
    data = {}
    for panel in panels(clean):
        rows = clean[clean["panel"] == panel]
        acc = accuracy_by_backend(df, rows["model"].unique(), rows["machine"].unique())
        pts = {}
        for b in backend_order(rows["backend"].unique()):
            a = acc.get(b)
            if b == "torch-fp32" and (a is None or pd.isna(a)):
                a = 1.0
            if a is not None and not pd.isna(a):
                pts[b] = (
                    float(rows.loc[rows["backend"] == b, "speedup"].astype(float).mean()),
                    float(a) * 100,
                )
        if pts:
            data[panel] = pts
    if not data:
        return None
    width = 5.4 * len(data) + 2.0
    fig = Figure(figsize=(width, 4.9), layout="constrained")
    axes = fig.subplots(1, len(data), squeeze=False)[0]
    seen: dict[str, Any] = {}
    fronts = {}
    for ax, (panel, pts) in zip(axes, data.items(), strict=True):
        front = fronts[panel] = pareto_front(pts)
        for b, (x, y) in pts.items():
            on = b in front
            h = ax.scatter(
                x,
                y,
                s=80 if on else 45,
                marker=marker_of(b),
                color=color_of(b),
                edgecolor="black" if on else "none",
                linewidth=1.3,
                zorder=3,
                label=b,
            )
            seen.setdefault(b, h)
        fx, fy = zip(*(pts[b] for b in front), strict=True)
        ax.plot(fx, fy, color="#333333", lw=1, ls="--", zorder=2, drawstyle="steps-pre")
        ax.axvline(1.0, color="#999999", lw=0.8, ls=":")
        ax.axhline(100.0, color="#999999", lw=0.8, ls=":")
        xs = [p[0] for p in pts.values()]
        ys = [p[1] for p in pts.values()]
        xspan = max(max(xs) - min(xs), 0.5)
        ax.set_xlim(min(min(xs), 1.0) - xspan * 0.08, max(xs) + xspan * 0.25)
        yspan = max(max(ys) - min(ys), 0.5)
        ax.set_ylim(min(ys) - yspan * 0.12, max(ys) + yspan * 0.22)
        ax.set_xlabel("speedup vs torch-fp32 (\u00d7)", fontsize=FONT)
        ax.set_ylabel("accuracy retained vs torch-fp32 (%)", fontsize=FONT)
        ax.tick_params(labelsize=FONT - 1)
        ax.set_title(panel, fontsize=FONT + 1, loc="left")
        ax.grid(alpha=0.3)
    handles = [seen[b] for b in backend_order(seen)]
    fig.legend(handles=handles, loc="outside right center", fontsize=FONT - 1, frameon=False)
    fig.suptitle(
        f"{KIND_TITLES.get(model_kind, model_kind)}: accuracy vs speedup",
        fontsize=FONT + 3,
        x=0.01,
        ha="left",
    )
    foot = [
        "Black-edged points joined by the dashed staircase: the Pareto front (no other backend is both "
        "faster and more accurate). Only backends with speed and accuracy measurements; "
        "contended rows excluded."
    ]
    _finish(fig, _footnote(fig, foot, width))
    fig.get_layout_engine().execute(fig)  # settle the axes so labels can be placed in display space
    for ax, (panel, pts) in zip(axes, data.items(), strict=True):
        _label_points(ax, {b: pts[b] for b in fronts[panel]}, list(pts.values()))
    return fig


# Where to try a label, in points from its marker: right and up first, then left, then below.
_LABEL_OFFSETS = (
    (8, 8), (8, 22), (8, 36), (-8, 8), (-8, 22), (8, -8), (8, -22), (-8, -8), (-8, -22),
    (8, 50), (-8, 36), (8, -36), (-8, -36), (8, 64), (-8, 50),
)  # fmt: skip


def _label_points(ax, labels: dict[str, tuple[float, float]], points: list[tuple[float, float]]) -> None:
    """Label points without overlapping each other or the markers: greedy over candidate offsets."""
    dpi = ax.figure.dpi
    px = dpi / 72  # pixels per point
    size = FONT - 1
    bounds = ax.get_window_extent()
    marks = [np.asarray(ax.transData.transform(p)) for p in points]
    boxes: list[tuple[float, float, float, float]] = []

    r = 6 * px

    def near_segment(m: np.ndarray, a: np.ndarray, b: np.ndarray) -> bool:
        ab = b - a
        t = float(np.clip(np.dot(m - a, ab) / max(float(np.dot(ab, ab)), 1e-9), 0, 1))
        return float(np.linalg.norm(m - (a + t * ab))) < r

    def clashes(box: tuple[float, float, float, float], origin: np.ndarray) -> bool:
        x0, y0, x1, y1 = box
        if x0 < bounds.x0 or x1 > bounds.x1 or y0 < bounds.y0 or y1 > bounds.y1:
            return True
        if any(x0 < b[2] and b[0] < x1 and y0 < b[3] and b[1] < y1 for b in boxes):
            return True
        if any(x0 - r < mx < x1 + r and y0 - r < my < y1 + r for mx, my in marks):
            return True
        # the leader line must not pass over another marker
        end = np.array([min(max(origin[0], x0), x1), min(max(origin[1], y0), y1)])
        others = (m for m in marks if float(np.linalg.norm(m - origin)) > 1)
        return any(near_segment(m, origin, end) for m in others)

    for name, (x, y) in sorted(labels.items(), key=lambda kv: kv[1][0]):
        w, h = len(name) * size * 0.62 * px, size * 1.3 * px
        cx, cy = ax.transData.transform((x, y))
        choice = None
        for dx, dy in _LABEL_OFFSETS:
            x0 = cx + dx * px if dx > 0 else cx + dx * px - w
            y0 = cy + dy * px if dy > 0 else cy + dy * px - h
            box = (x0, y0, x0 + w, y0 + h)
            if not clashes(box, np.array([cx, cy])):
                choice = (dx, dy, box)
                break
        if choice is None:
            x0, y0 = cx + 6 * px, cy + 8 * px
            choice = (6, 8, (x0, y0, x0 + w, y0 + h))
        dx, dy, box = choice
        boxes.append(box)
        ax.annotate(
            name,
            (x, y),
            xytext=(dx, dy),
            textcoords="offset points",
            ha="left" if dx > 0 else "right",
            va="bottom" if dy > 0 else "top",
            fontsize=size,
            fontweight="bold",
            bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.85},
            arrowprops={"arrowstyle": "-", "color": "#777777", "lw": 0.6, "shrinkA": 0, "shrinkB": 4},
            zorder=4,
        )


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
    names = panels(ok)
    order = backend_order(ok["backend"].unique())
    per_panel = {p: [b for b in order if (ok.loc[ok["panel"] == p, "backend"] == b).any()] for p in names}
    width = 8.0
    rows_total = sum(len(v) for v in per_panel.values())
    height = ROW_IN * rows_total + 1.0 * len(names) + 1.0 + FOOT_LINE_IN * 3
    fig = Figure(figsize=(width, height), layout="constrained")
    axes = _stacked_axes(fig, [len(per_panel[p]) for p in names])
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
    _finish(fig, _footnote(fig, foot, width))
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
        "time-breakdown": time_breakdown(df, model_kind),
        "by-model-size": sizes.speedup_by_model_size(df, model_kind),
    }
    return {name: fig for name, fig in charts.items() if fig is not None}
