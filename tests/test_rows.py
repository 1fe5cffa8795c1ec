"""The row types (harness.store.rows): what a speed, an accuracy and a round row may hold, their flat form,
pooling rounds with the same type, and old result files."""

from __future__ import annotations

import json

import pytest
from rows import accuracy_row, speed_row

from harness.store import results, rows
from harness.store.rows import AccuracyRow, InvalidRow, SpeedRow


def test_columns_are_the_row_types_and_every_row_writes_them_all():
    assert results.COLUMNS == rows.COLUMNS and len(set(rows.COLUMNS)) == len(rows.COLUMNS)
    kinds = (SpeedRow, AccuracyRow, rows.RoundRow, rows.ServerRow)
    assert set().union(*(t.columns() for t in kinds)) == set(rows.COLUMNS)
    assert "metric" not in SpeedRow.columns() and "throughput" not in AccuracyRow.columns()
    assert list(speed_row("onnx", 1.0)) == list(rows.COLUMNS) == list(accuracy_row("onnx", 0.8))


def test_a_row_has_named_parts():
    row = SpeedRow.from_flat(speed_row("onnx", 120.0, runtime={"device": "cpu"}, settings={"load_s": 1.0}))
    assert row.timing.throughput == 120.0 and row.identity.backend == "onnx"
    assert row.context.runtime == {"device": "cpu"} and row.context.settings == {"load_s": 1.0}
    assert SpeedRow.from_flat(row.to_flat()) == row


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: speed_row("onnx", 1.0, metric="sts_spearman"), "a speed row has no metric"),
        (lambda: accuracy_row("onnx", 0.8, throughput=100.0), "an accuracy row has no throughput"),
        (lambda: speed_row("onnx", 1.0, status="done"), "status 'done' is not one of ok, failed"),
        (lambda: speed_row("onnx", None), "an ok speed row needs its throughput"),
        (lambda: speed_row("onnx", 0.0), "an ok speed row needs its throughput"),
        (lambda: accuracy_row("onnx", None), "an ok accuracy row needs its metric and accuracy"),
        (lambda: SpeedRow.from_flat({**speed_row("onnx", 1.0), "kind": "accuracy"}), "has kind 'speed'"),
        (lambda: results.new_row(run="r", cell_id="c", kind="latency", status="ok"), "kind 'latency' is not one of"),
    ],
)
def test_an_impossible_row_cannot_be_built(build, message):
    with pytest.raises(InvalidRow, match=message):
        build()


def test_a_row_that_did_not_run_needs_no_numbers():
    assert speed_row("onnx", None, status="unsupported", reason="no GPU")["throughput"] is None
    assert accuracy_row("onnx", None, status="failed", metric=None, reason="no data")["accuracy"] is None


def test_unknown_columns_are_a_key_error_when_built():
    with pytest.raises(KeyError, match="throughput_typo"):
        results.new_row(run="r", cell_id="c", kind="speed", status="failed", throughput_typo=1)


def test_rounds_pool_with_the_same_type():
    common = dict(cell_key="k", n_texts=10, cpu_self=1.0, cpu_other=0.0, contended=False, tries=1)
    first = SpeedRow.from_flat(speed_row("onnx", 10.0, pass_s=[1.0, 1.0], latencies_ms=[10.0, 20.0], **common))
    second = SpeedRow.from_flat(speed_row("onnx", 5.0, pass_s=[2.0], latencies_ms=[30.0], **common))
    pooled = SpeedRow.aggregate([first, second])
    assert isinstance(pooled, SpeedRow) and pooled.identity == first.identity
    assert pooled.timing.rounds == 2 and pooled.timing.throughput == pytest.approx(30 / 4.0)
    assert pooled.timing.tries == 2 and pooled.timing.pass_s == [1.0, 1.0, 2.0]
    assert SpeedRow.aggregate([first]).timing.rounds == 1


def test_old_result_files_load_and_impossible_ones_are_skipped_in_one_line(tmp_path, caplog):
    old = {k: v for k, v in speed_row("torch-fp32", 100.0).items() if v is not None}  # fewer columns
    old["a_column_since_removed"] = 1
    (tmp_path / "r1").mkdir()
    (tmp_path / "r1" / "old.json").write_text(json.dumps(old))
    impossible = {**speed_row("onnx", 50.0), "metric": "sts_spearman"}
    (tmp_path / "r1" / "impossible.json").write_text(json.dumps(impossible))
    found = results.read_rows(tmp_path)
    assert [r["backend"] for r in found] == ["torch-fp32"] and list(found[0]) == list(rows.COLUMNS)
    [warning] = [r.getMessage() for r in caplog.records]
    assert "impossible.json" in warning and "a speed row has no metric" in warning and "\n" not in warning
