"""Check a sweep's command line before Hydra runs it: every mistake is one line, nothing is launched.

Overrides are parsed with Hydra's own parser and composed with Hydra's own compose API: first
with the first value of every swept key, then once per further value of a swept key (a backend
variant is derived directly: backends are registered dataclasses). Each variant then goes
through `preflight` (harness.engine.preflight), so a bad model, dataset or folder anywhere in the grid
stops the sweep before its first cell. Hydra's exceptions become `field: value ... allowed` lines.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from pathlib import Path
from typing import Any

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.override_parser.types import Override
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from harness import backends
from harness.backends.cache import versions
from harness.config import CONF_DIR, DatasetConfig, ModelConfig, SweepConfig
from harness.core.usage import ConfigError
from harness.engine.overrides import (
    GROUPS,
    ONLY_PARSE,
    check_cfg_flag,
    check_group_values,
    check_key,
    failed_key,
    parse_args,
    parse_overrides,
    raise_one_line,
    values_of,
)
from harness.store import results

# Launchers whose jobs run on this machine: only then is "this machine has no GPU" the jobs' truth.
LOCAL_LAUNCHERS = ("BasicLauncher", "JoblibLauncher", "LocalLauncher")
BACKEND_IDENTITY = ("name", "family", "dtype", "optimization", "quantization")  # what a backend option sets


def check_overrides(args: list[str], conf_dir: str) -> None:
    """Raise ConfigError (one line) for anything in `args` that cannot run; return when the grid is sound."""
    parsed = parse_args(args)
    overrides = parse_overrides(parsed.overrides)
    check_cfg_flag(parsed, overrides)
    for o in overrides:
        check_group_values(o, conf_dir)
        check_key(o, conf_dir)
    if any(getattr(parsed, flag, None) for flag in ONLY_PARSE):
        return
    if any(o.is_sweep_override() and not o.is_discrete_sweep() for o in overrides):
        return  # interval/range sweeps belong to another sweeper (e.g. Optuna): leave them to it
    _check_grid(parsed, overrides, conf_dir)


def register_configs() -> None:
    """Register the schema and every family's backend names in Hydra's ConfigStore."""
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    cs.store(name="sweep_schema", node=SweepConfig)
    cs.store(group="model", name="model_schema", node=ModelConfig)
    cs.store(group="dataset", name="dataset_schema", node=DatasetConfig)
    for name, node in backends.named().items():
        cs.store(group="backend", name=name, node=node)


def compose(overrides: list[str]) -> DictConfig:
    """One run's config, composed outside a Hydra app (for subcommands that need a single cell's config)."""
    check_overrides(overrides, CONF_DIR)
    register_configs()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return hydra_compose(config_name="config", overrides=overrides)


# --- the grid --------------------------------------------------------------------------------


def _check_grid(parsed: Any, overrides: list[Override], conf_dir: str) -> None:
    from harness.engine.preflight import check_device, check_writable, preflight

    register_configs()
    command_line = {o.get_key_element(): values_of(o) for o in overrides}
    with initialize_config_dir(config_dir=conf_dir, version_base="1.3", job_name="harness"):
        first = _compose({k: v[0] for k, v in command_line.items()}, hydra=True)
        multirun = bool(parsed.multirun) or str(first.hydra.mode) == "RunMode.MULTIRUN"
        if not multirun:
            swept = [o for o in overrides if o.is_sweep_override()]
            if swept:
                key, value = swept[0].key_or_group, ",".join(map(str, values_of(swept[0])))
                raise ConfigError(
                    f"{key}: {value!r} is a sweep, but this is a single run (hydra.mode=RUN); "
                    "drop hydra.mode=RUN or add -m to sweep, or write [a,b] for a list."
                )
            dims = dict(command_line)
        else:
            dims = _sweep_dims(first, overrides)
        where = "hydra.sweep.dir" if multirun else "hydra.run.dir"
        out_dir = str(OmegaConf.select(first, where))
        check_writable(where, out_dir, Path(out_dir).expanduser())  # Hydra writes each job's config and log there
        base = {k: v[0] for k, v in dims.items()}
        cfg = first if base == {k: v[0] for k, v in command_line.items()} else _compose(base)
        _preflight(preflight, cfg)
        for key, values in dims.items():
            name = key.lstrip("+~")
            for value in values[1:]:
                if name.startswith("hydra"):
                    continue
                if name == "backend" and value in backends.named():
                    variant = _backend_variant(cfg, value, command_line)
                elif name in GROUPS or "/" in name or (Path(conf_dir) / name).is_dir():
                    variant = _compose({**base, key: value})
                else:
                    variant = _with_value(cfg, key, value)
                _preflight(preflight, variant)
        jobs = 1
        for values in dims.values():
            jobs *= len(values)
        device = command_line.get("backend.device") or command_line.get("++backend.device") or []
        launcher = str(first.hydra.launcher.get("_target_", "")).rsplit(".", 1)[-1]
        if jobs == 1 and device == ["cuda"] and launcher in LOCAL_LAUNCHERS:
            check_device(cfg)


def _as_strings(chosen: dict[str, str | None]) -> list[str]:
    return [k if v is None else f"{k}={v}" for k, v in chosen.items()]


def _with_value(cfg: DictConfig, key: str, value: str) -> DictConfig:
    """The base config with one plain key set to another swept value (typed by the schema, as Hydra does)."""
    override = parse_overrides([f"{key}={value}"])[0]
    variant = copy.deepcopy(cfg)
    try:
        OmegaConf.update(variant, override.key_or_group, override.value(), merge=True)
    except OmegaConfBaseException as exc:
        raise_one_line(re.sub(r"\[\d+\]", "", getattr(exc, "full_key", None) or override.key_or_group), exc)
    return variant


def _sweep_dims(first: DictConfig, overrides: list[Override]) -> dict[str, list[str]]:
    """Key -> values, as Hydra's basic sweeper builds them: sweeper params, then the command line (which wins)."""
    params = first.hydra.sweeper.get("params") or {}
    dims = {o.get_key_element(): values_of(o) for o in parse_overrides([f"{k}={v}" for k, v in params.items()])}
    for o in overrides:
        dims[o.get_key_element()] = values_of(o)
    return dims


