"""OpenVINO backends: openvino, and openvino-qint8 (export_static_quantized_openvino_model
calibrated on local texts: its default calibration set lives on the Hub)."""

from __future__ import annotations

import functools
import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from harness.backends.base import Backend, dominant_precision, graph_fingerprint
from harness.backends.cache import ExportCache
from harness.core.usage import check_choice, check_positive_int

log = logging.getLogger(__name__)

BASE_KEY = "openvino"
BASE_FILE = "openvino/openvino_model.xml"
QINT8_FILE = "openvino/openvino_model_qint8_quantized.xml"  # what export_static_quantized_openvino_model writes
DEFAULT_CALIBRATION_SAMPLES = 128  # `OpenVINOKnobs.calibration_samples`'s default
HINTS = ("LATENCY", "THROUGHPUT")
PRECISIONS = ("f32", "bf16", "f16")  # backend.ov_precision: INFERENCE_PRECISION_HINT
PRECISION = {
    "f32": "fp32",
    "float32": "fp32",
    "bf16": "bf16",
    "bfloat16": "bf16",
    "f16": "fp16",
    "float16": "fp16",
}


def normalise_precision(hint: str) -> str | None:
    """fp32 / bf16 / fp16 for an OpenVINO precision hint ("f32", "<Type: 'bfloat16'>"...), None if unknown."""
    hint = hint.lower()
    return next((v for k, v in PRECISION.items() if k in hint), None)  # "bf16" is tried before "f16"


@functools.cache
def default_precision(device: str = "CPU") -> str | None:
    """The precision OpenVINO's plugin computes in on this machine when nothing pins it (fp32 / bf16 /
    fp16), None when it cannot be asked. This is what `SentenceTransformer(..., backend="openvino")`
    runs: bf16 on CPUs with AVX512-BF16 or AMX, fp32 elsewhere. Cached: it cannot change in a process."""
    try:
        import openvino as ov

        return normalise_precision(str(ov.Core().get_property(device, "INFERENCE_PRECISION_HINT")))
    except Exception as exc:  # noqa: BLE001 - no openvino, or a device without the property
        log.info("could not read OpenVINO's default precision on %s (%s)", device, exc)
        return None


@dataclass
class OpenVINOKnobs:
    ov_hint: str = "LATENCY"
    # None: OpenVINO chooses, as SentenceTransformer(backend="openvino") runs it (bf16 on AMX/AVX512-BF16
    # CPUs); f32 pins fp32 (the sweep measures that beside it where the machine's choice is not fp32)
    ov_precision: Optional[str] = None  # noqa: UP045 - OmegaConf structured configs need Optional
    # static int8 calibration texts (optimum-intel presets use 128; ST falls back to 300)
    calibration_samples: int = DEFAULT_CALIBRATION_SAMPLES


