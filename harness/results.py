"""Result rows and the store they live in.

The store is a folder: ``<results_dir>/<run>/<cell_id>.json``, one small JSON file per
finished cell, written to a temp file and renamed into place. That one choice gives
kill-safety (a file is either whole or absent), resume (a cell whose file exists is done),
and many writers (workers and machines never touch the same file). Nothing is ever parsed
out of logs and nothing in a result file is executed.

Ratios are *derived* at load time (`load`), never stored, by one pairing rule (`harness.analysis`):
speedup is a cell's throughput over torch-fp32's (in its default configuration) of the same run,
machine, model, dataset, batch size, threads and device; accuracy_ratio is a backend's accuracy
over torch-fp32's on the same run, machine, model, evaluation set and metric.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

BASELINE = "torch-fp32"
ROUND_KIND = "round"  # a row recording that a later round of a cell was not needed (harness.rounds)
BREAKDOWN = ("tokenize_share", "forward_share", "other_share", "forward_throughput")  # where the time goes
STATUSES = ("ok", "failed", "unsupported", "timeout")
# Fields that made a variant in rows written before they stopped being knobs; `load` drops them.
FORMER_KNOBS = ("device",)

# Columns every row has (None where not applicable). Kept flat so pandas reads it as is.
COLUMNS = (
    # identity
    "run", "cell_id", "cell_key", "round", "kind", "model", "model_kind", "model_source", "model_params",
    "model_weights", "dataset", "batch_size",
    "backend", "variant",
    # outcome
    "status", "reason",
    # speed (kind == "speed")
    "throughput", "latency_mean_ms", "latency_p50_ms", "latency_p90_ms", "latency_p99_ms",
    "cv", "n_texts", "n_batches", "repeats", "measure_s", "peak_memory_mb",
    "cpu_self", "cpu_other", "contended", "tries", "discarded_tries",
    "tokenize_share", "forward_share", "other_share", "forward_throughput", "latencies_ms", "pass_s", "rounds",
    "per_request_throughput", "round_reason", "warnings",
    # accuracy (kind == "accuracy")
    "metric", "accuracy", "fidelity_mean_cos", "fidelity_min_cos", "fidelity_spearman",
    "fidelity_max_abs_diff", "fidelity_source", "accuracy_s",
    # what the texts were
    "text_chars_mean", "text_chars_p50", "text_chars_max", "text_tokens_mean", "truncated_share",
    "max_seq_length",
    # what it ran under
    "threads", "precision", "runtime", "settings", "hardware", "machine", "versions",
    "timestamp", "duration_s",
)  # fmt: skip


def new_row(**fields: Any) -> dict[str, Any]:
    """A row with every column present; unknown keys are a programming error."""
    unknown = set(fields) - set(COLUMNS)
    if unknown:
        raise KeyError(f"unknown result columns: {sorted(unknown)}")
    row = dict.fromkeys(COLUMNS)
    row.update(fields)
    return row


def cell_path(results_dir: Path | str, run: str, cell_id: str) -> Path:
    return Path(results_dir) / run / f"{cell_id}.json"


def is_done(results_dir: Path | str, run: str, cell_id: str) -> bool:
    return cell_path(results_dir, run, cell_id).exists()


def write_row(results_dir: Path | str, row: dict[str, Any]) -> Path:
    """Write one row atomically (temp file in the same folder + rename)."""
    path = cell_path(results_dir, row["run"], row["cell_id"])
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(row, f, default=str)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_rows(results_dir: Path | str, runs: list[str] | None = None) -> list[dict[str, Any]]:
    """All rows under the store; a corrupt file is reported with its path and skipped."""
    root = Path(results_dir)
    if not root.exists():
        return []
    rows = []
    for path in sorted(root.glob("*/*.json")):
        if path.name.startswith(".tmp-") or (runs and path.parent.name not in runs):
            continue
        try:
            row = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(row, dict) or "cell_id" not in row:
                raise ValueError("not a result row")
        except (OSError, ValueError) as exc:
            log.warning("skipping unreadable result file %s: %s", path, exc)
            continue
        rows.append(row)
    return rows


def load(results_dir: Path | str, runs: list[str] | None = None) -> pd.DataFrame:
    """The store as a DataFrame with every column, rounds pooled, plus derived `device`, `speedup`,
    `accuracy_ratio`, `note` (see `harness.analysis`), `label` (what a configuration is called in
    reports) and `accuracy_label` (whose accuracy it has)."""
    from harness.analysis import derive  # the analysis layer reads rows; rows do not need it

    df = pool_rounds(read_rows(results_dir, runs))
    df["variant"] = df["variant"].map(current_variant)
    return with_labels(derive(df))


def label(backend: str, variant: str) -> str:
    """A backend with swept runtime knobs is its own configuration: "openvino [ov_precision=bf16]"."""
    return f"{backend} [{variant}]" if variant else backend


def backend_of(configuration: str) -> str:
    """The backend of a label (the inverse of `label`): "openvino [ov_precision=bf16]" -> "openvino"."""
    return configuration.split(" [", 1)[0]


def current_variant(variant: str | None) -> str:
    """A stored variant without the fields that are no longer knobs (`FORMER_KNOBS`): an old
    docs-gpu row's "device=cuda" is where it ran, not a configuration of its own."""
    parts = variant.split(",") if isinstance(variant, str) else []  # None / NaN: the backend as registered
    return ",".join(p for p in parts if p and p.partition("=")[0] not in FORMER_KNOBS)


