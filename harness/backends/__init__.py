"""Backend families: a lazy registry (family name -> "module:Class"), imported only when asked for.

A family is one module and one registration. The module's class owns everything about it: the backend
names it offers and what each sets (`names`), its runtime knobs with their defaults and checks (`Knobs`,
`check_fields`), the sub-folder its exports live in (`export_subdir`), the libraries that decide its
exports (`libraries`) and what it probes on the machine (`probe`). The rest of the harness asks
through the helpers below and never branches on a backend name.

Families outside the package register through the entry-point group `harness.backends`
(`toy = "my_package.toy:ToyBackend"` under `[project.entry-points."harness.backends"]`): entry points
are read from the installed distributions, so the sweep process, the fork server and spawned units all
find the same families. optimum / onnxruntime / openvino are imported only by the family that needs
them, so `harness --help` and the unit tests stay fast.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import typing
from importlib import metadata
from typing import Any

from harness import config
from harness.backends.base import Backend
from harness.core.usage import ConfigError, check_choice

ENTRY_POINT_GROUP = "harness.backends"
BUILTIN: dict[str, str] = {
    "torch": "harness.backends.torch:TorchBackend",
    "onnx": "harness.backends.onnx:OnnxBackend",
    "openvino": "harness.backends.openvino:OpenVINOBackend",
}


@functools.cache
def registry() -> dict[str, str]:
    """Every family: the package's own, then those installed distributions register (entry points)."""
    found = dict(BUILTIN)
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in found and found[ep.name] != ep.value:
            raise ConfigError(
                f"backend family {ep.name!r}: registered twice ({found[ep.name]} and {ep.value}); "
                "uninstall one of the distributions that provide it."
            )
        found[ep.name] = ep.value
    return found


def backend_class(family: str) -> type[Backend]:
    module_name, _, class_name = registry()[family].partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def families() -> tuple[str, ...]:
    return tuple(registry())


def _classes() -> list[type[Backend]]:
    return [backend_class(f) for f in registry()]


@functools.cache
def schema() -> type:
    """`config.BackendConfig` with every family's knobs added (their types and defaults from each family's
    `Knobs`): the structured config Hydra checks `backend.*` overrides against."""
    extra: list[tuple[str, Any, Any]] = []
    for cls in _classes():
        if cls.Knobs is None:
            continue
        hints = typing.get_type_hints(cls.Knobs)
        for f in dataclasses.fields(cls.Knobs):
            default = dataclasses.field(default=f.default) if f.default is not dataclasses.MISSING else f
            extra.append((f.name, hints[f.name], default))
    made = dataclasses.make_dataclass("BackendConfig", extra, bases=(config.BackendConfig,))
    made.__module__ = __name__
    made.__qualname__ = "BackendConfig"
    return made


def __getattr__(name: str) -> Any:
    if name == "BackendConfig":  # pickled configs find their class here, in every process
        return schema()
    raise AttributeError(name)


@functools.cache
def named() -> dict[str, Any]:
    """Every registered backend name -> its config (a `schema()` instance), in registration order."""
    out: dict[str, Any] = {}
    for family, cls in zip(registry(), _classes(), strict=True):
        for name, fields in cls.names.items():
            if name in out:
                raise ConfigError(f"backend {name!r}: offered by two families ({out[name].family} and {family}).")
            out[name] = schema()(name=name, family=family, **fields)
    return out


def names() -> tuple[str, ...]:
    return tuple(named())


def knobs_of(family: str) -> tuple[str, ...]:
    """The runtime knobs a family owns; every family's for a family not registered."""
    return backend_class(family).knobs if family in registry() else runtime_knobs()


def runtime_knobs() -> tuple[str, ...]:
    """Every family's runtime knobs: the backend fields that tune a runtime rather than name a backend."""
    return tuple(k for cls in _classes() for k in cls.knobs)


def speed_only_fields() -> tuple[str, ...]:
    """Backend fields that change speed but cannot change what a model computes: every family's speed-only
    knobs, and `device` (the accuracy cell of a backend does not depend on where it is timed)."""
    return (*(k for cls in _classes() for k in cls.speed_only_knobs), "device")


def export_subdirs() -> tuple[str, ...]:
    """The sub-folders of a model folder that hold exports (never copied as the model's own files)."""
    return tuple(dict.fromkeys(cls.export_subdir for cls in _classes() if cls.export_subdir))


def libraries() -> tuple[str, ...]:
    """The libraries whose versions decide what an export looks like and how it runs, every family's."""
    return tuple(dict.fromkeys(lib for cls in _classes() for lib in cls.libraries))


def probe(hw: Any) -> Any:
    """`hw` with what each family's runtime reports about this machine (ONNX Runtime's providers,
    OpenVINO's devices): imports the runtimes, so only where the answer is needed."""
    found: dict[str, Any] = {}
    for cls in _classes():
        found.update(cls.probe())
    return dataclasses.replace(hw, **found)


def check(cfg: Any) -> None:
    """Check a backend config: its family is registered, every family checks the fields it owns (a bad value
    fails whichever backend it is swept with), then the backend's own family checks the config as a whole."""
    check_choice("backend.family", cfg.family, families())
    for cls in _classes():
        cls.check_fields(cfg)
    backend_class(cfg.family).validate(cfg)


def family_of(backend: str) -> str | None:
    """The family of a registered backend name ("onnx-O4" -> "onnx"); None for a name not registered."""
    cfg = named().get(backend)
    return cfg.family if cfg is not None else None


def create(cfg: Any, hw: Any, threads: int) -> Backend:
    return backend_class(cfg.family)(cfg, hw, threads)


def registered(backend: str, hw: Any) -> Backend | None:
    """A registered backend as configured by default, for what it says about itself (its ST backend
    name, documented model_kwargs, export call); None for a name not registered."""
    cfg = named().get(backend)
    return create(cfg, hw, 1) if cfg is not None else None


__all__ = [
    "BUILTIN",
    "ENTRY_POINT_GROUP",
    "Backend",
    "backend_class",
    "check",
    "create",
    "export_subdirs",
    "families",
    "family_of",
    "knobs_of",
    "libraries",
    "named",
    "names",
    "probe",
    "registered",
    "registry",
    "runtime_knobs",
    "schema",
    "speed_only_fields",
]
