"""What every backend family provides to the runner."""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from harness.core.hardware import Hardware
from harness.core.usage import ConfigError, did_you_mean

if TYPE_CHECKING:  # the cache reads the registry, which imports this module
    from harness.backends.cache import ExportCache


class Backend(ABC):
    """One configured backend: how to export it, load it, and what it really ran with."""

    st_backend: ClassVar[str]  # the `backend=` argument of sentence-transformers
    # The backend names this family offers, each with the `config.BackendConfig` fields it sets
    # ({"torch-fp16": {"dtype": "float16"}}): Hydra's `backend=` options, registered from here.
    names: ClassVar[dict[str, dict[str, Any]]] = {}
    # Runtime knobs: a dataclass of the backend fields that tune this family's runtime rather than name a
    # backend, with their defaults (added to the backend schema). A row records the ones that differ from
    # the backend's defaults as its `variant`; a knob of another family means nothing here (torch-fp32 in
    # a sweep over backend.ov_precision=f32,bf16 is one cell). `knobs` is derived from it.
    Knobs: ClassVar[type | None] = None
    knobs: ClassVar[tuple[str, ...]] = ()
    # The knobs that change speed but cannot change what the model computes: accuracy is measured once
    # for all their values.
    speed_only_knobs: ClassVar[tuple[str, ...]] = ()
    quantizations: ClassVar[tuple[str, ...]] = ()  # the backend.quantization values this family knows
    export_subdir: ClassVar[str | None] = None  # the model folder's sub-folder its exports live in
    libraries: ClassVar[tuple[str, ...]] = ()  # distributions whose versions decide its exports and runs

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.Knobs is not None:
            cls.knobs = tuple(f.name for f in dataclasses.fields(cls.Knobs))

    @classmethod
    def probe(cls) -> dict[str, Any]:
        """`core.hardware.Hardware` fields this family's runtime fills in about the machine (what it can
        run on); imports the runtime, so it is asked only where the answer is needed. Default: none."""
        return {}

    @classmethod
    def check_fields(cls, cfg: Any) -> None:
        """Check the values of the backend fields this family owns (ConfigError naming field, value and
        what is allowed). `backends.check` asks every family, so a bad value fails whichever backend
        it is swept with. Default: none."""
        return None

    @classmethod
    def validate(cls, cfg: Any) -> None:
        """Check a backend config of this family: its `quantization` is one this family knows."""
        q, allowed = cfg.quantization, cls.quantizations
        if q is not None and q not in allowed:
            raise ConfigError(
                f"backend.quantization: {q!r} is not allowed for {cfg.name}"
                + (f" ({cfg.family}); " if cfg.family != cfg.name else "; ")
                + (f"choose one of {', '.join(allowed)}." if allowed else "leave it null.")
                + did_you_mean(q, allowed)
            )

    def __init__(self, cfg: Any, hw: Hardware, threads: int):
        self.cfg = cfg
        self.hw = hw
        self.threads = threads

    @property
    def device(self) -> str:
        if self.cfg.device == "auto":
            return "cuda" if self.hw.gpu else "cpu"
        return self.cfg.device

    def unsupported_reason(self) -> str | None:
        """Why this backend cannot run on this machine, or None."""
        if self.device == "cuda" and not self.hw.gpu:
            return f"{self.cfg.name} on device=cuda needs a CUDA GPU; this machine has none"
        return None

    def companion_variants(self) -> list[dict[str, Any]]:
        """Runtime-knob settings the sweep should measure beside this backend as variants (each dict:
        knob -> value), because this machine makes the runtime's default differ from what the name
        suggests. Default: none."""
        return []

    def export_key(self) -> tuple[str, dict[str, Any]] | None:
        """Cache key and settings of the export this backend loads; None when it loads the weights as they are."""
        return None

    def needs_export(self, cache: ExportCache, folder: Path) -> bool:
        key = self.export_key()
        return key is not None and cache.lookup(folder, *key) is None

    def export_plain(self, folder: Path, model_kind: str, cache: ExportCache) -> bool:
        """The model as sentence-transformers exports it for this family's backend (`export_subdir`, cached under
        that key) unless the cache has it; True when this backend loads that file and needs nothing more."""
        sub = self.export_subdir

        def export(staging: Path) -> None:
            st_export_model(model_kind, folder, self.st_backend).save_pretrained(str(staging))
            for extra in [p for p in staging.iterdir() if p.name != sub]:  # keep only the exported files
                extra.unlink() if extra.is_file() else shutil.rmtree(extra)

        cache.produce(folder, sub, {}, export)
        key = self.export_key()
        return key is None or key[0] == sub

    def prepare(self, folder: Path, model_kind: str, cache: ExportCache, calibration_texts: list[str]) -> None:  # noqa: B027
        """Export what this backend loads into the cache (runs in its own process). Default: nothing."""

    @abstractmethod
    def load_spec(self, source_dir: Path, export_dir: Path, cache: ExportCache) -> tuple[Path, dict[str, Any]]:
        """The folder sentence-transformers loads and the JSON-able model_kwargs (what a user would write)."""

    def model_kwargs(self, described: dict[str, Any]) -> dict[str, Any]:
        """Turn the JSON-able description into real kwargs (e.g. build session option objects)."""
        return dict(described)

    @abstractmethod
    def runtime(self, model: Any) -> dict[str, Any]:
        """Settings read back from the loaded runtime; must include 'precision' (fp32/fp16/bf16/int8)
        and 'device' (where it ran: "cpu", "cuda", or "gpu" for an OpenVINO GPU)."""

    @classmethod
    def device_without_readback(cls, settings: dict[str, Any], hardware: dict[str, Any]) -> str:
        """Where a row written before runtimes reported their device ran, from what it recorded:
        sentence-transformers' default is the GPU when there is one."""
        return "cuda" if hardware.get("gpu") else "cpu"

    def documented_model_kwargs(self) -> dict[str, Any]:
        """The model_kwargs the sentence-transformers docs load this backend with, from a folder that
        holds its exported files (the recommender's loading snippet). Default: none."""
        return {}

    def export_call(self) -> tuple[str, Any] | None:
        """The sentence-transformers function that creates this backend's file once, and its config
        argument (the recommender's commented export line); None when loading needs no export."""
        return None

    def load(self, model_kind: str, folder: Path, described: dict[str, Any], trust_remote_code: bool) -> Any:
        from sentence_transformers import CrossEncoder, SentenceTransformer

        cls = SentenceTransformer if model_kind == "bi-encoder" else CrossEncoder
        return cls(
            str(folder),
            backend=self.st_backend,
            device=self.device,
            model_kwargs=self.model_kwargs(described),
            trust_remote_code=trust_remote_code,
        )


