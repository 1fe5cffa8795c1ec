"""A sweep's command line, read with Hydra's own parser: flags, override syntax, group values and keys
checked against the schema, and Hydra's exceptions turned into one `field: value ... allowed` line."""

from __future__ import annotations

import dataclasses
import functools
import re
import typing
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import MissingConfigException, OverrideParseException
from omegaconf.errors import ConfigKeyError, ValidationError

from harness import backends
from harness.config import ACCURACY_SOURCE_KEYS, ACCURACY_TASKS, SweepConfig
from harness.core.usage import ConfigError, did_you_mean

GROUPS = ("model", "dataset", "backend", "experiment")


POSITIVE_LISTS = ("batch_sizes", "model.batch_sizes", "model.batch_sizes_gpu")


TYPE_WORDS = {"Integer": "a whole number", "Float": "a number", "Boolean": "true or false", "String": "a string"}


OPEN_CHILDREN = {f"accuracy.{task}": ACCURACY_SOURCE_KEYS for task in ACCURACY_TASKS}  # free-form dicts' keys


DETAIL_LINE = re.compile(r"(full_key|reference_type|object_type|Config search path|provider=)")


# flags that run no job, or compose another primary config than conf/config.yaml
ONLY_PARSE = ("help", "hydra_help", "info", "shell_completion", "config_name", "config_path", "config_dir",
              "experimental_rerun")  # fmt: skip


def group_options(conf_dir: str, group: str) -> list[str]:
    options = sorted(p.stem for p in (Path(conf_dir) / group).glob("*.yaml"))
    return sorted(set(options) | set(backends.names())) if group == "backend" else options


def parse_args(args: list[str]) -> Any:
    from hydra._internal.utils import get_args_parser

    parser = get_args_parser()

    def error(message: str) -> typing.NoReturn:
        raise ConfigError(f"harness sweep: {message}; see `harness sweep --help`.")

    parser.error = error  # type: ignore[method-assign]
    return parser.parse_args(args)


def check_cfg_flag(parsed: Any, overrides: list[Override]) -> None:
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


def parse_overrides(strings: list[str]) -> list[Override]:
    try:
        return OverridesParser.create().parse_overrides(strings)
    except OverrideParseException as exc:
        detail = first_lines(exc.message).split(" See https://")[0]
        raise ConfigError(
            f"override: {exc.override!r} cannot be parsed ({detail}); write key=value, key=a,b to sweep, "
            "key=[a,b] for a list (https://hydra.cc/docs/advanced/override_grammar/basic)."
        ) from None


def check_group_values(o: Override, conf_dir: str) -> None:
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


@functools.cache
def sweep_keys() -> tuple[dict[str, list[str]], set[str]]:
    """The sweep schema's keys, `backend.*` from the backend schema every family's knobs make up."""
    children, open_keys = schema_keys(SweepConfig)
    sub, sub_open = schema_keys(backends.schema(), "backend")
    return {**children, **sub}, (open_keys - {"backend"}) | sub_open


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


def check_key(o: Override, conf_dir: str) -> None:
    """A key that is neither a config group nor a field of the schema is a typo: say so, suggest the nearest."""
    key = o.key_or_group
    if key.startswith("hydra") or "/" in key or key in GROUPS or (Path(conf_dir) / key).is_dir() or o.is_delete():
        return  # Hydra's own keys and config groups: checked when composing
    children, open_keys = sweep_keys()
    parts = key.split(".")
    for depth in range(1, len(parts) + 1):
        parent, name = ".".join(parts[: depth - 1]), parts[depth - 1]
        if parent in OPEN_CHILDREN and name not in OPEN_CHILDREN[parent]:
            allowed = OPEN_CHILDREN[parent]
            raise ConfigError(
                f"{key}: unknown setting (given {given(o)}); {parent} has {', '.join(allowed)}."
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
        f"{key}: unknown setting (given {given(o)}); {where} {', '.join(siblings)}." + did_you_mean(key, known)
    )


def given(o: Override) -> str:
    return o.input_line or f"{o.get_key_element()}={o.get_value_element_as_str()}"


def values_of(o: Override) -> list[str | None]:
    if o.is_delete() and o.value() is None:
        return [None]
    return list(o.sweep_string_iterator()) if o.is_sweep_override() else [o.get_value_element_as_str()]


def failed_key(exc: BaseException, chosen: dict[str, str]) -> str:
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


def raise_one_line(field: str, exc: BaseException, chosen: dict[str, str] | None = None) -> typing.NoReturn:
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
        raise ConfigError(f"{field}: unknown setting ({first_lines(text)}).") from None
    given = f" ({field}={chosen[field]})" if chosen and field in chosen else ""
    detail = f" ({first_lines(text)})" if cause is not exc else ""
    raise ConfigError(f"{field}{given}: {first_lines(str(exc))}{detail}") from None


def first_lines(text: str) -> str:
    """Hydra's message without its 'full_key: ...' detail lines, on one line."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    keep = [ln for ln in lines if not DETAIL_LINE.match(ln)]
    return " ".join(keep) or "no details"
