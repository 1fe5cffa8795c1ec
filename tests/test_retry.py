"""A failure is never final by accident, and one bad job never ends the others (issue 23, items 2 and 3)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from rows import speed_row

from harness.store import results

V = {"torch": "2.13.0"}


def _write(tmp_path, cell_id, **fields):
    results.write_row(tmp_path, speed_row("onnx", fields.pop("throughput", None), cell_id=cell_id, versions=V,
                                          **fields))  # fmt: skip


def test_which_stored_cells_are_measured_again(tmp_path):
    _write(tmp_path, "ok", throughput=10.0)
    _write(tmp_path, "timeout", status="timeout", reason="no result within the 900s timeout (cell_timeout_s)")
    _write(tmp_path, "killed", status="failed", reason="speed process died with signal SIGKILL (likely out of memory)")
    _write(tmp_path, "export", status="failed", reason="export: RuntimeError: no external weights file")
    _write(tmp_path, "unsupported", status="unsupported", reason="needs a CUDA GPU")
    (tmp_path / "r1" / "damaged.json").write_text('{"cell_id": "damaged", "status": "o')
    why = {c: results.why_run(tmp_path, "r1", c, V) for c in
           ("ok", "timeout", "killed", "export", "unsupported", "damaged", "missing")}  # fmt: skip
    assert why["ok"] is None and why["export"] is None and why["unsupported"] is None  # final unless asked
    assert why["timeout"].startswith("timeout") and "SIGKILL" in why["killed"]
    assert why["damaged"] == "a damaged row" and why["missing"] == "new"
    assert "retry-failed" in results.why_run(tmp_path, "r1", "export", V, retry_failed=True)
    assert results.why_run(tmp_path, "r1", "ok", V, retry_failed=True) is None  # an ok cell: never again
    assert results.why_run(tmp_path, "r1", "ok", {"torch": "2.14.0"}) == "library versions changed"


def test_a_row_measured_again_under_new_versions_is_kept_aside(tmp_path):
    _write(tmp_path, "ok", throughput=10.0)
    results.supersede(tmp_path, "r1", "ok")
    assert not (tmp_path / "r1" / "ok.json").exists()
    kept = list((tmp_path / "r1" / ".superseded").glob("ok.*.json"))
    assert len(kept) == 1 and json.loads(kept[0].read_text())["throughput"] == 10.0
    assert results.load(tmp_path).empty  # loading does not look there


QUICK = [
    "rounds=1", "dataset=short", "dataset.samples=8", "batch_sizes=[4]", "measure.min_time_s=0",
    "measure.min_repeats=2", "measure.warmup_batches=1", "accuracy.enabled=false", "backend=torch-fp32",
]  # fmt: skip


def _sweep(tmp_path, *args):
    env = {**os.environ, "HARNESS_CACHE_DIR": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "harness.cli", "sweep", *QUICK, f"results_dir={tmp_path / 'r'}",
                           "run=t", f"hydra.sweep.dir={tmp_path / 'multirun'}", *args],
                          capture_output=True, text=True, env=env, timeout=900)  # fmt: skip


def test_a_timeout_row_is_measured_again_on_the_next_run(tiny_models, tmp_path):
    model = [f"model.source={tiny_models[0]}", "model.name=tiny"]
    assert _sweep(tmp_path, *model).returncode == 0
    [path] = (tmp_path / "r" / "t").glob("speed-*.json")
    row = json.loads(path.read_text())
    path.write_text(json.dumps({**row, "status": "timeout", "reason": "no result within the 900s timeout",
                                "throughput": None}))  # fmt: skip
    again = _sweep(tmp_path, *model)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "measuring 1 cell(s) again: timeout" in again.stderr
    assert json.loads(path.read_text())["status"] == "ok"
    finished = _sweep(tmp_path, *model)  # and now it is finished
    assert finished.returncode == 0 and "nothing to run" in finished.stdout


def test_a_job_whose_model_cannot_be_loaded_fails_its_rows_and_the_others_go_on(tiny_models, tmp_path):
    proc = _sweep(tmp_path, "model.name=tiny", f"model.source=nobody-here/not-a-model,{tiny_models[0]}")
    assert proc.returncode == 1, proc.stderr[-3000:]
    rows = {r["model_source"]: r for r in results.read_rows(tmp_path / "r") if r["kind"] == "speed"}
    assert rows[str(tiny_models[0])]["status"] == "ok"
    bad = rows["nobody-here/not-a-model"]
    assert bad["status"] == "failed" and "could not fetch 'nobody-here/not-a-model'" in bad["reason"]
    assert "1 of 2 cells of this sweep did not finish (1 failed)" in proc.stderr
    assert "Traceback" not in proc.stderr