def _compose(chosen: dict[str, str | None], hydra: bool = False) -> DictConfig:
    try:
        return hydra_compose(config_name="config", overrides=_as_strings(chosen), return_hydra_config=hydra)
    except (HydraException, OmegaConfBaseException, ValueError) as exc:
        return raise_one_line(failed_key(exc, chosen), exc, chosen)


def _backend_variant(cfg: DictConfig, name: str, command_line: dict[str, list[str]]) -> DictConfig:
    """The base config with another registered backend: the backend option sets only its identity fields;
    device, runtime knobs etc. come from the experiment and the command line, as in a composed job."""
    variant = copy.deepcopy(cfg)
    registered = dataclasses.asdict(backends.named()[name])
    for field in BACKEND_IDENTITY:
        if f"backend.{field}" not in command_line:  # a command-line value is already in cfg, for every backend
            variant.backend[field] = registered[field]
    return variant


def _preflight(preflight: Any, cfg: DictConfig) -> None:
    try:
        preflight(cfg)
    except OmegaConfBaseException as exc:  # e.g. an interpolation that does not resolve
        raise_one_line(getattr(exc, "full_key", None) or "config", exc)


# --- the plan (harness sweep --plan) -----------------------------------------------------------


def _server_ids(job_cfg: Any, machine: str, threads: int) -> Any:
    """A job's server cell ids, composed even with an empty store: a knob other families lack (ov_hint on
    torch) names the same cells in two jobs, which the plan counts once."""
    from harness.engine.cells import server_cells

    def server_ids(job: dict[str, str]) -> list[str | None]:
        cfg, configs = job_cfg(job)
        return [c.cell_id for b in configs for c in server_cells(cfg, machine, threads, b)]

    return server_ids


def plan_sweep(args: list[str], conf_dir: str) -> Any:
    """The plan of the sweep these (already checked) arguments describe: nothing runs."""
    from harness.core.hardware import detect
    from harness.engine.cells import accuracy_skipped, cell_id_accuracy, cell_id_speed, configurations, with_round
    from harness.engine.plan import make_plan

    parsed = parse_args(args)
    overrides = parse_overrides(parsed.overrides)
    command_line = {o.get_key_element(): values_of(o) for o in overrides}
    register_configs()
    hw = detect()
    with initialize_config_dir(config_dir=conf_dir, version_base="1.3", job_name="harness"):
        first = _compose({k: v[0] for k, v in command_line.items()}, hydra=True)
        dims = _sweep_dims(first, overrides)
        threads = first.measure.threads or hw.cpu_budget
        runs = dims.get("run", [first.run])
        current = versions()
        done = {p.stem for run in runs for p in (Path(first.results_dir) / str(run)).glob("*.json")
                if results.why_run(first.results_dir, run, p.stem, current, first.retry_failed) is None}  # fmt: skip
        composed: dict[tuple, DictConfig] = {}
        backend_cfgs: dict[tuple, list[Any]] = {}
        spelled = {k.lstrip("+~"): k for k in dims}  # the plan's job keys lose "+"; composing needs it back

        def job_cfg(job: dict[str, str]) -> tuple[DictConfig, list[Any]]:
            """The job's composed config and its backend configurations (its own and the companions
            this machine adds, as `cells.configurations` runs them)."""
            other = tuple((spelled.get(k, k), v) for k, v in job.items() if k != "backend" and k[:5] != "hydra")
            if other not in composed:
                composed[other] = _compose(dict(other)) if other else first
            cfg = composed[other]
            name = job.get("backend", cfg.backend.name)
            if (other, name) not in backend_cfgs:
                cfg_b = _backend_variant(cfg, name, command_line) if name in backends.named() else cfg
                backend_cfgs[(other, name)] = configurations(cfg_b, hw, threads)
            return cfg, backend_cfgs[(other, name)]

        def counted(job: dict[str, str]) -> int:
            """With nothing in the store there is nothing to find: count the configurations, compose nothing."""
            return len(job_cfg({"backend": job["backend"]} if "backend" in job else {})[1])

        def cell_ids(job: dict[str, str], batch_size: int, round_: int) -> list[str | None]:
            if not done:
                return [None] * counted(job)
            cfg, configs = job_cfg(job)
            return [with_round(cell_id_speed(cfg, hw.fingerprint, batch_size, threads, b), round_) for b in configs]

        def accuracy_ids(job: dict[str, str]) -> list[str | None]:
            if not done:
                return [None] * counted(job) * len(first.accuracy.tasks)
            cfg, configs = job_cfg(job)
            return [cell_id_accuracy(cfg, hw.fingerprint, t, b) for b in configs for t in cfg.accuracy.tasks]

        server_ids = _server_ids(job_cfg, hw.fingerprint, threads) if first.server.enabled else None
        return make_plan(first, dims, conf_dir, hw, threads, accuracy=not accuracy_skipped(first),
                         done_ids=done, cell_ids=cell_ids, accuracy_ids=accuracy_ids, runs=[str(r) for r in runs],
                         results_dir=str(first.results_dir), server_ids=server_ids)  # fmt: skip
