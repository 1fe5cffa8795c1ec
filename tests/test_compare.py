"""`harness compare`: matching cells, the moved-beyond-spread rule, Kendall's tau, the command line."""

from __future__ import annotations

import json
import math

import pytest
from rows import speed_row

from harness.cli import compare as compare_cli
from harness.cli import main as harness_main
from harness.store import compare, results

FP = "m" * 16


def speed(run, backend, throughput, cv=0.01, **kw):
    defaults = dict(run=run, model="tiny", cv=cv, machine=FP, threads=2, timestamp="2025-01-01T00:00:00+00:00")
    return speed_row(backend, throughput, **{**defaults, **kw})


def store(tmp_path, *rows):
    for row in rows:
        results.write_row(tmp_path, row)
    return tmp_path


def compared(tmp_path, a="a", b="b"):
    df = results.load(tmp_path)
    cells = compare.pair_cells(df, a, b)
    ranks = compare.rank_agreement(cells)
    return cells, ranks, compare.summarize(cells, ranks)


def test_kendall_tau_exact_values():
    assert compare.kendall_tau([1, 2, 3], [10, 20, 30]) == pytest.approx(1.0)
    assert compare.kendall_tau([1, 2, 3], [20, 10, 30]) == pytest.approx(1 / 3)  # one swap among 3
    assert compare.kendall_tau([1, 2, 3], [30, 20, 10]) == pytest.approx(-1.0)
    assert compare.kendall_tau([1, 2, 3, 4], [1, 2, 4, 3]) == pytest.approx(2 / 3)  # one swap among 4
    assert math.isnan(compare.kendall_tau([1], [2]))


@pytest.mark.parametrize(
    ("ratio", "cv_a", "cv_b", "expected"),
    [
        (1.05, 0.01, 0.01, True),  # 5% > 2*sqrt(2)*1% = 2.83%
        (1.02, 0.01, 0.01, False),  # 2% < 2.83%
        (0.97, 0.01, 0.01, True),  # slower counts the same as faster
        (1.09, 0.03, 0.04, False),  # 9% < 2*5% = 10%
        (1.11, 0.03, 0.04, True),  # 11% > 10%
        (1.50, float("nan"), 0.01, None),  # a single pass has no spread: unknown, not "steady"
    ],
)
def test_moved_beyond_spread_rule(ratio, cv_a, cv_b, expected):
    assert compare.moved_beyond_spread(ratio, cv_a, cv_b) is expected


def test_cells_ratios_tau_and_summary(tmp_path):
    store(
        tmp_path,
        # group bs 32: same order in both runs; onnx 20% faster in B (beyond the 2.83% band)
        speed("a", "torch-fp32", 100.0), speed("b", "torch-fp32", 101.0),
        speed("a", "onnx", 150.0), speed("b", "onnx", 180.0),
        speed("a", "openvino", 200.0), speed("b", "openvino", 201.0),
        # group bs 64: onnx and openvino swap places -> tau 1/3
        speed("a", "torch-fp32", 100.0, batch_size=64), speed("b", "torch-fp32", 100.0, batch_size=64),
        speed("a", "onnx", 150.0, batch_size=64), speed("b", "onnx", 210.0, batch_size=64, contended=True),
        speed("a", "openvino", 200.0, batch_size=64), speed("b", "openvino", 200.0, batch_size=64),
        # not in both runs / not ok / not speed: ignored
        speed("a", "onnx-O1", 300.0),
        speed("b", "onnx-O2", 300.0),
        speed("b", "onnx-qint8", 1.0, status="failed"), speed("a", "onnx-qint8", 400.0),
    )  # fmt: skip
    accuracy = results.new_row(run="b", cell_id="acc", kind="accuracy", status="ok", metric="sts_spearman",
                               accuracy=0.8, machine=FP)  # fmt: skip
    results.write_row(tmp_path, accuracy)
    cells, ranks, summary = compared(tmp_path)

    assert len(cells) == 6
    assert set(cells["backend"]) == {"torch-fp32", "onnx", "openvino"}
    onnx = cells[(cells["backend"] == "onnx") & (cells["batch_size"] == 32)].iloc[0]
    assert onnx["ratio"] == pytest.approx(1.2)
    assert onnx["diff_pct"] == pytest.approx(20.0)
    assert onnx["spread_pct"] == pytest.approx(2 * math.sqrt(2) * 1.0)
    assert onnx["moved"] is True and not onnx["contended"]
    fp32 = cells[(cells["backend"] == "torch-fp32") & (cells["batch_size"] == 32)].iloc[0]
    assert fp32["moved"] is False

    tau = ranks.set_index("batch_size")["tau"]
    assert tau[32] == pytest.approx(1.0)
    assert tau[64] == pytest.approx(1 / 3)
    assert ranks.set_index("batch_size").loc[64, "order_b"] == ["onnx", "openvino", "torch-fp32"]

    assert summary["mean_tau"] == pytest.approx((1 + 1 / 3) / 2)
    assert summary["max_abs_diff_pct"] == pytest.approx(40.0)
    assert summary["max_abs_diff_cell"] == {
        "machine": FP, "model": "tiny", "dataset": "short", "batch_size": 64, "threads": 2, "backend": "onnx",
        "variant": "",
    }  # fmt: skip
    assert summary["moved"] == 2 and summary["moved_contended"] == 1 and summary["contended"] == 1

    # speedups within each run: bs 32 onnx 1.5 -> 180/101; openvino 2.0 -> 201/101; torch-fp32 has none
    assert onnx["speedup_a"] == pytest.approx(1.5) and onnx["speedup_b"] == pytest.approx(180 / 101)
    assert onnx["speedup_diff_pct"] == pytest.approx((180 / 101 / 1.5 - 1) * 100)
    assert math.isnan(fp32["speedup_diff_pct"])
    moved = [180 / 101 / 1.5, 201 / 101 / 2.0, 210 / 100 / 1.5, 200 / 100 / 2.0]
    assert summary["mean_abs_speedup_diff_pct"] == pytest.approx(sum(abs(m - 1) for m in moved) / 4 * 100)
    assert summary["max_abs_speedup_diff_pct"] == pytest.approx(40.0)
    assert summary["max_abs_speedup_diff_cell"]["backend"] == "onnx"
    assert summary["max_abs_speedup_diff_cell"]["batch_size"] == 64


