"""Hydra callback: a progress bar over a sweep's jobs and the summary table at the end (CLI output)."""

from __future__ import annotations

import math
import sys
from typing import Any

import pandas as pd
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig
from tqdm import tqdm

from harness import results
from harness.hardware import detect


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


def summary(results_dir: str, runs: list[str]) -> str:
    """This machine's rows of the runs: one line per speed cell, then accuracy."""
    df = results.load(results_dir, runs)
    df = df[df["machine"] == detect().fingerprint]
    if df.empty:
        return f"no results in run(s) {', '.join(runs)} for this machine"
    lines = []
    first = ["run"] if df["run"].nunique() > 1 else []
    speed = df[df["kind"] == "speed"]
    if not speed.empty:
        order = _identity(speed, [*first, "model", "dataset", "batch_size", "backend"])
        table = speed[[*order, "status", "precision", "throughput", "speedup", "latency_p50_ms", "cv", "contended"]]
        lines.append(_fmt(table.sort_values(order, key=_backend_order)))
        contended = int(speed["contended"].fillna(False).astype(bool).sum())
        lines.append(f"\n{contended} of {len(speed)} speed cells were contended (another process used the CPU).")
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


def _identity(rows: pd.DataFrame, keys: list[str]) -> list[str]:
    """The columns that tell the rows apart: `keys`, plus `variant` when some row has swept knobs."""
    return [*keys, "variant"] if rows["variant"].astype(bool).any() else keys


def _backend_order(col: pd.Series) -> pd.Series:
    from harness.config import BACKEND_NAMES

    return col.map(BACKEND_NAMES.index) if col.name == "backend" else col


def _fmt(table: pd.DataFrame) -> str:
    return table.to_string(index=False, float_format=lambda v: f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}")


class SweepProgress(Callback):
    def __init__(self) -> None:
        self.bar: Any = None

    def __getstate__(self) -> dict[str, Any]:
        """Launchers (joblib, submitit) pickle callbacks: an open progress bar does not travel."""
        return {**self.__dict__, "bar": None}

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.bar = tqdm(total=count_jobs(config), unit="job", desc="sweep", file=sys.stderr, dynamic_ncols=True)

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(f"{config.model.name} {config.dataset.name} {config.backend.name}")
            self.bar.update(1)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self.bar is not None:
            # with remote launchers on_job_end runs in the workers: the bar completes here
            self.bar.update(self.bar.total - self.bar.n)
            self.bar.close()
        print(summary(config.results_dir, swept_runs(config)))

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        print(summary(config.results_dir, [config.run]))
