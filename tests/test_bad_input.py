"""Bad input through the real CLI: one line on stderr naming the field, the value and what is allowed.

Every case runs `python -m harness.cli ...` in a fresh process and must exit with status 2, print
exactly one `error:` line (no traceback, no progress bar), and write nothing: no result file, no
Hydra output folder. Most mistakes are caught before Hydra starts (harness.engine.grid); the ones that
need a composed config go through harness.engine.preflight for every variant of the grid.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from rows import speed_row

from harness.store import results

# The grid kept to one quick job; a case's own key replaces the base value.
BASE = ["rounds=1", "model.name=tiny", "model.source={bi}", "dataset=short", "backend=torch-fp32", "dataset.samples=8",
        "accuracy.enabled=false", "measure.min_time_s=0", "measure.min_repeats=1", "measure.warmup_batches=1",
        "results_dir={results}", "run=t"]  # fmt: skip
LOCAL = ["dataset.source=local", "dataset.name=local"]

# (id, command line, fragments the one error line must contain: field, value given, what is allowed)
CASES = [
    ("unknown-backend", ["sweep", "backend=torch-fp33"],
     ["backend: 'torch-fp33' is not a known backend", "choose one of", "Did you mean 'torch-fp32'?"]),
    ("unknown-backend-in-sweep", ["sweep", "backend=torch-fp32,onnx-O5"],
     ["backend: 'onnx-O5' is not a known backend", "onnx-O4", "Did you mean"]),
    ("unknown-model", ["sweep", "model=minilmm"],
     ["model: 'minilmm' is not a known model", "choose one of", "Did you mean 'minilm'?"]),
    ("unknown-dataset", ["sweep", "dataset=shrt"],
     ["dataset: 'shrt' is not a known dataset", "medium", "Did you mean 'short'?"]),
    ("unknown-experiment", ["sweep", "+experiment=defualt"],
     ["experiment: 'defualt' is not a known experiment", "docs-cpu", "Did you mean 'default'?"]),
    ("experiment-without-plus", ["sweep", "experiment=docs-cpu"],
     ["experiment: 'docs-cpu' cannot be set", "write +experiment=docs-cpu"]),
    ("unknown-launcher", ["sweep", "hydra/launcher=jobib"],
     ["hydra/launcher: 'jobib' is not a known hydra/launcher", "submitit_local", "Did you mean 'joblib'?"]),
    ("cfg-with-multirun", ["sweep", "--cfg", "job", "-m", "backend=onnx"],
     ["--cfg: it prints the config of one job", "-m/--multirun", "harness sweep backend=onnx --cfg job"]),
    ("cfg-with-swept-value", ["sweep", "--cfg", "job", "backend=onnx,openvino"],
     ["--cfg: it prints the config of one job", "'backend=onnx,openvino'", "one value per key"]),
    ("unknown-command", ["sweeep"], ["command: 'sweeep' is unknown", "choose one of", "Did you mean 'sweep'?"]),
    ("batch-size-zero", ["sweep", "batch_sizes=[0]"], ["batch_sizes: 0 is not allowed", "whole number > 0"]),
    ("batch-size-negative", ["sweep", "batch_sizes=[-1]"], ["batch_sizes: -1 is not allowed", "whole number > 0"]),
    ("batch-size-not-a-number", ["sweep", "batch_sizes=[abc]"],
     ["batch_sizes: 'abc' is not allowed", "whole numbers > 0"]),
    ("batch-sizes-empty", ["sweep", "batch_sizes=[]"], ["batch_sizes: [] is not allowed", "at least one"]),
    ("batch-size-repeated", ["sweep", "batch_sizes=[4,4]"], ["batch_sizes: [4, 4] is not allowed", "once"]),
    ("batch-sizes-not-a-list", ["sweep", "batch_sizes=4"],
     ["batch_sizes: '4' is not allowed", "a list of whole numbers > 0"]),
    ("unparsable-override", ["sweep", "batch_sizes=[4,8"],
     ["override: 'batch_sizes=[4,8' cannot be parsed", "key=[a,b] for a list"]),
    ("not-a-bool", ["sweep", "speed=maybe"], ["speed: 'maybe' is not allowed; it must be true or false."]),
    ("quantization-for-another-family", ["sweep", "backend=onnx,openvino", "backend.quantization=avx2"],
     ["backend.quantization: 'avx2' is not allowed for openvino", "choose one of static"]),
    ("typo-nested-key", ["sweep", "measure.min_tme_s=1"],
     ["measure.min_tme_s: unknown setting (given measure.min_tme_s=1)", "measure has threads",
      "Did you mean 'measure.min_time_s'?"]),
    ("typo-top-level-key", ["sweep", "batch_size=32"],
     ["batch_size: unknown setting (given batch_size=32)", "top level has", "Did you mean 'batch_sizes'?"]),
    ("wrong-type", ["sweep", "measure.min_time_s=abc"], ["measure.min_time_s: 'abc' is not allowed", "a number"]),
    ("run-escapes-results", ["sweep", "run=../elsewhere"], ["run: '../elsewhere' is not allowed", "letters, digits"]),
    ("model-path-missing", ["sweep", "model.source=/nope/model"],
     ["model.source: '/nope/model' does not exist",
      "model folder, package:<module>, standin:<name> or a Hugging Face Hub id"]),
    ("model-not-a-model-folder", ["sweep", "model.source={empty_dir}"],
     ["model.source: '{empty_dir}' is not a sentence-transformers model folder", "config.json"]),
    ("cross-encoder-as-bi-encoder", ["sweep", "model.source={ce}", "model.kind=bi-encoder"],
     ["model.kind: 'bi-encoder' does not match", "which is a cross-encoder", "set model.kind=cross-encoder"]),
    ("bi-encoder-as-cross-encoder", ["sweep", "model.kind=cross-encoder"],
     ["model.kind: 'cross-encoder' does not match", "which is a bi-encoder", "set model.kind=bi-encoder"]),
    ("sts-missing-columns", ["sweep", *LOCAL, "dataset.format=sts", "dataset.path={bad_sts}"],
     ["dataset.path: '{bad_sts}' line 1 has 3 tab-separated column(s), expected at least 7", "format sts needs"]),
    ("sts-no-rows", ["sweep", *LOCAL, "dataset.format=sts", "dataset.path={empty_sts}"],
     ["dataset.path: '{empty_sts}' has no rows", "format sts needs"]),
    ("lines-empty", ["sweep", *LOCAL, "dataset.format=lines", "dataset.path={empty_lines}"],
     ["dataset.path: '{empty_lines}' has no texts", "one text per line"]),
    ("beir-no-text-field", ["sweep", *LOCAL, "dataset.format=beir", "dataset.path={bad_beir}"],
     ["corpus.jsonl' line 1 is missing column(s) text", "format beir needs"]),
    ("beir-no-corpus", ["sweep", *LOCAL, "dataset.format=beir", "dataset.path={empty_dir}"],
     ["dataset.path: '{empty_dir}' has no corpus.jsonl", "format beir needs"]),
    ("local-file-missing", ["sweep", *LOCAL, "dataset.format=lines", "dataset.path=nope.txt", "data_dir={data}"],
     ["dataset.path: '{data}/nope.txt' does not exist (under data_dir '{data}')", "one text per line"]),
    ("accuracy-beir-without-qrels", ["sweep", "accuracy.enabled=true", "accuracy.tasks=[retrieval]",
                                     "data_dir={data}", "accuracy.retrieval.local=beir-no-qrels"],
     ["accuracy.retrieval.local: 'beir-no-qrels' under data_dir", "has no qrels/test.tsv",
      "corpus.jsonl, queries.jsonl and qrels/test.tsv"]),
    ("accuracy-folder-missing", ["sweep", "accuracy.enabled=true", "data_dir={data}"],
     ["accuracy.sts.local: 'stsbenchmark' does not exist under data_dir", "sts-test.csv"]),
    ("results-dir-under-a-file", ["sweep", "results_dir={a_file}/sub"],
     ["results_dir: '{a_file}/sub' cannot be created: '{a_file}' is a file", "writable folder"]),
    ("cache-dir-under-a-file", ["sweep", "cache_dir={a_file}/cache"],
     ["cache_dir: '{a_file}/cache' cannot be created: '{a_file}' is a file"]),
    ("sweep-dir-under-a-file", ["sweep", "hydra.sweep.dir={a_file}/multirun"],
     ["hydra.sweep.dir: '{a_file}/multirun' cannot be created: '{a_file}' is a file"]),
    ("cuda-single-run", ["sweep", "hydra.mode=RUN", "backend.device=cuda"],
     ["backend.device: 'cuda' is not available", "no CUDA GPU", "choose one of auto, cpu"]),
    ("cuda-one-job-sweep", ["sweep", "backend.device=cuda"], ["backend.device: 'cuda' is not available"]),
    ("sweep-in-single-run", ["sweep", "hydra.mode=RUN", "backend=torch-fp32,onnx"],
     ["backend: 'torch-fp32,onnx' is a sweep", "hydra.mode=RUN"]),
    ("tolerance-out-of-range", ["recommend", "--tolerance", "1.5"], ["--tolerance", "between 0 and 1", "1.5"]),
    ("gpu-and-no-gpu", ["recommend", "--gpu", "A100", "--no-gpu"], ["--gpu and --no-gpu contradict"]),
]  # fmt: skip
GPU_CASES = ("cuda-single-run", "cuda-one-job-sweep")


def has_gpu() -> bool:
    from harness.core.hardware import detect_gpu

    return detect_gpu() is not None


@pytest.fixture(scope="module")
def paths(tiny_models, tmp_path_factory):
    """The files the cases point at, built once."""
    root = tmp_path_factory.mktemp("bad")
    (root / "empty-dir").mkdir()
    (root / "bad.csv").write_text("a\tb\tc\n")
    (root / "empty.csv").write_text("")
    (root / "empty.txt").write_text("\n\n")
    (root / "bad-beir").mkdir()
    (root / "bad-beir" / "corpus.jsonl").write_text(json.dumps({"_id": "d1", "title": "no text"}) + "\n")
    (root / "a-file").write_text("not a folder")
    data = root / "data"
    beir = data / "beir-no-qrels"
    beir.mkdir(parents=True)
    (beir / "corpus.jsonl").write_text(json.dumps({"_id": "d1", "text": "a document"}) + "\n")
    (beir / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "a query"}) + "\n")
    return {
        "bi": str(tiny_models[0]), "ce": str(tiny_models[1]), "empty_dir": str(root / "empty-dir"),
        "bad_sts": str(root / "bad.csv"), "empty_sts": str(root / "empty.csv"),
        "empty_lines": str(root / "empty.txt"), "bad_beir": str(root / "bad-beir"),
        "a_file": str(root / "a-file"), "data": str(data),
    }  # fmt: skip


def run_cli(args: list[str], cwd: Path, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "HARNESS_CACHE_DIR": str(cwd / "cache"), "HARNESS_LOCK_DIR": str(cwd)}
    env.pop("HARNESS_DATA_DIR", None)
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=300
    )


def command_line(args: list[str], values: dict[str, str]) -> list[str]:
    """The case's arguments, then the base grid minus the keys the case sets itself."""
    args = [a.format(**values) for a in args]
    if args[0] != "sweep":
        return args
    given = {a.split("=", 1)[0].lstrip("+~") for a in args if "=" in a}
    return args + [b.format(**values) for b in BASE if b.split("=", 1)[0] not in given]


