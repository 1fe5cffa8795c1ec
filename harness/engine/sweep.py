"""One Hydra job = one (model, dataset, backend, round) with its batch sizes and accuracy tasks.

config -> cells -> export (cached, own process) -> speed cells in the backend's worker for this round
(harness.engine.workers: one process per model, backend configuration and round, kept across the round's
jobs) and accuracy in a process of its own -> result row -> store. A cell whose row exists is
skipped, so rerunning a killed sweep resumes it; a cell that fails, crashes or times out is
recorded with its reason and the sweep goes on. With `rounds=auto` a round after the second runs
only for the groups whose ranking is not settled yet (harness.engine.rounds).
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from omegaconf import DictConfig, OmegaConf

from harness import backends
from harness.backends.cache import ExportCache, versions
from harness.config import MeasureConfig
from harness.core.files import digest
from harness.core.hardware import detect
from harness.core.usage import ConfigError
from harness.engine import identity, rounds, server
from harness.engine.accuracy import run_accuracy
from harness.engine.cells import (
    Cell,
    accuracy_name,
    accuracy_skipped,
    backend_identity,
    batch_sizes,
    configurations,
    is_baseline,
    job_cells,
    label_of,
    model_identity,
    slug,
    variant,
)
from harness.engine.isolation import run_isolated
from harness.engine.preflight import preflight
from harness.engine.specs import AgreementSpec, JobSpec, ModelSpec, SpeedSpec
from harness.engine.workers import POOL
from harness.evaluation.agreement import MIN_RELIABLE
from harness.inputs import models
from harness.inputs.texts import agreement_texts, load_texts
from harness.store import results

log = logging.getLogger(__name__)


@dataclass
class Job:
    """Everything a job's cells share: resolved once, in the parent process."""

    hw: Any
    threads: int
    backend: Any
    cache: ExportCache
    export_dir: Path
    spec: JobSpec  # what every isolated unit of the job gets

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
    return hw, cfg.measure.threads or hw.cpu_budget


def prepare(cfg: DictConfig, backend_cfg: Any = None) -> Job:
    """The job's shared parts for one backend configuration (the job's own unless given)."""
    backend_cfg = cfg.backend if backend_cfg is None else backend_cfg
    hw, threads = budget(cfg)
    source_dir = models.resolve(cfg.model.source, cfg.cache_dir)
    models.check_kind(source_dir, cfg.model.kind, cfg.model.name)
    cache = ExportCache(cfg.cache_dir)
    export_dir = cache.model_dir(cfg.model.name, source_dir)
    spec = JobSpec(
        model=ModelSpec(name=cfg.model.name, kind=cfg.model.kind, source=cfg.model.source,
                        trust_remote_code=cfg.model.trust_remote_code, max_seq_length=cfg.model.max_seq_length),
        backend=OmegaConf.to_container(backend_cfg, resolve=True),
        dataset=OmegaConf.to_container(cfg.dataset, resolve=True),
        measure=MeasureConfig(**OmegaConf.to_container(cfg.measure, resolve=True)),
        threads=threads,
        offline=models.is_local(cfg.model.source),
        source_dir=str(source_dir),
        export_dir=str(export_dir),
        cache_dir=cfg.cache_dir,
        data_dir=cfg.data_dir,
    )  # fmt: skip
    return Job(hw, threads, backends.create(backend_cfg, hw, threads), cache, export_dir, spec)


class Progress(Protocol):
    """What a sweep's display is told (the CLI's bar): cells found done, and each row as it is written."""

    def cells_skipped(self, ids: list[str]) -> None: ...

    def cell_done(self, row: dict[str, Any]) -> None: ...


class Silent:
    """No display: a job run from code or by a launcher elsewhere."""

    def cells_skipped(self, ids: list[str]) -> None:
        return None

    def cell_done(self, row: dict[str, Any]) -> None:
        return None


