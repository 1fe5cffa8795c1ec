"""The server scenario's pages: latency-vs-rate curves (p99 against the offered rate, one line per backend
configuration, shape and batching; the knee where the queue stops draining is where a line turns up), the
deployment shapes side by side, a table of sustainable rates per budget, and machines side by side
(`harness report --compare-machines`). Pure DataFrame -> Figure / Table functions; pages.py places them."""

from __future__ import annotations

import math
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from harness.report.tables import Table  # noqa: E402


def server_rows(df: pd.DataFrame) -> pd.DataFrame:
    return df[(df["kind"] == "server") & (df["status"] == "ok")] if "kind" in df else df.iloc[0:0]


def _name(r: Any) -> str:
    return f"{r['label']} {int(r['instances'])}x{int(r['threads_per_instance'])} b{int(r['max_batch'])}"


def latency_vs_rate(df: pd.DataFrame) -> Figure | None:
    """p99 (ms, log scale) against the offered rate, one panel per dataset; each curve from the points of
    its loosest budget's search (the points are shared by the budgets); the budgets as dashed lines."""
    rows = server_rows(df)
    if rows.empty:
        return None
    datasets = sorted(rows["dataset"].unique())
    fig, axes = plt.subplots(1, len(datasets), figsize=(6.5 * len(datasets), 4.5), squeeze=False)
    for ax, dataset in zip(axes[0], datasets, strict=True):
        here = rows[rows["dataset"] == dataset]
        loosest = here.sort_values("budget_p99_ms").groupby(["label", "instances", "max_batch", "max_wait_ms"]).tail(1)
        for _, r in loosest.iterrows():
            points = sorted(r["rate_points"] or [], key=lambda p: p["rate"])
            ax.plot([p["rate"] for p in points], [p["p99_ms"] for p in points], marker="o", ms=3, label=_name(r))
        for budget in sorted(here["budget_p99_ms"].unique()):
            ax.axhline(budget, color="grey", ls="--", lw=0.8)
        ax.set(yscale="log", xlabel="offered rate (requests/s)", ylabel="p99 latency (ms)", title=dataset)
        ax.legend(fontsize=7)
    fig.suptitle("Latency vs offered rate (Poisson arrivals; dashed: the p99 budgets)")
    fig.tight_layout()
    return fig


def shapes(df: pd.DataFrame) -> Figure | None:
    """Per backend configuration: each shape's bulk texts/s and its best sustainable rate at the loosest
    budget (over batching policies), side by side."""
    rows = server_rows(df)
    if rows.empty:
        return None
    rows = rows[rows["budget_p99_ms"] == rows["budget_p99_ms"].max()].copy()
    rows["shape"] = [f"{int(k)}x{int(t)}" for k, t in zip(rows["instances"], rows["threads_per_instance"], strict=True)]
    best = rows.groupby(["label", "shape"]).agg(bulk=("bulk_throughput", "max"), rate=("sustainable_rate", "max"))
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, column, title in zip(axes, ("bulk", "rate"), ("bulk texts/s", "sustainable requests/s"), strict=True):
        best[column].unstack("shape").plot.bar(ax=ax, rot=30)
        ax.set(title=f"{title} (p99 <= {rows['budget_p99_ms'].max():g} ms)" if column == "rate" else title, xlabel="")
    fig.suptitle("Deployment shapes: instances x threads per instance")
    fig.tight_layout()
    return fig


def _fmt(value: Any, digits: int = 0) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "-"
    return "-" if math.isnan(v) else f"{v:,.{digits}f}"


def rates_table(df: pd.DataFrame) -> Table | None:
    """Sustainable requests/s per configuration and budget, with the batching and shape chosen."""
    rows = server_rows(df)
    if rows.empty:
        return None
    out = []
    for (label, dataset, budget), g in rows.groupby(["label", "dataset", "budget_p99_ms"]):
        best = g.sort_values("sustainable_rate", ascending=False, na_position="last").iloc[0]
        out.append([label, dataset, f"{budget:g}", _fmt(best["sustainable_rate"]),
                    f"{int(best['max_batch'])} / {best['max_wait_ms']:g} ms",
                    f"{int(best['instances'])}x{int(best['threads_per_instance'])}",
                    _fmt(best["request_p99_ms"], 1), _fmt(best.get("usd_per_million_texts"), 3)])  # fmt: skip
    return Table(["backend", "texts", "p99 budget (ms)", "sustainable req/s", "batching", "shape",
                  "p99 there (ms)", "$ / M texts"], out, numeric={2, 3, 6, 7})  # fmt: skip


def compare_machines(df: pd.DataFrame) -> Table:
    """Machines side by side for each model: the best backend by bulk texts/s, its texts/s and $/M texts,
    and the best sustainable rate (loosest budget) with its $/M texts."""
    out = []
    for (model, machine), g in df[df["status"] == "ok"].groupby(["model", "machine"]):
        speed = g[(g["kind"] == "speed") & g["throughput"].notna()].sort_values("throughput", ascending=False)
        server = server_rows(g).sort_values(["budget_p99_ms", "sustainable_rate"], ascending=False)
        server = server[server["sustainable_rate"].notna()]
        hw = next((h for h in g["hardware"] if isinstance(h, dict)), {})
        top, srv = (speed.iloc[0] if len(speed) else None), (server.iloc[0] if len(server) else None)
        out.append([model, f"{machine[:12]} {hw.get('cpu_model', '')}".strip(), _fmt(g["price_per_hour"].max(), 2),
                    top["label"] if top is not None else "-", _fmt(top["throughput"] if top is not None else None),
                    _fmt(top["usd_per_million_texts"] if top is not None else None, 3),
                    f"{srv['label']} {int(srv['instances'])}x{int(srv['threads_per_instance'])}" if srv is not None
                    else "-", _fmt(srv["sustainable_rate"] if srv is not None else None),
                    f"{srv['budget_p99_ms']:g}" if srv is not None else "-",
                    _fmt(srv["usd_per_million_texts"] if srv is not None else None, 3)])  # fmt: skip
    return Table(["model", "machine", "$/h", "best bulk backend", "texts/s", "$ / M texts", "best server",
                  "req/s", "p99 budget (ms)", "$ / M texts (server)"], out, numeric={2, 4, 5, 7, 8, 9})  # fmt: skip
