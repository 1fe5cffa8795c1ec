"""Sweeps through Hydra launcher plugins: several workers (joblib, submitit), one merged store, one report.

The per-machine lock (harness.engine.isolation.machine_lock) must keep timed cells apart across workers:
no two speed cells may be timed at once (each row carries its timed wall-clock window), and a worker that had to wait
says so in its job log.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.store import results

QUICK = ["dataset=short", "dataset.samples=8", "batch_sizes=[4]", "accuracy.enabled=false",
         "measure.min_time_s=0.5", "measure.min_repeats=2", "measure.warmup_batches=1", "measure.max_time_s=5",
         "measure.breakdown=false"]  # fmt: skip
LAUNCHERS = ("joblib", "submitit_local", "submitit_slurm", "local2", "slurm")


def test_launcher_plugins_load():
    """Every launcher preset composes with this Hydra version and its class imports."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import get_class

    from harness.config import CONF_DIR
    from harness.engine.grid import register_configs

    register_configs()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        for name in LAUNCHERS:
            cfg = compose(
                "config", overrides=["+experiment=default", f"hydra/launcher={name}"], return_hydra_config=True
            )
            assert get_class(cfg.hydra.launcher._target_).__name__.endswith("Launcher"), name
            assert cfg.hydra.callbacks.progress._target_ == "harness.cli.progress.SweepProgress"
        local2 = compose("config", overrides=["hydra/launcher=local2"], return_hydra_config=True).hydra.launcher
        assert local2.n_jobs == 2
        slurm = compose(
            "config",
            overrides=["hydra/launcher=slurm", "hydra.launcher.partition=cpu-icelake"],
            return_hydra_config=True,
        ).hydra.launcher
        assert slurm.partition == "cpu-icelake" and slurm.additional_parameters.exclusive is True


def test_progress_callback_survives_pickling():
    """joblib and submitit pickle the Hydra context, callbacks included."""
    import pickle

    from harness.cli.progress import SweepProgress

    callback = SweepProgress()
    callback.bar = __import__("tqdm").tqdm(total=3, disable=False, file=sys.stderr)
    try:
        clone = pickle.loads(pickle.dumps(callback))
    finally:
        callback.bar.close()
    assert clone.bar is None


def overlapping_timings(rows: list[dict]) -> list[tuple[str, str]]:
    """Pairs of speed cells whose timed windows (wall clock, written by each cell) overlap."""
    windows = sorted((r["timed_window"][0], r["timed_window"][1], r["cell_id"]) for r in rows if r["kind"] == "speed")
    return [(a[2], b[2]) for a, b in zip(windows, windows[1:], strict=False) if b[0] < a[1]]


def test_overlapping_timings_finds_cells_timed_at_once():
    rows = [
        {"kind": "speed", "cell_id": c, "timed_window": w} for c, w in (("a", [0, 2]), ("b", [3, 4]), ("c", [3.5, 5]))
    ]
    assert overlapping_timings(rows) == [("b", "c")]
    assert overlapping_timings(rows[:2]) == []


def run_sweep_watching(args: list[str], tmp_path: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run `harness sweep ...` in its own session (killed as a group if it overruns)."""
    env = {**os.environ, "HARNESS_CACHE_DIR": str(tmp_path / "cache"), "HARNESS_LOCK_DIR": str(tmp_path)}
    env.pop("HARNESS_DATA_DIR", None)
    command = [sys.executable, "-m", "harness.cli", "sweep", "rounds=1", *args]
    out, err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    with open(out, "w") as stdout, open(err, "w") as stderr:
        proc = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=stdout, stderr=stderr, start_new_session=True)
        deadline = time.monotonic() + timeout
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
            pytest.fail(f"sweep did not finish in {timeout}s")
    return subprocess.CompletedProcess(command, proc.returncode, out.read_text(), err.read_text())


def job_logs(sweep_dir: Path) -> str:
    """The sweep's log file (every job appends to it, wherever the launcher ran it) and any job's own."""
    return "\n".join(p.read_text() for p in sorted(sweep_dir.rglob("*.log")))


@pytest.mark.parametrize(
    "launcher,backends",
    [
        (["hydra/launcher=local2"], ("torch-fp32", "torch-bf16", "torch-fp16")),  # joblib, 2 workers, 3 jobs
        (["hydra/launcher=submitit_local"], ("torch-fp32", "torch-bf16")),  # one local process per job
    ],
    ids=["joblib-2-workers", "submitit-local"],
)
def test_workers_share_one_store_and_take_turns_timing(launcher, backends, tiny_models, tmp_path):
    store, sweep_dir = tmp_path / "results", tmp_path / "multirun"
    args = [*launcher, "model.name=tiny", f"model.source={tiny_models[0]}", f"backend={','.join(backends)}", *QUICK,
            f"results_dir={store}", "run=scale", f"hydra.sweep.dir={sweep_dir}"]  # fmt: skip
    proc = run_sweep_watching(args, tmp_path)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert "Traceback" not in proc.stderr

    # one merged store: a row per job, all measured
    df = results.load(store)
    assert sorted(df["backend"]) == sorted(backends)
    assert set(df["status"]) == {"ok"}, df[["backend", "status", "reason"]].to_string()
    assert df["cell_id"].is_unique and df["machine"].nunique() == 1
    assert "throughput" in proc.stdout  # the progress callback's summary table, printed after the sweep

    # the lock: timed cells never overlapped, and a worker waited for its turn
    assert overlapping_timings(results.read_rows(store)) == [], "timed cells ran at once"
    assert "waiting for the machine lock (a timed cell runs alone)" in job_logs(sweep_dir)

    report = subprocess.run(
        [sys.executable, "-m", "harness.cli", "report", "--results", str(store), "--out", str(tmp_path / "reports")],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert report.returncode == 0, report.stderr[-3000:]
    assert (tmp_path / "reports" / "index.html").exists()
