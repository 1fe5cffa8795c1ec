"""Backend registry: family name -> "module:Class", imported only when asked for.

Adding a family is one module plus one line here; nothing else in the harness branches on
backend names. A family owns its runtime knobs and their checks (class attributes `knobs`,
`speed_only_knobs`, `quantizations` and the `check_fields` / `validate` classmethods); the helpers
below are how the rest of the harness asks for them. optimum / onnxruntime / openvino are imported
only by the family that needs them, so `harness --help` and the unit tests stay fast.
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


def families() -> tuple[str, ...]:
    return tuple(REGISTRY)


def knobs_of(family: str) -> tuple[str, ...]:
    """The runtime knobs a family owns; every family's for a family not registered."""
    return backend_class(family).knobs if family in REGISTRY else runtime_knobs()


def runtime_knobs() -> tuple[str, ...]:
    """Every family's runtime knobs: the backend fields that tune a runtime rather than name a backend."""
    return tuple(k for family in REGISTRY for k in backend_class(family).knobs)


def speed_only_fields() -> tuple[str, ...]:
    """Backend fields that change speed but cannot change what a model computes: every family's speed-only
    knobs, and `device` (the accuracy cell of a backend does not depend on where it is timed)."""
    return (*(k for family in REGISTRY for k in backend_class(family).speed_only_knobs), "device")


def check(cfg) -> None:
    """Check a backend config: every family checks the fields it owns (a bad value fails whichever backend
    it is swept with), then the backend's own family checks the config as a whole."""
    for family in REGISTRY:
        backend_class(family).check_fields(cfg)
    backend_class(cfg.family).validate(cfg)


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


__all__ = [
    "REGISTRY",
    "Backend",
    "backend_class",
    "check",
    "create",
    "families",
    "family_of",
    "knobs_of",
    "registered",
    "runtime_knobs",
    "speed_only_fields",
]
