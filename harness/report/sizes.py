"""Speedup by model size: the pattern the docs' averaged bars hide.

The docs average each backend's speedup over four model sizes (22M-568M parameters) and say the
pattern differs by size. This chart draws it: x = parameters (log scale), y = speedup over
torch-fp32, one line per backend, one panel per dataset (text length) and device.

A row's size and weights come from `model_params` / `model_weights` when the sweep wrote them, else
from its `model_source` (`harness.inputs.models.row_facts`: a stand-in's spec, a local folder's safetensors
headers; a Hub id without a local copy has no size and is left out, named in the footnote). Models
with random weights (stand-ins) are marked "speed only, random weights": their speed is the real
shape's, their accuracy is nothing.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from harness.report import layout as charts  # the shared chart helpers (speed rows, colours, fonts)

RANDOM_LABEL = "speed only, random weights"


@functools.lru_cache(maxsize=64)
def _facts_of_source(source: str) -> tuple[int | None, str]:
    from harness.inputs.models import row_facts

    try:
        facts = row_facts({"source": source})
    except Exception:  # noqa: BLE001 - a source that no longer resolves: no size, not a crash
        return None, "random" if source.startswith("standin:") else "trained"
    return facts["model_params"], facts["model_weights"]


def model_sizes(df: pd.DataFrame) -> pd.DataFrame:
    """`df` with `model_params` and `model_weights` filled: the row's own values where present,
    else read from its `model_source`."""
    df = df.copy()
    for column in ("model_params", "model_weights"):
        if column not in df:
            df[column] = None
    missing = df["model_params"].isna() | df["model_weights"].isna()
    for index, source in df.loc[missing, "model_source"].items() if "model_source" in df else []:
        if not isinstance(source, str) or not source:
            continue
        params, weights = _facts_of_source(source)
        if pd.isna(df.at[index, "model_params"]):
            df.at[index, "model_params"] = params
        if pd.isna(df.at[index, "model_weights"]):
            df.at[index, "model_weights"] = weights
    return df


def _size_label(params: float) -> str:
    return f"{params / 1e9:.2g}B" if params >= 1e9 else f"{params / 1e6:.0f}M"


def speedup_by_model_size(df: pd.DataFrame, model_kind: str = "bi-encoder") -> Figure | None:
    """Lines: speedup over torch-fp32 against parameters, per backend; a panel per dataset and device.

    Ok, uncontended speed rows of `model_kind`; a (model, backend) point is the mean over its cells
    (batch sizes, rounds already pooled). None when fewer than two model sizes have speedups.
    """
    if df.empty or "speedup" not in df:
        return None
    sp = charts.speed_rows(df, model_kind)
    sp = sp[(sp["status"] == "ok") & sp["speedup"].notna() & ~sp["is_contended"].astype(bool)]
    if sp.empty:
        return None
    if "label" in sp:
        sp = sp.assign(backend=sp["label"])
    sp = model_sizes(sp)
    unsized = sorted(set(sp.loc[sp["model_params"].isna(), "model"].astype(str)))
    sp = sp[sp["model_params"].notna()].astype({"model_params": float})
    if sp["model_params"].nunique() < 2:
        return None

    text_len = sp.groupby("dataset")["text_chars_mean"].mean() if "text_chars_mean" in sp else pd.Series(dtype=float)
    datasets = sorted(sp["dataset"].unique(), key=lambda d: (text_len.get(d, math.inf), str(d)))
    panel_keys = [
        (p, d)
        for p in sorted(sp["panel"].unique())
        for d in datasets
        if len(sp[(sp["panel"] == p) & (sp["dataset"] == d)])
    ]
    models = (
        sp.groupby("model")
        .agg(params=("model_params", "first"), weights=("model_weights", "first"))
        .sort_values("params")
    )
    random_models = [m for m, w in models["weights"].items() if w == "random"]
    backends = charts.backend_order(sp["backend"].unique())

    cols = min(2, len(panel_keys))
    rows = math.ceil(len(panel_keys) / cols)
    fig = Figure(figsize=(6.2 * cols, 3.9 * rows + 0.9), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[len(panel_keys) :]:
        ax.set_visible(False)
    ticks = models["params"].to_numpy()
    tick_labels = [
        f"{_size_label(p)}{'*' if w == 'random' else ''}\n{_short_name(m)}"
        for m, p, w in zip(models.index, models["params"], models["weights"], strict=True)
    ]
    for ax, (panel, dataset) in zip(axes, panel_keys, strict=False):
        cell = sp[(sp["panel"] == panel) & (sp["dataset"] == dataset)]
        means = cell.groupby(["backend", "model"])["speedup"].mean()
        for backend in backends:
            if backend not in means.index.get_level_values(0):
                continue
            points = means.loc[backend].rename("speedup").to_frame().join(models).sort_values("params")
            dashed = points["weights"] == "random"
            ax.plot(points["params"], points["speedup"], color=charts.color_of(backend), marker="o", ms=4, lw=1.4,
                    label=backend)  # fmt: skip
            if dashed.any():  # random-weight points drawn hollow: speed only
                ax.plot(points.loc[dashed, "params"], points.loc[dashed, "speedup"], ls="none", marker="o", ms=6,
                        mfc="white", mec=charts.color_of(backend), mew=1.2)  # fmt: skip
        ax.axhline(1.0, color="#444", lw=0.8, ls="--")
        ax.set_xscale("log")
        ax.set_xticks(ticks, tick_labels, fontsize=charts.FONT - 1.5)
        ax.minorticks_off()
        ax.set_xlim(ticks.min() / 1.6, ticks.max() * 1.6)
        ax.set_xlabel("parameters (log scale)", fontsize=charts.FONT)
        ax.set_ylabel("speedup over torch-fp32", fontsize=charts.FONT)
        ax.tick_params(axis="y", labelsize=charts.FONT - 1)
        chars = text_len.get(dataset)
        where = panel.split("\n", 1)[0]
        ax.set_title(f"{dataset}" + (f" (~{chars:.0f} chars)" if chars == chars and chars is not None else "")
                     + f" - {where}", fontsize=charts.FONT + 1, loc="left")  # fmt: skip
        ax.spines[["top", "right"]].set_visible(False)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", fontsize=charts.FONT - 1, frameon=False)
    foot = ["Mean speedup over each model's cells (batch sizes); contended cells excluded."]
    if random_models:
        foot.append(
            f"* hollow points: {RANDOM_LABEL} (stand-ins with the real model's shape): " + ", ".join(random_models)
        )
    if unsized:
        foot.append("No parameter count for (not drawn): " + ", ".join(unsized))
    fig.text(0.01, 0.0, "\n".join(foot), fontsize=charts.FONT - 1.5, va="bottom", ha="left", color="#444")
    fig.get_layout_engine().set(rect=(0, 0.03 * len(foot), 1, 1 - 0.03 * len(foot)))
    title = f"{charts.KIND_TITLES.get(model_kind, model_kind)}: speedup by model size"
    if random_models:
        title += f" ({RANDOM_LABEL} where marked *)"
    fig.suptitle(title, fontsize=charts.FONT + 3, x=0.01, ha="left")
    return fig


def _short_name(model: Any, n: int = 18) -> str:
    name = str(model).rsplit("/", 1)[-1].removeprefix("standin-")
    return name if len(name) <= n else name[: n - 1] + "…"
