"""`harness sweep ... --plan`: the cells, exports and processes of a sweep and an estimate, offline, running nothing."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

from harness.engine.plan import Timings, grid
from harness.store import results


def plan(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.cli", "sweep", *args, "--plan"], capture_output=True,
                          text=True, env=env, timeout=300)  # fmt: skip


def test_docs_cpu_grid_is_planned_offline_in_seconds(tmp_path):
    env = {**os.environ, "HARNESS_CACHE_DIR": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}
    start = time.monotonic()
    proc = plan("+experiment=docs-cpu", f"results_dir={tmp_path / 'results'}", env=env)
    seconds = time.monotonic() - start
    assert proc.returncode == 0, proc.stderr[-3000:]
    # 4 embedding models with [32,64,128] / [16,32,64] ... : the cell count is the sum over the grid
    from harness.config import CONF_DIR
    from harness.engine.plan import model_batch_sizes

    models = ["all-MiniLM-L6-v2-hub", "bge-base-en-v1.5", "mxbai-embed-large-v1", "bge-m3", "ms-marco-MiniLM-L6-v2",
              "bge-reranker-base", "mxbai-rerank-large-v1", "bge-reranker-v2-m3"]  # fmt: skip
    # on a CPU where OpenVINO chooses bf16 by itself (AMX / AVX512-BF16), openvino and openvino-qint8 each get
    # their f32-pinned companion variant: 13 configurations instead of 11
    from harness.backends.openvino import default_precision

    configurations = 11 + (2 if default_precision() not in (None, "fp32") else 0)
    from harness.cli.sweep import AUTO_ROUNDS

    rounds = AUTO_ROUNDS  # rounds=auto's cap (3): every round's cells are counted, later ones timed at their share
    cells = rounds * configurations * 3 * sum(len(model_batch_sizes(CONF_DIR, m)) for m in models)
    assert re.search(rf"\b{cells} cells \({cells} speed, 0 accuracy\)", proc.stdout), proc.stdout
    assert "estimated duration:" in proc.stdout and "no timing on this machine" in proc.stdout
    assert not (tmp_path / "results").exists() and not (tmp_path / "cache").exists()  # nothing ran, nothing made
    assert seconds < 60, seconds  # generous on a loaded 2-core machine; about a second when quiet


def test_the_estimate_comes_from_this_machines_rows(tmp_path):
    from rows import speed_row

    from harness.core.hardware import detect

    machine = detect().fingerprint
    for backend, seconds in (("torch-fp32", 10.0), ("onnx", 20.0)):
        row = speed_row(backend=backend, throughput=1.0, machine=machine, model="minilm", dataset="short",
                        duration_s=seconds, run="old")  # fmt: skip
        results.write_row(tmp_path / "results", row)
    timings = Timings(results.read_rows(tmp_path / "results"), machine)
    assert timings.estimate("speed", "minilm", "short", "onnx", "", 32) == 20.0  # the cell itself
    assert timings.estimate("speed", "minilm", "medium", "onnx", "", 32) == 20.0  # its backend elsewhere
    assert timings.estimate("speed", "x", "short", "openvino", "", 32) == 15.0  # the machine's median
    assert Timings([], machine).estimate("speed", "minilm", "short", "onnx", "", 32) is None

    env = {**os.environ, "HARNESS_CACHE_DIR": str(tmp_path / "cache")}
    proc = plan("backend=torch-fp32,onnx", "dataset=short", "batch_sizes=[32]", "rounds=2",
                f"results_dir={tmp_path / 'results'}",
                env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "4 cells (4 speed" in proc.stdout and "estimated duration: " in proc.stdout
    # 2 rounds x (10 s + 20 s) of cells + the onnx export, never timed here (60 s)
    assert "estimated duration: 120 s" in proc.stdout, proc.stdout


def test_grid_varies_the_last_key_fastest():
    assert grid({"round": ["0", "1"], "backend": ["a", "b"]}) == [
        {"round": "0", "backend": "a"}, {"round": "0", "backend": "b"},
        {"round": "1", "backend": "a"}, {"round": "1", "backend": "b"},
    ]  # fmt: skip


def test_plan_counts_the_companion_variants_this_machine_adds(tmp_path, monkeypatch):
    """On an AMX CPU the sweep measures `openvino [ov_precision=f32]` beside `openvino`: the plan counts
    those cells too (probe monkeypatched: this CPU need not choose bf16)."""
    from harness.backends import openvino
    from harness.config import CONF_DIR
    from harness.engine.grid import plan_sweep

    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    args = ["+experiment=default", "backend=torch-fp32,openvino", "dataset=short", "batch_sizes=[32]",
            'hydra.sweeper.params.round="0"', f"results_dir={tmp_path / 'results'}"]  # fmt: skip
    for precision, cells in (("fp32", 2), ("bf16", 3)):
        monkeypatch.setattr(openvino, "default_precision", lambda device="CPU", p=precision: p)
        plan = plan_sweep(args, CONF_DIR)
        assert (plan.cells, plan.done, plan.finished) == (cells, 0, False), precision


def test_a_batch_size_interpolated_from_the_model_is_planned(tmp_path):
    """`batch_sizes=[${model.batch_sizes.0}]` on the command line (each model's smallest docs size) used to
    crash the plan with a JSON traceback; it is resolved against each model's own file."""
    env = {**os.environ, "HARNESS_CACHE_DIR": str(tmp_path / "cache")}
    proc = plan("model=minilm,standin-bge-base-en-v1.5", "backend=torch-fp32", "dataset=short", "rounds=1",
                "batch_sizes=[${model.batch_sizes.0}]", f"results_dir={tmp_path / 'results'}", env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 cells (2 speed" in proc.stdout, proc.stdout


def test_an_experiments_batch_size_from_the_model_is_each_models_own():
    """`batch_sizes: ["${model.batch_sizes.0}"]` in an experiment file (+experiment=sizes) was resolved
    against the first job's model (MiniLM: 32) for every model, so a finished sizes sweep was planned as
    88 of 132 cells still to run and its rerun was not recognised as finished."""
    from omegaconf import OmegaConf

    from harness.config import CONF_DIR
    from harness.engine.plan import _sizes, model_batch_sizes

    base = OmegaConf.create({"batch_sizes": ["${model.batch_sizes.0}"], "model": {"batch_sizes": [32, 64]}})
    assert _sizes(base, {}, CONF_DIR, "standin-bge-m3") == [model_batch_sizes(CONF_DIR, "standin-bge-m3")[0]] == [2]
    assert _sizes(OmegaConf.create({"batch_sizes": [4, 8]}), {}, CONF_DIR, "standin-bge-m3") == [4, 8]


def test_the_estimate_finds_a_variant_cells_own_timing(tmp_path):
    """A job's `backend.*` overrides name its rows' variant in the family's knob order, with other
    families' knobs left out; the plan must look up that very variant, not its sorted overrides."""
    from rows import speed_row

    from harness.core.hardware import detect

    machine = detect().fingerprint
    for variant, seconds in (("", 10.0), ("ov_precision=f32,calibration_samples=16", 40.0)):
        row = speed_row(backend="openvino", variant=variant, throughput=1.0, machine=machine, model="minilm",
                        dataset="short", duration_s=seconds, run="old", cell_id=f"ov-{seconds}")  # fmt: skip
        results.write_row(tmp_path / "results", row)
    env = {**os.environ, "HARNESS_CACHE_DIR": str(tmp_path / "cache")}
    proc = plan("backend=openvino", "backend.calibration_samples=16", "backend.ov_precision=f32", "dataset=short",
                "batch_sizes=[32]", "rounds=1", f"results_dir={tmp_path / 'results'}", env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    # the cell's own 40 s (not the backend's median over both rows, 25 s) + the openvino export, never timed (60 s)
    assert "estimated duration: 100 s" in proc.stdout, proc.stdout


def test_later_rounds_are_estimated_by_the_configurations_a_group_measured_not_a_share():
    """#22: a 5-configuration sweep of the 110M stand-in measured 17 of its 30 later-round cells, where the
    share learned from 13-configuration sweeps (31 %) said 9: the plan was 399 s for 573 s measured. A group's
    later rounds measure its leaders, torch-fp32 and what is undecided - a count, not a share of the group."""
    from harness.engine.cost import later_round_counts
    from harness.engine.plan import Plan, _later_rounds

    rows = []
    for dataset in "abcd":
        for round_, measured in ((1, 3), (2, 1)):
            rows += [{"machine": "m", "run": "r", "model": "x", "dataset": dataset, "batch_size": 32, "round": round_,
                      "kind": "speed" if i < measured else "round"} for i in range(13)]  # fmt: skip
    counts = later_round_counts(rows, "m")
    assert counts == {1: 3.0, 2: 1.0}
    assert later_round_counts(rows, "other machine") == {}
    plan = Plan()
    big = {("x", "a", 32, 1): [10.0] * 5, ("x", "a", 32, 2): [10.0] * 5, ("x", "b", 32, 1): [10.0] * 2}
    note = _later_rounds(plan, big, counts, 0.3)
    assert plan.estimate_s == 3 / 5 * 50 + 1 / 5 * 50 + 20  # a group of 2 measures both again
    assert "3.0, 1.0 configurations a group in rounds 2-3" in note
    three = {1: 3.0, 2: 1.0, 3: 0.5}  # earlier sweeps had a 4th round; this one (cap 3) plans rounds 2-3 only
    assert "about 3.0, 1.0 configurations a group in rounds 2-3" in _later_rounds(Plan(), big, three, 0.3)
    before = Plan()
    _later_rounds(before, {("x", "a", 32, 1): [10.0] * 5}, {}, 0.3)  # nothing learned yet: the share
    assert before.estimate_s == 15.0
