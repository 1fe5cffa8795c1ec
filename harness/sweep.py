"""One Hydra job = one (model, dataset, backend) with its batch sizes and accuracy tasks.

config -> cells -> export (cached, own process) -> each cell (own process) -> result row -> store.
A cell whose row exists is skipped, so rerunning a killed sweep resumes it; a cell that fails,
crashes or times out is recorded with its reason and the sweep goes on.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import socket
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from omegaconf import DictConfig, OmegaConf

from harness import backends, models, results
from harness.cell import run_isolated
from harness.config import BACKENDS, FAMILY_KNOBS, RUNTIME_KNOBS, SPEED_ONLY_KNOBS, ConfigError
from harness.exports import ExportCache, file_lock, library_versions
from harness.hardware import detect
from harness.preflight import preflight

log = logging.getLogger(__name__)


def own_knobs(family: str) -> tuple[str, ...]:
    return FAMILY_KNOBS.get(family, RUNTIME_KNOBS)


def backend_identity(backend_cfg: Any) -> dict[str, Any]:
    """The backend's config without the runtime knobs its family does not have: what names its cells."""
    d = OmegaConf.to_container(backend_cfg, resolve=True) if OmegaConf.is_config(backend_cfg) else dict(backend_cfg)
    own = own_knobs(d["family"])
    return {k: v for k, v in d.items() if k not in RUNTIME_KNOBS or k in own}


def variant(backend_cfg: Any) -> str:
    """The runtime knobs of its family that differ from this backend's defaults ("" for the backend as
    registered), so cells of one backend swept over knobs stay apart in ratios, reports and comparisons."""
    default = BACKENDS.get(backend_cfg.name)
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


def _digest(value: Any) -> str:
    return hashlib.sha1(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:10]


def _slug(*parts: Any) -> str:
    return "-".join(str(p).replace("/", "_") for p in parts if p is not None)


def cell_id_speed(cfg: DictConfig, machine: str, batch_size: int, threads: int) -> str:
    key = {
        "machine": machine,
        "model": OmegaConf.to_container(cfg.model, resolve=True),
        "dataset": OmegaConf.to_container(cfg.dataset, resolve=True),
        "backend": backend_identity(cfg.backend),
        "batch_size": batch_size,
        "threads": threads,
    }
    return _slug("speed", cfg.model.name, cfg.dataset.name, f"bs{batch_size}", cfg.backend.name, _digest(key))


def with_round(cell_key: str, round_: int) -> str:
    """Each interleaved round of a cell is its own row; the loader pools rows sharing a cell_key."""
    return cell_key if round_ == 0 else f"{cell_key}-r{round_}"


def cell_id_accuracy(cfg: DictConfig, machine: str, task: str, backend_cfg: Any) -> str:
    backend = {k: v for k, v in backend_identity(backend_cfg).items() if k not in SPEED_ONLY_KNOBS}
    key = {
        "machine": machine,
        "model": OmegaConf.to_container(cfg.model, resolve=True),
        "backend": backend,
        "task": task,
        "source": accuracy_source(cfg, task),
    }
    return _slug("accuracy", cfg.model.name, task, backend["name"], _digest(key))


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


def plan(cfg: DictConfig, machine: str, threads: int) -> list[Cell]:
    cells: list[Cell] = []
    if cfg.speed:
        cells += [
            Cell("speed", with_round(cell_id_speed(cfg, machine, bs, threads), cfg.round), batch_size=bs,
                 cell_key=cell_id_speed(cfg, machine, bs, threads))
            for bs in batch_sizes(cfg)
        ]  # fmt: skip
    skipped = accuracy_skipped(cfg)
    if skipped and cfg.accuracy.enabled:
        log.warning("accuracy skipped: %s; set HARNESS_DATA_DIR (e.g. ../shared/data) to measure it", skipped)
    if not skipped:
        cells += [Cell("accuracy", cell_id_accuracy(cfg, machine, t, cfg.backend), task=t) for t in cfg.accuracy.tasks]
    return cells


