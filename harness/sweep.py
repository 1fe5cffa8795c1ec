"""One Hydra job = one (model, dataset, backend, round) with its batch sizes and accuracy tasks.

config -> cells -> export (cached, own process) -> speed cells in the backend's worker for this round
(harness.workers: one process per model, backend configuration and round, kept across the round's
jobs) and accuracy in a process of its own -> result row -> store. A cell whose row exists is
skipped, so rerunning a killed sweep resumes it; a cell that fails, crashes or times out is
recorded with its reason and the sweep goes on. With `rounds=auto` a round after the second runs
only for the groups whose ranking is not settled yet (harness.rounds).
"""

from __future__ import annotations

import functools
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

from harness import backends, models, progress, results, rounds
from harness.cell import run_isolated
from harness.config import BACKENDS, ConfigError
from harness.exports import ExportCache, digest, file_lock, library_versions
from harness.hardware import detect
from harness.preflight import preflight
from harness.texts import load_texts
from harness.workers import POOL

log = logging.getLogger(__name__)


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


def _slug(*parts: Any) -> str:
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
    return _slug("speed", cfg.model.name, cfg.dataset.name, f"bs{batch_size}", backend_cfg.name, digest(key))


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
    return _slug("accuracy", cfg.model.name, task, backend["name"], digest(key))


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


def plan(cfg: DictConfig, machine: str, threads: int, backend_cfg: Any = None) -> list[Cell]:
    """The cells of this job for one backend configuration (the job's own unless given)."""
    backend_cfg = cfg.backend if backend_cfg is None else backend_cfg
    cells: list[Cell] = []
    if cfg.speed:
        for bs in batch_sizes(cfg):
            key = cell_id_speed(cfg, machine, bs, threads, backend_cfg)
            cells.append(Cell("speed", with_round(key, cfg.round), batch_size=bs, cell_key=key))
    if not accuracy_skipped(cfg):
        cells += [Cell("accuracy", cell_id_accuracy(cfg, machine, t, backend_cfg), task=t) for t in cfg.accuracy.tasks]
    return cells


def configurations(cfg: DictConfig, hw: Any, threads: int) -> list[Any]:
    """The job's backend configuration, and beside it the variants its family says this machine needs
    measured too (e.g. `openvino [ov_precision=f32]` where OpenVINO would choose bf16 by itself)."""
    out = [cfg.backend]
    if cfg.backend.name not in BACKENDS:
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
        # An export can need many times its model's size (the reranker stand-in's O4: 10.8 GB peak for a
        # 1.1 GB model), so idle workers holding other backends' models give their memory back first.
        POOL.close()
        status, _, reason = run_isolated("export", self.spec, timeout_s)
        return status, reason


def budget(cfg: DictConfig) -> tuple[Any, int]:
    """This machine and the thread budget every runtime of the job gets."""
    hw = detect()
    return hw, cfg.measure.threads or hw.cores_physical


def prepare(cfg: DictConfig, backend_cfg: Any = None) -> Job:
    """The job's shared parts for one backend configuration (the job's own unless given)."""
    backend_cfg = cfg.backend if backend_cfg is None else backend_cfg
    hw, threads = budget(cfg)
    source_dir = models.resolve(cfg.model.source, cfg.cache_dir)
    models.check_kind(source_dir, cfg.model.kind, cfg.model.name)
    cache = ExportCache(cfg.cache_dir)
    export_dir = cache.model_dir(cfg.model.name, source_dir)
    spec = {
        "model": model_identity(cfg),
        "backend": OmegaConf.to_container(backend_cfg, resolve=True),
        "dataset": OmegaConf.to_container(cfg.dataset, resolve=True),
        "measure": OmegaConf.to_container(cfg.measure, resolve=True),
        "threads": threads,
        "offline": models.is_local(cfg.model.source),
        "source_dir": str(source_dir),
        "export_dir": str(export_dir),
        "cache_dir": cfg.cache_dir,
        "data_dir": cfg.data_dir,
    }
    return Job(hw, threads, backends.create(backend_cfg, hw, threads), cache, export_dir, spec)


def run_job(cfg: DictConfig) -> list[dict[str, Any]]:
    """Run every pending cell of this job; return the rows written (skipped cells are not returned)."""
    preflight(cfg)
    hw, threads = budget(cfg)
    skipped = accuracy_skipped(cfg)
    if skipped and cfg.accuracy.enabled:
        _warn_once(f"accuracy skipped: {skipped}; set HARNESS_DATA_DIR (e.g. ../shared/data) to measure it")
    written: list[dict[str, Any]] = []
    for backend_cfg in configurations(cfg, hw, threads):
        written += _run_configuration(cfg, backend_cfg, hw, threads)
    return written


