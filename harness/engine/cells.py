"""What a job's cells are and what names them: a cell id digests everything that identifies the cell
(machine, model, dataset, backend configuration, batch size, threads), so rows never overwrite each
other and a rerun finds its finished cells; a backend's `variant` is the runtime knobs of its family
that differ from its defaults; accuracy is measured where data is (local files, else the Hub)."""

from __future__ import annotations

import functools
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from omegaconf import DictConfig, OmegaConf

from harness import backends
from harness.core.files import digest
from harness.core.usage import ConfigError
from harness.store import results


def own_knobs(family: str) -> tuple[str, ...]:
    return backends.knobs_of(family)


def backend_identity(backend_cfg: Any) -> dict[str, Any]:
    """The backend's config without the runtime knobs its family does not have: what names its cells."""
    d = OmegaConf.to_container(backend_cfg, resolve=True) if OmegaConf.is_config(backend_cfg) else dict(backend_cfg)
    own = own_knobs(d["family"])
    return {k: v for k, v in d.items() if k not in backends.runtime_knobs() or k in own}


def variant(backend_cfg: Any) -> str:
    """The runtime knobs of its family that differ from this backend's defaults ("" for the backend as
    registered), so cells of one backend swept over knobs stay apart in ratios, reports and comparisons."""
    default = backends.named().get(backend_cfg.name)
    if default is None:
        return ""
    own = own_knobs(backend_cfg.family)
    changed = [f"{k}={backend_cfg[k]}" for k in own if backend_cfg[k] != getattr(default, k)]
    return ",".join(changed)


@dataclass
class Cell:
    kind: str  # "speed" | "accuracy"
    cell_id: str
    batch_size: int | None = None
    task: str | None = None
    cell_key: str | None = None  # the same for every round of a speed cell
    server: dict[str, Any] | None = None  # a server cell's shape, batching and p99 budget (harness.engine.server)


def slug(*parts: Any) -> str:
    return "-".join(str(p).replace("/", "_") for p in parts if p is not None)


def cell_id_speed(cfg: DictConfig, machine: str, batch_size: int, threads: int, backend_cfg: Any = None) -> str:
    backend_cfg = cfg.backend if backend_cfg is None else backend_cfg
    key = {
        "machine": machine,
        "model": model_identity(cfg),
        "dataset": OmegaConf.to_container(cfg.dataset, resolve=True),
        "backend": backend_identity(backend_cfg),
        "batch_size": batch_size,
        "threads": threads,
    }
    return slug("speed", cfg.model.name, cfg.dataset.name, f"bs{batch_size}", backend_cfg.name, digest(key))


def model_identity(cfg: DictConfig) -> dict[str, Any]:
    """The model config that names its cells; `weights: trained` (the default) is left out, so adding
    that field did not rename every cell of an existing store."""
    model = OmegaConf.to_container(cfg.model, resolve=True)
    if model.get("weights") == "trained":
        del model["weights"]
    return model


def with_round(cell_key: str, round_: int) -> str:
    """Each interleaved round of a cell is its own row; the loader pools rows sharing a cell_key."""
    return cell_key if round_ == 0 else f"{cell_key}-r{round_}"


def cell_id_accuracy(cfg: DictConfig, machine: str, task: str, backend_cfg: Any) -> str:
    backend = {k: v for k, v in backend_identity(backend_cfg).items() if k not in backends.speed_only_fields()}
    key = {
        "machine": machine,
        "model": model_identity(cfg),
        "backend": backend,
        "task": task,
        "source": accuracy_source(cfg, task),
    }
    return slug("accuracy", cfg.model.name, task, backend["name"], digest(key))


def accuracy_source(cfg: DictConfig, task: str) -> dict[str, Any]:
    """Local files under data_dir when configured, else the Hub names the docs use."""
    spec = dict(cfg.accuracy[task])
    extra = {k: v for k, v in spec.items() if k not in ("local", "hub") and v is not None}
    if cfg.data_dir:
        path = Path(cfg.data_dir).expanduser() / spec["local"]
        if not path.exists():
            raise ConfigError(f"accuracy.{task}.local: {str(path)!r} does not exist (data_dir={cfg.data_dir!r}).")
        return {"path": str(path.resolve()), "name": path.name, **extra}
    return {"hub": spec["hub"], "name": spec["hub"].rsplit("/", 1)[-1], **extra}


@functools.lru_cache(maxsize=1)
def hub_unreachable() -> str | None:
    """Why the Hugging Face Hub cannot be used from here, or None. Cheap: one TCP connect."""
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return "HF_HUB_OFFLINE is set"
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=3).close()
    except OSError as exc:
        return f"{host} is unreachable ({exc})"
    return None


