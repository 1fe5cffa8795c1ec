"""Result rows and the store they live in.

The store is a folder: ``<results_dir>/<run>/<cell_id>.json``, one small JSON file per
finished cell, written to a temp file and renamed into place. That one choice gives
kill-safety (a file is either whole or absent), resume (a cell whose file exists is done),
and many writers (workers and machines never touch the same file). Nothing is ever parsed
out of logs and nothing in a result file is executed.

Ratios are *derived* at load time (`load`), never stored, by one pairing rule (`harness.store.analysis`):
speedup is a cell's throughput over torch-fp32's (in its default configuration) of the same run,
machine, model, dataset, batch size, threads and device; accuracy_ratio is a backend's accuracy
over torch-fp32's on the same run, machine, model, evaluation set and metric.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from harness.store import rows
from harness.store.analysis import derive, versions_key, with_identity
from harness.store.cost import with_cost
from harness.store.intervals import with_intervals
from harness.store.kernels import with_twins
from harness.store.labels import (  # noqa: F401 - what readers of the store have always found here
    BASELINE,
    FORMER_KNOBS,
    accuracy_variant,
    backend_of,
    current_variant,
    former_defaults,
    label,
    with_labels,
)
from harness.store.rows import RoundRow

log = logging.getLogger(__name__)

ROUND_KIND = RoundRow.KIND  # a row recording that a later round of a cell was not needed (harness.engine.rounds)
# Columns every row has (None where not applicable), from the row types (harness.store.rows). Kept flat so
# pandas reads it as is.
COLUMNS = rows.COLUMNS
STATUSES = rows.STATUSES


def new_row(**fields: Any) -> dict[str, Any]:
    """A row with every column present, checked by its type (`harness.store.rows`): a column no row has is
    a KeyError, an impossible row (a speed row with an accuracy metric, an unknown status, an ok speed
    row without throughput ...) an `rows.InvalidRow`."""
    return rows.parse(fields).to_flat()


def cell_path(results_dir: Path | str, run: str, cell_id: str) -> Path:
    return Path(results_dir) / run / f"{cell_id}.json"


# A failure worth measuring again by itself: the process was killed (a signal, the memory watch, the kernel)
# or cut at its timeout. Anything else (an export sentence-transformers cannot make, a configuration error,
# a runtime error) would fail the same way again: it is re-measured only when asked (`--retry-failed`).
TRANSIENT = re.compile(
    r"died with signal|out of memory|timed out|timeout|killed|interrupted|terminated|could not fetch|unreachable"
    r"|no space left",
    re.IGNORECASE,
)


def why_run(results_dir: Path | str, run: str, cell_id: str, versions: dict[str, str] | None = None,
            retry_failed: bool = False) -> str | None:  # fmt: skip
    """None when the cell is finished; else why it is (re)measured: "new", "a damaged row", "timeout",
    "failed: killed ...", "library versions changed", or a deterministic failure when `retry_failed`.
    A finished ok cell is never measured again under the same library versions."""
    path = cell_path(results_dir, run, cell_id)
    if not path.exists():
        return "new"
    try:
        row = json.loads(path.read_text(encoding="utf-8"))
        status, reason = row["status"], row.get("reason") or ""
    except (OSError, ValueError, TypeError, KeyError):
        return "a damaged row"
    if versions is not None and row.get("versions") and row["versions"] != versions:
        return "library versions changed"
    if status == "ok" or (status == "unsupported" and not retry_failed):
        return None
    if status == "timeout" or TRANSIENT.search(reason):
        return f"{status}: {reason}" if reason else status
    return f"{status} (--retry-failed): {reason}" if retry_failed else None


def supersede(results_dir: Path | str, run: str, cell_id: str) -> None:
    """Keep a finished row that is about to be measured again (library versions changed) in `.superseded/`,
    where loading does not look: nothing finished is lost."""
    path = cell_path(results_dir, run, cell_id)
    try:
        row = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if isinstance(row, dict) and row.get("status") == "ok":
        keep = path.parent / ".superseded" / f"{cell_id}.{int(path.stat().st_mtime)}.json"
        keep.parent.mkdir(exist_ok=True)
        os.replace(path, keep)


def write_row(results_dir: Path | str, row: dict[str, Any]) -> Path:
    """Write one row atomically (temp file in the same folder + rename), checked by its type: an
    impossible row is refused (`rows.InvalidRow`), never stored."""
    row = rows.parse(row).to_flat()
    path = cell_path(results_dir, row["run"], row["cell_id"])
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(row, f, default=str)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_rows(results_dir: Path | str, runs: list[str] | None = None) -> list[dict[str, Any]]:
    """All rows under the store, every column present; a corrupt file, or one that is not a possible
    row, is reported with its path in one line and skipped. Columns an older harness wrote and this one
    no longer has are ignored."""
    root = Path(results_dir)
    if not root.exists():
        return []
    found = []
    for path in sorted(root.glob("*/*.json")):
        if path.name.startswith(".tmp-") or (runs and path.parent.name not in runs):
            continue
        try:
            row = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(row, dict) or "cell_id" not in row:
                raise ValueError("not a result row")
            row = former_defaults(rows.parse(row, stored=True).to_flat())
        except (OSError, ValueError, TypeError) as exc:
            log.warning("skipping unreadable result file %s: %s", path, exc)
            continue
        found.append(row)
    return found


def load(results_dir: Path | str, runs: list[str] | None = None) -> pd.DataFrame:
    """The store as a DataFrame with every column, rounds pooled, plus derived `device`, `speedup`,
    `accuracy_ratio`, `note` (see `harness.store.analysis`), `label` (what a configuration is called in
    reports), `accuracy_label` (whose accuracy it has), `same_kernels` (the cell's configurations that run
    the same kernels: `harness.store.kernels`) and `usd_per_million_texts` where the machine's
    price is known (`harness.store.cost`); speedups are paired per round with their rerun intervals
    (`harness.store.intervals`)."""
    df = share_agreement(pool_rounds(read_rows(results_dir, runs)))
    df["variant"] = df["variant"].map(current_variant)
    return with_cost(with_twins(with_labels(with_intervals(derive(with_identity(df))))))


_ONE_PER_DATASET = ("run", "machine", "model", "backend", "variant", "dataset")


def share_agreement(df: pd.DataFrame) -> pd.DataFrame:
    """The label-free task metric is one per configuration and dataset, measured in the dataset's last round-0
    cell (harness.engine.agreement_unit): every batch size's speed row of it gets those numbers."""
    if df.empty or "agreement_source" not in df:
        return df
    speed = df["kind"] == "speed"
    keys = df[list(_ONE_PER_DATASET)].astype(str).apply(tuple, axis=1)
    columns = list(rows.AGREEMENT)
    found = {k: df.loc[i, columns] for i, k in keys[speed & df["agreement_source"].notna()].items()}
    for i in df.index[speed & df["agreement_source"].isna()]:
        if keys[i] in found:
            df.loc[i, columns] = found[keys[i]].to_numpy()
    return df