def run_job(cfg: DictConfig, progress: Progress | None = None) -> list[dict[str, Any]]:
    """Run every pending cell of this job; return the rows written (skipped cells are not returned).
    `progress` hears of every cell as it is found done or written."""
    progress = progress or Silent()
    hw, threads = budget(cfg)
    try:
        preflight(cfg)
        configs = configurations(cfg, hw, threads)
    except Exception as exc:  # noqa: BLE001 - a job that cannot start (a model or dataset that cannot be
        return _failed(cfg, cfg.backend, hw, threads, progress, exc)  # loaded): its cells say why, others go on
    skipped = accuracy_skipped(cfg)
    if skipped and cfg.accuracy.enabled:
        _warn_once(f"accuracy skipped: {skipped}; set HARNESS_DATA_DIR (e.g. ../shared/data) to measure it")
    written: list[dict[str, Any]] = []
    for backend_cfg in configs:
        try:
            written += _run_configuration(cfg, backend_cfg, hw, threads, progress)
        except Exception as exc:  # noqa: BLE001 - e.g. no int8 config for this CPU: rows with the reason
            written += _failed(cfg, backend_cfg, hw, threads, progress, exc)
    return written


STORE_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)  # no row can be written: nothing to record, stop


def _failed(cfg: DictConfig, backend_cfg: Any, hw: Any, threads: int, progress: Progress,
            exc: Exception) -> list[dict[str, Any]]:  # fmt: skip
    """Every pending cell of a configuration that could not run, as a `failed` row with the reason."""
    if isinstance(exc, OSError) and exc.errno in STORE_FULL:
        raise exc
    reason = str(exc) if isinstance(exc, ConfigError) else f"{type(exc).__name__}: {exc}"
    log.error("%s / %s / %s: %s", cfg.model.name, cfg.dataset.name, label_of(backend_cfg), reason)
    log.debug("job failed", exc_info=exc)
    cells = job_cells(cfg, hw.fingerprint, threads, backend_cfg)
    return Recorder(cfg, backend_cfg, hw, threads, progress).all(_pending(cfg, backend_cfg, cells), "failed", reason)


class Recorder:
    """Writes one configuration's rows: what every row of it shares, and each cell's outcome."""

    def __init__(self, cfg: DictConfig, backend_cfg: Any, hw: Any, threads: int, progress: Progress):
        self.cfg, self.progress = cfg, progress
        self.written: list[dict[str, Any]] = []
        self.common = {
            "run": cfg.run,
            "model": cfg.model.name,
            "model_kind": cfg.model.kind,
            "model_source": cfg.model.source,
            "backend": backend_cfg.name,
            "variant": variant(backend_cfg),
            "threads": threads,
            "hardware": hw.to_dict(),
            "machine": hw.fingerprint,
            "versions": versions(),
            **_row_facts(cfg.model.source, cfg.model.get("weights")),
            "model_key": identity.model_key(cfg),
            "price_per_hour": cfg.get("price_per_hour"),
        }
        self._speed_identity: dict[str, Any] | None = None

    def identity(self, cell: Cell) -> dict[str, Any]:
        """What the cell's texts are (speed: the job's texts; accuracy: the evaluation set)."""
        if cell.kind not in ("speed", "server"):
            return identity.accuracy_identity(self.cfg, cell.task)
        if self._speed_identity is None:
            try:
                texts: list[str] | None = dataset_texts(self.cfg)
            except Exception:  # noqa: BLE001 - texts that cannot be read: named by their config alone
                texts = None
            self._speed_identity = {"dataset_key": identity.dataset_key(self.cfg, texts),
                                    "dataset_source": identity.dataset_source(self.cfg)}  # fmt: skip
        return self._speed_identity

    def __call__(self, cell: Cell, status: str, reason: str | None, fields: dict[str, Any] | None, seconds: float,
                 kind: str | None = None) -> None:  # fmt: skip
        """Write one cell's row: identity + outcome + measured fields."""
        speed = cell.kind in ("speed", "server")  # the job's texts, this round
        row = results.new_row(
            **{k: (fields or {}).get(k, v) for k, v in self.common.items()},  # a server cell's threads: its shape's
            **self.identity(cell),
            cell_id=cell.cell_id,
            cell_key=cell.cell_key or cell.cell_id,
            round=self.cfg.round if speed else None,
            kind=kind or cell.kind,
            dataset=self.cfg.dataset.name if speed else accuracy_name(self.cfg, cell.task),
            batch_size=cell.batch_size,
            status=status,
            reason=reason,
            timestamp=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            duration_s=round(seconds, 2),
            **{k: v for k, v in (fields or {}).items() if k not in self.common},
        )
        results.write_row(self.cfg.results_dir, row)
        self.written.append(row)
        self.progress.cell_done(row)
        log.info("%s %s: %s%s", row["kind"], cell.cell_id, status, f" ({reason})" if reason else "")

    def all(self, cells: list[Cell], status: str, reason: str | None, seconds: float = 0.0) -> list[dict[str, Any]]:
        for cell in cells:
            self(cell, status, reason, None, seconds)
        return self.written