class OpenVINOBackend(Backend):
    st_backend = "openvino"
    names = {"openvino": {}, "openvino-qint8": {"quantization": "static"}}
    Knobs = OpenVINOKnobs
    speed_only_knobs = ("ov_hint",)
    quantizations = ("static",)
    export_subdir = "openvino"
    libraries = ("optimum-intel", "openvino", "nncf")

    @classmethod
    def probe(cls) -> dict[str, Any]:
        try:
            import openvino as ov

            return {"ov_devices": tuple(ov.Core().available_devices)}
        except Exception:  # noqa: BLE001 - no openvino: nothing to report
            return {}

    @classmethod
    def check_fields(cls, cfg: Any) -> None:
        check_choice("backend.ov_hint", cfg.ov_hint, HINTS)
        if cfg.ov_precision is not None:
            check_choice("backend.ov_precision", cfg.ov_precision, PRECISIONS)
        check_positive_int("backend.calibration_samples", cfg.calibration_samples)

    def unsupported_reason(self) -> str | None:
        if self.device == "cuda":
            return "OpenVINO has no CUDA device; it runs on CPU (and Intel GPUs)"
        return super().unsupported_reason()

    @property
    def device(self) -> str:
        return "cpu" if self.cfg.device == "auto" else self.cfg.device

    def companion_variants(self) -> list[dict[str, Any]]:
        """Left to OpenVINO (ov_precision None, as sentence-transformers runs it), the precision is the
        machine's choice; where that is not fp32 (bf16 on AMX / AVX512-BF16 CPUs) the f32-pinned run is
        worth measuring beside it as a variant: its speed and accuracy are what full precision costs."""
        if self.cfg.ov_precision is not None:
            return []
        chosen = default_precision(self.device.upper())
        return [{"ov_precision": "f32"}] if chosen not in (None, "fp32") else []

    @staticmethod
    def device_of_execution_devices(devices: str | None) -> str:
        """The device, "cpu" or "gpu" (an Intel GPU), from the compiled model's EXECUTION_DEVICES ("['CPU']")."""
        return "gpu" if devices and "GPU" in devices.upper() else "cpu"

    @classmethod
    def device_without_readback(cls, settings: dict[str, Any], hardware: dict[str, Any]) -> str:
        return "cpu"  # the harness never compiled OpenVINO for anything else

    def documented_model_kwargs(self) -> dict[str, Any]:
        return {"file_name": QINT8_FILE} if self.cfg.quantization == "static" else {}

    def export_call(self) -> tuple[str, Any] | None:
        return ("export_static_quantized_openvino_model", None) if self.cfg.quantization == "static" else None

    def export_key(self) -> tuple[str, dict[str, Any]]:
        if self.cfg.quantization == "static":
            return f"openvino-qint8{self._calibration_suffix}", {"calibration_samples": self.cfg.calibration_samples}
        return BASE_KEY, {}

    @property
    def _calibration_suffix(self) -> str:
        """ "" for the default calibration (sentence-transformers' file name), "_c64" for 64 samples: variants
        calibrated differently are different files, so they neither overwrite nor race each other in the cache."""
        n = self.cfg.calibration_samples
        return "" if n == DEFAULT_CALIBRATION_SAMPLES else f"_c{n}"

    def prepare(self, folder: Path, model_kind: str, cache: ExportCache, calibration_texts: list[str]) -> None:
        if self.export_plain(folder, model_kind, cache):
            return
        key, settings = self.export_key()

        def export_quantized(staging: Path) -> None:
            from optimum.intel import OVQuantizationConfig
            from sentence_transformers import (
                CrossEncoder,
                SentenceTransformer,
                export_static_quantized_openvino_model,
            )

            cls = SentenceTransformer if model_kind == "bi-encoder" else CrossEncoder
            model = cls(str(folder), backend="openvino", device="cpu", model_kwargs={"file_name": BASE_FILE})
            with tempfile.TemporaryDirectory() as data_dir:
                # A local folder is a valid `datasets` name: calibration never touches the Hub.
                with open(Path(data_dir) / "train.jsonl", "w", encoding="utf-8") as f:
                    for text in calibration_texts:
                        f.write(json.dumps({"text": text}) + "\n")
                export_static_quantized_openvino_model(
                    model,
                    OVQuantizationConfig(num_samples=min(self.cfg.calibration_samples, len(calibration_texts))),
                    str(staging),
                    dataset_name=data_dir,
                    dataset_config_name="default",
                    dataset_split="train",
                    column_name="text",
                )

        def export_named(staging: Path) -> None:
            export_quantized(staging)
            if self._calibration_suffix:
                for produced in (staging / "openvino").glob(Path(QINT8_FILE).stem + ".*"):
                    produced.rename(produced.with_name(f"{produced.stem}{self._calibration_suffix}{produced.suffix}"))

        cache.produce(folder, key, settings, export_named)

    def load_spec(self, source_dir: Path, export_dir: Path, cache: ExportCache) -> tuple[Path, dict[str, Any]]:
        key, settings = self.export_key()
        files = cache.lookup(export_dir, key, settings)
        if not files:
            raise RuntimeError(f"export {key} is missing from the cache at {export_dir}")
        ov_config: dict[str, Any] = {
            "INFERENCE_NUM_THREADS": self.threads,
            "PERFORMANCE_HINT": self.cfg.ov_hint,
        }
        if self.cfg.ov_precision:
            ov_config["INFERENCE_PRECISION_HINT"] = self.cfg.ov_precision
        return export_dir, {"file_name": next(f for f in files if f.endswith(".xml")), "ov_config": ov_config}

    def runtime(self, model: Any) -> dict[str, Any]:
        import openvino as ov

        ov_model = model.transformers_model
        if ov_model.request is None:
            ov_model.compile()
        compiled = ov_model.request
        compiled = compiled.get_compiled_model() if hasattr(compiled, "get_compiled_model") else compiled
        props = {}
        for name in (
            "INFERENCE_NUM_THREADS",
            "PERFORMANCE_HINT",
            "INFERENCE_PRECISION_HINT",
            "EXECUTION_DEVICES",
        ):
            try:
                props[name] = str(compiled.get_property(name))
            except Exception:  # noqa: BLE001 - a property a device does not report
                props[name] = None
        hint = (props["INFERENCE_PRECISION_HINT"] or "").lower()
        hinted = normalise_precision(hint) or hint or "unknown"
        kernels, graph = executed_kernels(compiled)
        executed = dominant_precision(kernels, lambda key: RUNTIME_PRECISION.get(key.split(":")[1]))
        precision = executed
        if not precision:  # no runtime graph: int8 where the model carries quantize ops, else the hint
            quantized = any(op.get_type_name() == "FakeQuantize" for op in ov_model.model.get_ops())
            precision = "int8" if quantized else hinted
        return {
            "precision": precision,
            "precision_source": "runtime graph" if executed else "compiled-model hint",
            "compute_precision": hinted,
            "kernels": kernels,
            **graph,
            "threads": props["INFERENCE_NUM_THREADS"],
            "performance_hint": props["PERFORMANCE_HINT"],
            "inference_precision_hint": props["INFERENCE_PRECISION_HINT"],
            "execution_devices": props["EXECUTION_DEVICES"],
            "device": self.device_of_execution_devices(props["EXECUTION_DEVICES"]),
            "openvino": ov.__version__,
        }


