"""`openvino` means what `SentenceTransformer(..., backend="openvino")` runs: OpenVINO chooses its
precision. Where this machine makes it choose something other than fp32, the f32-pinned run is a
companion variant for the sweep to measure beside it. The probe is monkeypatched, so these tests
say what happens on an AMX machine without one."""

from __future__ import annotations

import json

import pytest
from omegaconf import OmegaConf

from harness import backends
from harness.backends import named as _named
from harness.backends import openvino
from harness.backends.cache import ExportCache
from harness.core.hardware import Hardware
from harness.recommend import python_snippet

BACKENDS = _named()

HW = Hardware("AMD EPYC", "amd", ("avx2",), 2, 2, 8.0)


def ov_backend(name: str = "openvino", **knobs):
    cfg = OmegaConf.structured(BACKENDS[name])
    for key, value in knobs.items():
        cfg[key] = value
    return backends.create(cfg, HW, 2)


@pytest.fixture
def machine_default(monkeypatch):
    """Set what the probe says OpenVINO's CPU plugin chooses by itself."""

    def set_to(precision):
        monkeypatch.setattr(openvino, "default_precision", lambda device="CPU": precision)

    return set_to


def test_openvino_names_leave_the_precision_to_openvino():
    assert BACKENDS["openvino"].ov_precision is None
    assert BACKENDS["openvino-qint8"].ov_precision is None


@pytest.mark.parametrize("name", ["openvino", "openvino-qint8"])
def test_bf16_machine_adds_the_f32_pinned_run_as_a_companion(machine_default, name):
    machine_default("bf16")
    assert ov_backend(name).companion_variants() == [{"ov_precision": "f32"}]


@pytest.mark.parametrize("chosen", ["fp32", None])  # None: the probe could not ask OpenVINO
def test_fp32_machine_adds_no_companion(machine_default, chosen):
    machine_default(chosen)
    assert ov_backend().companion_variants() == []


@pytest.mark.parametrize("pinned", ["f32", "bf16"])
def test_a_pinned_precision_has_no_companion(machine_default, pinned):
    machine_default("bf16")
    assert ov_backend(ov_precision=pinned).companion_variants() == []


def test_other_families_have_no_companions():
    assert backends.create(OmegaConf.structured(BACKENDS["onnx"]), HW, 2).companion_variants() == []
    assert backends.create(OmegaConf.structured(BACKENDS["torch-bf16"]), HW, 2).companion_variants() == []


@pytest.mark.parametrize(
    ("hint", "expected"),
    [("<Type: 'float32'>", "fp32"), ("<Type: 'bfloat16'>", "bf16"), ("f16", "fp16"), ("bf16", "bf16"), ("", None)],
)
def test_normalise_precision(hint, expected):
    assert openvino.normalise_precision(hint) == expected


def test_probe_answers_on_this_machine():
    pytest.importorskip("openvino")
    openvino.default_precision.cache_clear()
    assert openvino.default_precision() in ("fp32", "bf16", "fp16")


def _fake_export(tmp_path):
    """A cache folder that claims a complete base OpenVINO export (load_spec only reads the record)."""
    cache = ExportCache(tmp_path)
    folder = tmp_path / "exports" / "m"
    (folder / "openvino").mkdir(parents=True)
    (folder / "openvino" / "openvino_model.xml").write_text("<net/>")
    (folder / ".harness").mkdir()
    record = {"settings": {}, "files": ["openvino/openvino_model.xml"]}
    (folder / ".harness" / "openvino.json").write_text(json.dumps(record))
    return cache, folder


def test_default_load_and_snippet_carry_no_precision_hint(tmp_path):
    """The snippet reproduces the measured row and nothing more: no precision hint unless the row had one."""
    cache, folder = _fake_export(tmp_path)
    _, described = ov_backend().load_spec(folder, folder, cache)
    assert "INFERENCE_PRECISION_HINT" not in described["ov_config"]
    code = python_snippet("bi-encoder", "/m", "openvino", described, "openvino")
    assert "INFERENCE_PRECISION_HINT" not in code and 'backend="openvino"' in code

    _, pinned = ov_backend(ov_precision="f32").load_spec(folder, folder, cache)
    assert pinned["ov_config"]["INFERENCE_PRECISION_HINT"] == "f32"
    assert '"INFERENCE_PRECISION_HINT": "f32"' in python_snippet("bi-encoder", "/m", "openvino", pinned, "openvino")
