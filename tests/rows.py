"""Synthetic result rows for tests, built through the row types (`harness.store.rows`), so a test cannot
write a row the harness could not: a column of another kind, an unknown status, an ok speed row
without throughput are refused here as in the sweep.

Each test module passes its own defaults (machine, dataset, settings ...) on top; the cell id is
derived from the row's identity unless a test sets one (e.g. to store a re-measured cell twice).
"""

from __future__ import annotations

from typing import Any

from harness.store.rows import AccuracyRow, SpeedRow

SPEED_IDENTITY = ("kind", "model", "dataset", "batch_size", "backend", "machine")
ACCURACY_IDENTITY = ("kind", "model", "dataset", "metric", "backend", "machine")


def speed_row(backend: str, throughput: float | None, **fields: Any) -> dict[str, Any]:
    row: dict[str, Any] = dict(
        run="r1", kind="speed", model="m", model_kind="bi-encoder", dataset="short", batch_size=32,
        backend=backend, status="ok", throughput=throughput, contended=False, machine="m" * 16,
    )  # fmt: skip
    row.update(fields)
    row.setdefault("cell_id", "-".join(str(row[k]) for k in SPEED_IDENTITY))
    return SpeedRow.from_flat(row).to_flat()


def accuracy_row(backend: str, accuracy: float | None, **fields: Any) -> dict[str, Any]:
    row: dict[str, Any] = dict(
        run="r1", kind="accuracy", model="m", model_kind="bi-encoder", dataset="stsb", backend=backend,
        status="ok", metric="sts_spearman", accuracy=accuracy, machine="m" * 16,
    )  # fmt: skip
    row.update(fields)
    row.setdefault("cell_id", "-".join(str(row[k]) for k in ACCURACY_IDENTITY))
    return AccuracyRow.from_flat(row).to_flat()
