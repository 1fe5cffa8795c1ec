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
from harness.store import cost  # noqa: E402


def server_rows(df: pd.DataFrame) -> pd.DataFrame:
    return df[(df["kind"] == "server") & (df["status"] == "ok")] if "kind" in df else df.iloc[0:0]


def _name(r: Any) -> str:
    return f"{r['label']} {int(r['instances'])}x{int(r['threads_per_instance'])} b{int(r['max_batch'])}"


def latency_vs_rate(df: pd.DataFrame) -> Figure | None:
    """p99 (ms, log scale) against the offered rate, one panel per model and texts; each curve from the points
    of its loosest budget's search (the points are shared by the budgets), for the shapes searched (3 points or
    more: a configuration stopped early has one or two, and would bury the knees); the budgets dashed."""
    rows = server_rows(df)
    if rows.empty:
        return None
    panels = sorted({(str(m), str(d)) for m, d in zip(rows["model"], rows["dataset"], strict=True)})
    cols = min(2, len(panels))
    lines = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(lines, cols, figsize=(7.5 * cols, 5 * lines), squeeze=False)
    for ax, (model, dataset) in zip(axes.flat, panels, strict=False):
        here = rows[(rows["model"] == model) & (rows["dataset"] == dataset)]
        loosest = here.sort_values("budget_p99_ms").groupby(["label", "instances", "max_batch", "max_wait_ms"]).tail(1)
        for _, r in loosest.iterrows():
            points = sorted(r["rate_points"] or [], key=lambda p: p["rate"])
            if len(points) >= 3:
                ax.plot([p["rate"] for p in points], [p["p99_ms"] for p in points], marker="o", ms=3, label=_name(r))
        for budget in sorted(here["budget_p99_ms"].unique()):
            ax.axhline(budget, color="grey", ls="--", lw=0.8)
        ax.set(yscale="log", xlabel="offered rate (requests/s)", ylabel="p99 latency (ms)",
               title=f"{model[:32]} · {dataset}")  # fmt: skip
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
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


def _rate(row: Any) -> str:
    """A row's sustainable rate, or for a configuration stopped early the rate it could not reach ("< 616"),
    with the rate its points held below it when they held one ("300 to < 616")."""
    if row["sustainable_rate"] == row["sustainable_rate"] and row["sustainable_rate"] is not None:
        return _fmt(row["sustainable_rate"])
    bracket = row.get("rate_bracket")
    low, high = (bracket[0], bracket[1]) if isinstance(bracket, (list, tuple)) and len(bracket) > 1 else (None, None)
    if not high:
        return "-"
    return f"{_fmt(low)} to < {_fmt(high)}" if low else f"< {_fmt(high)}"


def rates_table(df: pd.DataFrame) -> Table | None:
    """Sustainable requests/s per configuration and budget, with the batching and shape chosen; a configuration
    stopped early (`dominated_by`) shows the rate it could not reach."""
    rows = server_rows(df)
    if rows.empty:
        return None
    out = []
    for (label, dataset, budget), g in rows.groupby(["label", "dataset", "budget_p99_ms"]):
        best = g.sort_values("sustainable_rate", ascending=False, na_position="last").iloc[0]
        out.append([label, dataset, f"{budget:g}", _rate(best),
                    f"{int(best['max_batch'])} / {best['max_wait_ms']:g} ms",
                    f"{int(best['instances'])}x{int(best['threads_per_instance'])}",
                    _fmt(best["request_p99_ms"], 1), _fmt(best.get("usd_per_million_texts"), 3)])  # fmt: skip
    return Table(["backend", "texts", "p99 budget (ms)", "sustainable req/s", "batching", "shape",
                  "p99 there (ms)", "$ / M texts"], out, numeric={2, 3, 6, 7})  # fmt: skip


def _slot(g: pd.DataFrame) -> str:
    """The machine as a reader knows it: CPU model, fingerprint and the CPUs the run had."""
    hw = next((h for h in g["hardware"] if isinstance(h, dict)), {}) if "hardware" in g else {}
    machine, _, cpus = str(g["machine_slot"].iloc[0]).partition("/")
    return f"{hw.get('cpu_model', '')} {machine[:8]}" + (f" · {cpus.replace('cpu', '')} CPU(s)" if cpus else "")


def _bulk_of_server(g: pd.DataFrame) -> pd.Series | None:
    """Without speed rows (a server sweep alone), the best bulk throughput among the server rows' shapes (each
    instance encoding its share at the server's bulk batch size), labelled with its shape."""
    server = server_rows(g)
    server = server[server["bulk_throughput"].notna()] if len(server) else server
    if not len(server):
        return None
    top = server.sort_values("bulk_throughput", ascending=False).iloc[0].copy()
    top["label"] = f"{top['label']} {int(top['instances'])}x{int(top['threads_per_instance'])}"
    top["throughput"] = top["bulk_throughput"]
    top["batch_size"] = None  # a server row's batch size is its batcher's; bulk ran at server.bulk_batch_size
    return top


