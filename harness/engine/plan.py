"""`harness sweep ... --plan`: what a sweep would do, and for how long, without running anything.

The grid is expanded the way Hydra's basic sweeper expands it (sweeper params, then the command
line), with the models' and datasets' own config files read directly (no job is composed), so the
docs' whole CPU grid is planned in about a second. The estimate comes from this machine's rows in the
store: each cell's own past duration where it was measured before (in any run); else a measured cell of
the same backend (the same dataset and the nearest batch size where there is one), scaled to this cell's
model and texts and run through the pass rules (harness.engine.cost); else the median of this machine's
cells of the same backend, else of all its cells. Exports from the durations the export cache recorded,
scaled by the model's parameters. What has no timing at all is counted and said.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from harness import backends
from harness.config import DatasetConfig, ModelConfig
from harness.engine import cost
from harness.engine.cost import Target, Timings, Work, later_round_counts, later_round_share, shape_of
from harness.store import results

FALLBACK_CELL_S = 15.0  # a speed cell when this machine has no timing at all (2 s timed + start-up, 2 cores)
FALLBACK_EXPORT_S = 60.0  # an export the cache has never timed (MiniLM's slowest, openvino-qint8, on 2 cores)
ROUND_KEY = "round"


@dataclass
class Plan:
    jobs: int = 0
    cells: int = 0
    speed_cells: int = 0
    accuracy_cells: int = 0
    server_cells: int = 0
    seen: set[str] = field(default_factory=set, repr=False)  # server cells counted (several jobs name one)
    server_pairs: set[tuple[str, str]] = field(default_factory=set, repr=False)  # (model, dataset) counted
    done: int = 0
    exports: int = 0
    processes: int = 0
    estimate_s: float = 0.0
    untimed: int = 0  # cells whose estimate is a fallback, not a timing
    untimed_server: int = 0  # server cells estimated by a search's points, not this machine's server rows
    notes: list[str] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)
    results_dir: str = "results"

    @property
    def finished(self) -> bool:
        """Every cell of the sweep is in the store (a skipped third round counts: its row says so)."""
        return self.cells > 0 and self.done == self.cells

    def text(self) -> str:
        rounds = "" if not self.notes else "\n" + "\n".join(f"  {n}" for n in self.notes)
        return (
            f"plan: {self.jobs} jobs, {self.cells} cells ({self.speed_cells} speed, {self.accuracy_cells} accuracy"
            + (f", {self.server_cells} server" if self.server_cells else "")
            + "), "
            f"{self.done} already in the store; {self.exports} exports; about {self.processes} processes\n"
            f"estimated duration: {_duration(self.estimate_s)}"
            + (f" ({self.untimed} cells have no timing on this machine yet: estimated)" if self.untimed else "")
            + rounds
        )


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return (
        f"{seconds:.0f} s (~{seconds / 60:.0f} min)" if seconds < 7200 else f"{seconds:.0f} s (~{seconds / 3600:.1f} h)"
    )


def grid(dims: dict[str, list[str]]) -> list[dict[str, str]]:
    """Every job's swept values, in the basic sweeper's order (the last key varies fastest)."""
    jobs: list[dict[str, str]] = [{}]
    for key, values in dims.items():
        jobs = [{**job, key: v} for job in jobs for v in values]
    return jobs


def model_batch_sizes(conf_dir: str, model: str) -> list[int]:
    path = Path(conf_dir) / "model" / f"{model}.yaml"
    node = OmegaConf.merge(OmegaConf.structured(ModelConfig), OmegaConf.load(path)) if path.exists() else None
    return list(node.batch_sizes) if node is not None else list(ModelConfig().batch_sizes)


def make_plan(base: Any, dims: dict[str, list[str]], conf_dir: str, hw: Any, threads: int, accuracy: bool,
              done_ids: set[str] | None = None, cell_ids: Any = None, accuracy_ids: Any = None,
              runs: list[str] | None = None, results_dir: str = "results", server_ids: Any = None) -> Plan:  # fmt: skip
    """Plan the sweep: `base` is the first job's config (defaults), `dims` the swept keys and values;
    `cell_ids(job, batch_size, round)` names a job's speed cells (one per backend configuration: the
    job's own and the companion variants this machine adds), `accuracy_ids(job)` its accuracy cells,
    to find them among `done_ids`. Without them, one speed cell per job and batch size is counted."""
    from harness.backends.cache import ExportCache

    machine = hw.fingerprint
    plan = Plan(runs=list(runs or []), results_dir=results_dir)
    done_ids = done_ids or set()
    dims = {k.lstrip("+~"): v for k, v in dims.items()}
    rounds = [int(r) for r in dims.pop(ROUND_KEY, [str(base.round)])]
    jobs = grid({k: v for k, v in dims.items() if not k.startswith("hydra")})
    plan.jobs = len(jobs) * len(rounds)
    timings = Timings(results.read_rows(base.results_dir, None), machine)
    cache = ExportCache(base.cache_dir)
    exports: set[tuple[str, str]] = set()
    workers: set[tuple] = set()
    accuracy_done: set[tuple] = set()
    adaptive = bool(base.adaptive_rounds) and len(rounds) > 1
    measured_rounds = 1 if adaptive else len(rounds)
    share = later_round_share(timings.rows, machine) if adaptive else 1.0
    counts = later_round_counts(timings.rows, machine) if adaptive else {}
    later: dict[tuple, list[float]] = {}  # (model, dataset, batch size, round) -> each pending cell's seconds
    for job in jobs:
        model, backend, variant, knobs = _names(job, base)
        for r in rounds:
            first = (model, backend, variant, r) not in workers
            if base.speed and _count_speed(plan, job, base, conf_dir, (r, measured_rounds, later), cell_ids,
                                           done_ids, timings, first):  # fmt: skip
                workers.add((model, backend, variant, r))
        if base.server.enabled and _count_server(plan, job, base, (server_ids, done_ids), timings, conf_dir):
            workers.add((model, backend, variant, "server"))
        if accuracy and (model, backend, variant) not in accuracy_done:
            accuracy_done.add((model, backend, variant))
            _count_accuracy(plan, job, base, accuracy_ids, done_ids, timings)
        key = export_key(backend, knobs, hw, threads)
        if key and not cache.has_export(model, key):
            exports.add((model, key))
    expected = _later_rounds(plan, later, counts, share)
    plan.exports = len(exports)
    sizes = {m: w.params for (m, _), w in timings.works.items()}
    plan.estimate_s += sum(_export_seconds(cache, key, sizes.get(model)) or FALLBACK_EXPORT_S for model, key in exports)
    plan.processes = len(workers) + len(exports) + len(accuracy_done)
    if adaptive:
        plan.notes.append(
            f"rounds=auto: one round, then up to {len(rounds) - 1} more only for configurations still undecided "
            f"(counted in the cells; {expected})"
        )
    if plan.untimed:
        plan.notes.append(
            f"{plan.untimed} cells have no timing on this machine: {FALLBACK_CELL_S:g} s a speed cell, "
            f"{4 * FALLBACK_CELL_S:g} s an accuracy task, {FALLBACK_EXPORT_S:g} s an export"
        )
    _server_notes(plan, base.server)
    plan.estimate_s = math.ceil(plan.estimate_s)
    return plan


def _server_notes(plan: Plan, server: Any) -> None:
    """How the server cells were estimated, and where the scenario's time budget stops them."""
    if plan.untimed_server:
        full, stopped = cost.server_group_s(server), cost.server_group_s(server, True)
        plan.notes.append(f"{plan.untimed_server} server cells have no server run of their model and texts on this "
                          f"machine: {full:.0f} s a (shape, batching) group searched, {stopped:.0f} s one stopped "
                          "early (every job of a model and texts after the first)")  # fmt: skip
    if server.enabled and plan.estimate_s > server.time_budget_s:
        plan.notes.append(
            f"server.time_budget_s={server.time_budget_s:g} stops the server cells at "
            f"{_duration(server.time_budget_s)} (the rest are `timeout` rows; a rerun resumes)"
        )