def st_export_model(model_kind: str, folder: Path, st_backend: str) -> Any:
    """Load `folder` with an export-capable sentence-transformers backend (exports in memory if needed)."""
    from sentence_transformers import CrossEncoder, SentenceTransformer

    cls = SentenceTransformer if model_kind == "bi-encoder" else CrossEncoder
    return cls(str(folder), backend=st_backend, device="cpu")


def dominant_precision(kernels: dict[str, int], precision_of: Callable[[str], str | None]) -> str | None:
    """The precision most matmul-like ops ran in (fp32 / fp16 / bf16 / int8), None if none is known.

    `kernels` counts executed ops by a runtime-specific key; `precision_of` reads the precision from a key.
    """
    by_precision: dict[str, int] = {}
    for key, count in kernels.items():
        precision = precision_of(key)
        if precision:
            by_precision[precision] = by_precision.get(precision, 0) + count
    return max(by_precision, key=by_precision.get) if by_precision else None


def graph_fingerprint(ops: list[str]) -> dict[str, Any]:
    """What a runtime executes, in two fields a row can carry: the number of ops and a digest of their
    multiset ("domain:op:precision" or "layer:precision:primitive"). Two configurations with the same
    fingerprint and the same settings run the same kernels (harness.store.kernels)."""
    counted = sorted(f"{op}*{ops.count(op)}" for op in set(ops))
    return {"graph_ops": len(ops), "graph_fingerprint": hashlib.sha1("\n".join(counted).encode()).hexdigest()[:16]}
