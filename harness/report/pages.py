"""Assemble the report: one list of blocks, rendered twice.

`index.html` is self-contained (charts embedded as base64 PNG, no external CSS or scripts) so it
can be mailed or attached as is; `report.md` links the PNG files written next to it.
"""

from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from harness.analysis import accuracy_by_configuration, contended_mask
from harness.config import MODEL_KINDS
from harness.report import charts

DPI = 150
CHART_TITLES = {
    "speedup": "Speedup vs torch-fp32",
    "by-dataset": "Speedup by text length",
    "by-batch-size": "Speedup by batch size",
    "accuracy-vs-speedup": "Accuracy vs speedup",
    "fidelity-vs-speedup": "Worst-case fidelity vs speedup",
    "time-breakdown": "Time breakdown",
}
HARDWARE_FIELDS = (
    ("fingerprint", "fingerprint"),
    ("cpu_model", "CPU"),
    ("cpu_vendor", "vendor"),
    ("cores_physical", "physical cores"),
    ("cores_logical", "logical cores"),
    ("memory_gb", "memory (GB)"),
    ("gpu", "GPU"),
    ("cpu_flags", "ISA flags"),
    ("ort_providers", "ONNX Runtime providers"),
    ("ov_devices", "OpenVINO devices"),
)


@dataclass
class Table:
    columns: list[str]
    rows: list[list[str]]
    numeric: set[int] = field(default_factory=set)  # right-aligned column indexes


@dataclass
class Block:
    kind: str  # "h1" | "h2" | "h3" | "p" | "image" | "table"
    text: str = ""
    image: str = ""  # file name of the PNG
    table: Table | None = None


# --------------------------------------------------------------------------------------------
# formatting
# --------------------------------------------------------------------------------------------


def _num(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return None if v != v else v


def fmt(value: Any, kind: str = "") -> str:
    v = _num(value)
    if kind and v is None:
        return "-"
    if kind == "x":
        return f"{v:.2f}x"
    if kind == "pct":
        return f"{v:.2%}"
    if kind == "int":
        return f"{v:,.0f}"
    if kind == "1":
        return f"{v:,.1f}"
    if kind == "4":
        return f"{v:.4f}"
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value)) or "-"
    return str(value)


def status_text(row: dict[str, Any]) -> str:
    status = str(row.get("status") or "-")
    reason = row.get("reason")
    contended = row["is_contended"] if "is_contended" in row else row.get("contended") in (True, 1)
    note = row.get("note")
    note = f" ({note})" if isinstance(note, str) and note else ""
    if status == "ok" and contended:
        return f"ok, contended (not evidence){note}"
    if status != "ok" and reason:
        return f"{status}: {' '.join(str(reason).split())}"
    return status + note


# --------------------------------------------------------------------------------------------
# tables
# --------------------------------------------------------------------------------------------


def summary_table(df: pd.DataFrame, model_kind: str) -> Table | None:
    """One row per device panel and backend: the numbers behind the speedup chart."""
    sp = charts.speed_rows(df, model_kind)
    if sp.empty:
        return None
    rows = []
    for panel in charts.panels(sp):
        prow = sp[sp["panel"] == panel]
        clean = prow[(prow["status"] == "ok") & prow["speedup"].notna() & ~prow["is_contended"]]
        acc = charts.accuracy_by_backend(df, prow["model"].unique(), prow["machine"].unique())
        for b in charts.backend_order(prow["backend"].unique()):
            cells = clean[clean["backend"] == b]["speedup"].astype(float)
            mine = prow[prow["backend"] == b]
            statuses = mine["status"].where(~(mine["is_contended"] & (mine["status"] == "ok")), "ok, contended")
            status = ", ".join(f"{s} {n}" for s, n in statuses.value_counts().sort_index().items())
            se = cells.std(ddof=1) / len(cells) ** 0.5 if len(cells) > 1 else None
            rows.append(
                [
                    panel.replace("\n", " "),
                    b,
                    str(len(cells)),
                    fmt(cells.mean() if len(cells) else None, "x"),
                    fmt(se, "4"),
                    fmt(acc.get(b), "pct"),
                    status,
                ]
            )
    return Table(
        ["device", "backend", "cells", "mean speedup", "std. error", "accuracy retained", "cells by status"],
        rows,
        {2, 3, 4, 5},
    )


