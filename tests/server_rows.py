"""Synthetic server rows for tests, built through `harness.store.rows.ServerRow`."""

from __future__ import annotations

from typing import Any

from harness.store.rows import ServerRow


def server_row(backend: str, rate: float | None, budget_ms: float = 50.0, shape: tuple[int, int] = (1, 2),
               **fields: Any) -> dict[str, Any]:  # fmt: skip
    k, t = shape
    points = fields.pop("rate_points", None)
    if points is None and rate is not None:
        points = [{"rate": r, "p99_ms": p, "served": r, "n": 300, "backlog": 0, "sustainable": p <= budget_ms,
                   "why_not": "" if p <= budget_ms else "p99 over budget"}
                  for r, p in ((rate / 4, budget_ms / 5), (rate / 2, budget_ms / 3), (rate, budget_ms * 0.9),
                               (rate * 1.1, budget_ms * 3))]  # fmt: skip
    row: dict[str, Any] = dict(
        run="r1", kind="server", model="m", model_kind="bi-encoder", dataset="short", backend=backend,
        status="ok", machine="m" * 16, instances=k, threads_per_instance=t, threads=k * t, max_batch=8,
        max_wait_ms=2.0, budget_p99_ms=budget_ms, sustainable_rate=rate, sustainable=rate is not None,
        request_p99_ms=budget_ms * 0.9 if rate else None, bulk_throughput=(rate or 100.0) * 1.3,
        rate_points=points, contended=False, memory_pss_mb=150.0 * k,
    )  # fmt: skip
    row.update(fields)
    row.setdefault("cell_id", f"server-{backend}-{row['dataset']}-{k}x{t}-b{budget_ms:g}-{row['machine'][:4]}")
    return ServerRow.from_flat(row).to_flat()
