"""Precision as really executed, read back from the runtime, not copied from the config.

OpenVINO picks bf16 by itself on CPUs with AVX512-BF16 or AMX unless told otherwise (and the
harness's `openvino` leaves it to OpenVINO, as sentence-transformers does), so a row named
`openvino` is only an fp32 run if the runtime says so; ONNX Runtime on a CPU turns most of
an fp16 graph (onnx-O4) back into fp32. These tests load the tiny model through the harness's own
backends and check what the runtime's own graph executed.
"""

from __future__ import annotations

import platform

import pytest
from omegaconf import OmegaConf

from harness import backends
from harness.backends import named as _named
from harness.backends.cache import ExportCache
from harness.core.hardware import detect
from harness.inputs.texts import builtin_texts

BACKENDS = _named()

BF16_CPU = any(detect().has(flag) for flag in ("avx512_bf16", "amx_bf16"))


@pytest.fixture(scope="module")
def runtime_of(tiny_models, tmp_path_factory):
    """runtime(name, **knobs) -> the backend's read-back for the tiny bi-encoder, after one encode."""
    cache = ExportCache(tmp_path_factory.mktemp("export-cache"))
    folder = tiny_models[0]
    export_dir = cache.model_dir("tiny", folder)

    def runtime(name: str, **knobs) -> dict:
        cfg = OmegaConf.structured(BACKENDS[name])
        for key, value in knobs.items():
            cfg[key] = value
        backend = backends.create(cfg, detect(), 1)
        backend.prepare(export_dir, "bi-encoder", cache, builtin_texts("medium", 32) + builtin_texts("short", 32))
        path, described = backend.load_spec(folder, export_dir, cache)
        model = backend.load("bi-encoder", path, described, trust_remote_code=False)
        model.encode(["a short text", "another one"])
        return backend.runtime(model)

    return runtime


@pytest.fixture
def ov():
    pytest.importorskip("openvino")


def test_openvino_pinned_f32_executes_fp32(ov, runtime_of):
    rt = runtime_of("openvino", ov_precision="f32")  # the companion variant on bf16 machines
    assert rt["precision_source"] == "runtime graph"
    assert rt["kernels"] and all(":f32:" in k for k in rt["kernels"]), rt["kernels"]
    assert rt["precision"] == "fp32" and "32" in rt["inference_precision_hint"]


def test_openvino_default_precision_is_what_the_cpu_makes_of_it(ov, runtime_of):
    from harness.backends.openvino import default_precision

    rt = runtime_of("openvino")  # ov_precision None: OpenVINO's own choice, as sentence-transformers runs it
    # bf16 on AVX512-BF16/AMX CPUs (OpenVINO's own choice), fp32 elsewhere - read back either way
    expected = "bf16" if BF16_CPU else "fp32"
    assert rt["precision"] == expected, (rt["kernels"], rt["inference_precision_hint"])
    assert rt["compute_precision"] == expected
    assert default_precision() == expected  # the probe that decides the f32 companion variant agrees


def test_openvino_static_int8_executes_int8_kernels(ov, runtime_of):
    rt = runtime_of("openvino-qint8", calibration_samples=16)
    assert rt["precision"] == "int8" and rt["precision_source"] == "runtime graph"
    assert any(":u8:" in k or ":i8:" in k for k in rt["kernels"]), rt["kernels"]


def test_openvino_int8_calibrated_differently_are_two_files_in_one_cache(ov, tiny_models, tmp_path):
    """Two calibration_samples of openvino-qint8 used one cache entry and overwrote each other's file (and raced
    under the local2 launcher); each is now its own file, and both stay loadable."""
    cache = ExportCache(tmp_path)
    export_dir = cache.model_dir("tiny", tiny_models[0])
    files = {}
    for n in (8, 16):
        cfg = OmegaConf.structured(BACKENDS["openvino-qint8"])
        cfg.calibration_samples = n
        backend = backends.create(cfg, detect(), 1)
        backend.prepare(export_dir, "bi-encoder", cache, builtin_texts("medium", 32))
        files[n] = backend.load_spec(tiny_models[0], export_dir, cache)[1]["file_name"]
    assert files == {8: "openvino/openvino_model_qint8_quantized_c8.xml",
                     16: "openvino/openvino_model_qint8_quantized_c16.xml"}  # fmt: skip
    for n, name in files.items():
        assert (export_dir / name).exists() and (export_dir / name).with_suffix(".bin").exists(), n
        cfg = OmegaConf.structured(BACKENDS["openvino-qint8"])
        cfg.calibration_samples = n
        backend = backends.create(cfg, detect(), 1)
        path, described = backend.load_spec(tiny_models[0], export_dir, cache)
        assert backend.load("bi-encoder", path, described, False).encode(["a text"]).shape[0] == 1