def pool_rounds(stored: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per speed cell: interleaved rounds of the same cell pooled by `rows.SpeedRow.aggregate`
    (from their raw values); a cell whose later round was not needed says why in `round_reason`."""
    groups: dict[tuple, list[rows.SpeedRow]] = {}
    not_needed: dict[tuple, str] = {}  # rounds=auto: cells whose later round was not needed, and why
    out: list[dict[str, Any] | tuple] = []
    for row in stored:
        row = {**dict.fromkeys(COLUMNS), **row}
        if row["kind"] == ROUND_KIND:
            not_needed[(row["run"], row["machine"], row["cell_key"])] = row["reason"]
            continue
        if row["kind"] != "speed" or row["status"] != "ok" or not row.get("cell_key") or not row.get("pass_s"):
            out.append(row)
            continue
        key = (row["run"], row["machine"], row["cell_key"], versions_key(row["versions"]))  # never across versions
        if key not in groups:
            groups[key] = []
            out.append(key)
        groups[key].append(rows.SpeedRow.from_flat(row, stored=True))
    for key, rounds_ in groups.items():
        pooled = rows.SpeedRow.aggregate(rounds_)
        if key[:3] in not_needed:
            pooled.timing.round_reason = not_needed[key[:3]]
        groups[key] = [pooled]
    flat = [groups[r][0].to_flat() if isinstance(r, tuple) else r for r in out]
    return pd.DataFrame(flat, columns=list(COLUMNS))
