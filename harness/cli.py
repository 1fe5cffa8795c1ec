"""`harness` entry point: dispatches subcommands; `sweep` hands its arguments to Hydra."""

from __future__ import annotations

import importlib
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import hydra
from omegaconf import DictConfig

from harness.config import ConfigError, register_configs

if TYPE_CHECKING:
    from harness.plan import Plan

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")
log = logging.getLogger("harness")

# subcommand -> "module:function(argv) -> int"; imported only when used
COMMANDS = {
    "sweep": "harness.cli:sweep_main",
    "report": "harness.report.cli:main",
    "recommend": "harness.recommend:main",
    "compare": "harness.compare:main",
    "overhead": "harness.overhead:main",
    "export": "harness.ship:main",
}
USAGE = """usage: harness <command> [args]

commands:
  sweep      run a benchmark sweep (Hydra overrides; e.g. harness sweep backend=onnx,openvino batch_sizes=[16,32])
             speed: interleaved rounds (rounds=auto: 2, a 3rd where the ranking is unsettled; rounds=N fixed)
             --plan: cells, exports, processes and an estimated duration; runs nothing
  report     charts + HTML/Markdown report from the results store
  recommend  which backend to use on this machine, and why
  compare    set two runs side by side (repeatability)
  overhead   harness timing vs a bare encode loop
  export     write a backend's exported model to a folder sentence-transformers loads offline
             (e.g. harness export onnx-qint8 --model minilm --out ./minilm-qint8)

`harness <command> --help` for details. Sweeps: `harness sweep --help` lists config groups."""


def main(argv: list[str] | None = None) -> int:
    """Run a subcommand; a reader that goes away (`harness recommend | head`) ends it quietly."""
    try:
        return _dispatch(sys.argv[1:] if argv is None else argv)
    except BrokenPipeError:
        # Python's documented recipe: point stdout at devnull so the flush at exit cannot fail again.
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (AttributeError, OSError, ValueError):  # a stdout without a file descriptor
            pass
        return 141  # what a shell reports for a process ended by SIGPIPE (128 + 13)


def _dispatch(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        from harness.usage import did_you_mean

        print(f"error: command: {command!r} is unknown; choose one of {', '.join(COMMANDS)}."
              + did_you_mean(command, list(COMMANDS)), file=sys.stderr)  # fmt: skip
        return 2
    module_name, _, func = COMMANDS[command].partition(":")
    try:
        return int(getattr(importlib.import_module(module_name), func)(rest) or 0)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: every finished cell is saved; rerun the same command to resume.", file=sys.stderr)
        return 130


def sweep_main(args: list[str]) -> int:
    from harness.validate import check_overrides

    plan_only = "--plan" in args
    args = [a for a in args if a != "--plan"]
    if not any(a.lstrip("+~").startswith("experiment=") for a in args):
        args = with_default_experiment(args)
    args = [out for a in args for out in _rounds(a)]
    check_overrides(args, CONF_DIR)
    if plan_only:
        from harness.validate import plan_sweep

        print(plan_sweep(args, CONF_DIR).text())
        return 0
    plan = plan_first(args)
    if plan is not None and plan.finished:
        runs = ", ".join(plan.runs)
        print(f"nothing to run: all {plan.cells} cells of run {runs} are in the store already. "
              f"`harness report --run {plan.runs[0]}` shows them; a new run=NAME measures again.")  # fmt: skip
        return 0
    if plan is not None:
        from harness import progress

        progress.expect_cells(plan.cells)  # the bar counts every cell, the machine's variants included
    sys.argv = ["harness sweep", *args]
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
    from harness.validate import plan_sweep

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
    default): up to three, the third only for groups whose ranking is not settled (harness.rounds)."""
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
    from harness.sweep import run_job

    try:
        run_job(cfg)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    sys.exit(main())
