"""A backend's accuracy cells: every task of one backend in one spawned process, with torch-fp32's outputs
on the same evaluation sets as the reference for fidelity (computed first, once per run, under a lock)."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from harness import backends
from harness.core.files import file_lock
from harness.engine.cells import Cell, accuracy_source, cell_id_accuracy, is_baseline
from harness.engine.isolation import run_isolated
from harness.engine.specs import AccuracySpec, AccuracyTask, JobSpec
from harness.store import results

log = logging.getLogger(__name__)


def _accuracy_spec(cfg: DictConfig, job: JobSpec, machine: str, tasks: list[str], backend_cfg: Any,
                   is_reference: bool) -> AccuracySpec:  # fmt: skip
    units = []
    for task in tasks:
        source = accuracy_source(cfg, task)
        ref_id = cell_id_accuracy(cfg, machine, task, OmegaConf.structured(backends.named()[results.BASELINE]))
        units.append(AccuracyTask(
            task=task,
            source={k: v for k, v in source.items() if k != "name"},
            ref_path=str(Path(cfg.results_dir) / cfg.run / ".reference" / f"{ref_id}.npy"),
        ))  # fmt: skip
    job = dataclasses.replace(job, backend=OmegaConf.to_container(backend_cfg, resolve=True))
    return AccuracySpec(job=job, tasks=tuple(units), batch_size=cfg.accuracy.batch_size, is_reference=is_reference)


def run_accuracy(
    cfg: DictConfig, cells: list[Cell], base_spec: JobSpec, machine: str, backend_cfg: Any
) -> dict[str, tuple[str, str | None, dict[str, Any] | None]]:
    """All accuracy tasks of one backend in one process. Fidelity needs torch-fp32's outputs:
    when they are missing, compute them first (once per run, under a lock)."""
    tasks = [c.task for c in cells]
    is_ref = is_baseline(backend_cfg)
    spec = _accuracy_spec(cfg, base_spec, machine, tasks, backend_cfg, is_ref)
    no_reference: dict[str, str] = {}  # task -> why torch-fp32's outputs are missing
    if not is_ref:
        missing = [u.task for u in spec.tasks if not Path(u.ref_path).exists()]
        if missing:
            with file_lock(Path(cfg.results_dir) / cfg.run / ".reference" / "reference.lock"):
                missing = [u.task for u in spec.tasks if not Path(u.ref_path).exists()]
                if missing:
                    log.info("computing torch-fp32 reference outputs for %s first", ", ".join(missing))
                    ref_cfg = OmegaConf.structured(backends.named()[results.BASELINE])
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
