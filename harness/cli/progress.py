"""Hydra callback: a progress bar over a sweep's cells with an ETA, and the summary table at the end
(CLI output). Cells report to the bar from `harness.engine.sweep` when the jobs run in this process (the
basic launcher); with other launchers the bar moves per job."""

from __future__ import annotations

import math
import shlex
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig
from tqdm import tqdm

from harness.cli.logs import LOG_NAME
from harness.config import CONF_DIR
from harness.store import results
from harness.store.intervals import verdicts
from harness.store.stats import span


def swept_values(config: DictConfig) -> dict[str, list[str]]:
    """Each key of a multirun with the values it takes (sweeper params, then the command line)."""
    params = config.hydra.sweeper.get("params") or {}
    overrides = [f"{k}={v}" for k, v in params.items()] + list(config.hydra.overrides.task)
    values: dict[str, list[str]] = {}
    for o in OverridesParser.create().parse_overrides(overrides):
        swept = o.is_sweep_override()
        values[o.key_or_group] = list(o.sweep_string_iterator()) if swept else [o.get_value_element_as_str()]
    return values


def count_jobs(config: DictConfig) -> int:
    """Jobs in a multirun: the product of the numbers of swept values."""
    return math.prod(len(v) for v in swept_values(config).values())


def swept_runs(config: DictConfig) -> list[str]:
    """The run names a multirun wrote to: `run=a,b` sweeps them like any other key."""
    return swept_values(config).get("run") or [config.run]


def summary(results_dir: str, runs: list[str], since: str | None = None) -> str:
    """The rows of the runs (every machine that wrote to them: a SLURM sweep's nodes are not the
    launching one): one line per speed cell, then accuracy. `since` (an ISO time) limits the
    timed-share line to the rows written by this sweep."""
    df = results.load(results_dir, runs)
    if df.empty:
        return f"no results in run(s) {', '.join(runs)}"
    lines = []
    first = ["run"] if df["run"].nunique() > 1 else []
    first += ["machine"] if df["machine"].nunique() > 1 else []
    speed = df[df["kind"] == "speed"]
    if not speed.empty:
        order = _identity(speed, [*first, "model", "dataset", "batch_size", "backend"])
        speed = speed.assign(**{"speedup (95% rerun)": [interval_text(r) for r in speed.to_dict("records")]})
        twins = [", ".join(t) if isinstance(t, tuple) else "" for t in speed.get("same_kernels", [()] * len(speed))]
        speed = speed.assign(**{"same kernels as": twins})
        table = speed[[*order, "status", "precision", "throughput", "speedup (95% rerun)", "same kernels as",
                       "latency_p50_ms", "rounds", "fidelity_min_cos", "contended"]]  # fmt: skip
        lines.append(_fmt(table.sort_values(order, key=_backend_order)))
        contended = int(speed["contended"].fillna(False).astype(bool).sum())
        lines.append(f"\n{contended} of {len(speed)} speed cells were contended (another process used the CPU).")
        lines += _verdict_lines(df)
    acc = df[df["kind"] == "accuracy"]
    if not acc.empty:
        order = _identity(acc, [*first, "model", "dataset", "backend"])
        table = acc[[*order, "status", "metric", "accuracy", "accuracy_ratio", "fidelity_mean_cos",
                     "fidelity_spearman"]]  # fmt: skip
        lines.append("\n" + _fmt(table.sort_values(order, key=_backend_order)))
    failed = df[df["status"] != "ok"]
    for _, row in failed.drop_duplicates(["backend", "reason"]).iterrows():
        lines.append(f"{row['backend']}: {row['status']}: {row['reason']}")
    return "\n".join(lines)


def interval_text(row: dict[str, Any]) -> str:
    """'2.35x (2.21-2.50)', '2.35x' without an interval, '' without a speedup."""
    value, low, high = row.get("speedup"), row.get("speedup_low"), row.get("speedup_high")
    if value is None or pd.isna(value):
        return ""
    return f"{value:.2f}x" + span(low, high)


def _verdict_lines(df: pd.DataFrame) -> list[str]:
    """Each group's leader against its runner-up (paired per round), and the groups left undecided."""
    found = verdicts(df)
    if not found:
        return []
    lines = ["\nleader vs runner-up (paired per round, 95 % rerun interval; tied: within the resolution):"]
    lines += [f"  {v.line()}" for v in found]
    undecided = [v for v in found if v.status == "undecided"]
    if undecided:
        names = "; ".join("/".join(str(g) for g in v.group[2:5]) + f" {v.scenario}{_needed(v)}" for v in undecided)
        lines.append(f"undecided after the effort cap: {names} (the rounds up to the cap could not settle them at "
                     "this machine's spread between processes; rounds=N with a larger N measures more)")  # fmt: skip
        lines += [f"  {command}" for command in duel_commands(undecided)]
    return lines