def test_cells_match_per_machine_and_latest_row_wins(tmp_path):
    other = "o" * 16
    store(
        tmp_path,
        speed("a", "onnx", 100.0), speed("b", "onnx", 100.0),
        speed("a", "onnx", 100.0, machine=other), speed("b", "onnx", 50.0, machine=other),
        # a re-measured cell (other cell_id, later timestamp) replaces the earlier row
        speed("b", "onnx", 999.0, threads=2, timestamp="2024-01-01T00:00:00+00:00", cell_id="old"),
    )  # fmt: skip
    cells, _, _ = compared(tmp_path)
    by_machine = cells.set_index("machine")["ratio"]
    assert by_machine[FP] == pytest.approx(1.0)
    assert by_machine[other] == pytest.approx(0.5)


def test_cli_json(tmp_path, capsys):
    store(
        tmp_path,
        speed("a", "torch-fp32", 100.0), speed("b", "torch-fp32", 100.0),
        speed("a", "onnx", 150.0), speed("b", "onnx", 90.0),
    )  # fmt: skip
    assert harness_main(["compare", "a", "b", "--results", str(tmp_path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["summary"]["mean_tau"] == pytest.approx(-1.0)
    assert out["summary"]["moved"] == 1
    assert out["rankings"][0]["order_a"] == ["onnx", "torch-fp32"]
    assert {c["backend"]: c["moved"] for c in out["cells"]} == {"onnx": True, "torch-fp32": False}


def test_cli_text_and_machine_prefix(tmp_path, capsys):
    store(tmp_path, speed("a", "onnx", 100.0), speed("b", "onnx", 120.0, contended=True))
    assert compare_cli.main(["a", "b", "--results", str(tmp_path), "--machine", FP[:6]]) == 0
    text = capsys.readouterr().out
    assert "MOVED" in text and "contended" in text and "+20.0%" in text
    assert compare_cli.main(["a", "b", "--results", str(tmp_path), "--machine", "zzz"]) == 2
    assert "--machine 'zzz' is not in the result store" in capsys.readouterr().err


def test_unknown_run_is_one_line_with_did_you_mean(tmp_path, capsys):
    store(tmp_path, speed("baseline", "onnx", 100.0), speed("nightly", "onnx", 100.0))
    assert compare_cli.main(["baseline", "nightli", "--results", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err == "error: run: 'nightli' is not in the store; runs: baseline, nightly. Did you mean 'nightly'?\n"


def test_no_common_cells(tmp_path, capsys):
    store(tmp_path, speed("a", "onnx", 100.0), speed("b", "openvino", 100.0))
    assert compare_cli.main(["a", "b", "--results", str(tmp_path)]) == 1
    assert "no ok speed cell was measured in both a and b" in capsys.readouterr().err


def test_variants_are_ranked_by_label(tmp_path):
    """Two configurations of one backend are two names in the ranking, not "openvino > openvino"."""
    for run in ("a", "b"):
        store(
            tmp_path,
            speed(run, "openvino", 100.0),
            speed(run, "openvino", 150.0, variant="ov_precision=bf16", cell_id=f"{run}-ov-bf16"),
        )
    cells, ranks, _ = compared(tmp_path)
    assert ranks["order_a"].iloc[0] == ["openvino [ov_precision=bf16]", "openvino"]
    text = compare_cli.format_text("a", "b", cells, ranks, compare.summarize(cells, ranks))
    assert "openvino > openvino" not in text


def test_docstring_names_the_pairing_keys():
    for key in compare.CELL_KEYS:
        assert key in compare.__doc__.split("\n\n")[1], key