def _count_server(plan: Plan, job: dict[str, str], base: Any, ids_done: tuple[Any, set[str]], timings: Timings,
                  conf_dir: str) -> bool:  # fmt: skip
    """Count a job's server cells (per configuration, shape, batching and budget) into `plan`: at this machine's
    newest server run of the model and texts (`server_cell_s`), else by `server_group_s` (a job after the first
    of a model and texts: the sweep's order puts the likely fastest first, so its groups mostly stop early)."""
    server_ids, done_ids = ids_done
    per_group = len(base.server.budgets_ms)
    ids = server_ids(job) if server_ids else [None] * per_group * len(base.server.batching)
    ids = [i for i in ids if i is None or i not in plan.seen]
    plan.seen.update(i for i in ids if i is not None)
    pending = [i for i in ids if i is None or i not in done_ids]
    plan.cells += len(ids)
    plan.server_cells += len(ids)
    plan.done += len(ids) - len(pending)
    model = _names(job, base)[0]
    node = _model_node(base, conf_dir, model)
    key = (str(node.name) if node is not None else model, job.get("dataset", base.dataset.name))
    if timings.server_s is None:
        timings.server_s = cost.server_cell_s(timings.rows, timings.machine)
    if key in timings.server_s:
        plan.estimate_s += len(pending) * timings.server_s[key]
    else:
        plan.estimate_s += len(pending) / per_group * cost.server_group_s(base.server, key in plan.server_pairs)
        plan.untimed_server += len(pending)
    plan.server_pairs.add(key)
    return bool(pending)


