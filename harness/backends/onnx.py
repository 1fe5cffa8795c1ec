"""ONNX Runtime backends: onnx, onnx-O1..O4 (export_optimized_onnx_model), onnx-qint8
(export_dynamic_quantized_onnx_model with the CPU's quantization config)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from harness.backends.base import Backend, st_export_model
from harness.exports import ExportCache
from harness.hardware import qint8_config_for

log = logging.getLogger(__name__)

BASE_KEY = "onnx"
BASE_FILE = "onnx/model.onnx"


class OnnxBackend(Backend):
    st_backend = "onnx"

    @property
    def provider(self) -> str:
        return "CUDAExecutionProvider" if self.device == "cuda" else "CPUExecutionProvider"

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
        def export_base(staging: Path) -> None:
            st_export_model(model_kind, folder, "onnx").save_pretrained(str(staging))
            for extra in [p for p in staging.iterdir() if p.name != "onnx"]:  # keep only the ONNX files
                extra.unlink() if extra.is_file() else shutil.rmtree(extra)

        cache.produce(folder, BASE_KEY, {}, export_base)
        key, settings = self.export_key()
        if key == BASE_KEY:
            return

        def export_derived(staging: Path) -> None:
            from sentence_transformers import export_dynamic_quantized_onnx_model, export_optimized_onnx_model

            model = self._load_for_export(model_kind, folder)
            if self.cfg.optimization:
                export_optimized_onnx_model(model, self.cfg.optimization, str(staging))
            else:
                export_dynamic_quantized_onnx_model(model, self.qconfig, str(staging))

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
            "session_options": {
                "intra_op_num_threads": self.threads,
                "inter_op_num_threads": 1,
                "allow_spinning": self.cfg.ort_spinning,
            },
        }

    def model_kwargs(self, described: dict[str, Any]) -> dict[str, Any]:
        import onnxruntime as ort

        options = described["session_options"]
        so = ort.SessionOptions()
        so.intra_op_num_threads = options["intra_op_num_threads"]
        so.inter_op_num_threads = options["inter_op_num_threads"]
        spin = "1" if options["allow_spinning"] else "0"
        so.add_session_config_entry("session.intra_op.allow_spinning", spin)
        so.add_session_config_entry("session.inter_op.allow_spinning", spin)
        return {"file_name": described["file_name"], "provider": described["provider"], "session_options": so}

    def runtime(self, model: Any) -> dict[str, Any]:
        import onnxruntime as ort

        session = model.transformers_model.session
        options = session.get_session_options()
        return {
            "precision": onnx_precision(session._model_path if hasattr(session, "_model_path") else None),
            "providers": session.get_providers(),
            "intra_op_threads": options.intra_op_num_threads,
            "inter_op_threads": options.inter_op_num_threads,
            "allow_spinning": options.get_session_config_entry("session.intra_op.allow_spinning") == "1",
            "graph_optimization_level": str(options.graph_optimization_level),
            "onnxruntime": ort.__version__,
        }


def onnx_precision(path: str | None) -> str:
    """fp32 / fp16 / int8 from the graph itself: quantized ops or fp16 initializers."""
    if not path:
        return "unknown"
    import onnx

    graph = onnx.load(path, load_external_data=False).graph
    ops = {node.op_type for node in graph.node}
    if ops & {
        "MatMulInteger",
        "QLinearMatMul",
        "DynamicQuantizeLinear",
        "QAttention",
        "DynamicQuantizeMatMul",
    }:
        return "int8"
    types = {init.data_type for init in graph.initializer}
    if onnx.TensorProto.FLOAT16 in types:
        return "fp16"
    return "fp32"
