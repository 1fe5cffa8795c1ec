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


def test_rows_whose_brackets_overlap_are_tied_and_the_least_to_set_up_is_chosen(tmp_path, capsys):
    results.write_row(tmp_path, server_row("onnx-O1", 410.0, 50.0, (1, 2), rate_bracket=[410.0, 450.0]))
    results.write_row(tmp_path, server_row("onnx", 400.0, 50.0, (1, 2), rate_bracket=[400.0, 440.0]))
    results.write_row(tmp_path, server_row("torch-fp32", 200.0, 50.0, (1, 2), rate_bracket=[200.0, 220.0]))
    assert cli.main(["--scenario", "server", "--max-latency-ms", "50", "--results", str(tmp_path), "--json"]) == 0
    choice = json.loads(capsys.readouterr().out)
    assert choice["label"] == "onnx" and "tied within the search's resolution" in choice["why"]
    assert "onnx-O1 1x2 batch 8: 410 req/s" in choice["why"]
    assert [(a["label"], a["tied"]) for a in choice["alternatives"]] == [("onnx-O1", True), ("torch-fp32", False)]


def test_rows_that_do_not_overlap_are_ranked_by_rate(tmp_path, capsys):
    results.write_row(tmp_path, server_row("onnx-O1", 500.0, 50.0, (1, 2), rate_bracket=[500.0, 550.0]))
    results.write_row(tmp_path, server_row("onnx", 400.0, 50.0, (1, 2), rate_bracket=[400.0, 440.0]))
    assert cli.main(["--scenario", "server", "--max-latency-ms", "50", "--results", str(tmp_path), "--json"]) == 0
    choice = json.loads(capsys.readouterr().out)
    assert choice["label"] == "onnx-O1" and "tied" not in choice["why"]


def test_the_texts_nearest_the_asked_length_are_answered(tmp_path, capsys):
    results.write_row(tmp_path, server_row("onnx", 900.0, 50.0, (1, 2), dataset="short", text_chars_mean=40.0))
    results.write_row(tmp_path, server_row("openvino", 90.0, 50.0, (1, 2), dataset="medium", text_chars_mean=600.0))
    results.write_row(tmp_path, server_row("onnx", 60.0, 50.0, (1, 2), dataset="medium", text_chars_mean=600.0))
    for length, label, dataset in (("30", "onnx", "short"), ("500", "openvino", "medium")):
        assert cli.main(["--scenario", "server", "--max-latency-ms", "50", "--results", str(tmp_path),
                         "--text-length", length, "--json"]) == 0  # fmt: skip
        choice = json.loads(capsys.readouterr().out)
        assert (choice["label"], choice["dataset"]) == (label, dataset)


def test_the_python_api_answers_the_server_scenario(store):
    from harness.recommend import recommend_server

    choice = recommend_server(results.load(store), max_latency_ms=50)
    assert choice.backend == "onnx" and choice.instances == 2


def test_recommend_points_the_server_scenario_to_its_own_answer(store):
    from harness.core.hardware import Hardware
    from harness.recommend import Query, recommend

    with pytest.raises(ValueError, match="recommend_server"):
        recommend(results.load(store), Query(scenario="server", max_latency_ms=50), Hardware("", "amd", (), 2, 2, 8.0))


def test_a_smaller_slot_of_this_machine_is_not_mixed_into_its_answer(tmp_path):
    from harness.recommend.server import choose

    two = {"cpu_model": "EPYC", "cores_physical": 2, "cpus_allowed": [0, 1]}
    results.write_row(tmp_path, server_row("onnx", 400.0, 50.0, (1, 2), run="two", hardware=two))
    results.write_row(tmp_path, server_row("openvino", 900.0, 50.0, (1, 1), run="one",
                                           hardware={**two, "cpus_allowed": [0]}))  # fmt: skip
    df = results.load(tmp_path)
    assert choose(df, 50, slot="m" * 16 + "/2cpu").label == "onnx"
    assert choose(df, 50, slot="m" * 16 + "/1cpu").label == "openvino"


def test_each_configuration_is_one_alternative_at_its_best_rate_over_the_budgets(tmp_path):
    from harness.recommend import recommend_server

    for budget, rate in ((20.0, 300.0), (50.0, 500.0)):  # one configuration, two budgets within 50 ms
        results.write_row(tmp_path, server_row("onnx", rate, budget, cell_id=f"o{budget:g}",
                                               rate_bracket=[rate, rate * 1.05]))  # fmt: skip
    results.write_row(tmp_path, server_row("openvino", 900.0, 50.0, rate_bracket=[900.0, 950.0]))
    choice = recommend_server(results.load(tmp_path), max_latency_ms=50)
    assert choice.label == "openvino"
    assert [(a["label"], a["sustainable_rate"]) for a in choice.alternatives] == [("onnx", 500.0)]  # not 300 again