def _needed(v: Any) -> str:
    """' (needs ~25 rounds at s 0.05, has 3)': what settling an undecided verdict would take on this machine."""
    n = v.rounds_needed
    return "" if n is None else f" (needs ~{n} rounds at s {v.spread.s:.2f}, has {v.estimate.n})"


def duel_commands(undecided: list[Any]) -> list[str]:
    """For each undecided bulk verdict, the `harness duel` that settles it with neighbouring passes (README,
    "How steady are the ratios"): the sweep's paired rounds were measured seconds apart, in other host phases.
    Online verdicts rank by p99, which a duel's bulk passes do not measure."""
    out = []
    for v in undecided:
        if v.scenario != "bulk" or v.runner_up is None:
            continue
        model, dataset, batch_size = v.group[2:5]
        out.append(f"settle {model}/{dataset}/{batch_size}: harness duel {shlex.quote(v.leader)} "
                   f"{shlex.quote(v.runner_up)} dataset={dataset} batch_sizes=[{batch_size}] --rounds 6 "
                   "(and the sweep's model=)")  # fmt: skip
    return out


def _identity(rows: pd.DataFrame, keys: list[str]) -> list[str]:
    """The columns that tell the rows apart: `keys`, plus `variant` when some row has swept knobs."""
    return [*keys, "variant"] if rows["variant"].astype(bool).any() else keys


def _backend_order(col: pd.Series) -> pd.Series:
    """Registered backends in their order, then any other name (e.g. from an older store) after them."""
    from harness import backends

    order = {name: i for i, name in enumerate(backends.names())}
    return col.map(lambda b: (order.get(b, len(order)), str(b))) if col.name == "backend" else col


def _fmt(table: pd.DataFrame) -> str:
    return table.to_string(index=False, float_format=lambda v: f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}")


def written_since(results_dir: str, runs: list[str], since: str) -> list[dict[str, Any]]:
    """The rows of `runs` written since `since` (an ISO time): this sweep's, on any machine."""
    return [r for r in results.read_rows(results_dir, runs) if (r.get("timestamp") or "") >= since]


def failures(written: list[dict[str, Any]]) -> str | None:
    """One line for the cells of `written` that failed or timed out, None when there were none."""
    rows = [r for r in written if r.get("kind") in ("speed", "accuracy", "server")]
    bad = [r for r in rows if r.get("status") in ("failed", "timeout")]
    if not bad:
        return None
    counts = ", ".join(f"{n} {s}" for s, n in sorted(pd.Series([r["status"] for r in bad]).value_counts().items()))
    return (
        f"{len(bad)} of {len(rows)} cells of this sweep did not finish ({counts}): their rows say why. Run the "
        "same command again to measure timeouts and killed cells again; --retry-failed for every failure."
    )


def timed_share(rows: list[dict[str, Any]], wall_s: float) -> str:
    """How much of the sweep's wall time was measurement: the timed passes of the rows it wrote (a server cell:
    its share of its group's time, warm-up, bulk passes and rate points)."""
    timed = sum(float(r.get("measure_s") or 0.0) for r in rows if r.get("kind") == "speed")
    served = [r for r in rows if r.get("kind") == "server" and r.get("status") == "ok"]
    timed += sum(float(r.get("duration_s") or 0.0) for r in served)
    cells = sum(1 for r in rows if r.get("kind") in ("speed", "accuracy") or
                (r.get("kind") == "server" and r.get("status") == "ok"))  # fmt: skip
    share = f" ({timed / wall_s:.0%})" if wall_s > 0 else ""
    return f"timed {timed:.0f} s of {wall_s:.0f} s{share}; {cells} cells measured in this sweep"


_ACTIVE: SweepProgress | None = None  # the bar of the sweep running in this process, if any
FAILED: list[str] = []  # the failure lines of the sweeps this process ran (`harness sweep` exits 1 on one)
_EXPECTED: int | None = None  # the cells the sweep's plan counted (harness.cli), if it made one
_ESTIMATE_S: float | None = None  # and the duration it estimated from this machine's rows
# with a plan's estimate the bar shows what is left of it, not tqdm's cells-per-second forecast: later rounds'
# cells mostly end at once (not needed), so that forecast read 45 min at the first cell of a 7-min sweep
PLANNED_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}, {rate_fmt}{postfix}]"


def expect_cells(n: int, estimate_s: float | None = None) -> None:
    """The next sweep in this process has `n` cells (its plan's count: variants and every round) and takes
    about `estimate_s` (the plan's estimate; None: unknown)."""
    global _EXPECTED, _ESTIMATE_S
    _EXPECTED, _ESTIMATE_S = n, estimate_s or None


