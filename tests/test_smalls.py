"""Issue 23, item 5: the smaller ways a sweep went wrong without saying so. Each fails on the code before."""

from __future__ import annotations

import os
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from harness.config import MeasureConfig
from harness.engine import measure, units
from harness.engine.specs import AccuracySpec, AccuracyTask, JobSpec, ModelSpec


def _load_texts_in_a_child(path: str, fmt: str) -> subprocess.CompletedProcess:
    code = (
        "from omegaconf import OmegaConf; from harness.config import DatasetConfig; "
        "from harness.inputs.texts import load_texts; "
        f"print(load_texts(OmegaConf.structured(DatasetConfig(name='x', source='local', format={fmt!r}, "
        f"path={path!r}))))"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


def test_a_fifo_or_a_device_as_texts_is_refused_not_read_forever(tmp_path):
    fifo = tmp_path / "texts.txt"
    os.mkfifo(fifo)
    for path, fmt in ((str(fifo), "file"), (str(fifo), "lines"), ("/dev/zero", "lines")):
        done = _load_texts_in_a_child(path, fmt)  # the old code blocked on the FIFO / grew on /dev/zero
        assert done.returncode != 0 and "is not a regular file" in done.stderr, (path, done.stderr[-500:])


def test_nan_outputs_fail_the_cell():
    units.check_finite(np.ones((3, 4)))
    with pytest.raises(ValueError, match="1 of 3 texts gave NaN or inf"):
        units.check_finite(np.array([[1.0, 2.0], [np.nan, 1.0], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="NaN or inf"):
        units.check_finite(np.array([0.5, np.inf]))  # cross-encoder scores


def _job(offline: bool) -> JobSpec:
    return JobSpec(model=ModelSpec("m", "bi-encoder", "/m"), backend={}, dataset={}, measure=MeasureConfig(),
                   threads=1, offline=offline, source_dir="/m", export_dir="/e", cache_dir="/c")  # fmt: skip


def test_a_local_model_evaluated_on_hub_sets_may_reach_the_hub():
    hub = AccuracyTask("sts", {"hub": "sentence-transformers/stsb"}, "/ref.npy")
    local = AccuracyTask("retrieval", {"path": "/data/beir"}, "/ref2.npy")
    assert AccuracySpec(_job(True), (local,), 32, False).offline is True
    assert AccuracySpec(_job(True), (hub, local), 32, False).offline is False  # was: offline for a local model
    assert AccuracySpec(_job(False), (local,), 32, False).offline is False


def test_the_contention_meter_counts_only_the_cpus_this_process_may_use(monkeypatch):
    """A neighbour busy on CPU 1 takes nothing from a cell pinned to CPU 0 (taskset -c 0)."""
    ticks = {"n": 0}

    def cpu_times(percpu=False):
        ticks["n"] += 1
        busy_other = 5.0 * ticks["n"]  # CPU 1 fully busy the whole time
        cpu = SimpleNamespace(user=0.0, nice=0.0, system=0.0)
        return [cpu, SimpleNamespace(user=busy_other, nice=0.0, system=0.0)]

    monkeypatch.setattr(measure.hardware, "allowed_cpus", lambda: (0,))
    monkeypatch.setattr(measure.hardware, "cgroup_cpu_quota", lambda: None)
    monkeypatch.setattr(measure.psutil, "cpu_times", cpu_times)
    with measure.CpuMeter() as meter:
        pass
    assert meter.cpu_other == 0.0