def _export_seconds(cache: Any, key: str, params: int | None) -> float | None:
    """The median time the cache's exports of this key took, each scaled from its model's parameters to
    `params` (an export traces, converts and writes every weight)."""
    from harness.inputs.models import parameter_count

    times = [seconds * (params / (parameter_count(folder) or params) if params else 1.0)
             for seconds, folder in cache.export_times(key)]  # fmt: skip
    return statistics.median(times) if times else None


def _later_rounds(plan: Plan, later: dict[tuple, list[float]], counts: dict[int, float], share: float) -> str:
    """Add the later rounds' expected seconds to `plan`: of a group's pending cells of round r, as many as this
    machine's earlier adaptive sweeps measured a group in round r (`cost.later_round_counts`; all of a small
    group), at their mean estimate; before any, `share` of them. Says which."""
    planned = sorted({r for (_, _, _, r) in later})  # rounds this sweep may measure (earlier sweeps may have had more)
    expected = {r: counts.get(r, counts[max(counts)]) for r in planned} if counts else {}
    for (_, _, _, r), seconds in later.items():
        n = expected[r] if expected else share * len(seconds)
        plan.estimate_s += min(1.0, n / len(seconds)) * sum(seconds)
    if expected:
        per = ", ".join(f"{expected[r]:.1f}" for r in planned)
        return (f"about {per} configurations a group in rounds {planned[0] + 1}-{planned[-1] + 1} in the estimate, "
                "as in this machine's earlier sweeps")  # fmt: skip
    return f"{share:.0%} of them in the estimate"


def _names(job: dict[str, str], base: Any) -> tuple[str, str, str, dict[str, str]]:
    """A job's model, backend, the variant its rows will carry, and its backend knobs."""
    backend = job.get("backend", base.backend.name)
    knobs = {k.split(".", 1)[1]: v for k, v in job.items() if k.startswith("backend.")}
    return job.get("model", base.model.name), backend, _variant(backend, knobs), knobs


def _count_speed(plan: Plan, job: dict[str, str], base: Any, conf_dir: str, rounds: tuple[int, int, dict],
                 cell_ids: Any, done_ids: set[str], timings: Timings, first: bool) -> bool:  # fmt: skip
    """Count one round of a job's speed cells into `plan`; True when some are still to run. `rounds`: this
    round, the rounds always measured, where a later round's pending cells are collected. `first`: its first
    cell to run starts the worker process of its backend configuration and round."""
    r, measured_rounds, later = rounds
    model, backend, variant, _ = _names(job, base)
    dataset = job.get("dataset", base.dataset.name)
    if (model, dataset) not in timings.works:
        timings.works[(model, dataset)] = _work(base, conf_dir, model, dataset, timings)
    work = timings.works[(model, dataset)]
    to_run = False
    for bs in _sizes(base, job, conf_dir, model):
        ids = cell_ids(job, bs, r) if cell_ids else [None]
        plan.cells += len(ids)
        plan.speed_cells += len(ids)
        pending = [i for i in ids if i is None or i not in done_ids]
        plan.done += len(ids) - len(pending)
        if not pending:
            continue
        target = Target(work, bs, r, first, dataset)
        estimate = timings.estimate("speed", model, dataset, backend, variant, bs, target, base.measure)
        first = False
        if r >= measured_rounds:  # adaptive: counted as possible, timed for the cells expected to run (_later_rounds)
            later.setdefault((model, dataset, bs, r), []).extend([estimate or FALLBACK_CELL_S] * len(pending))
        else:
            plan.untimed += estimate is None
            plan.estimate_s += (estimate if estimate is not None else FALLBACK_CELL_S) * len(pending)
        to_run = True
    return to_run


