"""`harness recommend --scenario server` on synthetic server rows: the choice, its code, the one-liners."""

from __future__ import annotations

import json

import pytest
from server_rows import server_row

from harness.cli import recommend as cli
from harness.store import results


@pytest.fixture
def store(tmp_path):
    results.write_row(tmp_path, server_row("onnx", 400.0, 50.0, (2, 1), rate_bracket=[400.0, 440.0]))
    results.write_row(tmp_path, server_row("onnx", 300.0, 50.0, (1, 2)))
    results.write_row(tmp_path, server_row("torch-fp32", 200.0, 50.0, (1, 2)))
    results.write_row(tmp_path, server_row("onnx", 500.0, 100.0, (2, 1)))  # a looser budget: not eligible
    results.write_row(tmp_path, server_row("openvino", 900.0, 50.0, (2, 1), contended=True))
    return tmp_path


def test_the_highest_sustainable_rate_within_the_budget(store, capsys):
    assert cli.main(["--scenario", "server", "--max-latency-ms", "50", "--results", str(store),
                     "--price-per-hour", "0.72"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "p99 <= 50 ms" in out and ": onnx" in out and "shape 2 instance(s) x 1 thread(s)" in out
    assert "400 requests/s (search bracket 400-440 req/s)" in out and "max batch 8, max wait 2 ms" in out
    assert "$0.500 per million texts" in out
    assert "class Batcher" in out and "max_batch=8, max_wait_s=0.002" in out and 'backend="onnx"' in out
    code = out[out.index("# shape 2x1") :]
    compile(code, "<snippet>", "exec")  # the code the user gets is valid Python


def test_json_and_no_rows(store, tmp_path, capsys):
    assert cli.main(["--scenario", "server", "--max-latency-ms", "60", "--results", str(store), "--json"]) == 0
    choice = json.loads(capsys.readouterr().out)
    assert choice["backend"] == "onnx" and choice["budget_p99_ms"] == 50.0 and choice["alternatives"]
    assert cli.main(["--scenario", "server", "--max-latency-ms", "10", "--results", str(store)]) == 1
    assert "no server row sustains" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["--max-latency-ms", "0"], "--max-latency-ms must be a positive number; got 0.0"),
        (["--max-latency-ms", "-3"], "--max-latency-ms must be a positive number; got -3.0"),
        ([], "needs --max-latency-ms"),
        (["--max-latency-ms", "50", "--price-per-hour", "cheap"], "--price-per-hour: 'cheap' is not allowed"),
    ],
)
def test_bad_input_is_one_line(store, capsys, args, field):
    assert cli.main(["--scenario", "server", "--results", str(store), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and field in err[0]
