"""Check a sweep's command line before Hydra runs it: every mistake is one line, nothing is launched.

Overrides are parsed with Hydra's own parser and composed with Hydra's own compose API: first
with the first value of every swept key, then once per further value of a swept key (a backend
variant is derived directly: backends are registered dataclasses). Each variant then goes
through `preflight` (harness.preflight), so a bad model, dataset or folder anywhere in the grid
stops the sweep before its first cell. Hydra's exceptions become `field: value ... allowed` lines.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import re
import typing
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from harness.config import (
    ACCURACY_SOURCE_KEYS,
    ACCURACY_TASKS,
    BACKEND_NAMES,
    BACKENDS,
    ConfigError,
    SweepConfig,
)
from harness.usage import did_you_mean

GROUPS = ("model", "dataset", "backend", "experiment")
# Launchers whose jobs run on this machine: only then is "this machine has no GPU" the jobs' truth.
LOCAL_LAUNCHERS = ("BasicLauncher", "JoblibLauncher", "LocalLauncher")
BACKEND_IDENTITY = ("name", "family", "dtype", "optimization", "quantization")  # what a backend option sets
POSITIVE_LISTS = ("batch_sizes", "model.batch_sizes", "model.batch_sizes_gpu")
TYPE_WORDS = {"Integer": "a whole number", "Float": "a number", "Boolean": "true or false", "String": "a string"}
OPEN_CHILDREN = {f"accuracy.{task}": ACCURACY_SOURCE_KEYS for task in ACCURACY_TASKS}  # free-form dicts' keys
DETAIL_LINE = re.compile(r"(full_key|reference_type|object_type|Config search path|provider=)")
# flags that run no job, or compose another primary config than conf/config.yaml
ONLY_PARSE = ("help", "hydra_help", "info", "shell_completion", "config_name", "config_path", "config_dir",
              "experimental_rerun")  # fmt: skip


def group_options(conf_dir: str, group: str) -> list[str]:
    options = sorted(p.stem for p in (Path(conf_dir) / group).glob("*.yaml"))
    return sorted(set(options) | set(BACKEND_NAMES)) if group == "backend" else options


def check_overrides(args: list[str], conf_dir: str) -> None:
    """Raise ConfigError (one line) for anything in `args` that cannot run; return when the grid is sound."""
    parsed = _parse_args(args)
    overrides = _parse_overrides(parsed.overrides)
    _check_cfg_flag(parsed, overrides)
    for o in overrides:
        _check_group_values(o, conf_dir)
        _check_key(o, conf_dir)
    if any(getattr(parsed, flag, None) for flag in ONLY_PARSE):
        return
    if any(o.is_sweep_override() and not o.is_discrete_sweep() for o in overrides):
        return  # interval/range sweeps belong to another sweeper (e.g. Optuna): leave them to it
    _check_grid(parsed, overrides, conf_dir)


def _parse_args(args: list[str]) -> Any:
    from hydra._internal.utils import get_args_parser

    parser = get_args_parser()

    def error(message: str) -> typing.NoReturn:
        raise ConfigError(f"harness sweep: {message}; see `harness sweep --help`.")

    parser.error = error  # type: ignore[method-assign]
    return parser.parse_args(args)


def _check_cfg_flag(parsed: Any, overrides: list[Override]) -> None:
    """Hydra prints one job's config with --cfg: it refuses -m and cannot tell a swept a,b from a string."""
    if not parsed.cfg:
        return
    swept = next((o for o in overrides if o.is_sweep_override()), None)
    if parsed.multirun or swept is not None:
        given = "-m/--multirun" if parsed.multirun else f"the swept value {swept.input_line!r}"
        raise ConfigError(
            f"--cfg: it prints the config of one job and cannot be combined with {given}; give one value "
            "per key, e.g. `harness sweep backend=onnx --cfg job`."
        )


def _parse_overrides(strings: list[str]) -> list[Override]:
    try:
        return OverridesParser.create().parse_overrides(strings)
    except OverrideParseException as exc:
        detail = _first_lines(exc.message).split(" See https://")[0]
        raise ConfigError(
            f"override: {exc.override!r} cannot be parsed ({detail}); write key=value, key=a,b to sweep, "
            "key=[a,b] for a list (https://hydra.cc/docs/advanced/override_grammar/basic)."
        ) from None


