"""Defects of the sweep's own bookkeeping (issue 14: #4, #6, #8), each pinned by a test that failed before.

#4 a failed torch-fp32 reference pass must be named in the other backends' accuracy rows;
#6 the end-of-sweep summary shows every machine that wrote to the run (a SLURM sweep's nodes), and a
   backend name it does not know sorts last instead of raising;
#8 warnings raised in a unit's process (e.g. an fp16 overflow) land in the row, not in a blanket filter.
"""

from __future__ import annotations

import json
import subprocess
import sys

from omegaconf import OmegaConf
from rows import speed_row

from harness.backends import named as _named
from harness.cli import progress
from harness.config import DatasetConfig, MeasureConfig, ModelConfig, SweepConfig
from harness.engine import accuracy
from harness.engine.cells import Cell
from harness.engine.specs import JobSpec, ModelSpec
from harness.store import results

BACKENDS = _named()


def test_summary_shows_every_machine_of_the_run_and_unknown_backends(tmp_path):
    results.write_row(tmp_path, speed_row("torch-fp32", 100.0, run="s", machine="node-a" * 3, threads=2))
    results.write_row(tmp_path, speed_row("torch-fp32", 90.0, run="s", machine="node-b" * 3, threads=2))
    results.write_row(tmp_path, speed_row("my-backend", 150.0, run="s", machine="node-b" * 3, threads=2))
    text = progress.summary(str(tmp_path), ["s"])
    assert "no results" not in text
    assert "node-anode-anode-a" in text and "node-bnode-bnode-b" in text  # a machine column: several machines
    lines = [line for line in text.splitlines() if "node-b" in line]
    assert "torch-fp32" in lines[0] and "my-backend" in lines[-1]  # registered first, the unknown name last


def test_a_failed_reference_pass_is_named_in_the_other_backends_rows(tiny_data, tmp_path, monkeypatch):
    cfg = OmegaConf.structured(
        SweepConfig(
            model=ModelConfig(name="tiny", source="/nowhere"), dataset=DatasetConfig(name="short", bucket="short"),
            backend=BACKENDS["onnx"], results_dir=str(tmp_path), data_dir=str(tiny_data), run="r",
        )
    )  # fmt: skip
    calls = []

    def fake_run_isolated(task, spec, timeout_s):
        calls.append(spec.job.backend["name"])
        if spec.is_reference:
            return "failed", None, "accuracy process died with signal SIGKILL (likely out of memory)"
        tasks = {u.task: {"metric": "m", "accuracy": 0.5} for u in spec.tasks}
        return "ok", {"tasks": tasks, "peak_memory_mb": 1.0, "warnings": None}, None

    monkeypatch.setattr(accuracy, "run_isolated", fake_run_isolated)
    cells = [Cell("accuracy", f"acc-{t}", task=t) for t in ("sts", "retrieval")]
    job = JobSpec(model=ModelSpec("tiny", "bi-encoder", "/nowhere"), backend={}, dataset={}, measure=MeasureConfig(),
                  threads=1, offline=True, source_dir="", export_dir="", cache_dir="")  # fmt: skip
    outcomes = accuracy.run_accuracy(cfg, cells, job, "m1", cfg.backend)
    assert calls == ["torch-fp32", "onnx"]  # the reference first, then the backend
    for status, reason, fields in outcomes.values():
        assert status == "ok" and fields["accuracy"] == 0.5
        assert "torch-fp32 reference pass failed" in reason and "SIGKILL" in reason
        assert fields["fidelity_source"] == reason  # the row says why it has no fidelity


def test_warnings_in_a_units_process_reach_its_row():
    code = """
import dataclasses, json, warnings
from harness.engine import isolation as cell, units as work
cell.configure_process(1, offline=True)
def noisy(spec):
    warnings.warn("overflow encountered in cast", RuntimeWarning)
    warnings.warn("old API", DeprecationWarning)  # library advice stays quiet
    return {"x": 1}
work.noisy = noisy
print(json.dumps(dataclasses.asdict(cell.run_unit("noisy", None))))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["fields"] == {"x": 1} and result["error"] is None
    assert result["warnings"] == ["RuntimeWarning: overflow encountered in cast"]
    assert result["peak_memory_mb"] > 0