def batch_sizes(cfg: DictConfig) -> list[int]:
    sizes = cfg.batch_sizes if cfg.batch_sizes is not None else cfg.model.batch_sizes
    return list(sizes)


@dataclass
class Job:
    """Everything a job's cells share: resolved once, in the parent process."""

    hw: Any
    threads: int
    backend: Any
    cache: ExportCache
    export_dir: Path
    spec: dict[str, Any]  # the JSON-able base of every isolated unit's spec

    @property
    def machine(self) -> str:
        return self.hw.fingerprint

    def export(self, timeout_s: float) -> tuple[str, str | None]:
        """Export into the cache unless already there (own process). Returns (status, reason)."""
        if not self.backend.needs_export(self.cache, self.export_dir):
            return "ok", None
        status, _, reason = run_isolated("export", self.spec, timeout_s)
        return status, reason


def budget(cfg: DictConfig) -> tuple[Any, int]:
    """This machine and the thread budget every runtime of the job gets."""
    hw = detect()
    return hw, cfg.measure.threads or hw.cores_physical


def prepare(cfg: DictConfig) -> Job:
    hw, threads = budget(cfg)
    source_dir = models.resolve(cfg.model.source)
    models.check_kind(source_dir, cfg.model.kind, cfg.model.name)
    cache = ExportCache(cfg.cache_dir)
    export_dir = cache.model_dir(cfg.model.name, source_dir)
    spec = {
        "model": OmegaConf.to_container(cfg.model, resolve=True),
        "backend": OmegaConf.to_container(cfg.backend, resolve=True),
        "dataset": OmegaConf.to_container(cfg.dataset, resolve=True),
        "measure": OmegaConf.to_container(cfg.measure, resolve=True),
        "threads": threads,
        "offline": models.is_local(cfg.model.source),
        "source_dir": str(source_dir),
        "export_dir": str(export_dir),
        "cache_dir": cfg.cache_dir,
        "data_dir": cfg.data_dir,
    }
    return Job(hw, threads, backends.create(cfg.backend, hw, threads), cache, export_dir, spec)


def run_job(cfg: DictConfig) -> list[dict[str, Any]]:
    """Run every pending cell of this job; return the rows written (skipped cells are not returned)."""
    preflight(cfg)
    hw, threads = budget(cfg)
    cells = plan(cfg, hw.fingerprint, threads)
    pending = [c for c in cells if not results.is_done(cfg.results_dir, cfg.run, c.cell_id)]
    log.info("%s / %s / %s: %d cells, %d to run", cfg.model.name, cfg.dataset.name, cfg.backend.name,
             len(cells), len(pending))  # fmt: skip
    if not pending:
        return []
    job = prepare(cfg)
    machine, backend, base_spec = job.machine, job.backend, job.spec
    common = {
        "run": cfg.run,
        "model": cfg.model.name,
        "model_kind": cfg.model.kind,
        "model_source": cfg.model.source,
        "backend": cfg.backend.name,
        "variant": variant(cfg.backend),
        "threads": threads,
        "hardware": hw.to_dict(),
        "machine": machine,
        "versions": library_versions(),
    }
    written = []

    def record(cell: Cell, status: str, reason: str | None, fields: dict[str, Any] | None, seconds: float) -> None:
        """Write one cell's row: identity + outcome + measured fields."""
        row = results.new_row(
            **common,
            cell_id=cell.cell_id,
            cell_key=cell.cell_key or cell.cell_id,
            round=cfg.round if cell.kind == "speed" else None,
            kind=cell.kind,
            dataset=cfg.dataset.name if cell.kind == "speed" else accuracy_name(cfg, cell.task),
            batch_size=cell.batch_size,
            status=status,
            reason=reason,
            timestamp=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            duration_s=round(seconds, 2),
            **(fields or {}),
        )
        results.write_row(cfg.results_dir, row)
        written.append(row)
        log.info("%s %s: %s%s", cell.kind, cell.cell_id, status, f" ({reason})" if reason else "")

    reason = backend.unsupported_reason()
    if reason:
        for cell in pending:
            record(cell, "unsupported", reason, None, 0.0)
        return written

    start = time.monotonic()
    status, reason = job.export(cfg.measure.export_timeout_s)
    if status != "ok":
        for cell in pending:
            record(cell, status, f"export: {reason}", None, time.monotonic() - start)
        return written

    for cell in [c for c in pending if c.kind == "speed"]:
        start = time.monotonic()
        status, out, reason = run_isolated(
            "speed", {**base_spec, "batch_size": cell.batch_size}, cfg.measure.cell_timeout_s
        )
        record(cell, status, reason, out, time.monotonic() - start)
    accuracy_cells = [c for c in pending if c.kind == "accuracy"]
    if accuracy_cells:
        start = time.monotonic()
        outcomes = _run_accuracy(cfg, accuracy_cells, base_spec, machine)
        seconds = (time.monotonic() - start) / len(accuracy_cells)
        for cell in accuracy_cells:
            record(cell, *outcomes[cell.cell_id], seconds)
    return written