def left_of_plan(estimate_s: float, elapsed_s: float) -> str:
    """'about 4:10 left by the plan', or 'past the plan's 6:40' once the sweep runs longer than estimated."""
    left = estimate_s - elapsed_s
    if left <= 0:
        return f"past the plan's {_clock(estimate_s)}"
    return f"about {_clock(left)} left by the plan"


def _clock(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}" if m >= 60 else f"{m}:{s:02d}"


def cell_done(row: dict[str, Any]) -> None:
    """A cell's row was written (`harness.engine.sweep.run_job`'s progress callback; a no-op without a bar
    in this process)."""
    if _ACTIVE is not None:
        what = f"{row['model']} {row['dataset']} {results.label(row['backend'], row['variant'] or '')}"
        _ACTIVE.advance([row.get("cell_id")], what)


def cells_skipped(ids: list[str]) -> None:
    """Cells found done in the store (resume): they count as finished, and take no time. Counted once: jobs
    that name the same cells (a knob only some backends have, e.g. ov_hint over torch) find them done again."""
    if _ACTIVE is not None and ids:
        _ACTIVE.advance(ids, None, skipped=True)


class SweepProgress(Callback):
    def __init__(self) -> None:
        self.bar: Any = None
        self.start = 0.0
        self.since = ""
        self.estimate_s = 0.0
        self.planned = 0
        self.skipped = 0
        self.in_process = False
        self.counted: set[str] = set()  # cell ids the bar has counted
        self.what = ""  # the last cell measured

    def __getstate__(self) -> dict[str, Any]:
        """Launchers (joblib, submitit) pickle callbacks: an open progress bar does not travel."""
        return {**self.__dict__, "bar": None}

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        global _ACTIVE
        self.start = time.monotonic()
        self.since = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.planned = _EXPECTED or count_cells(config)
        self.estimate_s = _ESTIMATE_S or 0.0
        fmt = {"bar_format": PLANNED_FORMAT} if self.estimate_s else {}
        self.bar = tqdm(total=self.planned, unit="cell", desc="sweep", file=sys.stderr, dynamic_ncols=True, **fmt)
        _ACTIVE = self

    def advance(self, ids: list[str | None], what: str | None, skipped: bool = False) -> None:
        self.in_process = True
        if self.bar is None:
            return
        n = sum(1 for i in ids if i is None or i not in self.counted)
        self.counted.update(i for i in ids if i is not None)
        self.skipped += n if skipped else 0
        if self.bar.n + n > self.bar.total:  # more cells than counted (a companion variant, adaptive rounds)
            self.bar.total = self.bar.n + n
        self.what = what or self.what
        if self.estimate_s:
            left = left_of_plan(self.estimate_s, time.monotonic() - self.start)
            self.bar.set_postfix_str(f"{self.what}; {left}" if self.what else left, refresh=False)
        elif what:
            self.bar.set_postfix_str(what, refresh=False)
        self.bar.update(n)

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        if self.bar is not None and not self.in_process:  # jobs ran elsewhere: move per job
            self.bar.set_postfix_str(f"{config.model.name} {config.dataset.name} {config.backend.name}")
            self.bar.update(len(config.batch_sizes or config.model.batch_sizes))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        global _ACTIVE
        _ACTIVE = None
        if self.bar is not None:
            # with remote launchers on_job_end runs in the workers: the bar completes here
            self.bar.update(max(0, self.bar.total - self.bar.n))
            self.bar.close()
        runs = swept_runs(config)
        print(summary(config.results_dir, runs))
        written = written_since(config.results_dir, runs, self.since)
        print(timed_share(written, time.monotonic() - self.start))
        print(f"log: {Path(str(config.hydra.sweep.dir)) / LOG_NAME}")
        self._failures(written)

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.since = datetime.now(timezone.utc).isoformat(timespec="seconds")

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        print(summary(config.results_dir, [config.run]))
        self._failures(written_since(config.results_dir, [config.run], self.since))

    @staticmethod
    def _failures(written: list[dict[str, Any]]) -> None:
        line = failures(written)
        if line:
            print(line, file=sys.stderr)
            FAILED.append(line)


def count_cells(config: DictConfig) -> int:
    """Speed cells in a multirun: jobs times the batch sizes of each job's model (rounds=auto: all rounds)."""
    from harness.engine.plan import grid, model_batch_sizes

    dims = swept_values(config)
    total = 0
    for job in grid({k: v for k, v in dims.items() if not k.startswith("hydra")}):
        if "batch_sizes" in job:
            total += job["batch_sizes"].count(",") + 1
        elif config.batch_sizes is not None:
            total += len(config.batch_sizes)
        else:
            total += len(model_batch_sizes(_conf_dir(), job.get("model", config.model.name)))
    return total


def _conf_dir() -> str:
    return CONF_DIR