def _run_configuration(cfg: DictConfig, backend_cfg: Any, hw: Any, threads: int,
                       progress: Progress) -> list[dict[str, Any]]:  # fmt: skip
    """One backend configuration's pending cells: settled later rounds are skipped (rounds=auto), an
    unsupported backend or a failed export is recorded for every cell, then speed and accuracy."""
    cells = job_cells(cfg, hw.fingerprint, threads, backend_cfg)
    pending = _pending(cfg, backend_cfg, cells)
    progress.cells_skipped([c.cell_id for c in cells if c.cell_id not in {p.cell_id for p in pending}])
    if not pending:
        return []
    record = Recorder(cfg, backend_cfg, hw, threads, progress)
    decisions = {c.cell_id: round_decision(cfg, c, hw.fingerprint, threads, label_of(backend_cfg))
                 for c in pending if c.kind == "speed"}  # fmt: skip
    for cell in [c for c in pending if decisions.get(c.cell_id) and decisions[c.cell_id].skip]:
        why = decisions[cell.cell_id].why
        record(cell, "ok", why, {"round_reason": why}, 0.0, kind=results.ROUND_KIND)
        pending.remove(cell)
    if not pending:
        return record.written
    job = prepare(cfg, backend_cfg)
    reason = job.backend.unsupported_reason()
    if reason:
        return record.all(pending, "unsupported", reason)
    start = time.monotonic()
    status, reason = job.export(cfg.measure.export_timeout_s)
    if status != "ok":
        return record.all(pending, status, f"export: {reason}", time.monotonic() - start)
    _speed_cells(cfg, job, backend_cfg, [c for c in pending if c.kind == "speed"], decisions, record)
    _accuracy_cells(cfg, job, backend_cfg, [c for c in pending if c.kind == "accuracy"], record)
    if any(c.kind == "server" for c in pending):
        server.run_cells(cfg, job, backend_cfg, [c for c in pending if c.kind == "server"], record, dataset_texts(cfg))
    return record.written


def _pending(cfg: DictConfig, backend_cfg: Any, cells: list[Cell]) -> list[Cell]:
    """The cells to measure: new ones, and finished ones worth measuring again (a timeout, a killed process,
    a damaged row, other library versions; a deterministic failure with `retry_failed`), said once."""
    current = versions()
    why = {c.cell_id: results.why_run(cfg.results_dir, cfg.run, c.cell_id, current, cfg.retry_failed) for c in cells}
    pending = [c for c in cells if why[c.cell_id] is not None]
    again = {c.cell_id: why[c.cell_id] for c in pending if why[c.cell_id] != "new"}
    if again:
        log.warning("%s %s / %s: measuring %d cell(s) again: %s", cfg.model.name, cfg.dataset.name,
                    label_of(backend_cfg), len(again), "; ".join(sorted(set(again.values())))[:300])  # fmt: skip
        for cell_id, reason in again.items():
            if reason == "library versions changed":
                results.supersede(cfg.results_dir, cfg.run, cell_id)
    log.info("%s / %s / %s: %d cells, %d to run", cfg.model.name, cfg.dataset.name, label_of(backend_cfg),
             len(cells), len(pending))  # fmt: skip
    return pending


def _speed_cells(cfg: DictConfig, job: Job, backend_cfg: Any, cells: list[Cell], decisions: dict[str, Any],
                 record: Recorder) -> None:  # fmt: skip
    """Each speed cell in this configuration's worker for the round (started once, reused across jobs)."""
    if not cells:
        return
    texts = dataset_texts(cfg)
    model = dataclasses.asdict(job.spec.model)
    key = f"{digest([model, backend_identity(backend_cfg), job.threads, str(job.export_dir)])}-r{cfg.round}"
    reference = _fidelity_reference(cfg, job.machine, job.threads)
    # The time breakdown (tokenize / forward / rest) is where the time goes, not how fast: it is the
    # same in every round, so the first round measures it and the pooled row keeps that one.
    breakdown = cfg.measure.breakdown and cfg.round == 0
    is_reference = is_baseline(backend_cfg)
    # round 0's label-free task: measured in the dataset's last cell (the store gives every batch size's row it)
    agreement = _agreement(cfg, job.machine, texts) if cfg.round == 0 and cfg.measure.agreement_texts else None
    for cell in cells:
        last = agreement if cell is cells[-1] else None
        if last is not None and not is_reference:
            last = dataclasses.replace(last, slower_than=_slower_than(cfg, job, backend_cfg, cell))
        spec = SpeedSpec(job=job.spec, batch_size=cell.batch_size, texts=tuple(texts), fidelity_ref=str(reference),
                         is_reference=is_reference, breakdown=breakdown, agreement=last)  # fmt: skip
        start = time.monotonic()
        status, out, reason = POOL.run(key, cfg.round, job.threads, "speed", spec, cfg.measure.cell_timeout_s,
                                       what=f"{cfg.model.name} {label_of(backend_cfg)}")  # fmt: skip
        decision = decisions[cell.cell_id]
        out = {**(out or {}), "round_reason": decision.why if decision else None}
        record(cell, status, reason, out, time.monotonic() - start)