def _check_group_values(o: Override, conf_dir: str) -> None:
    group = o.key_or_group
    if group not in GROUPS or o.is_delete():
        return
    allowed = group_options(conf_dir, group)
    values = list(o.sweep_string_iterator()) if o.is_sweep_override() else [o.get_value_element_as_str()]
    for value in values:
        if value not in allowed:
            raise ConfigError(
                f"{group}: {value!r} is not a known {group}; choose one of {', '.join(allowed)}."
                + did_you_mean(value, allowed)
            )


# --- keys ------------------------------------------------------------------------------------


@functools.cache
def schema_keys(cls: type = SweepConfig, prefix: str = "") -> tuple[dict[str, list[str]], set[str]]:
    """(parent -> its field names, dotted keys whose children are free-form dicts), from the dataclasses."""
    children: dict[str, list[str]] = {prefix: []}
    open_keys: set[str] = set()
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        key = f"{prefix}.{f.name}" if prefix else f.name
        children[prefix].append(f.name)
        if dataclasses.is_dataclass(hint):
            sub, sub_open = schema_keys(hint, key)
            children.update(sub)
            open_keys |= sub_open
        elif typing.get_origin(hint) is dict or hint is typing.Any:
            open_keys.add(key)
    return children, open_keys


def _check_key(o: Override, conf_dir: str) -> None:
    """A key that is neither a config group nor a field of the schema is a typo: say so, suggest the nearest."""
    key = o.key_or_group
    if key.startswith("hydra") or "/" in key or key in GROUPS or (Path(conf_dir) / key).is_dir() or o.is_delete():
        return  # Hydra's own keys and config groups: checked when composing
    children, open_keys = schema_keys()
    parts = key.split(".")
    for depth in range(1, len(parts) + 1):
        parent, name = ".".join(parts[: depth - 1]), parts[depth - 1]
        if parent in OPEN_CHILDREN and name not in OPEN_CHILDREN[parent]:
            allowed = OPEN_CHILDREN[parent]
            raise ConfigError(
                f"{key}: unknown setting (given {_given(o)}); {parent} has {', '.join(allowed)}."
                + did_you_mean(name, allowed)
            )
        if parent in open_keys:
            return
        if parent not in children or name not in children[parent]:
            break
        if depth == len(parts):
            return
    known = [k if not p else f"{p}.{k}" for p, names in children.items() for k in names]
    parent = ".".join(parts[:-1])
    siblings = children.get(parent) or children[""]
    where = f"{parent} has" if parent in children and parent else "the top level has"
    raise ConfigError(
        f"{key}: unknown setting (given {_given(o)}); {where} {', '.join(siblings)}." + did_you_mean(key, known)
    )


def _given(o: Override) -> str:
    return o.input_line or f"{o.get_key_element()}={o.get_value_element_as_str()}"


# --- the grid --------------------------------------------------------------------------------


def _check_grid(parsed: Any, overrides: list[Override], conf_dir: str) -> None:
    from hydra import compose, initialize_config_dir

    from harness.config import register_configs
    from harness.preflight import check_device, check_writable, preflight

    register_configs()
    command_line = {o.get_key_element(): _values(o) for o in overrides}
    with initialize_config_dir(config_dir=conf_dir, version_base="1.3", job_name="harness"):
        first = _compose(compose, {k: v[0] for k, v in command_line.items()}, hydra=True)
        multirun = bool(parsed.multirun) or str(first.hydra.mode) == "RunMode.MULTIRUN"
        if not multirun:
            swept = [o for o in overrides if o.is_sweep_override()]
            if swept:
                key, value = swept[0].key_or_group, ",".join(map(str, _values(swept[0])))
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
        cfg = first if base == {k: v[0] for k, v in command_line.items()} else _compose(compose, base)
        _preflight(preflight, cfg)
        for key, values in dims.items():
            name = key.lstrip("+~")
            for value in values[1:]:
                if name.startswith("hydra"):
                    continue
                if name == "backend" and value in BACKENDS:
                    variant = _backend_variant(cfg, value, command_line)
                elif name in GROUPS or "/" in name or (Path(conf_dir) / name).is_dir():
                    variant = _compose(compose, {**base, key: value})
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


