"""Check sweep overrides before Hydra runs: unknown names get one line with 'did you mean'."""

from __future__ import annotations

from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import OverrideParseException

from harness.config import BACKEND_NAMES, ConfigError, did_you_mean

GROUPS = ("model", "dataset", "backend", "experiment")


def group_options(conf_dir: str, group: str) -> list[str]:
    options = sorted(p.stem for p in (Path(conf_dir) / group).glob("*.yaml"))
    return sorted(set(options) | set(BACKEND_NAMES)) if group == "backend" else options


def check_overrides(args: list[str], conf_dir: str) -> None:
    from hydra._internal.utils import get_args_parser

    try:
        overrides = OverridesParser.create().parse_overrides(get_args_parser().parse_args(args).overrides)
    except OverrideParseException as exc:
        raise ConfigError(f"override: {exc}".splitlines()[0]) from None
    for o in overrides:
        group = o.key_or_group
        if group not in GROUPS or o.is_delete():
            continue
        allowed = group_options(conf_dir, group)
        values = list(o.sweep_string_iterator()) if o.is_sweep_override() else [o.get_value_element_as_str()]
        for value in values:
            if value not in allowed:
                raise ConfigError(
                    f"{group}: {value!r} is not a known {group}; choose one of {', '.join(allowed)}."
                    + did_you_mean(value, allowed)
                )
