"""The CLI: the default experiment joins the overrides, --cfg prints the composed config."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(
    "args, expected",
    [
        ([], ["+experiment=default"]),
        (["run=x"], ["+experiment=default", "run=x"]),
        (["-m", "run=x"], ["-m", "+experiment=default", "run=x"]),
        (["run=x", "--cfg", "job"], ["+experiment=default", "run=x", "--cfg", "job"]),
        (["--cfg", "job", "run=x"], ["--cfg", "job", "+experiment=default", "run=x"]),
        (["--cfg", "job"], ["--cfg", "job", "+experiment=default"]),
    ],
)
def test_default_experiment_joins_the_overrides_wherever_flags_stand(args, expected):
    from harness.cli.sweep import with_default_experiment

    assert with_default_experiment(args) == expected


def test_sweep_cfg_job_after_overrides_prints_the_config(capsys):
    from harness.cli import main

    assert main(["sweep", "run=x", "backend=onnx", "--cfg", "job"]) == 0
    out = capsys.readouterr().out
    assert "run: x" in out and "onnx" in out


def test_default_sweep_measures_in_up_to_four_interleaved_rounds(capsys):
    """rounds=auto's cap (harness.engine.rounds); `round` must stay outermost."""
    from harness.cli import main

    assert main(["sweep", "--cfg", "hydra"]) == 0
    out = capsys.readouterr().out
    params = out[out.index("params:") :].splitlines()[1:3]
    assert params[0].strip() == "round: 0,1,2", params