def accuracy_skipped(cfg: DictConfig) -> str | None:
    """Why this sweep measures no accuracy, or None: no local data and no Hub means nothing to measure."""
    if not cfg.accuracy.enabled:
        return "accuracy.enabled=false"
    if cfg.data_dir:
        return None
    offline = hub_unreachable()
    return f"no HARNESS_DATA_DIR (data_dir) and {offline}" if offline else None


def job_cells(cfg: DictConfig, machine: str, threads: int, backend_cfg: Any = None) -> list[Cell]:
    """The cells of this job for one backend configuration (the job's own unless given)."""
    backend_cfg = cfg.backend if backend_cfg is None else backend_cfg
    cells: list[Cell] = []
    if cfg.speed:
        for bs in batch_sizes(cfg):
            key = cell_id_speed(cfg, machine, bs, threads, backend_cfg)
            cells.append(Cell("speed", with_round(key, cfg.round), batch_size=bs, cell_key=key))
    if cfg.get("server") is not None and cfg.server.enabled:
        cells += server_cells(cfg, machine, threads, backend_cfg)
    if not accuracy_skipped(cfg):
        cells += [Cell("accuracy", cell_id_accuracy(cfg, machine, t, backend_cfg), task=t) for t in cfg.accuracy.tasks]
    return cells


def server_shapes(cfg: DictConfig, threads: int) -> list[tuple[int, int]]:
    """The deployment shapes (instances, threads each): the configured ones, else every power-of-two split
    of the thread budget (2 cores: 1x2, 2x1; 32: 1x32, 2x16, 4x8, ...)."""
    from harness.config import parse_shape

    if cfg.server.shapes:
        return [parse_shape("server.shapes", s) for s in cfg.server.shapes]
    shapes, k = [], 1
    while k <= threads:
        shapes.append((k, threads // k))
        k *= 2
    return shapes


def server_cells(cfg: DictConfig, machine: str, threads: int, backend_cfg: Any) -> list[Cell]:
    """One cell per deployment shape, batching policy and p99 budget: each a row of its own."""
    cells = []
    for k, t in server_shapes(cfg, threads):
        for policy in cfg.server.batching:
            for budget in cfg.server.budgets_ms:
                part = {"instances": k, "threads": t, "max_batch": int(policy["max_batch"]),
                        "max_wait_ms": float(policy["max_wait_ms"]), "budget_ms": float(budget)}  # fmt: skip
                key = {"machine": machine, "model": model_identity(cfg), "backend": backend_identity(backend_cfg),
                       "dataset": OmegaConf.to_container(cfg.dataset, resolve=True), **part,
                       "server": {k_: v for k_, v in OmegaConf.to_container(cfg.server, resolve=True).items()
                                  if k_ in ("point_s", "discard", "min_requests", "seed")}}  # fmt: skip
                cell_id = slug("server", cfg.model.name, cfg.dataset.name, f"{k}x{t}", f"b{part['max_batch']}",
                               f"p99-{budget:g}ms", backend_cfg.name, digest(key))  # fmt: skip
                cells.append(Cell("server", cell_id, batch_size=part["max_batch"], server=part))
    return cells


def configurations(cfg: DictConfig, hw: Any, threads: int) -> list[Any]:
    """The job's backend configuration, and beside it the variants its family says this machine needs
    measured too (e.g. `openvino [ov_precision=f32]` where OpenVINO would choose bf16 by itself)."""
    out = [cfg.backend]
    if cfg.backend.name not in backends.named():
        return out
    for knobs in backends.create(cfg.backend, hw, threads).companion_variants():
        companion = cfg.backend.copy()
        for knob, value in knobs.items():
            companion[knob] = value
        out.append(companion)
    return out


def batch_sizes(cfg: DictConfig) -> list[int]:
    sizes = cfg.batch_sizes if cfg.batch_sizes is not None else cfg.model.batch_sizes
    return list(sizes)


def is_baseline(backend_cfg: Any) -> bool:
    """torch-fp32 as registered: the configuration whose outputs are every other's fidelity reference."""
    return backend_cfg.name == results.BASELINE and not variant(backend_cfg)


def label_of(backend_cfg: Any) -> str:
    return results.label(backend_cfg.name, variant(backend_cfg))


def accuracy_name(cfg: DictConfig, task: str) -> str:
    """The eval set's name for a row (stsbenchmark, dbpedia-5k, stsb, NanoMSMARCO...)."""
    try:
        return accuracy_source(cfg, task)["name"]
    except ConfigError:
        return task