def _values(o: Override) -> list[str | None]:
    if o.is_delete() and o.value() is None:
        return [None]
    return list(o.sweep_string_iterator()) if o.is_sweep_override() else [o.get_value_element_as_str()]


def _as_strings(chosen: dict[str, str | None]) -> list[str]:
    return [k if v is None else f"{k}={v}" for k, v in chosen.items()]


def _with_value(cfg: DictConfig, key: str, value: str) -> DictConfig:
    """The base config with one plain key set to another swept value (typed by the schema, as Hydra does)."""
    override = _parse_overrides([f"{key}={value}"])[0]
    variant = copy.deepcopy(cfg)
    try:
        OmegaConf.update(variant, override.key_or_group, override.value(), merge=True)
    except OmegaConfBaseException as exc:
        _raise_one_line(re.sub(r"\[\d+\]", "", getattr(exc, "full_key", None) or override.key_or_group), exc)
    return variant


def _sweep_dims(first: DictConfig, overrides: list[Override]) -> dict[str, list[str]]:
    """Key -> values, as Hydra's basic sweeper builds them: sweeper params, then the command line (which wins)."""
    params = first.hydra.sweeper.get("params") or {}
    dims = {o.get_key_element(): _values(o) for o in _parse_overrides([f"{k}={v}" for k, v in params.items()])}
    for o in overrides:
        dims[o.get_key_element()] = _values(o)
    return dims


def _compose(compose: Any, chosen: dict[str, str | None], hydra: bool = False) -> DictConfig:
    try:
        return compose(config_name="config", overrides=_as_strings(chosen), return_hydra_config=hydra)
    except (HydraException, OmegaConfBaseException, ValueError) as exc:
        return _raise_one_line(_failed_key(exc, chosen), exc, chosen)


def _backend_variant(cfg: DictConfig, name: str, command_line: dict[str, list[str]]) -> DictConfig:
    """The base config with another registered backend: the backend option sets only its identity fields;
    device, runtime knobs etc. come from the experiment and the command line, as in a composed job."""
    variant = copy.deepcopy(cfg)
    registered = dataclasses.asdict(BACKENDS[name])
    for field in BACKEND_IDENTITY:
        if f"backend.{field}" not in command_line:  # a command-line value is already in cfg, for every backend
            variant.backend[field] = registered[field]
    return variant


def _preflight(preflight: Any, cfg: DictConfig) -> None:
    try:
        preflight(cfg)
    except OmegaConfBaseException as exc:  # e.g. an interpolation that does not resolve
        _raise_one_line(getattr(exc, "full_key", None) or "config", exc)


# --- Hydra's exceptions as one line ------------------------------------------------------------


def _failed_key(exc: BaseException, chosen: dict[str, str]) -> str:
    cause = exc.__cause__ or exc
    key = getattr(cause, "full_key", None)
    if key:
        return re.sub(r"\[\d+\]", "", str(key))
    match = (
        re.search(r"override (\S+?)=", str(exc))
        or re.search(r"override '([^']+)'", str(exc))
        or re.search(r"^In '([^'/]+)/", str(exc))  # an error inside a group option's file
    )
    return match.group(1) if match else "override"


