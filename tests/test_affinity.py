"""A sweep under `taskset -c 0` on a machine with more CPUs: one thread per runtime (the CPUs it may use,
not the host's cores), recorded in the row, and work on the other core does not mark its cells contended
(issue 23, item 4)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from harness.store import results

QUICK = [
    "rounds=1", "dataset=short", "dataset.samples=8", "batch_sizes=[4]", "measure.min_time_s=1",
    "measure.min_repeats=2", "measure.warmup_batches=1", "accuracy.enabled=false", "backend=torch-fp32,onnx",
]  # fmt: skip


@pytest.mark.skipif(shutil.which("taskset") is None or len(os.sched_getaffinity(0)) < 2, reason="needs 2 CPUs")
def test_taskset_one_cpu_runs_one_thread_and_ignores_the_other_core(tiny_models, tmp_path):
    mine, other = sorted(os.sched_getaffinity(0))[:2]
    env = {**os.environ, "HARNESS_CACHE_DIR": str(tmp_path / "cache"), "HARNESS_LOCK_DIR": str(tmp_path)}
    busy = subprocess.Popen(["taskset", "-c", str(other), sys.executable, "-c", "while True: pass"])
    try:
        proc = subprocess.run(
            ["taskset", "-c", str(mine), sys.executable, "-m", "harness.cli", "sweep", *QUICK, "model.name=tiny",
             f"model.source={tiny_models[0]}", f"results_dir={tmp_path / 'r'}", "run=a",
             f"hydra.sweep.dir={tmp_path / 'multirun'}"],
            env=env, capture_output=True, text=True, timeout=900,
        )  # fmt: skip
    finally:
        busy.kill()
        busy.wait()
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [r for r in results.read_rows(tmp_path / "r") if r["kind"] == "speed"]
    assert len(rows) == 2
    for row in rows:
        assert row["threads"] == 1 and row["hardware"]["cpus_allowed"] == [mine], (row["threads"], row["hardware"])
        assert row["contended"] is False, (row["backend"], row["cpu_other"])  # the busy core is not this cell's