def cells_table(df: pd.DataFrame, model_kind: str) -> Table | None:
    """Every speed cell: what ran, how fast, and what did not run and why."""
    sp = charts.speed_rows(df, model_kind)
    if sp.empty:
        return None
    acc = accuracy_by_configuration(df, by=("machine", "model")).to_dict()
    order = {b: i for i, b in enumerate(charts.backend_order(sp["backend"].unique()))}
    ds_order = {d: i for i, (d, _) in enumerate(charts.dataset_order(sp))}
    records = sp.to_dict("records")
    records.sort(
        key=lambda r: (
            str(r.get("machine")),
            str(r.get("model")),
            ds_order.get(r.get("dataset"), 99),
            _num(r.get("batch_size")) or 0,
            order.get(r.get("backend"), 99),
            str(r.get("run")),
        )
    )
    unit = charts.UNIT.get(model_kind, "/s")
    rows = [
        [
            str(r.get("model")),
            str(r.get("backend")),
            r["device"],
            str(r.get("dataset")),
            fmt(r.get("text_chars_mean"), "int"),
            fmt(r.get("batch_size"), "int"),
            fmt(r.get("throughput"), "1"),
            fmt(r.get("speedup"), "x"),
            fmt(r.get("latency_p50_ms"), "1"),
            fmt(r.get("latency_p99_ms"), "1"),
            str(r.get("precision") or "-"),
            fmt(acc.get((r.get("machine"), r.get("model"), r.get("accuracy_label", r.get("backend")))), "pct"),
            status_text(r),
            str(r.get("run")),
        ]
        for r in records
    ]
    columns = [
        "model",
        "backend",
        "device",
        "dataset",
        "chars",
        "batch size",
        f"throughput ({unit})",
        "speedup",
        "p50 (ms)",
        "p99 (ms)",
        "precision",
        "accuracy ratio",
        "status",
        "run",
    ]
    return Table(columns, rows, {4, 5, 6, 7, 8, 9, 11})


def accuracy_table(df: pd.DataFrame, model_kind: str) -> Table | None:
    acc = df[df["kind"] == "accuracy"]
    models = set(df.loc[(df["kind"] == "speed") & (df["model_kind"] == model_kind), "model"])
    acc = acc[(acc["model_kind"] == model_kind) | acc["model"].isin(models)]
    if acc.empty:
        return None
    order = {b: i for i, b in enumerate(charts.backend_order(acc["backend"].unique()))}
    records = sorted(
        acc.to_dict("records"),
        key=lambda r: (str(r.get("model")), str(r.get("dataset")), str(r.get("metric")), order[r["backend"]]),
    )
    rows = [
        [
            str(r.get("model")),
            str(r.get("backend")),
            str(r.get("dataset")),
            str(r.get("metric")),
            fmt(r.get("accuracy"), "4"),
            fmt(r.get("accuracy_ratio"), "pct"),
            fmt(r.get("fidelity_mean_cos"), "4"),
            fmt(r.get("fidelity_spearman"), "4"),
            status_text(r),
        ]
        for r in records
    ]
    columns = [
        "model",
        "backend",
        "eval set",
        "metric",
        "score",
        "ratio vs fp32",
        "mean cos",
        "spearman",
        "status",
    ]
    return Table(columns, rows, {4, 5, 6, 7})