def _raise_one_line(field: str, exc: BaseException, chosen: dict[str, str] | None = None) -> typing.NoReturn:
    cause = exc.__cause__ or exc
    text = str(cause)
    if isinstance(exc, MissingConfigException) or isinstance(cause, MissingConfigException):
        missing = re.search(r"Could not find '([^']+)'", str(exc))
        if missing and "/" in missing.group(1):
            group, value = missing.group(1).rsplit("/", 1)
            options = [o for o in (getattr(exc, "options", None) or []) if not o.endswith("_schema")]
            raise ConfigError(
                f"{group}: {value!r} is not a known {group}; choose one of {', '.join(options)}."
                + did_you_mean(value, options)
            ) from None
    if isinstance(cause, ValidationError):
        converted = re.search(r"Value '(.*)' of type '\w+' could not be converted to (\w+)", text)
        if converted:
            value, target = converted.groups()
            want = TYPE_WORDS.get(target, target)
            if field in POSITIVE_LISTS:
                want = "a list of whole numbers > 0, e.g. [16,32]"
            raise ConfigError(f"{field}: {value!r} is not allowed; it must be {want}.") from None
    if isinstance(cause, ValidationError):
        want = "a list of whole numbers > 0, e.g. [16,32]" if field in POSITIVE_LISTS else "a list, e.g. [a,b]"
        not_list = re.search(r"Invalid value assigned: \w+ is not a ListConfig", text)
        not_bool = re.search(r"Value '(.*)' is not a valid bool", text)
        if not_list or not_bool:
            value = chosen.get(field) if chosen else None
            value = not_bool.group(1) if not_bool else value
            raise ConfigError(
                f"{field}: {value!r} is not allowed; it must be {'true or false' if not_bool else want}."
            ) from None
    append = re.search(r"Could not override '([^']+)'\.\s+(No match in the defaults list|To append)", str(exc))
    if append:
        key = append.group(1)
        value = chosen.get(key) if chosen else None
        why = "is not in the defaults list" if append.group(2).startswith("No match") else "is not set by default"
        raise ConfigError(f"{key}: {value!r} cannot be set: {key} {why}; write +{key}={value} to add it.") from None
    if isinstance(cause, ConfigKeyError):
        raise ConfigError(f"{field}: unknown setting ({_first_lines(text)}).") from None
    given = f" ({field}={chosen[field]})" if chosen and field in chosen else ""
    detail = f" ({_first_lines(text)})" if cause is not exc else ""
    raise ConfigError(f"{field}{given}: {_first_lines(str(exc))}{detail}") from None


def _first_lines(text: str) -> str:
    """Hydra's message without its 'full_key: ...' detail lines, on one line."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    keep = [ln for ln in lines if not DETAIL_LINE.match(ln)]
    return " ".join(keep) or "no details"


# --- the plan (harness sweep --plan) -----------------------------------------------------------


def plan_sweep(args: list[str], conf_dir: str) -> Any:
    """The plan of the sweep these (already checked) arguments describe: nothing runs."""
    from hydra import compose, initialize_config_dir

    from harness.config import register_configs
    from harness.hardware import detect
    from harness.plan import make_plan
    from harness.sweep import accuracy_skipped, cell_id_accuracy, cell_id_speed, configurations, with_round

    parsed = _parse_args(args)
    overrides = _parse_overrides(parsed.overrides)
    command_line = {o.get_key_element(): _values(o) for o in overrides}
    register_configs()
    hw = detect()
    with initialize_config_dir(config_dir=conf_dir, version_base="1.3", job_name="harness"):
        first = _compose(compose, {k: v[0] for k, v in command_line.items()}, hydra=True)
        dims = _sweep_dims(first, overrides)
        threads = first.measure.threads or hw.cores_physical
        runs = dims.get("run", [first.run])
        done = {p.stem for run in runs for p in (Path(first.results_dir) / str(run)).glob("*.json")}
        composed: dict[tuple, DictConfig] = {}
        backend_cfgs: dict[tuple, list[Any]] = {}
        spelled = {k.lstrip("+~"): k for k in dims}  # the plan's job keys lose "+"; composing needs it back

        def job_cfg(job: dict[str, str]) -> tuple[DictConfig, list[Any]]:
            """The job's composed config and its backend configurations (its own and the companions
            this machine adds, as `harness.sweep.configurations` runs them)."""
            other = tuple((spelled.get(k, k), v) for k, v in job.items() if k != "backend" and k[:5] != "hydra")
            if other not in composed:
                composed[other] = _compose(compose, dict(other)) if other else first
            cfg = composed[other]
            name = job.get("backend", cfg.backend.name)
            if (other, name) not in backend_cfgs:
                cfg_b = _backend_variant(cfg, name, command_line) if name in BACKENDS else cfg
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

        return make_plan(first, dims, conf_dir, hw, threads, accuracy=not accuracy_skipped(first),
                         done_ids=done, cell_ids=cell_ids, accuracy_ids=accuracy_ids,
                         runs=[str(r) for r in runs])  # fmt: skip
