"""The server scenario in the report (harness.report.serving): curves, shapes, the rates table, and two
machines side by side with $ / M texts through `harness report --compare-machines`."""

from __future__ import annotations

from rows import speed_row
from server_rows import server_row

from harness.cli import report as cli
from harness.report import serving
from harness.store import results


def _store(tmp_path):
    for machine, scale in (("a" * 16, 1.0), ("b" * 16, 2.0)):
        hw = {"cpu_model": f"cpu-{machine[0]}"}
        results.write_row(tmp_path, speed_row("torch-fp32", 100.0 * scale, machine=machine, hardware=hw))
        for shape in ((1, 2), (2, 1)):
            for budget in (20.0, 50.0):
                results.write_row(tmp_path, server_row("onnx", 80.0 * scale * shape[0], budget, shape,
                                                       machine=machine, hardware=hw))  # fmt: skip
    return tmp_path


def test_charts_and_tables_of_server_rows(tmp_path):
    df = results.load(_store(tmp_path))
    assert serving.latency_vs_rate(df) is not None and serving.shapes(df) is not None
    assert len(serving.rates_table(df).rows) == 2  # (backend, texts, budget): one backend, one dataset, 2 budgets
    machines = serving.compare_machines(df)
    assert len(machines.rows) == 2 and machines.rows[1][8] == "320"  # machine b: 2x1 at 160 x 2
    assert [r[2] for r in machines.rows] == ["cpu-a aaaaaaaa", "cpu-b bbbbbbbb"]
    assert serving.latency_vs_rate(df[df["kind"] == "speed"]) is None


def test_compare_machines_with_prices(tmp_path, capsys):
    store = _store(tmp_path / "results")
    out = tmp_path / "report"
    assert cli.main(["--results", str(store), "--out", str(out), "--compare-machines",
                     "--price-per-hour", "aaaa=0.36", "--price-per-hour", "bbbb=0.72"]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "best bulk backend" in printed and "| 1.000 |" in printed  # $0.36/h at 100 texts/s
    page = (out / "report.md").read_text()
    assert "Server scenario" in page and "Machines side by side" in page and "server-latency-vs-rate.png" in page
    assert (out / "server-shapes.png").exists() and (out / "machines.png").exists()
    assert "(cheapest)" in page


def test_a_configuration_stopped_early_shows_the_rate_it_could_not_reach(tmp_path):
    results.write_row(tmp_path, server_row("onnx", 400.0, 50.0, rate_bracket=[400.0, 440.0]))
    results.write_row(tmp_path, server_row("torch-fp32", None, 50.0, rate_bracket=[None, 400.0],
                                           dominated_by="onnx 1x2 max_batch 8/2 ms"))  # fmt: skip
    results.write_row(tmp_path, server_row("openvino", None, 50.0, rate_bracket=[300.0, 400.0],
                                           dominated_by="onnx 1x2 max_batch 8/2 ms"))  # fmt: skip
    table = serving.rates_table(results.load(tmp_path))
    assert {r[0]: r[3] for r in table.rows} == {"onnx": "400", "torch-fp32": "< 400", "openvino": "300 to < 400"}


def test_a_price_that_is_not_a_number_is_one_line(tmp_path, capsys):
    store = _store(tmp_path / "results")
    assert cli.main(["--results", str(store), "--out", str(tmp_path / "r"), "--price-per-hour", "x=abc"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--price-per-hour: 'x=abc' is not allowed" in err[0]


def test_a_server_sweep_alone_still_names_each_machines_best_bulk_shape(tmp_path):
    for machine, scale in (("a" * 16, 1.0), ("b" * 16, 2.0)):
        for shape in ((1, 2), (2, 1)):
            results.write_row(tmp_path, server_row("onnx", 80.0 * scale * shape[0], 50.0, shape, machine=machine,
                                                   bulk_throughput=100.0 * scale * shape[1], price_per_hour=0.36,
                                                   batch_size=32))  # fmt: skip
    rows = serving.compare_machines(results.load(tmp_path)).rows
    assert [r[4] for r in rows] == ["onnx 1x2", "onnx 1x2"]  # the shape with the best bulk (not its batcher's size)
    assert [r[5] for r in rows] == ["200", "400"] and rows[0][6] == "0.500"  # $0.36/h at 200 texts/s