def machines_table(df: pd.DataFrame) -> Table:
    """One column per machine fingerprint: the recorded hardware."""
    machines: dict[str, dict] = {}
    for m, hw in zip(df["machine"], df["hardware"], strict=True):
        if isinstance(hw, dict):
            machines[str(m)] = hw
        else:
            machines.setdefault(str(m), {})
    fps = sorted(machines)
    rows = []
    for key, label in HARDWARE_FIELDS:
        values = [fmt(machines[fp].get(key)) if key != "fingerprint" else fp for fp in fps]
        rows.append([label, *values])
    return Table(["", *[f"machine {fp}" for fp in fps]], rows)


def versions_table(df: pd.DataFrame) -> Table | None:
    """Library versions per machine and run (as the rows recorded them)."""
    seen: dict[tuple[str, str], dict[str, set[str]]] = {}
    for m, run, v in zip(df["machine"], df["run"], df["versions"], strict=True):
        if isinstance(v, str):
            try:
                v = json.loads(v)
            except ValueError:
                v = {"versions": v}
        if not isinstance(v, dict):
            continue
        libs = seen.setdefault((str(m), str(run)), {})
        for lib, ver in v.items():
            libs.setdefault(str(lib), set()).add(str(ver))
    if not seen:
        return None
    rows = [
        [m, run, lib, ", ".join(sorted(vers))]
        for (m, run), libs in sorted(seen.items())
        for lib, vers in sorted(libs.items())
    ]
    return Table(["machine", "run", "library", "version"], rows)


# --------------------------------------------------------------------------------------------
# assembly
# --------------------------------------------------------------------------------------------


def figure_png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight", facecolor="white")
    return buf.getvalue()


def build(df: pd.DataFrame, title: str = "Backend benchmark report") -> tuple[list[Block], dict[str, bytes]]:
    """The report as blocks plus the PNGs they reference (file name -> bytes)."""
    images: dict[str, bytes] = {}
    blocks = [Block("h1", title)]
    df = charts.by_label(df)
    speed = df[df["kind"] == "speed"]
    runs = sorted(df["run"].dropna().unique())
    stamps = pd.to_datetime(df["timestamp"], errors="coerce", utc=True).dropna()
    when = f"; measured {stamps.min():%Y-%m-%d %H:%M} - {stamps.max():%Y-%m-%d %H:%M} UTC" if len(stamps) else ""
    n_cont = int(contended_mask(df)[speed.index].sum())
    n_small = int(speed["note"].notna().sum()) if "note" in speed else 0
    blocks.append(
        Block(
            "p",
            f"{len(speed)} speed cells and {int((df['kind'] == 'accuracy').sum())} accuracy rows from "
            f"{len(runs)} run(s) ({', '.join(runs)}) on {df['machine'].nunique()} machine(s){when}. "
            "Speedup = throughput / torch-fp32 throughput in the same run, machine, model, dataset and "
            "batch size; accuracy ratio = score / torch-fp32 score on the same evaluation set."
            + (
                f" {n_cont} cell(s) ran while other processes competed for the CPU (or rest on a torch-fp32 "
                "baseline that did): they are marked 'contended', excluded from means and hatched in the heatmaps."
                if n_cont
                else ""
            )
            + (f" {n_small} ok cell(s) had fewer texts than their batch size (see their status)." if n_small else ""),
        )
    )
    for kind in MODEL_KINDS:
        if not ((df["model_kind"] == kind) & (df["kind"] == "speed")).any():
            continue
        blocks.append(Block("h2", charts.KIND_TITLES.get(kind, kind)))
        figures = charts.all_charts(df, kind)
        if "speedup" not in figures:
            blocks.append(
                Block(
                    "p",
                    "No speedup charts: no uncontended ok cell has a torch-fp32 baseline to compare with.",
                )
            )
        for name, fig in figures.items():
            file = f"{kind}-{name}.png"
            images[file] = figure_png(fig)
            blocks.append(Block("h3", CHART_TITLES.get(name, name)))
            alt = f"{charts.KIND_TITLES.get(kind, kind)}: {CHART_TITLES.get(name, name).lower()}"
            blocks.append(Block("image", text=alt, image=file))
        for heading, table in (
            ("Summary per backend", summary_table(df, kind)),
            ("All speed cells", cells_table(df, kind)),
            ("Accuracy", accuracy_table(df, kind)),
        ):
            if table is not None and table.rows:
                blocks += [Block("h3", heading), Block("table", table=table)]
    blocks += [Block("h2", "Machines"), Block("table", table=machines_table(df))]
    versions = versions_table(df)
    if versions is not None:
        blocks += [Block("h2", "Versions"), Block("table", table=versions)]
    return blocks, images


