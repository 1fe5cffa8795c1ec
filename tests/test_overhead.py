"""`harness overhead`: the bare reference loop is held to the same contention rule as a speed cell."""

from __future__ import annotations

from types import SimpleNamespace

from harness.cli.overhead import bare_loop
from harness.engine import units as work

MEASURE = SimpleNamespace(contention_retries=2, contention_threshold=0.1, cell_timeout_s=60)


def test_a_contended_bare_loop_is_run_again():
    others = iter([0.6, 0.3, 0.02])
    calls = []

    def run(unit, spec, timeout):
        calls.append(unit)
        return "ok", {"throughput": 100.0 + len(calls), "cpu_other": next(others)}, ""

    status, ref, _ = bare_loop(run, {}, MEASURE)
    assert status == "ok" and calls == ["bare"] * 3 and ref["cpu_other"] == 0.02 and ref["throughput"] == 103.0


def test_retries_are_bounded_and_a_failure_is_not_retried():
    def busy(unit, spec, timeout):
        return "ok", {"throughput": 1.0, "cpu_other": 1.0}, ""

    status, ref, _ = bare_loop(busy, {}, MEASURE)
    assert status == "ok" and ref["cpu_other"] == 1.0  # kept, and counted as contended by the caller

    calls = []

    def crash(unit, spec, timeout):
        calls.append(unit)
        return "failed", {}, "killed by SIGSEGV"

    assert bare_loop(crash, {}, MEASURE)[0] == "failed" and len(calls) == 1


def test_the_bare_loop_meters_the_cpu(monkeypatch):
    """work.bare reports the other processes' CPU use over its timed passes (0 or more cores)."""
    texts = ["a short text", "another one", "and a third"] * 4
    encoded = []

    def encode(batch):
        encoded.extend(batch)

    monkeypatch.setattr(work, "load_plain", lambda job: None)
    workload = (texts, texts, [texts[:4]], encode, lambda: encode(texts))
    monkeypatch.setattr(work, "_workload", lambda spec, model: workload)
    job = SimpleNamespace(measure=SimpleNamespace(warmup_batches=1))
    out = work.bare(SimpleNamespace(job=job, passes=2))
    assert out["throughput"] > 0 and out["cpu_other"] >= 0
    # one warm-up batch, one untimed pass (every shape once, as the harness's cells), then the timed passes
    assert len(encoded) == 4 + len(texts) + 2 * len(texts)


def test_the_bare_loop_loads_as_plain_code_does(monkeypatch):
    """#22: the reference loop is not the harness's loading code: the file, the docs' dtype and the thread
    budget, nothing else (no spinning setting, no inter-op threads, no performance hint)."""
    from harness.backends.onnx import OnnxBackend, spinning
    from harness.backends.openvino import OpenVINOBackend
    from harness.backends.torch import TorchBackend

    onnx = OnnxBackend.__new__(OnnxBackend)
    onnx.cfg = SimpleNamespace(optimization="O3", quantization=None)
    kwargs = work.plain_model_kwargs(onnx, {"file_name": "onnx/model_O3.onnx", "session_options": {}}, 2)
    assert set(kwargs) == {"file_name", "session_options"} and kwargs["file_name"] == "onnx/model_O3.onnx"
    assert kwargs["session_options"].intra_op_num_threads == 2 and kwargs["session_options"].inter_op_num_threads == 0
    assert spinning(kwargs["session_options"])["allow_spinning_source"] == "onnxruntime default"
    ov = OpenVINOBackend.__new__(OpenVINOBackend)
    ov.cfg = SimpleNamespace(quantization=None)
    described = {"file_name": "openvino/openvino_model.xml", "ov_config": {"PERFORMANCE_HINT": "LATENCY"}}
    assert work.plain_model_kwargs(ov, described, 2) == {"file_name": "openvino/openvino_model.xml",
                                                          "ov_config": {"INFERENCE_NUM_THREADS": 2}}  # fmt: skip
    torch = TorchBackend.__new__(TorchBackend)
    torch.cfg = SimpleNamespace(dtype="float16")
    assert work.plain_model_kwargs(torch, {"torch_dtype": "float16"}, 2) == {"torch_dtype": "float16"}