# Layers that carry a transformer's arithmetic; their runtime precision is the model's precision.
MATMUL_LAYERS = ("FullyConnected", "MatMul", "Convolution")
RUNTIME_PRECISION = {"f32": "fp32", "bf16": "bf16", "f16": "fp16", "u8": "int8", "i8": "int8"}


def executed_kernels(compiled: Any) -> tuple[dict[str, int], dict[str, Any]]:
    """Count of the matmul-like layers OpenVINO executed, by "layer:precision:kernel", and the whole runtime
    graph's fingerprint (every layer's type, runtime precision and primitive: `base.graph_fingerprint`).

    Read from the compiled model's runtime (execution) graph, so it is what ran, not what was
    asked: e.g. "FullyConnected:bf16:brgemm_avx512_amx_bf16" on a CPU where OpenVINO chose bf16
    with AMX, "FullyConnected:u8:brgemm_avx512_I8" for a statically quantized model.
    """
    counts: dict[str, int] = {}
    try:
        ops = compiled.get_runtime_model().get_ops()
    except Exception:  # noqa: BLE001 - a device without a runtime graph: the caller falls back to the hint
        return counts, {}
    every: list[str] = []
    for op in ops:
        info = op.get_rt_info()
        if "layerType" not in info:
            continue
        parts = [info[k].astype(str) if k in info else "?" for k in ("layerType", "runtimePrecision", "primitiveType")]
        key = ":".join(parts)
        every.append(key)
        if parts[0] in MATMUL_LAYERS:
            counts[key] = counts.get(key, 0) + 1
    return counts, graph_fingerprint(every)