def accuracy_variant(variant: str) -> str:
    """The part of a variant that can change outputs: knobs that only change speed share accuracy."""
    from harness.backends import speed_only_fields

    speed_only = speed_only_fields()
    return ",".join(p for p in variant.split(",") if p and p.partition("=")[0] not in speed_only)


def with_labels(df: pd.DataFrame) -> pd.DataFrame:
    """Add `label` and `accuracy_label`: a speed row's accuracy is the accuracy row whose label equals
    its accuracy_label (e.g. "onnx [ort_spinning=True]" has the accuracy of "onnx")."""
    df = df.copy()
    df["variant"] = df["variant"].fillna("") if "variant" in df else ""
    backends, variants = df["backend"].astype(str), df["variant"].astype(str)
    acc_labels = [label(b, accuracy_variant(v)) for b, v in zip(backends, variants, strict=True)]
    full = [label(b, v) for b, v in zip(backends, variants, strict=True)]
    df["label"] = [a if k == "accuracy" else f for k, a, f in zip(df["kind"], acc_labels, full, strict=True)]
    df["accuracy_label"] = acc_labels
    return df


def pool_rounds(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per speed cell: interleaved rounds of the same cell pooled from their raw values.

    Throughput = all texts / all timed seconds; latency percentiles and CV from the pooled raw
    per-batch latencies and per-pass times; CPU use weighted by time; contended if any round was;
    the time breakdown (shares, forward-only throughput) is the mean of the rounds that measured it.
    """
    pooled: dict[tuple, dict[str, Any]] = {}
    breakdowns: dict[tuple, list[dict[str, float]]] = {}
    not_needed: dict[tuple, str] = {}  # rounds=auto: cells whose later round was not needed, and why
    out = []
    for row in rows:
        row = {**dict.fromkeys(COLUMNS), **row}
        if row["kind"] == ROUND_KIND:
            not_needed[(row["run"], row["machine"], row["cell_key"])] = row["reason"]
            continue
        if row["kind"] != "speed" or row["status"] != "ok" or not row.get("cell_key") or not row.get("pass_s"):
            out.append(row)
            continue
        key = (row["run"], row["machine"], row["cell_key"])
        first = key not in pooled
        if first:
            pooled[key] = {**row, "rounds": 1}
            breakdowns[key] = []
            out.append(pooled[key])
        if row.get("forward_throughput") is not None:
            breakdowns[key].append({k: row[k] for k in BREAKDOWN})
        if first:
            continue
        acc = pooled[key]
        weight_a, weight_b = sum(acc["pass_s"]), sum(row["pass_s"])
        for cpu in ("cpu_self", "cpu_other"):
            acc[cpu] = (acc[cpu] * weight_a + row[cpu] * weight_b) / (weight_a + weight_b)
        acc["latencies_ms"] = acc["latencies_ms"] + row["latencies_ms"]
        acc["pass_s"] = acc["pass_s"] + row["pass_s"]
        acc["measure_s"] = (acc["measure_s"] or 0.0) + (row["measure_s"] or 0.0)
        acc["round_reason"] = row["round_reason"] or acc["round_reason"]
        acc["contended"] = bool(acc["contended"] or row["contended"])
        acc["tries"] = (acc["tries"] or 0) + (row["tries"] or 0)
        acc["discarded_tries"] = (acc["discarded_tries"] or []) + (row["discarded_tries"] or [])
        acc["rounds"] += 1
    for key, acc in pooled.items():
        if key in not_needed:
            acc["round_reason"] = not_needed[key]
        if acc["rounds"] > 1:
            acc.update(_speed_stats(acc["latencies_ms"], acc["pass_s"], acc["n_texts"], acc["batch_size"]))
            if breakdowns[key]:
                acc.update({k: float(np.mean([b[k] for b in breakdowns[key]])) for k in BREAKDOWN})
    return pd.DataFrame(out, columns=list(COLUMNS))


def _speed_stats(latencies_ms: list[float], pass_s: list[float], n_texts: int, batch_size: int) -> dict[str, float]:
    from harness.measure import per_request_throughput

    ms, passes = np.asarray(latencies_ms), np.asarray(pass_s)
    rates = n_texts / passes
    return {
        "throughput": n_texts * len(passes) / passes.sum(),
        "per_request_throughput": per_request_throughput(ms / 1000.0, n_texts, math.ceil(n_texts / batch_size)),
        "latency_mean_ms": float(ms.mean()),
        "latency_p50_ms": float(np.percentile(ms, 50)),
        "latency_p90_ms": float(np.percentile(ms, 90)),
        "latency_p99_ms": float(np.percentile(ms, 99)),
        "cv": float(rates.std(ddof=1) / rates.mean()) if len(rates) > 1 else float("nan"),
        "repeats": len(passes),
        "n_batches": len(ms),
    }
