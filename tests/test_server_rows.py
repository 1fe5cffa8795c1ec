"""The server row (harness.store.rows.ServerRow): its columns beside the other kinds, what it refuses, and
that it goes through the store and `results.load` without disturbing speed rows."""

from __future__ import annotations

import pytest
from rows import speed_row
from server_rows import server_row

from harness.store import results, rows
from harness.store.rows import InvalidRow, ServerRow


def test_a_server_row_round_trips_and_keeps_its_points():
    flat = server_row("onnx", 120.0)
    row = rows.parse(flat)
    assert isinstance(row, ServerRow) and row.serving.sustainable_rate == 120.0
    assert row.serving.rate_points[2]["rate"] == 120.0 and list(flat) == list(rows.COLUMNS)
    assert rows.parse(row.to_flat()) == row


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: server_row("onnx", 100.0, throughput=5.0), "a server row has no throughput"),
        (lambda: server_row("onnx", 0.0), "sustainable_rate must be > 0"),
        (lambda: server_row("onnx", 10.0, budget_p99_ms=None), "needs its budget_p99_ms"),
        (lambda: speed_row("onnx", 1.0, sustainable_rate=3.0), "a speed row has no sustainable_rate"),
    ],
)
def test_impossible_server_rows_are_refused(build, message):
    with pytest.raises(InvalidRow, match=message):
        build()


def test_server_rows_load_beside_speed_rows(tmp_path):
    results.write_row(tmp_path, speed_row("torch-fp32", 100.0))
    results.write_row(tmp_path, server_row("onnx", 80.0))
    results.write_row(tmp_path, server_row("onnx", None, status="failed", reason="boom", budget_ms=20.0))
    df = results.load(tmp_path)
    assert sorted(df["kind"]) == ["server", "server", "speed"]
    speed = df[df["kind"] == "speed"]
    assert speed["speedup"].tolist() == [1.0]
    assert df.loc[df["kind"] == "server", "sustainable_rate"].dropna().tolist() == [80.0]