def accuracy_name(cfg: DictConfig, task: str) -> str:
    """The eval set's name for a row (stsbenchmark, dbpedia-5k, stsb, NanoMSMARCO...)."""
    try:
        return accuracy_source(cfg, task)["name"]
    except ConfigError:
        return task


def _accuracy_spec(cfg: DictConfig, base_spec: dict[str, Any], machine: str, tasks: list[str], backend_cfg: Any,
                   is_reference: bool) -> dict[str, Any]:  # fmt: skip
    units = []
    for task in tasks:
        source = accuracy_source(cfg, task)
        ref_id = cell_id_accuracy(cfg, machine, task, OmegaConf.structured(BACKENDS[results.BASELINE]))
        units.append({
            "task": task,
            "source": {k: v for k, v in source.items() if k != "name"},
            "ref_path": str(Path(cfg.results_dir) / cfg.run / ".reference" / f"{ref_id}.npy"),
        })  # fmt: skip
    return {**base_spec, "backend": OmegaConf.to_container(backend_cfg, resolve=True), "units": units,
            "batch_size": cfg.accuracy.batch_size, "is_reference": is_reference}  # fmt: skip


def _run_accuracy(
    cfg: DictConfig, cells: list[Cell], base_spec: dict[str, Any], machine: str
) -> dict[str, tuple[str, str | None, dict[str, Any] | None]]:
    """All accuracy tasks of one backend in one process. Fidelity needs torch-fp32's outputs:
    when they are missing, compute them first (once per run, under a lock)."""
    tasks = [c.task for c in cells]
    is_ref = cfg.backend.name == results.BASELINE
    spec = _accuracy_spec(cfg, base_spec, machine, tasks, cfg.backend, is_ref)
    if not is_ref:
        missing = [u["task"] for u in spec["units"] if not Path(u["ref_path"]).exists()]
        if missing:
            with file_lock(Path(cfg.results_dir) / cfg.run / ".reference" / "reference.lock"):
                missing = [u["task"] for u in spec["units"] if not Path(u["ref_path"]).exists()]
                if missing:
                    log.info("computing torch-fp32 reference outputs for %s first", ", ".join(missing))
                    ref_cfg = OmegaConf.structured(BACKENDS[results.BASELINE])
                    ref_spec = _accuracy_spec(cfg, base_spec, machine, missing, ref_cfg, True)
                    run_isolated("accuracy", ref_spec, cfg.measure.cell_timeout_s)
    status, out, reason = run_isolated("accuracy", spec, cfg.measure.cell_timeout_s)
    outcomes = {}
    for cell in cells:
        if status != "ok":
            outcomes[cell.cell_id] = (status, reason, None)
            continue
        task_out = out["tasks"][cell.task]
        if "error" in task_out:
            outcomes[cell.cell_id] = ("failed", task_out["error"], None)
        else:
            outcomes[cell.cell_id] = ("ok", None, {**task_out, "peak_memory_mb": out["peak_memory_mb"]})
    return outcomes
