"""`harness sweep`: check the command line, plan, then hand the overrides to Hydra's multirun."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
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
    retry = ["retry_failed=true"] if "--retry-failed" in args else []
    args = [a for a in args if a not in ("--plan", "--retry-failed")] + retry
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
    from harness.cli import progress

    if plan is not None:
        progress.expect_cells(plan.cells, plan.estimate_s)  # every cell, the machine's variants included
    sys.argv = ["harness sweep", *args]
    from harness.engine.grid import register_configs

    register_configs()
    progress.FAILED.clear()
    with contextlib.ExitStack() as held:
        if plan is not None:
            for run in plan.runs:
                held.enter_context(run_lock(Path(plan.results_dir) / run, run))
        try:
            with stop_on_signals():
                _hydra_sweep()
        except Terminated as stop:
            from harness.engine.workers import POOL

            POOL.kill()  # idle workers too: nothing of this sweep outlives it
            print(f"\n{stop}: every finished cell is saved; rerun the same command to resume.", file=sys.stderr)
            return 143  # as for SIGTERM (128 + 15), whichever notice stopped it: schedulers read this one
    return 1 if progress.FAILED else 0  # every job ran; some cells did not finish (the summary said which)


class Terminated(BaseException):
    """SIGTERM or SIGUSR2 (SLURM's preemption and time-limit notices): end the cell now, keep the rows."""

    def __init__(self, signum: int):
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """While the sweep runs, SIGTERM and SIGUSR2 raise `Terminated` where the sweep waits: the unit it waits
    for is killed as on Ctrl-C (isolation and workers take their process down with them), within a second
    of the signal, well inside SLURM's 30 s KillWait."""

    def stop(signum: int, frame: object) -> None:
        raise Terminated(signum)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGUSR2)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextlib.contextmanager
def run_lock(folder: Path, run: str) -> Iterator[None]:
    """One sweep at a time on a run (two would measure the same cells at once and time each other's load):
    a second one is refused in one line, naming the one that holds it."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / ".sweep.lock"
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise ConfigError(
                f"run: {run!r} is being measured by another sweep ({holder}); wait for it to finish, "
                "or give this one another run=NAME."
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}, since {time.strftime('%H:%M:%S')}")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


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


AUTO_ROUNDS = 3  # rounds=auto: one round, then more (up to 3) only where a configuration's place is undecided


def _rounds(arg: str) -> list[str]:
    """`rounds=N` -> N interleaved rounds: `round` swept outermost, so every backend of a group is
    measured once before any is measured again (slow drift hits all alike). `rounds=auto` (the
    default): up to three, those after the first only for configurations whose place is undecided
    (harness.engine.rounds)."""
    if not arg.startswith("rounds="):
        return [arg]
    value = arg.partition("=")[2]
    if value == "auto":
        count, adaptive = AUTO_ROUNDS, "true"
    elif value.isdigit() and int(value) >= 1:
        count, adaptive = int(value), "false"
    else:
        raise ConfigError(f"rounds: {value!r} is not allowed; it must be auto or a whole number >= 1.")
    return [f'hydra.sweeper.params.round="{",".join(str(r) for r in range(count))}"', f"adaptive_rounds={adaptive}",
            f"round_cap={count}"]  # fmt: skip


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def _hydra_sweep(cfg: DictConfig) -> None:
    from harness.cli import progress
    from harness.engine.sweep import STORE_FULL, run_job

    try:
        run_job(cfg, progress)  # a job that cannot run writes failed rows and returns: the others go on
    except ConfigError as exc:  # not even rows could be written (e.g. results_dir)
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except OSError as exc:  # the store is full or read-only: every job would fail the same way
        if exc.errno not in STORE_FULL:
            raise
        print(f"error: results_dir: {cfg.results_dir!r}: a row cannot be written ({exc.strerror}); every row "
              "written so far is kept: make room and rerun the same command to resume.", file=sys.stderr)  # fmt: skip
        raise SystemExit(1) from None
