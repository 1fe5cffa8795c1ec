"""Accuracy retained vs speedup per configuration, with the Pareto front and non-overlapping labels."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from harness.report.layout import (
    FONT,
    KIND_TITLES,
    accuracy_by_backend,
    backend_order,
    color_of,
    finish,
    footnote,
    panels,
    speed_rows,
)  # fmt: skip
from harness.store import results
from harness.store.analysis import FIDELITY_FLOOR, fidelity_by_configuration, worst_fidelity


def pareto_front(points: dict[str, tuple[float, float]]) -> list[str]:
    """Names of the points no other point beats on both speedup and accuracy, by speedup."""
    front = []
    for name, (x, y) in points.items():
        dominated = any((ox >= x and oy >= y) and (ox > x or oy > y) for o, (ox, oy) in points.items() if o != name)
        if not dominated:
            front.append(name)
    return sorted(front, key=lambda n: points[n][0])


# A marker per family (torch circles, onnx squares, openvino triangles), int8 told apart; by name, as colours.
MARKERS = {"torch-fp32": "o", "torch-fp16": "o", "torch-bf16": "o", "onnx-qint8": "D", "openvino": "v",
           "openvino-qint8": "^"}  # fmt: skip


def marker_of(backend: str) -> str:
    """A configuration's marker: its backend's ("openvino [ov_precision=bf16]" is drawn as openvino)."""
    return MARKERS.get(results.backend_of(backend), "s")


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
            if b == results.BASELINE and (a is None or pd.isna(a)):
                a = 1.0
            if a is not None and not pd.isna(a):
                pts[b] = (
                    float(rows.loc[rows["backend"] == b, "speedup"].astype(float).mean()),
                    float(a) * 100,
                )
        if pts:
            data[panel] = pts
    foot = (
        "Black-edged points joined by the dashed staircase: the Pareto front (no other backend is both "
        "faster and more accurate). Only backends with speed and accuracy measurements; "
        "contended rows excluded."
    )
    return _tradeoff(data, f"{KIND_TITLES.get(model_kind, model_kind)}: accuracy vs speedup",
                     "accuracy retained vs torch-fp32 (%)", 100.0, 0.5, foot)  # fmt: skip


def fidelity_vs_speedup(df: pd.DataFrame, model_kind: str = "bi-encoder") -> Figure | None:
    """Worst-case fidelity to torch-fp32 (lowest per-text cosine; lowest Spearman for cross-encoders) vs
    speedup, Pareto front marked: the loss a mean accuracy hides. From the evaluation sets where
    measured, else from the timed texts (`analysis.worst_fidelity`), so a speed-only store has it too."""
    key = FIDELITY_FLOOR[model_kind]
    sp = speed_rows(df, model_kind)
    if sp.empty:
        return None
    clean = sp[(sp["status"] == "ok") & sp["speedup"].notna() & ~sp["is_contended"]]
    data: dict[str, dict[str, tuple[float, float]]] = {}
    sources: set[str] = set()
    for panel in panels(clean):
        rows = clean[clean["panel"] == panel]
        evaluated = fidelity_by_configuration(
            df, model_kind, models=rows["model"].unique(), machines=rows["machine"].unique()
        )
        pts = {}
        for b in backend_order(rows["backend"].unique()):
            mine = rows[rows["backend"] == b]
            if b == results.BASELINE:
                worst = 1.0
            else:
                shared = str(mine["accuracy_label"].iloc[0]) if "accuracy_label" in mine else b
                worst, source = evaluated.get(shared, {}).get(key), "evaluation sets"
                if worst is None:
                    timed = mine[mine["fidelity_source"] == "timed texts"]
                    worst, source = worst_fidelity(timed, model_kind).get(key), "timed texts"
                if worst is None:
                    continue
                sources.add(source)
            pts[b] = (float(mine["speedup"].astype(float).mean()), worst)
        if len(pts) > 1:  # torch-fp32 alone says nothing
            data[panel] = pts
    name = "lowest per-text cosine" if model_kind == "bi-encoder" else "lowest Spearman of the scores"
    foot = (
        f"Worst case over the outputs: the {name} to torch-fp32's, on the "
        f"{' and '.join(sorted(sources)) or 'evaluation sets'} (evaluation sets where measured, else the "
        "texts that were timed). Black-edged points: the Pareto front. Contended rows excluded."
    )
    return _tradeoff(data, f"{KIND_TITLES.get(model_kind, model_kind)}: worst-case fidelity vs speedup",
                     f"worst-case {FIDELITY_AXIS[model_kind]} to torch-fp32", 1.0, 0.005, foot)  # fmt: skip


FIDELITY_AXIS = {"bi-encoder": "cosine", "cross-encoder": "Spearman"}


def _tradeoff(
    data: dict[str, dict[str, tuple[float, float]]], title: str, ylabel: str, yref: float, min_yspan: float, foot: str
) -> Figure | None:
    """One scatter panel per device of (speedup, y) per backend, Pareto front marked and labelled."""
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
        ax.axhline(yref, color="#999999", lw=0.8, ls=":")
        xs = [p[0] for p in pts.values()]
        ys = [p[1] for p in pts.values()]
        xspan = max(max(xs) - min(xs), 0.5)
        ax.set_xlim(min(min(xs), 1.0) - xspan * 0.08, max(xs) + xspan * 0.25)
        yspan = max(max(ys) - min(ys), min_yspan)
        ax.set_ylim(min(ys) - yspan * 0.12, max(ys) + yspan * 0.22)
        ax.set_xlabel("speedup vs torch-fp32 (\u00d7)", fontsize=FONT)
        ax.set_ylabel(ylabel, fontsize=FONT)
        ax.tick_params(labelsize=FONT - 1)
        ax.set_title(panel, fontsize=FONT + 1, loc="left")
        ax.grid(alpha=0.3)
    handles = [seen[b] for b in backend_order(seen)]
    fig.legend(handles=handles, loc="outside right center", fontsize=FONT - 1, frameon=False)
    fig.suptitle(title, fontsize=FONT + 3, x=0.01, ha="left")
    finish(fig, footnote(fig, [foot], width))
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
