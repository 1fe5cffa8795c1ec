"""`harness sweep`: check the command line, plan, then hand the overrides to Hydra's multirun."""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING

import hydra
from omegaconf import DictConfig

from harness.config import CONF_DIR
from harness.core.usage import ConfigError

if TYPE_CHECKING:
    from harness.engine.plan import Plan

log = logging.getLogger(__name__)


def main(args: list[str]) -> int:
    from harness.engine.grid import check_overrides

    plan_only = "--plan" in args
    args = [a for a in args if a != "--plan"]
    if not any(a.lstrip("+~").startswith("experiment=") for a in args):
        args = with_default_experiment(args)
    args = [out for a in args for out in _rounds(a)]
    check_overrides(args, CONF_DIR)
    if plan_only:
        from harness.engine.grid import plan_sweep

        print(plan_sweep(args, CONF_DIR).text())
        return 0
    plan = plan_first(args)
    if plan is not None and plan.finished:
        runs = ", ".join(plan.runs)
        print(f"nothing to run: all {plan.cells} cells of run {runs} are in the store already. "
              f"`harness report --run {plan.runs[0]}` shows them; a new run=NAME measures again.")  # fmt: skip
        return 0
    if plan is not None:
        from harness.cli import progress

        progress.expect_cells(plan.cells)  # the bar counts every cell, the machine's variants included
    sys.argv = ["harness sweep", *args]
    from harness.engine.grid import register_configs

    register_configs()
    _hydra_sweep()
    return 0


def plan_first(args: list[str]) -> Plan | None:
    """The sweep's plan, before any Hydra job: a finished sweep says so and starts none (each job would
    compose its config and find its cells done, ~0.35 s apiece), and the progress bar gets every cell,
    the machine's companion variants included. None for Hydra flags (`--cfg`, `-m`, a launcher's own):
    they take the ordinary path, and so does a plan that could not be made."""
    if any(a.startswith("-") for a in args):
        return None
    from harness.engine.grid import plan_sweep

    try:
        return plan_sweep(args, CONF_DIR)
    except ConfigError:
        raise
    except Exception:  # noqa: BLE001 - only a shortcut: the sweep itself goes on and checks its own input
        logging.getLogger(__name__).debug("planning failed; running the sweep", exc_info=True)
        return None


def with_default_experiment(args: list[str]) -> list[str]:
    """Add `+experiment=default` next to the first override, so Hydra's parser reads it as one of
    the overrides wherever flags stand (`-m run=x`, `run=x --cfg job`, `--cfg job run=x`)."""
    at = next((i for i, a in enumerate(args) if "=" in a and not a.startswith("-")), len(args))
    return [*args[:at], "+experiment=default", *args[at:]]


AUTO_ROUNDS = 3  # rounds=auto: two rounds, then a third only where the ranking is not settled


def _rounds(arg: str) -> list[str]:
    """`rounds=N` -> N interleaved rounds: `round` swept outermost, so every backend of a group is
    measured once before any is measured again (slow drift hits all alike). `rounds=auto` (the
    default): up to three, the third only for groups whose ranking is not settled (harness.engine.rounds)."""
    if not arg.startswith("rounds="):
        return [arg]
    value = arg.partition("=")[2]
    if value == "auto":
        count, adaptive = AUTO_ROUNDS, "true"
    elif value.isdigit() and int(value) >= 1:
        count, adaptive = int(value), "false"
    else:
        raise ConfigError(f"rounds: {value!r} is not allowed; it must be auto or a whole number >= 1.")
    return [f'hydra.sweeper.params.round="{",".join(str(r) for r in range(count))}"', f"adaptive_rounds={adaptive}"]


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def _hydra_sweep(cfg: DictConfig) -> None:
    from harness.cli import progress
    from harness.engine.sweep import run_job

    try:
        run_job(cfg, progress)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