def _accuracy_cells(cfg: DictConfig, job: Job, backend_cfg: Any, cells: list[Cell], record: Recorder) -> None:
    """Every accuracy task of the configuration in one process; a model that cannot be scored (a stand-in with
    random weights: speed only) is recorded as unsupported, never a number."""
    if not cells:
        return
    no_accuracy = models.accuracy_unsupported_reason(cfg.model)
    if no_accuracy:
        record.all(cells, "unsupported", no_accuracy)
        return
    start = time.monotonic()
    outcomes = run_accuracy(cfg, cells, job.spec, job.machine, backend_cfg)
    seconds = (time.monotonic() - start) / len(cells)
    for cell in cells:
        record(cell, *outcomes[cell.cell_id], seconds)


def _slower_than(cfg: DictConfig, job: Job, backend_cfg: Any, cell: Cell) -> dict[str, float] | None:
    """rounds.decisively_slower for the dataset's last round-0 cell of this configuration."""
    groups = {bs: _group_prefix(cfg, bs) for bs in batch_sizes(cfg)}
    match = _group_match(cfg, job.machine, job.threads)
    return rounds.decisively_slower(Path(cfg.results_dir) / cfg.run, groups, match, label_of(backend_cfg),
                                    int(cell.batch_size or 0))  # fmt: skip


def _group_prefix(cfg: DictConfig, batch_size: Any) -> str:
    """The cell-id prefix of a (model, dataset, batch size) group's speed cells."""
    return slug("speed", cfg.model.name, cfg.dataset.name, f"bs{batch_size}") + "-"


def _group_match(cfg: DictConfig, machine: str, threads: int) -> dict[str, Any]:
    """The values a group's rows must have besides their cell-id prefix."""
    return {"machine": machine, "threads": threads, "model_source": cfg.model.source, "model": cfg.model.name}


def round_decision(cfg: DictConfig, cell: Cell, machine: str, threads: int, label: str) -> rounds.Decision | None:
    """With rounds=auto, whether this round of the cell's configuration is needed (None: it always is)."""
    prefixes = (_group_prefix(cfg, cell.batch_size), slug("speed", cfg.model.name) + "-")
    match = _group_match(cfg, machine, threads)
    return rounds.decide(cfg, prefixes, match, results.BASELINE, label, int(cell.batch_size or 0))


@functools.cache
def _warn_once(message: str) -> None:
    """A warning every job of a sweep would repeat, said once per sweep process."""
    log.warning(message)


@functools.lru_cache(maxsize=32)
def _row_facts(source: str, weights: str | None) -> dict[str, Any]:
    """The model's size and weights kind for its rows (read once per model per sweep process)."""
    return models.row_facts({"source": source, "weights": weights})


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


def _agreement(cfg: DictConfig, machine: str, texts: list[str]) -> AgreementSpec:
    """Round 0's label-free task metric: its texts, and where torch-fp32's outputs on them are kept."""
    chosen, source = agreement_texts(cfg.dataset, texts, cfg.measure.agreement_texts, MIN_RELIABLE)
    size = cfg.accuracy.batch_size
    key = {"machine": machine, "model": model_identity(cfg), "texts": digest(chosen), "batch_size": size}
    name = f"agreement-{cfg.model.name}-{cfg.dataset.name}-{digest(key)}.npy"
    return AgreementSpec(tuple(chosen), source, str(Path(cfg.results_dir) / cfg.run / ".reference" / name), size)
