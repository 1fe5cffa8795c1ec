"""CPU contention: the meter tells this process from the others, a contended speed cell is re-measured
and flagged, and `harness recommend` does not take flagged rows as evidence.

The CPU hog is a child process of the test, bounded in time and killed in a `finally`.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import psutil
import pytest

from harness.cli import main as harness_main
from harness.engine.measure import CpuMeter
from harness.store import results

THRESHOLD = 0.1  # measure.contention_threshold's default, in cores
RETRIES = 1  # one re-measurement per cell keeps the sweep short


@contextlib.contextmanager
def cpu_hog(max_seconds: float) -> Iterator[subprocess.Popen]:
    """A process spinning one core for at most `max_seconds`, killed on exit."""
    code = f"import time\nend = time.monotonic() + {max_seconds}\nwhile time.monotonic() < end:\n    pass\n"
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def _spin(stop: threading.Event) -> None:
    while not stop.is_set():
        pass


def test_cpu_meter_tells_self_from_other():
    with CpuMeter() as idle:
        time.sleep(0.5)
    if idle.cpu_other > 0.3:
        pytest.skip(f"the machine is already busy ({idle.cpu_other:.2f} cores used by other processes while idle)")
    assert idle.cpu_self < 0.1

    with cpu_hog(10) as hog:
        time.sleep(0.3)  # past the interpreter's start-up
        with CpuMeter() as busy:
            time.sleep(1.0)
        assert hog.poll() is None
    assert busy.cpu_other > 0.5, busy.cpu_other
    assert busy.cpu_self < 0.1

    stop = threading.Event()
    spinner = threading.Thread(target=_spin, args=(stop,))
    spinner.start()
    try:
        with CpuMeter() as own:
            time.sleep(1.0)
    finally:
        stop.set()
        spinner.join()
    # a busy thread of this process is "self" (other = machine busy - self, so not "other")
    assert own.cpu_self > 0.5, own.cpu_self


def _recommend(results_dir, capsys) -> dict:
    """`harness recommend --json` for the sweep's cells, on this machine (its fingerprint)."""
    args = ["recommend", "--json", "--results", str(results_dir), "--model-kind", "bi-encoder",
            "--batch-size", "16", "--text-length", "40"]  # fmt: skip
    code = harness_main(args)
    out = capsys.readouterr()
    assert code == 0, out.err[-2000:]
    return json.loads(out.out)


def test_contended_cells_are_remeasured_flagged_and_not_evidence(tiny_models, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    env = {
        **os.environ,
        "HARNESS_CACHE_DIR": str(tmp_path / "cache"),
        # our own lock: a colleague's sweep must not hold our timed cells back (nor we theirs)
        "HARNESS_LOCK_DIR": str(tmp_path),
    }
    store = tmp_path / "results"
    args = [
        sys.executable, "-m", "harness.cli", "sweep", "rounds=1", "backend=torch-fp32,onnx",
        "model.name=tiny-bi", f"model.source={tiny_models[0]}", "model.kind=bi-encoder",
        f"results_dir={store}", "run=hog", "accuracy.enabled=false",
        "dataset=short", "dataset.samples=256", "batch_sizes=[16]",
        # each timed try lasts >= 1.5 s, so the hog is inside the CpuMeter's window
        "measure.min_time_s=1.5", "measure.min_repeats=2", "measure.max_repeats=100000", "measure.max_time_s=5",
        "measure.warmup_batches=1", "measure.breakdown=false",
        f"measure.contention_threshold={THRESHOLD}", f"measure.contention_retries={RETRIES}",
    ]  # fmt: skip
    with cpu_hog(300) as hog:
        start = time.monotonic()
        sweep = subprocess.run(args, capture_output=True, text=True, env=env, timeout=280)
        wall = time.monotonic() - start
        hog_alive = hog.poll() is None
        hog_cpu = sum(psutil.Process(hog.pid).cpu_times()[:2]) if hog_alive else 0.0
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    # not vacuous: the hog spun through the whole sweep, timed cells included
    assert hog_alive, "the hog ended before the sweep did"
    assert hog_cpu > 0.1 * wall, f"the hog got {hog_cpu:.1f}s of CPU in {wall:.1f}s"

    speed = results.load(store).query("kind == 'speed'")
    assert sorted(speed["backend"]) == ["onnx", "torch-fp32"]
    assert set(speed["status"]) == {"ok"}, speed[["backend", "reason"]].to_string()
    for row in speed.itertuples():
        # a core of other work on every try: re-measured, then flagged with what was seen
        assert row.tries == RETRIES + 1, (row.backend, row.tries, row.cpu_other)
        assert bool(row.contended), (row.backend, row.cpu_other)
        assert row.cpu_other > THRESHOLD, (row.backend, row.cpu_other)
        # the replaced tries are kept with what they saw
        assert len(row.discarded_tries) == RETRIES, row.discarded_tries
        assert all(t["cpu_other"] > THRESHOLD and t["throughput"] > 0 for t in row.discarded_tries)

    rec = _recommend(store, capsys)
    assert rec["speedup_source"] == "documented", rec["reasons"]
    assert rec["evidence"]["candidates"] == []
    assert "contention" in rec["evidence"]["note"]

    # control: the same rows, unflagged, are evidence - so it was the flag that kept them out
    clean = tmp_path / "clean"
    for row in results.read_rows(store):
        results.write_row(clean, {**row, "contended": False})
    rec = _recommend(clean, capsys)
    # the same rows, uncontended, are evidence: no accuracy was measured, so the answer rests on the
    # measured speed and the label-free task agreement with torch-fp32 (round 0, untimed)
    assert {c["backend"] for c in rec["evidence"]["candidates"]} == {"torch-fp32", "onnx"}
    assert rec["speedup_source"] == "measured", rec["reasons"]
    assert rec["basis"] == "label-free task agreement with torch-fp32 (>= 500 texts), no labelled data"
