"""Sweep progress: job counts, swept runs and the summary table."""

from __future__ import annotations

from omegaconf import OmegaConf

from harness import results


def test_progress_counts_jobs_and_finds_every_swept_run(tmp_path):
    from rows import speed_row

    from harness import progress
    from harness.hardware import detect

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
