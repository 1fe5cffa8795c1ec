"""What every chart shares: backend order and colours, device panels, footnotes, layout helpers.

Pure functions over the result DataFrame (`results.load`); nothing here draws a chart by itself.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Iterable
from typing import Any

import pandas as pd
from matplotlib.colors import to_hex, to_rgb
from matplotlib.figure import Figure

from harness import backends
from harness.store import results
from harness.store.analysis import accuracy_by_configuration, as_dict, contended_mask, device_of

BACKEND_ORDER = backends.names()
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


def speed_rows(df: pd.DataFrame, model_kind: str | None = None) -> pd.DataFrame:
    """Speed rows (any status) with `device`, `panel` and `is_contended` (see `contended_mask`) added."""
    sp = df[df["kind"] == "speed"]
    if model_kind:
        sp = sp[sp["model_kind"] == model_kind]
    sp = sp.copy()
    records = sp.to_dict("records")
    if "device" not in sp:
        sp["device"] = [device_of(r) for r in records]
    sp["is_contended"] = contended_mask(df).loc[sp.index] if len(sp) else pd.Series(dtype=bool)
    several = sp["machine"].nunique() > 1
    labels = []
    for r, device in zip(records, sp["device"], strict=True):
        hw = as_dict(r.get("hardware"))
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


def accuracy_by_backend(df: pd.DataFrame, models: Iterable[str], machines: Iterable[str]) -> dict[str, float]:
    """Accuracy retained per drawn configuration (`analysis.accuracy_by_configuration`); a variant that
    differs only in speed knobs has the accuracy of the configuration it shares (its accuracy_label)."""
    acc = accuracy_by_configuration(df, models=models, machines=machines).to_dict()
    speed = df[df["kind"] == "speed"]
    shared = zip(speed["backend"], speed.get("accuracy_label", speed["backend"]), strict=True)
    return {**{b: acc[a] for b, a in shared if a in acc}, **acc}


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
            reason = f" ({short(reasons[0], 70)})" if reasons else ""
            items.append(f"{where + ' ' if several else ''}{backend}: {status}{reason}")
    if partial:
        items.append(f"{partial} further cell(s) of otherwise measured backends did not run (see the table)")
    return items


def short(text: str, n: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "\u2026"


def footnote(fig: Figure, lines: list[str], width_in: float) -> float:
    """Write footnote lines under the axes; return the fraction of the height they need."""
    if not lines:
        return 0.0
    chars = max(40, int(width_in * 17))
    wrapped = [w for line in lines for w in textwrap.wrap(line, chars, subsequent_indent="   ", break_on_hyphens=False)]
    fig.text(0.01, 0.01, "\n".join(wrapped), fontsize=FONT - 1.5, va="bottom", ha="left", color="#444444")
    height = fig.get_figheight()
    return min(0.6, (len(wrapped) * FOOT_LINE_IN + 0.15) / height)


def finish(fig: Figure, foot: float) -> None:
    engine = fig.get_layout_engine()
    if engine is not None and foot:
        engine.set(rect=(0, foot, 1, 1 - foot))


def mean_interval(rows: pd.DataFrame, column: str = "speedup") -> tuple[float, float, float, int]:
    """(mean, low, high, n) over cells: the mean of their speedups and of their 95 % rerun interval bounds
    (harness.store.intervals); low = high = mean where no cell has an interval."""
    v = pd.to_numeric(rows[column], errors="coerce").dropna() if column in rows else pd.Series(dtype=float)
    if not len(v):
        return math.nan, math.nan, math.nan, 0
    mean = float(v.mean())
    bounds = []
    for suffix in ("_low", "_high"):
        b = pd.to_numeric(rows.loc[v.index, column + suffix], errors="coerce") if column + suffix in rows else None
        bounds.append(float(b.mean()) if b is not None and b.notna().all() else mean)
    return mean, bounds[0], bounds[1], len(v)


def acc_label(a: Any) -> str:
    """'99.6%'; two decimals where one would round a loss away to 100.0%."""
    if a is None or pd.isna(a):
        return "n/a"
    a = float(a)
    return f"{a:.2%}" if a != 1.0 and round(a * 100, 1) == 100.0 else f"{a:.1%}"


def baseline_note(sp: pd.DataFrame) -> list[str]:
    """Name the ok cells that have no speedup: no torch-fp32 ran on their device in their run (the
    pairing rule, `harness.store.analysis`), e.g. OpenVINO on a GPU machine where torch-fp32 ran on the GPU."""
    alone = sp[(sp["status"] == "ok") & sp["speedup"].isna()]
    if alone.empty:
        return []
    return [
        f"No speedup for {', '.join(backend_order(alone['backend'].unique()))}: no torch-fp32 (default "
        "configuration) ran on the same device in the same cell; on a GPU machine add "
        "`backend=torch-fp32 backend.device=cpu` to the run for the CPU backends."
    ]


def stacked_axes(fig: Figure, counts: list[int]) -> list:
    """One panel per entry, stacked vertically, heights proportional to their row counts."""
    return list(fig.subplots(len(counts), 1, squeeze=False, height_ratios=counts)[:, 0])


def dataset_order(sp: pd.DataFrame) -> list[tuple[str, float | None]]:
    """(dataset, mean characters) ordered by text length; datasets without a length last."""
    chars = pd.to_numeric(sp["text_chars_mean"], errors="coerce").groupby(sp["dataset"]).mean()
    known = sorted(((d, float(c)) for d, c in chars.items() if not pd.isna(c)), key=lambda t: (t[1], t[0]))
    unknown = sorted((d, None) for d, c in chars.items() if pd.isna(c))
    return known + unknown
