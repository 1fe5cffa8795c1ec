"""ONNX Runtime backends: onnx, onnx-O1..O4 (export_optimized_onnx_model), onnx-qint8
(export_dynamic_quantized_onnx_model with the CPU's quantization config)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from harness.backends.base import Backend, dominant_precision, graph_fingerprint
from harness.backends.cache import ExportCache
from harness.core.hardware import Hardware
from harness.core.usage import check_choice

log = logging.getLogger(__name__)

BASE_KEY = "onnx"
BASE_FILE = "onnx/model.onnx"
GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")
OPTIMIZATIONS = ("O1", "O2", "O3", "O4")
QUANTIZATIONS = ("auto", "arm64", "avx2", "avx512", "avx512_vnni")


# Order matters: the most specific instruction set first.
_QINT8_CONFIGS = (
    ("avx512_vnni", ("avx512_vnni",)),
    ("avx512", ("avx512f",)),
    ("avx2", ("avx2",)),
    ("arm64", ("asimd",)),
)
QINT8_CONFIGS = ("arm64", "avx2", "avx512", "avx512_vnni")


def qint8_config_for(hw: Hardware) -> str:
    """The ONNX dynamic-quantization config this CPU supports best (ST's names)."""
    for name, needed in _QINT8_CONFIGS:
        if all(hw.has(flag) for flag in needed):
            return name
    if hw.cpu_vendor == "arm":
        return "arm64"
    raise ValueError(
        f"no ONNX int8 quantization config fits this CPU (flags: {', '.join(hw.cpu_flags) or 'none'}); "
        f"set backend.quantization to one of {', '.join(QINT8_CONFIGS)}"
    )


def qint8_file_name(config: str) -> str:
    """What `export_dynamic_quantized_onnx_model(model, config, ...)` writes.

    The suffix is `{weights dtype}_{config}`; Optimum's avx2 config quantizes weights to QUInt8,
    the others to QInt8, so avx2 gives `model_quint8_avx2.onnx`.
    """
    dtype = "quint8" if config == "avx2" else "qint8"
    return f"onnx/model_{dtype}_{config}.onnx"


@dataclass
class OnnxKnobs:
    # None: ONNX Runtime's own default (its intra-op threads spin), as plain `backend="onnx"` code gets it;
    # True / False pin it: a labelled variant (`onnx [ort_spinning=False]`)
    ort_spinning: Optional[bool] = None  # noqa: UP045 - OmegaConf structured configs need Optional


class OnnxBackend(Backend):
    st_backend = "onnx"
    names = {
        "onnx": {},
        **{f"onnx-{level}": {"optimization": level} for level in ("O1", "O2", "O3", "O4")},
        "onnx-qint8": {"quantization": "auto"},
    }
    Knobs = OnnxKnobs
    speed_only_knobs = ("ort_spinning",)
    quantizations = QUANTIZATIONS
    export_subdir = "onnx"
    libraries = ("optimum", "optimum-onnx", "onnxruntime", "onnxruntime-gpu")

    @classmethod
    def probe(cls) -> dict[str, Any]:
        try:
            import onnxruntime as ort

            return {"ort_providers": tuple(ort.get_available_providers())}
        except Exception:  # noqa: BLE001 - no onnxruntime: nothing to report
            return {}

    @classmethod
    def check_fields(cls, cfg: Any) -> None:
        if cfg.optimization is not None:
            check_choice("backend.optimization", cfg.optimization, OPTIMIZATIONS)

    @property
    def provider(self) -> str:
        return "CUDAExecutionProvider" if self.device == "cuda" else "CPUExecutionProvider"

    @staticmethod
    def device_of_providers(providers: list[str]) -> str:
        """Where a session runs: its first provider is the one that takes every op it can."""
        return "cuda" if providers and providers[0] in GPU_PROVIDERS else "cpu"

    @classmethod
    def device_without_readback(cls, settings: dict[str, Any], hardware: dict[str, Any]) -> str:
        provider = (settings.get("model_kwargs") or {}).get("provider")
        if provider:
            return cls.device_of_providers([provider])
        probed = hardware.get("ort_providers") or ()
        return "cuda" if hardware.get("gpu") and "CUDAExecutionProvider" in probed else "cpu"

    @property
    def qconfig(self) -> str:
        q = self.cfg.quantization
        return qint8_config_for(self.hw) if q == "auto" else q

    def export_key(self) -> tuple[str, dict[str, Any]]:
        if self.cfg.optimization:
            return f"onnx-{self.cfg.optimization}", {"optimization": self.cfg.optimization}
        if self.cfg.quantization:
            return f"onnx-qint8-{self.qconfig}", {"quantization": self.qconfig}
        return BASE_KEY, {}

    def documented_model_kwargs(self) -> dict[str, Any]:
        if self.cfg.optimization:
            return {"file_name": f"onnx/model_{self.cfg.optimization}.onnx"}
        if self.cfg.quantization:
            return {"file_name": qint8_file_name(self.qconfig)}
        return {}

    def export_call(self) -> tuple[str, Any] | None:
        if self.cfg.optimization:
            return "export_optimized_onnx_model", self.cfg.optimization
        if self.cfg.quantization:
            return "export_dynamic_quantized_onnx_model", self.qconfig
        return None

    def unsupported_reason(self) -> str | None:
        reason = super().unsupported_reason()
        if reason:
            return reason
        if self.device == "cuda":
            import onnxruntime as ort

            if "CUDAExecutionProvider" not in ort.get_available_providers():
                return "onnxruntime has no CUDAExecutionProvider here (install the `gpu` extra)"
        return None

    def prepare(self, folder: Path, model_kind: str, cache: ExportCache, calibration_texts: list[str]) -> None:
        if self.export_plain(folder, model_kind, cache):
            return
        key, settings = self.export_key()

        def export_derived(staging: Path) -> None:
            from sentence_transformers import export_dynamic_quantized_onnx_model, export_optimized_onnx_model

            model = self._load_for_export(model_kind, folder)
            if self.cfg.optimization:
                export_optimized_onnx_model(model, self.cfg.optimization, str(staging))
                check_external_data(staging, "export_optimized_onnx_model")
            else:
                export_dynamic_quantized_onnx_model(model, self.qconfig, str(staging))
                check_external_data(staging, "export_dynamic_quantized_onnx_model")

        cache.produce(folder, key, settings, export_derived)

    @staticmethod
    def _load_for_export(model_kind: str, folder: Path) -> Any:
        from sentence_transformers import CrossEncoder, SentenceTransformer

        cls = SentenceTransformer if model_kind == "bi-encoder" else CrossEncoder
        return cls(str(folder), backend="onnx", device="cpu", model_kwargs={"file_name": BASE_FILE})

    def load_spec(self, source_dir: Path, export_dir: Path, cache: ExportCache) -> tuple[Path, dict[str, Any]]:
        key, settings = self.export_key()
        files = cache.lookup(export_dir, key, settings)
        if not files:
            raise RuntimeError(f"export {key} is missing from the cache at {export_dir}")
        file_name = next(f for f in files if f.endswith(".onnx"))
        return export_dir, {
            "file_name": file_name,
            "provider": self.provider,
            # the thread budget (the one setting every backend gets); nothing else unless a knob pins it
            "session_options": {
                "intra_op_num_threads": self.threads,
                **({} if self.cfg.ort_spinning is None else {"allow_spinning": bool(self.cfg.ort_spinning)}),
            },
        }

    def model_kwargs(self, described: dict[str, Any]) -> dict[str, Any]:
        import onnxruntime as ort

        options = described["session_options"]
        so = ort.SessionOptions()
        so.intra_op_num_threads = options["intra_op_num_threads"]
        if "inter_op_num_threads" in options:  # recorded by older rows
            so.inter_op_num_threads = options["inter_op_num_threads"]
        if options.get("allow_spinning") is not None:
            spin = "1" if options["allow_spinning"] else "0"
            so.add_session_config_entry("session.intra_op.allow_spinning", spin)
            so.add_session_config_entry("session.inter_op.allow_spinning", spin)
        return {"file_name": described["file_name"], "provider": described["provider"], "session_options": so}

    def runtime(self, model: Any) -> dict[str, Any]:
        import onnxruntime as ort

        session = model.transformers_model.session
        options = session.get_session_options()
        path = getattr(session, "_model_path", None)
        kernels, source, graph = executed_ops(path, session.get_providers(), options.intra_op_num_threads)
        return {
            "precision": dominant_precision(kernels, lambda key: key.rsplit(":", 1)[1]) or "unknown",
            "precision_source": source,
            "kernels": kernels,
            **graph,
            "providers": session.get_providers(),
            "device": self.device_of_providers(session.get_providers()),
            "intra_op_threads": options.intra_op_num_threads,
            "inter_op_threads": options.inter_op_num_threads,
            **spinning(options),
            "graph_optimization_level": str(options.graph_optimization_level),
            "onnxruntime": ort.__version__,
        }


def spinning(options: Any) -> dict[str, Any]:
    """Whether the session's intra-op threads spin, read back: the entry when set, else ORT's default (on)."""
    try:
        return {"allow_spinning": options.get_session_config_entry("session.intra_op.allow_spinning") == "1",
                "allow_spinning_source": "session option"}  # fmt: skip
    except RuntimeError:  # not set: it defaults to "1" (onnxruntime_session_options_config_keys.h)
        return {"allow_spinning": True, "allow_spinning_source": "onnxruntime default"}


def missing_external_data(onnx_file: Path) -> list[str]:
    """External data files an ONNX file's initializers point to that are not beside it."""
    import onnx

    graph = onnx.load(str(onnx_file), load_external_data=False).graph
    wanted = {
        entry.value
        for init in graph.initializer
        if init.data_location == onnx.TensorProto.EXTERNAL
        for entry in init.external_data
        if entry.key == "location"
    }
    return sorted(name for name in wanted if not (onnx_file.parent / name).exists())


def check_external_data(staging: Path, function: str) -> None:
    """Fail an export whose .onnx lost its weights, with the reason, before the cache trusts it.

    A model over protobuf's 2 GB limit (bge-m3 in fp32: 2.27 GB) is saved as model.onnx plus a
    weights file. sentence-transformers' export_optimized_onnx_model (and the dynamic-quantized one,
    for a graph still over 2 GB after int8) copies only the .onnx file out of optimum's output
    folder (sentence_transformers/backend/utils.py, save_or_push_to_hub_model), so the weights
    are lost and ONNX Runtime fails at load with "External data path does not exist".
    """
    from importlib.metadata import version

    for onnx_file in sorted((staging / "onnx").glob("*.onnx")):
        missing = missing_external_data(onnx_file)
        if missing:
            raise RuntimeError(
                f"{function} (sentence-transformers {version('sentence-transformers')}) saved "
                f"onnx/{onnx_file.name} without its external weights file {', '.join(missing)}: it copies only "
                "the .onnx of a model over ONNX's 2 GB limit; see the README, 'Models over 2 GB'"
            )


# Ops that carry a transformer's arithmetic; the quantized ones compute in int8 whatever their inputs.
QUANTIZED_OPS = {
    "MatMulInteger",
    "QLinearMatMul",
    "QAttention",
    "DynamicQuantizeMatMul",
    "MatMulIntegerToFloat",
    "QGemm",
}
MATMUL_OPS = {"MatMul", "FusedMatMul", "Gemm", "Attention", "MultiHeadAttention"} | QUANTIZED_OPS
ONNX_PRECISION = {1: "fp32", 10: "fp16", 16: "bf16", 3: "int8", 2: "int8"}  # TensorProto element types


def executed_ops(path: str | None, providers: list[str],
                 threads: int) -> tuple[dict[str, int], str, dict[str, Any]]:  # fmt: skip
    """Matmul-like ops by "op:precision" in the graph ONNX Runtime really runs, where that was read, and the
    whole graph's fingerprint (`graph_fingerprint`: every node's op, domain and weight precision).

    The session's optimized graph, not the file: on a CPU, ONNX Runtime turns most of an fp16 model
    (onnx-O4) back into fp32 (casts folded into the weights), so the file's fp16 is not what runs.
    The precision of an op is that of its weights (initializers); quantized ops are int8.
    """
    if not path:
        return {}, "unknown", {}
    import os
    import tempfile

    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="harness-ort-") as tmp:
        optimized = os.path.join(tmp, "optimized.onnx")
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.log_severity_level = 3  # ORT warns that an optimized dump is hardware specific: that is the point
        so.optimized_model_filepath = optimized
        so.add_session_config_entry("session.optimized_model_external_initializers_file_name", "optimized.onnx.data")
        try:
            ort.InferenceSession(path, so, providers=providers)
            graph, source = onnx.load(optimized, load_external_data=False).graph, "optimized session graph"
        except Exception as exc:  # noqa: BLE001 - e.g. a provider that compiles the graph away
            log.info("could not read ONNX Runtime's optimized graph (%s); reading the model file", exc)
            graph, source = onnx.load(path, load_external_data=False).graph, "model file"
    weights = {init.name: init.data_type for init in graph.initializer}
    counts: dict[str, int] = {}
    every: list[str] = []
    for node in graph.node:
        types = [weights[i] for i in node.input if i in weights]
        weight = ONNX_PRECISION.get(max(types, key=types.count), "other") if types else "-"
        every.append(f"{node.domain or 'ai.onnx'}:{node.op_type}:{weight}")
        if node.op_type not in MATMUL_OPS:
            continue
        if node.op_type in QUANTIZED_OPS:
            precision = "int8"
        elif weight == "-":
            continue  # activation x activation: follows its inputs
        else:
            precision = weight
        key = f"{node.op_type}:{precision}"
        counts[key] = counts.get(key, 0) + 1
    return counts, source, graph_fingerprint(every)