def _run_configuration(cfg: DictConfig, backend_cfg: Any, hw: Any, threads: int) -> list[dict[str, Any]]:
    machine = hw.fingerprint
    cells = plan(cfg, machine, threads, backend_cfg)
    pending = [c for c in cells if not results.is_done(cfg.results_dir, cfg.run, c.cell_id)]
    log.info("%s / %s / %s: %d cells, %d to run", cfg.model.name, cfg.dataset.name, label_of(backend_cfg),
             len(cells), len(pending))  # fmt: skip
    progress.cells_skipped(len(cells) - len(pending))
    if not pending:
        return []
    common = {
        "run": cfg.run,
        "model": cfg.model.name,
        "model_kind": cfg.model.kind,
        "model_source": cfg.model.source,
        "backend": backend_cfg.name,
        "variant": variant(backend_cfg),
        "threads": threads,
        "hardware": hw.to_dict(),
        "machine": machine,
        "versions": library_versions(),
        **_row_facts(cfg.model.source, cfg.model.get("weights")),
    }
    written: list[dict[str, Any]] = []

    def record(cell: Cell, status: str, reason: str | None, fields: dict[str, Any] | None, seconds: float,
               kind: str | None = None) -> None:  # fmt: skip
        """Write one cell's row: identity + outcome + measured fields."""
        row = results.new_row(
            **common,
            cell_id=cell.cell_id,
            cell_key=cell.cell_key or cell.cell_id,
            round=cfg.round if cell.kind == "speed" else None,
            kind=kind or cell.kind,
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
        progress.cell_done(row)
        log.info("%s %s: %s%s", row["kind"], cell.cell_id, status, f" ({reason})" if reason else "")

    decisions = {c.cell_id: round_decision(cfg, c, machine, threads) for c in pending if c.kind == "speed"}
    for cell in [c for c in pending if decisions.get(c.cell_id) and decisions[c.cell_id].skip]:
        why = decisions[cell.cell_id].why
        record(cell, "ok", why, {"round_reason": why}, 0.0, kind=results.ROUND_KIND)
        pending.remove(cell)
    if not pending:
        return written

    job = prepare(cfg, backend_cfg)
    reason = job.backend.unsupported_reason()
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

    speed_cells = [c for c in pending if c.kind == "speed"]
    if speed_cells:
        texts = dataset_texts(cfg)
        key = f"{digest([job.spec['model'], backend_identity(backend_cfg), threads, str(job.export_dir)])}-r{cfg.round}"
        reference = _fidelity_reference(cfg, machine, threads)
        # The time breakdown (tokenize / forward / rest) is where the time goes, not how fast: it is the
        # same in every round, so the first round measures it and the pooled row keeps that one.
        measure_spec = {**job.spec["measure"], "breakdown": job.spec["measure"]["breakdown"] and cfg.round == 0}
        for cell in speed_cells:
            spec = {**job.spec, "batch_size": cell.batch_size, "texts": texts, "fidelity_ref": str(reference),
                    "measure": measure_spec,
                    "is_reference": backend_cfg.name == results.BASELINE and not variant(backend_cfg)}  # fmt: skip
            start = time.monotonic()
            status, out, reason = POOL.run(key, cfg.round, threads, "speed", spec, cfg.measure.cell_timeout_s,
                                           what=f"{cfg.model.name} {label_of(backend_cfg)}")  # fmt: skip
            decision = decisions[cell.cell_id]
            out = {**(out or {}), "round_reason": decision.why if decision else None}
            record(cell, status, reason, out, time.monotonic() - start)
    accuracy_cells = [c for c in pending if c.kind == "accuracy"]
    no_accuracy = models.accuracy_unsupported_reason(cfg.model)
    if accuracy_cells and no_accuracy:  # e.g. a stand-in with random weights: speed only, never a number
        for cell in accuracy_cells:
            record(cell, "unsupported", no_accuracy, None, 0.0)
    elif accuracy_cells:
        start = time.monotonic()
        outcomes = _run_accuracy(cfg, accuracy_cells, job.spec, machine, backend_cfg)
        seconds = (time.monotonic() - start) / len(accuracy_cells)
        for cell in accuracy_cells:
            record(cell, *outcomes[cell.cell_id], seconds)
    return written


def round_decision(cfg: DictConfig, cell: Cell, machine: str, threads: int) -> rounds.Decision | None:
    """With rounds=auto, whether this round of the cell's group is needed (None: it always is)."""
    prefix = _slug("speed", cfg.model.name, cfg.dataset.name, f"bs{cell.batch_size}") + "-"
    match = {"machine": machine, "threads": threads, "model_source": cfg.model.source}
    return rounds.decide(cfg, prefix, match, cfg.measure.settle_tolerance, results.BASELINE)


@functools.cache
def _warn_once(message: str) -> None:
    """A warning every job of a sweep would repeat, said once per sweep process."""
    log.warning(message)


@functools.lru_cache(maxsize=32)
def _row_facts(source: str, weights: str | None) -> dict[str, Any]:
    """The model's size and weights kind for its rows (read once per model per sweep process)."""
    return models.row_facts({"source": source, "weights": weights})


def label_of(backend_cfg: Any) -> str:
    return results.label(backend_cfg.name, variant(backend_cfg))


@functools.lru_cache(maxsize=32)
def _texts(dataset_json: str, data_dir: str | None) -> tuple[str, ...]:
    return tuple(load_texts(OmegaConf.create(json.loads(dataset_json)), data_dir))


def dataset_texts(cfg: DictConfig) -> list[str]:
    """The job's texts, read once per sweep process (a worker is handed them and never reads a dataset)."""
    dataset = json.dumps(OmegaConf.to_container(cfg.dataset, resolve=True), sort_keys=True)
    return list(_texts(dataset, cfg.data_dir))


def _fidelity_reference(cfg: DictConfig, machine: str, threads: int) -> Path:
    """Where torch-fp32's outputs on this job's timed texts are kept (label-free fidelity of the others)."""
    key = {"machine": machine, "model": model_identity(cfg),
           "dataset": OmegaConf.to_container(cfg.dataset, resolve=True)}  # fmt: skip
    return (
        Path(cfg.results_dir) / cfg.run / ".reference" / f"timed-{cfg.model.name}-{cfg.dataset.name}-{digest(key)}.npy"
    )


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
    cfg: DictConfig, cells: list[Cell], base_spec: dict[str, Any], machine: str, backend_cfg: Any
) -> dict[str, tuple[str, str | None, dict[str, Any] | None]]:
    """All accuracy tasks of one backend in one process. Fidelity needs torch-fp32's outputs:
    when they are missing, compute them first (once per run, under a lock)."""
    tasks = [c.task for c in cells]
    is_ref = backend_cfg.name == results.BASELINE and not variant(backend_cfg)
    spec = _accuracy_spec(cfg, base_spec, machine, tasks, backend_cfg, is_ref)
    no_reference: dict[str, str] = {}  # task -> why torch-fp32's outputs are missing
    if not is_ref:
        missing = [u["task"] for u in spec["units"] if not Path(u["ref_path"]).exists()]
        if missing:
            with file_lock(Path(cfg.results_dir) / cfg.run / ".reference" / "reference.lock"):
                missing = [u["task"] for u in spec["units"] if not Path(u["ref_path"]).exists()]
                if missing:
                    log.info("computing torch-fp32 reference outputs for %s first", ", ".join(missing))
                    ref_cfg = OmegaConf.structured(BACKENDS[results.BASELINE])
                    ref_spec = _accuracy_spec(cfg, base_spec, machine, missing, ref_cfg, True)
                    ref_status, ref_out, ref_reason = run_isolated("accuracy", ref_spec, cfg.measure.cell_timeout_s)
                    for task in missing:
                        task_out = (ref_out or {}).get("tasks", {}).get(task, {})
                        why = ref_reason if ref_status != "ok" else task_out.get("error", "wrote no outputs")
                        no_reference[task] = f"no fidelity: the torch-fp32 reference pass {ref_status}: {why}"
    status, out, reason = run_isolated("accuracy", spec, cfg.measure.cell_timeout_s)
    outcomes = {}
    for cell in cells:
        if status != "ok":
            outcomes[cell.cell_id] = (status, reason, None)
            continue
        task_out = out["tasks"][cell.task]
        if "error" in task_out:
            outcomes[cell.cell_id] = ("failed", task_out["error"], None)
            continue
        fields = {**task_out, "peak_memory_mb": out["peak_memory_mb"], "warnings": out["warnings"]}
        why = no_reference.get(cell.task)
        if why:
            fields["fidelity_source"] = why
        outcomes[cell.cell_id] = ("ok", why, fields)
    return outcomes