def _count_accuracy(plan: Plan, job: dict[str, str], base: Any, accuracy_ids: Any, done_ids: set[str],
                    timings: Timings) -> None:  # fmt: skip
    """Count a backend configuration's accuracy cells (once per model and configuration) into `plan`."""
    model, backend, variant, _ = _names(job, base)
    ids = accuracy_ids(job) if accuracy_ids else [None] * len(base.accuracy.tasks)
    n_tasks = sum(1 for i in ids if i is None or i not in done_ids)
    plan.cells += len(ids)
    plan.accuracy_cells += len(ids)
    plan.done += len(ids) - n_tasks
    estimate = timings.estimate("accuracy", model, "", backend, variant, None)
    plan.estimate_s += n_tasks * (estimate if estimate is not None else 4 * FALLBACK_CELL_S)
    plan.untimed += n_tasks if estimate is None else 0


def _work(base: Any, conf_dir: str, model: str, dataset: str, timings: Timings) -> Work:
    """What a job's passes encode, with what model: the model's shape (its config, offline) and the texts'
    count and mean tokens (from this machine's rows of the dataset, else estimated from a built-in bucket)."""
    node = _model_node(base, conf_dir, model)
    shape = shape_of(str(node.source), node.max_seq_length) if node is not None else None
    n_texts, tokens = timings.texts(dataset)
    if n_texts is None:
        d = base.dataset if dataset == base.dataset.name else _load(Path(conf_dir) / "dataset" / f"{dataset}.yaml",
                                                                    DatasetConfig)  # fmt: skip
        n_texts, tokens = cost.builtin_texts(d) if d is not None else (None, None)
    return Work(shape, shape.params if shape else None, n_texts, tokens)


def _model_node(base: Any, conf_dir: str, model: str) -> Any:
    return base.model if model == base.model.name else _load(Path(conf_dir) / "model" / f"{model}.yaml", ModelConfig)


def _load(path: Path, schema: type) -> Any:
    try:
        return OmegaConf.merge(OmegaConf.structured(schema), OmegaConf.load(path)) if path.exists() else None
    except OmegaConfBaseException:
        return None


def _sizes(base: Any, job: dict[str, str], conf_dir: str, model: str) -> list[int]:
    if "batch_sizes" in job:
        try:
            return [int(x) for x in json.loads(job["batch_sizes"])]
        except ValueError:  # e.g. '[${model.batch_sizes.0}]'
            from hydra.core.override_parser.overrides_parser import OverridesParser

            value = OverridesParser.create().parse_override(f"batch_sizes={job['batch_sizes']}").value()
            return _for_model(value, conf_dir, model)
    if base.batch_sizes is not None:
        # An experiment's `batch_sizes: ["${model.batch_sizes.0}"]` names each job's model, not the
        # first job's (which `base` resolves it against).
        try:
            return _for_model(OmegaConf.to_container(base.batch_sizes, resolve=False), conf_dir, model)
        except (OmegaConfBaseException, ValueError):  # another interpolation (e.g. ${run}): the resolved value
            return list(base.batch_sizes)
    return model_batch_sizes(conf_dir, model)


def _for_model(value: Any, conf_dir: str, model: str) -> list[int]:
    """A batch_sizes value, its `${model.batch_sizes...}` resolved against the model's own file."""
    node = OmegaConf.create({"batch_sizes": value, "model": {"batch_sizes": model_batch_sizes(conf_dir, model)}})
    return [int(x) for x in node.batch_sizes]


def _backend_cfg(backend: str, knobs: dict[str, str]) -> Any:
    """A registered backend's config with a job's `backend.*` overrides applied."""
    cfg = OmegaConf.structured(backends.named()[backend])
    for knob, value in knobs.items():
        if knob in cfg:
            cfg[knob] = None if value in ("null", "None") else value
    return cfg


def _variant(backend: str, knobs: dict[str, str]) -> str:
    """The `variant` the job's rows will carry (cells.variant: its family's knobs that differ from the
    backend's defaults, in the family's order), so the store's timings of that very cell are found."""
    if backend not in backends.named():
        return ",".join(f"{k}={v}" for k, v in sorted(knobs.items()))
    from harness.engine.cells import variant

    return variant(_backend_cfg(backend, knobs))


def export_key(backend: str, knobs: dict[str, str], hw: Any, threads: int) -> str | None:
    """The export cache key a registered backend (with these knobs) loads, None when it loads the weights."""

    if backend not in backends.named():
        return None
    key = backends.create(_backend_cfg(backend, knobs), hw, threads).export_key()
    return key[0] if key else None
