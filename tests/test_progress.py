"""Sweep progress: job counts, swept runs and the summary table."""

from __future__ import annotations

import re
import sys

from omegaconf import OmegaConf

from harness.cli import progress
from harness.store import results


def test_progress_counts_jobs_and_finds_every_swept_run(tmp_path):
    from rows import speed_row

    from harness.cli import progress
    from harness.core.hardware import detect

    def cfg(task):
        return OmegaConf.create({
            "run": "default", "results_dir": str(tmp_path),
            "hydra": {"sweeper": {"params": {"round": "0,1,2", "backend": "onnx,openvino"}},
                      "overrides": {"task": task}},
        })  # fmt: skip

    swept = cfg(["run=a,b", "batch_sizes=[4,8]"])
    assert progress.count_jobs(swept) == 3 * 2 * 2  # a list value is one value, not a sweep
    assert progress.swept_runs(swept) == ["a", "b"]
    assert progress.swept_runs(cfg(["run=x"])) == ["x"]
    assert progress.swept_runs(cfg([])) == ["default"]

    here = detect().fingerprint
    for run in ("a", "b"):
        results.write_row(tmp_path, speed_row("torch-fp32", 100.0, run=run, machine=here, threads=2))
    text = progress.summary(str(tmp_path), ["a", "b"])
    lines = [line.split() for line in text.splitlines() if "torch-fp32" in line]
    assert [line[0] for line in lines] == ["a", "b"]  # a run column when several runs are shown
    assert "no results in run(s) c" in progress.summary(str(tmp_path), ["c"])


def test_the_bar_counts_every_planned_cell_with_the_machines_variants(tmp_path, monkeypatch):
    """On a CPU where OpenVINO chooses bf16 the sweep adds `openvino [ov_precision=f32]`: the bar's total
    is the plan's cell count with it (it used to count Hydra jobs' batch sizes and grow as variants
    appeared, so its ETA ran short). Probe monkeypatched; Hydra itself is not started."""
    from harness.backends import openvino
    from harness.cli import progress
    from harness.cli import sweep as cli_sweep

    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(openvino, "default_precision", lambda device="CPU": "bf16")
    monkeypatch.setattr(progress, "_EXPECTED", None)
    monkeypatch.setattr(cli_sweep, "_hydra_sweep", lambda: None)
    monkeypatch.setattr(sys, "argv", list(sys.argv))  # sweep_main hands its arguments to Hydra this way
    cli_sweep.main(["backend=torch-fp32,openvino", "dataset=short,medium", "batch_sizes=[32]", "rounds=1",
                    f"results_dir={tmp_path / 'results'}"])  # fmt: skip
    bar = progress.SweepProgress()
    bar.on_multirun_start(OmegaConf.create({}))
    assert bar.bar.total == 2 * 3  # two datasets x (torch-fp32, openvino, openvino [ov_precision=f32])
    bar.bar.close()


def test_a_server_sweep_counts_its_cells_and_time_and_names_its_timeouts():
    rows = [{"kind": "server", "status": "ok", "duration_s": 12.0},
            {"kind": "server", "status": "ok", "duration_s": 8.0},
            {"kind": "server", "status": "timeout", "duration_s": 0.0}]
    assert progress.timed_share(rows, 40.0) == "timed 20 s of 40 s (50%); 2 cells measured in this sweep"
    assert progress.failures(rows).startswith("1 of 3 cells of this sweep did not finish (1 timeout)")


def test_cells_that_several_jobs_name_are_counted_once(monkeypatch):
    """`backend.ov_hint=LATENCY,THROUGHPUT` over torch makes two jobs of the same cells: the second finds them
    done. The bar counted them again (a server sweep of 408 cells ended at 624/624, its ETA short all along)."""
    from harness.cli import progress

    monkeypatch.setattr(progress, "_EXPECTED", 3)
    bar = progress.SweepProgress()
    bar.on_multirun_start(OmegaConf.create({}))
    monkeypatch.setattr(progress, "_ACTIVE", bar)
    progress.cell_done({"cell_id": "a", "model": "m", "dataset": "short", "backend": "torch-fp32", "variant": ""})
    progress.cells_skipped(["a", "b"])  # the second job: 'a' written above, 'b' in the store from before
    progress.cells_skipped(["a", "b"])
    assert (bar.bar.n, bar.bar.total, bar.skipped) == (2, 3, 1)
    bar.bar.close()


def test_with_a_plan_the_bar_counts_down_the_plans_estimate_not_a_cells_per_second_forecast(monkeypatch):
    """The default sweep's bar read 45:10 left after its first cell (17 s) of a ~7-minute sweep: tqdm forecasts
    from cells per second, and most later-round cells end at once (not needed). With the plan's estimate the bar
    shows what is left of that."""
    from harness.cli import progress

    monkeypatch.setattr(progress, "_EXPECTED", 156)
    monkeypatch.setattr(progress, "_ESTIMATE_S", 420.0)
    bar = progress.SweepProgress()
    bar.on_multirun_start(OmegaConf.create({}))
    monkeypatch.setattr(progress, "_ACTIVE", bar)
    bar.start -= 17.0
    progress.cell_done({"cell_id": "a", "model": "m", "dataset": "short", "backend": "torch-fp32", "variant": ""})
    line = str(bar.bar)
    assert re.search(r"m short torch-fp32; about 6:4[23] left by the plan", line) and "<" not in line  # no forecast
    bar.start -= 500.0
    progress.cells_skipped(["b"])
    assert "m short torch-fp32; past the plan's 7:00" in str(bar.bar)
    bar.bar.close()
    assert progress.left_of_plan(4000, 100) == "about 1:05:00 left by the plan"


def test_without_a_plan_the_bar_keeps_tqdms_forecast(monkeypatch):
    from harness.cli import progress

    monkeypatch.setattr(progress, "_EXPECTED", 3)
    monkeypatch.setattr(progress, "_ESTIMATE_S", None)
    bar = progress.SweepProgress()
    bar.on_multirun_start(OmegaConf.create({}))
    bar.advance(["a"], "m short onnx")
    assert "<" in str(bar.bar) and "left by the plan" not in str(bar.bar)
    bar.bar.close()
