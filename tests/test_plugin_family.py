"""A backend family registered from outside the package, through the `harness.backends` entry-point
group: tests/plugins holds a distribution's `.dist-info` (entry_points.txt) and its module, put on the path
as an installed package would be. No file of the harness names it; it runs through a sweep (forked workers),
the report and the recommender."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from harness.store import results

PLUGINS = Path(__file__).parent / "plugins"
QUICK = [
    "rounds=1", "dataset=short", "dataset.samples=8", "batch_sizes=[4]", "measure.min_time_s=0",
    "measure.min_repeats=2", "measure.warmup_batches=1", "measure.max_time_s=5",
    "measure.contention_threshold=64",  # a busy CI machine must not turn the rows into non-evidence here
]  # fmt: skip


def _harness(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, env=env,
                          timeout=900)  # fmt: skip


def test_a_family_from_an_entry_point_runs_through_sweep_report_and_recommend(tiny_models, tiny_data, tmp_path):
    env = {**os.environ, "HARNESS_CACHE_DIR": str(tmp_path / "cache"), "HARNESS_DATA_DIR": str(tiny_data),
           "PYTHONPATH": os.pathsep.join(p for p in (str(PLUGINS), os.environ.get("PYTHONPATH")) if p)}  # fmt: skip
    store = tmp_path / "results"
    sweep = _harness("sweep", "model.name=tiny", f"model.source={tiny_models[0]}", f"results_dir={store}", "run=p",
                     f"hydra.sweep.dir={tmp_path / 'multirun'}",
                     "backend=torch-fp32,toy-fp32", "backend.toy_level=1,2", *QUICK, env=env)  # fmt: skip
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    # the terminal: the bar, warnings, the summary; Hydra's and the jobs' INFO lines go to the run's log file
    terminal = sweep.stdout + sweep.stderr
    assert "Launching" not in terminal and "[INFO]" not in terminal and "cell/s" in terminal
    log_file = Path(next(line for line in sweep.stdout.splitlines() if line.startswith("log: "))[5:])
    assert "Launching 4 jobs" in log_file.read_text() and "toy-fp32" in log_file.read_text()

    df = results.load(store)
    speed = df[(df["kind"] == "speed")].set_index("label")
    # the family's own knob makes a variant of its backend; torch-fp32 does not have it: one cell
    assert sorted(speed.index) == ["torch-fp32", "toy-fp32", "toy-fp32 [toy_level=2]"]
    assert (speed["status"] == "ok").all(), speed[["status", "reason"]]
    assert speed.loc["toy-fp32 [toy_level=2]", "runtime"]["toy_level"] == 2  # read back in the forked worker
    assert speed.loc["toy-fp32", "precision"] == "fp32" and speed.loc["toy-fp32", "speedup"] > 0
    accuracy = df[(df["kind"] == "accuracy") & (df["backend"] == "toy-fp32")]  # in a spawned process
    assert len(accuracy) == 2 and (accuracy["status"] == "ok").all(), accuracy[["status", "reason"]]

    report = _harness("report", "--results", str(store), "--out", str(tmp_path / "report"), env=env)
    assert report.returncode == 0, report.stderr[-3000:]
    assert "toy-fp32" in (tmp_path / "report" / "report.md").read_text()

    answer = _harness("recommend", "--results", str(store), "--json", "--batch-size", "4", env=env)
    assert answer.returncode == 0, answer.stderr[-3000:]
    candidates = json.loads(answer.stdout)["evidence"]["candidates"]
    assert "toy-fp32" in {c["label"] for c in candidates}, candidates

    without = {k: v for k, v in env.items() if k != "PYTHONPATH"}
    unknown = _harness("sweep", "backend=toy-fp32", "--plan", env=without)  # not installed: a one-line error
    assert unknown.returncode == 2 and "toy-fp32" in unknown.stderr and "Traceback" not in unknown.stderr
