"""Assemble the report: one list of blocks, rendered twice.

`index.html` is self-contained (charts embedded as base64 PNG, no external CSS or scripts) so it
can be mailed or attached as is; `report.md` links the PNG files written next to it.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from harness.config import MODEL_KINDS
from harness.report import charts, serving
from harness.report.tables import (  # noqa: F401 - the tables a page is built from
    Table,
    accuracy_table,
    cells_table,
    fmt,
    machines_table,
    summary_table,
    versions_table,
)
from harness.store.analysis import contended_mask

DPI = 150
CHART_TITLES = {
    "speedup": "Speedup vs torch-fp32",
    "by-dataset": "Speedup by text length",
    "by-batch-size": "Speedup by batch size",
    "accuracy-vs-speedup": "Accuracy vs speedup",
    "fidelity-vs-speedup": "Worst-case fidelity vs speedup",
    "time-breakdown": "Time breakdown",
}


@dataclass
class Block:
    kind: str  # "h1" | "h2" | "h3" | "p" | "image" | "table"
    text: str = ""
    image: str = ""  # file name of the PNG
    table: Table | None = None


# --------------------------------------------------------------------------------------------
# formatting
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# tables
# --------------------------------------------------------------------------------------------


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
    blocks += _server_blocks(df, images)
    blocks += [Block("h2", "Machines"), Block("table", table=machines_table(df))]
    slots = df["machine_slot"] if "machine_slot" in df else df["machine"]
    if slots.nunique() > 1:
        blocks += [Block("h2", "Machines side by side"), Block("table", table=serving.compare_machines(df))]
        fig = serving.machines_chart(df)
        if fig is not None:
            images["machines.png"] = figure_png(fig)
            blocks.append(Block("image", text="Machines side by side", image="machines.png"))
    versions = versions_table(df)
    if versions is not None:
        blocks += [Block("h2", "Versions"), Block("table", table=versions)]
    return blocks, images


def _server_blocks(df: pd.DataFrame, images: dict[str, bytes]) -> list[Block]:
    """The server scenario's section (harness.report.serving), when there are server rows."""
    table = serving.rates_table(df)
    if table is None:
        return []
    blocks = [Block("h2", "Server scenario"), Block("h3", "Sustainable requests/s by p99 budget"),
              Block("table", table=table)]  # fmt: skip
    for name, title, fig in (("server-latency-vs-rate", "Latency vs offered rate", serving.latency_vs_rate(df)),
                             ("server-shapes", "Deployment shapes", serving.shapes(df))):  # fmt: skip
        if fig is not None:
            images[f"{name}.png"] = figure_png(fig)
            blocks += [Block("h3", title), Block("image", text=title, image=f"{name}.png")]
    return blocks


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


MARKER = ".harness-report"  # in every folder a report was written to: the next report may replace it
KEEP = (MARKER, ".gitkeep")


def foreign_files(out_dir: Path | str) -> list[str]:
    """Files in `out_dir` that a report did not write there: writing a report would overwrite or mix with them
    (none for a missing or empty folder, or one an earlier report was written to)."""
    out = Path(out_dir)
    if not out.is_dir() or (out / MARKER).exists():
        return []
    return sorted(p.name for p in out.iterdir() if p.name not in KEEP)


def write_report(df: pd.DataFrame, out_dir: Path | str, title: str = "Backend benchmark report") -> list[Path]:
    """Write index.html, report.md and the chart PNGs into `out_dir`; return the paths written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("written by `harness report`; it may replace the files here\n", encoding="utf-8")
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
