"""PyTorch backends: torch-fp32 / fp16 / bf16 through model_kwargs={"torch_dtype": ...}."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.backends.base import Backend
from harness.core.usage import check_choice

PRECISION = {"torch.float32": "fp32", "torch.float16": "fp16", "torch.bfloat16": "bf16"}
DTYPES = ("float32", "float16", "bfloat16")


class TorchBackend(Backend):
    st_backend = "torch"
    names = {
        "torch-fp32": {"dtype": "float32"},
        "torch-fp16": {"dtype": "float16"},
        "torch-bf16": {"dtype": "bfloat16"},
    }
    libraries = ("sentence-transformers", "transformers", "torch")

    @classmethod
    def check_fields(cls, cfg: Any) -> None:
        check_choice("backend.dtype", cfg.dtype, DTYPES)

    def load_spec(self, source_dir: Path, export_dir: Path, cache: Any) -> tuple[Path, dict[str, Any]]:
        return source_dir, {"torch_dtype": self.cfg.dtype}

    def documented_model_kwargs(self) -> dict[str, Any]:
        return {} if self.cfg.dtype == "float32" else {"torch_dtype": self.cfg.dtype}

    def model_kwargs(self, described: dict[str, Any]) -> dict[str, Any]:
        import torch

        return {"torch_dtype": getattr(torch, described["torch_dtype"])}

    def runtime(self, model: Any) -> dict[str, Any]:
        import torch

        parameter = next(model.parameters())
        dtype = str(parameter.dtype)
        return {
            "precision": PRECISION.get(dtype, dtype),
            "torch_dtype": dtype,
            "device": parameter.device.type,  # "cpu" / "cuda" / "mps": where the weights are
            "intra_op_threads": torch.get_num_threads(),
            "inter_op_threads": torch.get_num_interop_threads(),
            "torch": torch.__version__,
        }