def _md_cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def to_markdown(blocks: list[Block]) -> str:
    out: list[str] = []
    for b in blocks:
        if b.kind in ("h1", "h2", "h3"):
            out.append("#" * int(b.kind[1]) + " " + b.text)
        elif b.kind == "p":
            out.append(b.text)
        elif b.kind == "image":
            out.append(f"![{_md_cell(b.text)}]({b.image})")
        elif b.kind == "table" and b.table is not None:
            t = b.table
            align = ["---:" if i in t.numeric else "---" for i in range(len(t.columns))]
            lines = [
                "| " + " | ".join(_md_cell(c) for c in t.columns) + " |",
                "| " + " | ".join(align) + " |",
                *("| " + " | ".join(_md_cell(c) for c in row) + " |" for row in t.rows),
            ]
            out.append("\n".join(lines))
    return "\n\n".join(out) + "\n"


CSS = """
body { font-family: -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1500px; padding: 0 1em; color: #222; line-height: 1.45; }
h1, h2 { border-bottom: 1px solid #ddd; padding-bottom: .2em; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
.scroll { overflow-x: auto; max-height: 40em; overflow-y: auto; }
table { border-collapse: collapse; font-size: 13px; margin: .5em 0 1.5em; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f4f4f4; position: sticky; top: 0; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
tr.bad td { color: #999; }
tr.cont td { background: #fff8e1; }
"""


def to_html(blocks: list[Block], images: dict[str, bytes]) -> str:
    esc = html.escape
    title = next((b.text for b in blocks if b.kind == "h1"), "Report")
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>",
    ]
    for b in blocks:
        if b.kind in ("h1", "h2", "h3"):
            out.append(f"<{b.kind}>{esc(b.text)}</{b.kind}>")
        elif b.kind == "p":
            out.append(f"<p>{esc(b.text)}</p>")
        elif b.kind == "image":
            data = base64.b64encode(images[b.image]).decode("ascii")
            out.append(f'<p><img alt="{esc(b.text)}" src="data:image/png;base64,{data}"></p>')
        elif b.kind == "table" and b.table is not None:
            t = b.table
            status_col = t.columns.index("status") if "status" in t.columns else None
            out.append('<div class="scroll"><table>')
            out.append("<tr>" + "".join(f"<th>{esc(c)}</th>" for c in t.columns) + "</tr>")
            for row in t.rows:
                cls = ""
                if status_col is not None:
                    status = row[status_col]
                    bad = not status.startswith("ok")
                    cls = ' class="cont"' if "contended" in status else (' class="bad"' if bad else "")
                cells = "".join(
                    f'<td class="n">{esc(c)}</td>' if i in t.numeric else f"<td>{esc(c)}</td>"
                    for i, c in enumerate(row)
                )
                out.append(f"<tr{cls}>{cells}</tr>")
            out.append("</table></div>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def write_report(df: pd.DataFrame, out_dir: Path | str, title: str = "Backend benchmark report") -> list[Path]:
    """Write index.html, report.md and the chart PNGs into `out_dir`; return the paths written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    blocks, images = build(df, title)
    written = []
    for name, data in images.items():
        path = out / name
        path.write_bytes(data)
        written.append(path)
    index = out / "index.html"
    index.write_text(to_html(blocks, images), encoding="utf-8")
    md = out / "report.md"
    md.write_text(to_markdown(blocks), encoding="utf-8")
    return [index, md, *written]
