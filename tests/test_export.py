"""`harness export`: the folder it writes loads in plain sentence-transformers, offline, and gives
the same outputs as the harness's own load of that backend (the load every measurement uses)."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from harness import backends, cli
from harness.backends import named as _named
from harness.backends.cache import ExportCache
from harness.backends.onnx import qint8_config_for
from harness.core.hardware import detect
from harness.inputs.texts import builtin_texts

BACKENDS = _named()

TEXTS = builtin_texts("short", 6, seed=3) + builtin_texts("medium", 2, seed=3)
PAIRS = list(zip(TEXTS[:4], TEXTS[4:], strict=True))


def export(name: str, model: str, out: Path, capsys, *overrides: str) -> str:
    assert cli.main(["export", name, "--model", model, "--out", str(out), *overrides]) == 0, capsys.readouterr().err
    return capsys.readouterr().out


def printed_snippet(stdout: str) -> str:
    return textwrap.dedent(stdout.split("Load it (offline) with:\n", 1)[1])


def harness_outputs(name: str, kind: str, source: Path, model_name: str, inputs: list) -> np.ndarray:
    """What a speed or accuracy cell computes: the backend's load_spec on the export cache, then load."""
    backend = backends.create(OmegaConf.structured(BACKENDS[name]), detect(), detect().cores_physical)
    cache = ExportCache(os.environ["HARNESS_CACHE_DIR"])
    folder, described = backend.load_spec(source, cache.model_dir(model_name, source), cache)
    model = backend.load(kind, folder, described, trust_remote_code=False)
    return model.encode(inputs) if kind == "bi-encoder" else model.predict(inputs)


def plain(kind: str, folder: Path, st_backend: str, file_name: str):
    from sentence_transformers import CrossEncoder, SentenceTransformer

    cls = SentenceTransformer if kind == "bi-encoder" else CrossEncoder
    return cls(str(folder), backend=st_backend, model_kwargs={"file_name": file_name}, local_files_only=True)


CASES = [  # (backend, model kind, ST backend, file under its sentence-transformers name)
    ("onnx", "bi-encoder", "onnx", "onnx/model.onnx"),
    ("onnx-O3", "bi-encoder", "onnx", "onnx/model_O3.onnx"),
    ("onnx-qint8", "bi-encoder", "onnx", None),  # the CPU's config: qint8_avx512_vnni, quint8_avx2...
    ("openvino", "bi-encoder", "openvino", "openvino/openvino_model.xml"),
    ("openvino-qint8", "bi-encoder", "openvino", "openvino/openvino_model_qint8_quantized.xml"),
    ("onnx", "cross-encoder", "onnx", "onnx/model.onnx"),
]


@pytest.mark.parametrize(("name", "kind", "st_backend", "file_name"), CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_exported_folder_loads_offline_with_the_same_outputs(
    name, kind, st_backend, file_name, tiny_models, tmp_path, capsys
):
    if st_backend == "openvino":
        pytest.importorskip("openvino")
    if file_name is None:
        from harness.backends.onnx import qint8_file_name

        file_name = qint8_file_name(qint8_config_for(detect()))
    source = tiny_models[0] if kind == "bi-encoder" else tiny_models[1]
    out = tmp_path / "shipped"
    stdout = export(name, str(source), out, capsys)
    assert (out / file_name).is_file(), sorted(p.name for p in out.rglob("*"))
    assert (out / "tokenizer.json").is_file() and (out / "config.json").is_file()
    assert not (out / ".harness").exists() and file_name in stdout

    inputs = TEXTS if kind == "bi-encoder" else PAIRS
    expected = harness_outputs(name, kind, source, source.name, inputs)
    model = plain(kind, out, st_backend, file_name)
    got = model.encode(inputs) if kind == "bi-encoder" else model.predict(inputs)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    assert model.model_card_data is not None  # a complete sentence-transformers folder, not a bare file

    scope: dict = {}
    exec(printed_snippet(stdout), scope)  # the printed code, as a user pastes it
    snippet_model = scope["model"]
    got = snippet_model.encode(inputs) if kind == "bi-encoder" else snippet_model.predict(inputs)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_a_runtime_knob_is_carried_by_the_snippet(tiny_models, tmp_path, capsys):
    pytest.importorskip("openvino")
    stdout = export("openvino", str(tiny_models[0]), tmp_path / "ov", capsys, "backend.ov_precision=f32")
    assert '"INFERENCE_PRECISION_HINT": "f32"' in stdout
    default = export("openvino", str(tiny_models[0]), tmp_path / "ov-default", capsys)
    assert "INFERENCE_PRECISION_HINT" not in default  # OpenVINO's own choice, as sentence-transformers runs it


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["onx", "--model", "{bi}", "--out", "{tmp}/o"], "backend: 'onx' is not allowed; choose one of torch-fp32"),
        (["onnx", "--model", "minilmm", "--out", "{tmp}/o"],
         "--model: 'minilmm' is neither a model config nor a folder; choose one of"),
        (["onnx", "--model", "{bi}", "--out", "{tmp}/full"], "--out: '{tmp}/full' exists and is not empty"),
        (["onnx", "--model", "{bi}"], "harness export: the following arguments are required: --out"),
        (["onnx", "--model", "{bi}", "--out", "{tmp}/o", "backend.ov_precison=f32"],
         "backend.ov_precison: unknown setting"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line(argv, fragment, tiny_models, tmp_path, capsys):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("mine")
    values = {"bi": str(tiny_models[0]), "tmp": str(tmp_path)}
    assert cli.main(["export", *[a.format(**values) for a in argv]]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and fragment.format(**values) in err[0], err
    assert not (tmp_path / "o").exists() and (tmp_path / "full" / "x").read_text() == "mine"
