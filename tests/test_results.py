"""The result store: rows, atomic writes, corrupt files, derived ratios, pooled rounds."""

from __future__ import annotations

import json
import time

import pytest

from harness.store import results


def _row(**kw):
    base = dict(run="r", cell_id=f"c{time.perf_counter_ns()}", kind="speed", model="m", dataset="d",
                batch_size=32, machine="x", status="ok")  # fmt: skip
    base.update(kw)
    return results.new_row(**base)


def test_new_row_rejects_unknown_columns():
    with pytest.raises(KeyError):
        results.new_row(throughput_typo=1)


def test_store_roundtrip_and_speedup(tmp_path):
    results.write_row(tmp_path, _row(backend="torch-fp32", throughput=100.0))
    results.write_row(tmp_path, _row(backend="onnx", throughput=250.0))
    results.write_row(tmp_path, _row(backend="onnx", throughput=50.0, machine="other"))  # no baseline there
    results.write_row(tmp_path, _row(backend="openvino", status="unsupported", reason="no"))
    df = results.load(tmp_path).set_index(["backend", "machine"])
    assert df.loc[("onnx", "x"), "speedup"] == pytest.approx(2.5)
    assert df.loc[("torch-fp32", "x"), "speedup"] == pytest.approx(1.0)
    assert df.loc[("onnx", "other"), "speedup"] != df.loc[("onnx", "other"), "speedup"]  # NaN
    assert df.loc[("openvino", "x"), "speedup"] != df.loc[("openvino", "x"), "speedup"]


def test_accuracy_ratio(tmp_path):
    acc = dict(kind="accuracy", batch_size=None, metric="sts_spearman")
    results.write_row(tmp_path, _row(backend="torch-fp32", accuracy=0.80, **acc))
    results.write_row(tmp_path, _row(backend="onnx-qint8", accuracy=0.78, **acc))
    df = results.load(tmp_path).set_index("backend")
    assert df.loc["onnx-qint8", "accuracy_ratio"] == pytest.approx(0.975)


def test_corrupt_files_are_skipped_with_their_path(tmp_path, caplog):
    path = results.write_row(tmp_path, _row(backend="torch-fp32", throughput=1.0))
    (path.parent / "broken.json").write_text('{"run": "r", "cell_')
    (path.parent / "list.json").write_text("[1, 2]")
    assert len(results.load(tmp_path)) == 1
    assert "broken.json" in caplog.text and "list.json" in caplog.text


def test_write_is_atomic_no_temp_left(tmp_path):
    results.write_row(tmp_path, _row(backend="torch-fp32", throughput=1.0))
    assert not list(tmp_path.rglob(".tmp-*"))


def test_row_json_has_every_column(tmp_path):
    path = results.write_row(tmp_path, _row(backend="onnx", throughput=1.0))
    assert set(json.loads(path.read_text())) == set(results.COLUMNS)


def test_interleaved_rounds_pool_from_raw_values(tmp_path):
    common = dict(backend="onnx", cell_key="k", n_texts=10, cpu_self=1.0, contended=False, tries=1)
    results.write_row(tmp_path, _row(round=0, pass_s=[1.0, 1.0], latencies_ms=[10.0, 20.0], throughput=10.0,
                                     cpu_other=0.0, tokenize_share=0.1, forward_share=0.8, other_share=0.1,
                                     forward_throughput=12.0, **common))  # fmt: skip
    results.write_row(tmp_path, _row(round=1, pass_s=[2.0], latencies_ms=[30.0], throughput=5.0,
                                     cpu_other=0.3, tokenize_share=0.2, forward_share=0.6, other_share=0.2,
                                     forward_throughput=8.0, **{**common, "contended": True}))  # fmt: skip
    df = results.load(tmp_path)
    assert len(df) == 1
    row = df.iloc[0]
    assert row["rounds"] == 2 and row["repeats"] == 3
    assert row["throughput"] == pytest.approx(30 / 4.0)  # all texts / all timed seconds
    assert row["latency_p50_ms"] == pytest.approx(20.0)
    assert row["cpu_other"] == pytest.approx(0.3 * 2 / 4)  # weighted by timed seconds
    assert bool(row["contended"]) is True
    # where the time goes: the mean of the rounds, not round 0's alone
    assert row["tokenize_share"] == pytest.approx(0.15) and row["forward_share"] == pytest.approx(0.7)
    assert row["forward_throughput"] == pytest.approx(10.0)