@pytest.mark.parametrize(("name", "expected"), [("onnx", "fp32"), ("onnx-qint8", "int8")])
def test_onnx_precision_from_the_session_graph(name, expected, runtime_of):
    pytest.importorskip("onnxruntime")
    rt = runtime_of(name)
    assert rt["precision"] == expected and rt["precision_source"] == "optimized session graph", rt["kernels"]
    assert rt["providers"][0] == "CPUExecutionProvider"


@pytest.mark.skipif(
    platform.machine() not in ("x86_64", "AMD64"), reason="ONNX Runtime's CPU fp16 kernels differ on ARM"
)
def test_onnx_o4_fp16_file_runs_fp32_matmuls_on_an_x86_cpu(runtime_of):
    """The O4 file is fp16; ONNX Runtime's CPU provider folds casts into fp32 weights for its matmuls."""
    pytest.importorskip("onnxruntime")
    if detect().gpu:
        pytest.skip("with a GPU, onnx-O4 runs on CUDA")
    rt = runtime_of("onnx-O4")
    assert rt["precision"] == "fp32", rt["kernels"]
    assert all(k.endswith(":fp32") for k in rt["kernels"]), rt["kernels"]


@pytest.mark.parametrize("name", ["torch-fp32", "onnx", "openvino"])
def test_every_family_reads_back_where_it_ran(name, runtime_of):
    """The row's device comes from the runtime (a GPU machine may still run a cell on its CPU)."""
    pytest.importorskip({"torch-fp32": "torch", "onnx": "onnxruntime", "openvino": "openvino"}[name])
    assert runtime_of(name, device="cpu")["device"] == "cpu"


def test_device_from_what_the_runtime_reports():
    from harness.backends.onnx import OnnxBackend
    from harness.backends.openvino import OpenVINOBackend

    assert OnnxBackend.device_of_providers(["CUDAExecutionProvider", "CPUExecutionProvider"]) == "cuda"
    assert OnnxBackend.device_of_providers(["TensorrtExecutionProvider", "CUDAExecutionProvider"]) == "cuda"
    assert OnnxBackend.device_of_providers(["CPUExecutionProvider"]) == "cpu"
    assert OpenVINOBackend.device_of_execution_devices("['CPU']") == "cpu"
    assert OpenVINOBackend.device_of_execution_devices("['GPU.0']") == "gpu"


def test_the_executed_graph_is_fingerprinted_and_a_knob_at_the_runtimes_own_value_runs_the_same(runtime_of):
    """#22: `onnx` and a knob pinned to what ONNX Runtime does by itself (spinning on) execute the same graph
    with the same settings: the same kernels (harness.store.kernels); O2's fused attention is another graph."""
    from harness.store import kernels

    plain, pinned, o2 = runtime_of("onnx"), runtime_of("onnx", ort_spinning=True), runtime_of("onnx-O2")
    assert plain["graph_ops"] > 0 and len(plain["graph_fingerprint"]) == 16
    assert plain["graph_fingerprint"] == pinned["graph_fingerprint"]
    assert kernels.same(plain, pinned)
    assert plain["graph_fingerprint"] != o2["graph_fingerprint"] and not kernels.same(plain, o2)


def test_openvino_fingerprints_its_runtime_graph(ov, runtime_of):
    from harness.store import kernels

    f32 = runtime_of("openvino", ov_precision="f32")
    assert f32["graph_ops"] > 0 and f32["graph_fingerprint"]
    assert kernels.same(f32, runtime_of("openvino", ov_precision="f32"))
    assert not kernels.same(f32, runtime_of("openvino-qint8", calibration_samples=16))
