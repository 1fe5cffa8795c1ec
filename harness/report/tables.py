"""The report's tables: pure DataFrame -> `Table` functions (the summary by configuration, every cell,
accuracy, machines, library versions) and how a number is written in them."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from harness.report import charts
from harness.store.analysis import accuracy_by_configuration
from harness.store.stats import span

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
            mean, low, high, _ = charts.mean_interval(clean[clean["backend"] == b])
            mine = prow[prow["backend"] == b]
            statuses = mine["status"].where(~(mine["is_contended"] & (mine["status"] == "ok")), "ok, contended")
            status = ", ".join(f"{s} {n}" for s, n in statuses.value_counts().sort_index().items())
            rows.append(
                [
                    panel.replace("\n", " "),
                    b,
                    str(len(cells)),
                    fmt(cells.mean() if len(cells) else None, "x"),
                    f"{low:.2f}-{high:.2f}" if len(cells) and high > low else "-",
                    fmt(acc.get(b), "pct"),
                    status,
                ]
            )
    return Table(
        ["device", "backend", "cells", "mean speedup", "95 % rerun interval", "accuracy retained", "cells by status"],
        rows,
        {2, 3, 4, 5},
    )


def _span(low: Any, high: Any) -> str:
    """' (2.21-2.50)': a 95 % rerun interval, '' where there is none."""
    a, b = _num(low), _num(high)
    return span(a, b) if a is not None and b is not None and b > a else ""


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
            fmt(r.get("speedup"), "x") + _span(r.get("speedup_low"), r.get("speedup_high")),
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


def label_free_rows(df: pd.DataFrame, model_kind: str) -> list[dict[str, Any]]:
    """The label-free task agreement of each configuration and dataset (speed rows of round 0, the same on
    every batch size) as accuracy-like records: fp32's own rankings are the labels, so the ratio is the score."""
    sp = df[(df["kind"] == "speed") & (df["model_kind"] == model_kind) & (df["status"] == "ok")]
    if "agreement" not in sp or sp.empty:
        return []
    sp = sp[sp["agreement"].notna()].drop_duplicates(["machine", "model", "backend", "variant", "dataset"])
    return [
        {**r, "dataset": f"{r['dataset']} texts, label-free (n={int(r['agreement_n'])})",
         "metric": r["agreement_metric"], "accuracy": r["agreement"], "accuracy_ratio": r["agreement"]}
        for r in sp.to_dict("records")
    ]  # fmt: skip


def accuracy_table(df: pd.DataFrame, model_kind: str) -> Table | None:
    acc = df[df["kind"] == "accuracy"]
    models = set(df.loc[(df["kind"] == "speed") & (df["model_kind"] == model_kind), "model"])
    acc = acc[(acc["model_kind"] == model_kind) | acc["model"].isin(models)]
    free = label_free_rows(df, model_kind)
    if acc.empty and not free:
        return None
    order = {b: i for i, b in enumerate(charts.backend_order({*acc["backend"], *(r["backend"] for r in free)}))}
    records = sorted(
        acc.to_dict("records") + free,
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
