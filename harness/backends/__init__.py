"""Backend registry: family name -> "module:Class", imported only when asked for.

Adding a family is one module plus one line here; nothing else in the harness branches on
backend names. optimum / onnxruntime / openvino are imported only by the family that needs them,
so `harness --help` and the unit tests stay fast.
"""

from __future__ import annotations

import importlib

from harness.backends.base import Backend

REGISTRY: dict[str, str] = {
    "torch": "harness.backends.torch:TorchBackend",
    "onnx": "harness.backends.onnx:OnnxBackend",
    "openvino": "harness.backends.openvino:OpenVINOBackend",
}


def backend_class(family: str) -> type[Backend]:
    module_name, _, class_name = REGISTRY[family].partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def family_of(backend: str) -> str | None:
    """The family of a registered backend name ("onnx-O4" -> "onnx"); None for a name not registered."""
    from harness.config import BACKENDS

    cfg = BACKENDS.get(backend)
    return cfg.family if cfg is not None else None


def create(cfg, hw, threads: int) -> Backend:
    return backend_class(cfg.family)(cfg, hw, threads)


def registered(backend: str, hw) -> Backend | None:
    """A registered backend as configured by default, for what it says about itself (its ST backend
    name, documented model_kwargs, export call); None for a name not registered."""
    from harness.config import BACKENDS

    return create(BACKENDS[backend], hw, 1) if backend in BACKENDS else None


__all__ = ["REGISTRY", "Backend", "backend_class", "create", "family_of", "registered"]