def assert_one_line_error(proc: subprocess.CompletedProcess, fragments: list[str]) -> str:
    output = proc.stdout + proc.stderr
    assert "Traceback" not in output, output[-3000:]
    assert proc.returncode == 2, output[-3000:]
    lines = proc.stderr.splitlines()  # splits on \r too: a progress bar would show up as a line
    assert len(lines) == 1, proc.stderr
    line = lines[0]
    assert re.match(r"(harness \w+: )?error: ", line), line
    for fragment in fragments:
        assert fragment in line, f"{fragment!r} not in {line!r}"
    return line


def assert_nothing_written(cwd: Path, results_dir: Path) -> None:
    assert not results_dir.exists() or not any(results_dir.rglob("*")), sorted(results_dir.rglob("*"))
    assert not (cwd / "outputs").exists(), "Hydra started: its output folder was created"
    assert not (cwd / "multirun").exists()


@pytest.mark.parametrize("case_id,args,fragments", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line(case_id, args, fragments, paths, tmp_path):
    if case_id in GPU_CASES and has_gpu():
        pytest.skip("this machine has a CUDA GPU: device=cuda is valid here")
    values = {**paths, "results": str(tmp_path / "results")}
    proc = run_cli(command_line(args, values), tmp_path)
    assert_one_line_error(proc, [f.format(**values) for f in fragments])
    assert_nothing_written(tmp_path, tmp_path / "results")


def test_results_dir_not_writable(paths, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(stat.S_IRUSR | stat.S_IXUSR)  # 500
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as root: a chmod 500 folder is still writable (see results-dir-under-a-file)")
        values = {**paths, "results": str(locked / "results")}
        proc = run_cli(command_line(["sweep"], values), tmp_path)
        assert_one_line_error(proc, [f"results_dir: '{locked}/results' is not writable"])
    finally:
        locked.chmod(stat.S_IRWXU)


def test_lock_dir_that_does_not_exist(paths, tmp_path):
    values = {**paths, "results": str(tmp_path / "results")}
    proc = run_cli(command_line(["sweep"], values), tmp_path, {"HARNESS_LOCK_DIR": str(tmp_path / "no-such-dir")})
    assert_one_line_error(proc, [f"HARNESS_LOCK_DIR: '{tmp_path}/no-such-dir' does not exist", "writable folder"])
    assert_nothing_written(tmp_path, tmp_path / "results")


def test_a_mistake_late_in_the_grid_stops_it_before_the_first_cell(paths, tmp_path):
    """A mistake late in a grid (the second model of a sweep) still stops it before the first cell."""
    values = {**paths, "results": str(tmp_path / "results")}
    args = command_line(["sweep", "model.source={bi},/nope/model"], values)
    proc = run_cli(args, tmp_path)
    assert_one_line_error(proc, ["model.source: '/nope/model' does not exist"])
    assert_nothing_written(tmp_path, tmp_path / "results")
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize("how", ["docs-gpu-experiment", "cuda-on-the-command-line-of-a-multirun"])
def test_cuda_inside_a_multirun_becomes_unsupported_rows(how, paths, tmp_path):
    """Without a GPU, device=cuda in a grid is recorded (so one grid serves every machine), not refused."""
    if has_gpu():
        pytest.skip("this machine has a CUDA GPU")
    values = {**paths, "results": str(tmp_path / "results")}
    if how == "docs-gpu-experiment":  # the docs' GPU grid, on the tiny model and builtin texts
        args = ["sweep", "+experiment=docs-gpu", "model=minilm", "backend=torch-fp32,onnx", "batch_sizes=[4]"]
    else:
        args = ["sweep", "backend=torch-fp32,onnx", "backend.device=cuda", "batch_sizes=[4]"]
    proc = run_cli(command_line(args, values), tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stdout + proc.stderr
    df = results.load(tmp_path / "results")
    assert sorted(df["backend"]) == ["onnx", "torch-fp32"]
    assert set(df["status"]) == {"unsupported"}
    assert all("needs a CUDA GPU" in reason for reason in df["reason"])


def test_explicit_cuda_is_not_refused_for_a_remote_launcher(paths, tmp_path):
    """A SLURM sweep is checked on the login node, which may have no GPU: the GPU check is the job's."""
    from harness.config import CONF_DIR
    from harness.engine.grid import check_overrides

    values = {**paths, "results": str(tmp_path / "results")}
    args = command_line(["sweep", "backend.device=cuda", "hydra/launcher=submitit_slurm"], values)
    overrides = [a for a in args[1:] if not a.startswith("rounds=")]  # CLI sugar, translated by harness.cli
    check_overrides(["+experiment=default", *overrides], CONF_DIR)  # no ConfigError


@pytest.mark.parametrize("command", ["compare", "usage"])
def test_a_closed_pipe_ends_quietly(command, tmp_path):
    """`harness compare a b | head`: the reader goes away; no BrokenPipeError traceback."""
    for run in ("a", "b"):
        for backend, throughput in (("torch-fp32", 100.0), ("onnx", 150.0)):
            results.write_row(tmp_path / "results", speed_row(backend, throughput, run=run, cv=0.01))
    args = ["compare", "a", "b", "--results", str(tmp_path / "results")] if command == "compare" else []
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first line is written
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "harness.cli", *args], stdout=write, stderr=subprocess.PIPE, text=True,
            cwd=tmp_path, timeout=120,
        )  # fmt: skip
    finally:
        os.close(write)
    assert "Traceback" not in proc.stderr and "BrokenPipeError" not in proc.stderr, proc.stderr