def best_per_machine(df: pd.DataFrame) -> pd.DataFrame:
    """One line per (model, texts, machine slot): the best bulk backend (texts/s, $/M texts) and the best server
    configuration at the loosest budget (req/s, $/M texts); uncontended rows only where there are any."""
    ok = df[df["status"] == "ok"].copy()
    if "machine_slot" not in ok:
        ok["machine_slot"] = ok["machine"]
    out = []
    for (model, dataset, slot), g in ok.groupby(["model", "dataset", "machine_slot"]):
        speed = g[(g["kind"] == "speed") & g["throughput"].notna()] if "throughput" in g else g.iloc[0:0]
        speed = speed[~speed["contended"].isin([True])] if speed["contended"].isin([False]).any() else speed
        server = server_rows(g)
        server = server[server["sustainable_rate"].notna()] if len(server) else server
        if len(server):
            server = server[server["budget_p99_ms"] == server["budget_p99_ms"].max()]
        top = speed.sort_values("throughput", ascending=False).iloc[0] if len(speed) else _bulk_of_server(g)
        srv = server.sort_values("sustainable_rate", ascending=False).iloc[0] if len(server) else None
        price = g["price_per_hour"].max() if "price_per_hour" in g else math.nan
        out.append({
            "model": model, "dataset": dataset, "slot": slot, "machine": _slot(g), "price": price,
            "bulk": top["label"] if top is not None else None,
            "bulk_batch": int(top["batch_size"]) if top is not None and pd.notna(top["batch_size"]) else None,
            "texts_s": top["throughput"] if top is not None else math.nan,
            "bulk_usd": cost.usd_per_million(price, top["throughput"]) if top is not None else math.nan,
            "server": f"{srv['label']} {int(srv['instances'])}x{int(srv['threads_per_instance'])} "
                      f"b{int(srv['max_batch'])}" if srv is not None else None,
            "rate": srv["sustainable_rate"] if srv is not None else math.nan,
            "budget": srv["budget_p99_ms"] if srv is not None else math.nan,
            "server_usd": srv.get("usd_per_million_texts", math.nan) if srv is not None else math.nan,
        })  # fmt: skip
    return pd.DataFrame(out)


def _bulk_name(r: Any) -> str:
    if not r["bulk"]:
        return "-"
    return f"{r['bulk']} (batch {r['bulk_batch']})" if r["bulk_batch"] else str(r["bulk"])


def compare_machines(df: pd.DataFrame) -> Table:
    """Machines side by side for each model and texts: per machine slot the best backend by bulk texts/s, its
    texts/s and $/M texts, and the best sustainable rate (loosest budget) with its $/M texts; the cheapest
    machine of each (model, texts) is marked."""
    best = best_per_machine(df)
    rows = []
    for (_, _), g in best.groupby(["model", "dataset"]) if len(best) else []:
        cheapest = {c: g[c].idxmin() if g[c].notna().any() else None for c in ("bulk_usd", "server_usd")}
        for i, r in g.iterrows():
            mark = {c: " (cheapest)" if cheapest[c] == i and len(g) > 1 else "" for c in cheapest}
            rows.append([r["model"], r["dataset"], r["machine"], _fmt(r["price"], 3),
                         _bulk_name(r), _fmt(r["texts_s"]),
                         _fmt(r["bulk_usd"], 3) + mark["bulk_usd"], r["server"] or "-", _fmt(r["rate"]),
                         _fmt(r["budget"]), _fmt(r["server_usd"], 3) + mark["server_usd"]])  # fmt: skip
    return Table(["model", "texts", "machine", "$/h", "best bulk backend", "texts/s", "$ / M texts", "best server",
                  "req/s", "p99 budget (ms)", "$ / M texts (server)"], rows, numeric={3, 5, 8, 9})  # fmt: skip


def machines_chart(df: pd.DataFrame) -> Figure | None:
    """Machines on one axis, per (model, texts): the best bulk texts/s and sustainable req/s, and their $/M
    texts (where a price is known)."""
    best = best_per_machine(df)
    if best.empty or best["slot"].nunique() < 2:
        return None
    best["what"] = best["model"].str.slice(0, 24) + "\n" + best["dataset"]
    priced = best[["bulk_usd", "server_usd"]].notna().any().any()
    fig, axes = plt.subplots(1, 2 if priced else 1, figsize=(13 if priced else 7, 4.5), squeeze=False)
    speed = best.pivot_table(index="what", columns="machine", values=["texts_s", "rate"], aggfunc="max")
    speed.columns = [f"{m} · {'bulk texts/s' if v == 'texts_s' else 'server req/s'}" for v, m in speed.columns]
    speed.plot.bar(ax=axes[0][0], rot=0)
    axes[0][0].set(title="throughput per machine (best backend each)", xlabel="", ylabel="texts or requests / s")
    axes[0][0].legend(fontsize=7)
    if priced:
        usd = best.pivot_table(index="what", columns="machine", values=["bulk_usd", "server_usd"], aggfunc="min")
        usd.columns = [f"{m} · {'bulk' if v == 'bulk_usd' else 'server'}" for v, m in usd.columns]
        usd.plot.bar(ax=axes[0][1], rot=0)
        axes[0][1].set(title="$ per million texts (lower is better)", xlabel="", ylabel="$ / M texts")
        axes[0][1].legend(fontsize=7)
    fig.suptitle("Machines side by side")
    fig.tight_layout()
    return fig
