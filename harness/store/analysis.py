"""What the rows mean: one rule for each question that report, recommend and compare all ask.

* what a row measured (`with_identity`): rows are told apart by their model's and texts' content and the
  library versions, not by names alone; same-named groups that differ get labels that say how;
* where a row ran (`device_of`): read back from the runtime, never guessed from the machine;
* which torch-fp32 a row is compared with (`baselines`, `with_ratios`): the same run, machine,
  model, dataset, batch size, threads and device, and torch-fp32 in its own default configuration
  (empty variant) - a torch-fp32 swept over a knob is a variant like any other, not the baseline;
* what counts as contended (`contended_mask`): measured under contention, or compared with a
  torch-fp32 that was;
* what a reader must know about an ok row (`with_notes`): e.g. a cell smaller than one batch;
* the accuracy of a configuration (`accuracy_by_configuration`): mean per metric
  (`accuracy_per_metric`), then over metrics;
* how far a configuration's outputs are from torch-fp32's (`worst_fidelity`, `fidelity_by_configuration`):
  the worst case over the rows, evaluation sets first, else the timed texts;
* how much task a configuration loses without labels (`worst_agreement`): the largest label-free task
  loss over its rows (datasets), with the metric and the fewest texts behind it;
* which machine a name on the command line means (`find_machine`): the fingerprint or a unique prefix.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from harness import backends
from harness.core.files import digest
from harness.core.usage import UsageError, did_you_mean
from harness.store.labels import BASELINE, with_labels

# The one pairing rule: a speed row is compared with the torch-fp32 row that agrees on all of these;
# an accuracy row with the one of the same evaluation (device does not change what is measured there).
# The keys (`with_identity`) are "" for rows written before rows carried them: such rows pair only with
# each other, never with a row whose identity is known.
IDENTITY = ["model_key", "dataset_key", "versions_key"]
SPEED_PAIRING = ["run", "machine", "model", "dataset", "batch_size", "threads", "device", *IDENTITY]
ACCURACY_PAIRING = ["run", "machine", "model", "dataset", "metric", *IDENTITY]


def as_dict(value: Any) -> dict:
    """A JSON column's value as a dict ({} for a missing or malformed one)."""
    return value if isinstance(value, dict) else {}


def device_of(row: dict[str, Any]) -> str:
    """'GPU' or 'CPU': where this row's backend ran, as its runtime reported (`runtime["device"]`).

    Rows written before the runtimes reported it fall back to what the row recorded, as its
    backend family reads it (`Backend.device_without_readback`).
    """
    device = as_dict(row.get("runtime")).get("device")
    if not (isinstance(device, str) and device):
        hardware, settings = as_dict(row.get("hardware")), as_dict(row.get("settings"))
        family = settings.get("st_backend") or backends.family_of(str(row.get("backend")))
        if family in backends.registry():
            device = backends.backend_class(family).device_without_readback(settings, hardware)
        else:
            device = "cuda" if hardware.get("gpu") else "cpu"
    return "CPU" if device.lower().startswith("cpu") else "GPU"


def with_device(df: pd.DataFrame) -> pd.DataFrame:
    """`df` with a `device` column ('CPU' / 'GPU', see `device_of`) for every row."""
    df = df.copy()
    df["device"] = [device_of(r) for r in df.to_dict("records")] if len(df) else pd.Series(dtype=object)
    return df


def with_keys(df: pd.DataFrame) -> pd.DataFrame:
    """`df` with the identity columns pairing needs ("" where a row has none: rows built without the store)."""
    missing = [k for k in IDENTITY if k not in df]
    if not missing:
        return df
    df = df.copy()
    for key in missing:
        df[key] = [versions_key(v) for v in df["versions"]] if key == "versions_key" and "versions" in df else ""
    return df


def baselines(df: pd.DataFrame, kind: str = "speed") -> pd.DataFrame:
    """The torch-fp32 rows other rows of `kind` are compared with: ok, in the default configuration
    (empty variant), one per pairing key (the latest by timestamp when a cell was measured twice)."""
    keys = SPEED_PAIRING if kind == "speed" else ACCURACY_PAIRING
    df = with_keys(df)
    variant = df["variant"].fillna("").astype(str) if "variant" in df else pd.Series("", index=df.index)
    base = df[(df["kind"] == kind) & (df["status"] == "ok") & (df["backend"] == BASELINE) & (variant == "")]
    base = base.sort_values("timestamp", kind="stable", na_position="first") if "timestamp" in base else base
    return base.drop_duplicates(keys, keep="last")


# (kind, pairing, measured value, ratio column): bulk throughput -> speedup, one call per request ->
# speedup_per_request (the two ways of timing, harness.engine.measure), accuracy -> accuracy_ratio.
RATIOS = (
    ("speed", SPEED_PAIRING, "throughput", "speedup"),
    ("speed", SPEED_PAIRING, "per_request_throughput", "speedup_per_request"),
    ("accuracy", ACCURACY_PAIRING, "accuracy", "accuracy_ratio"),
)


def with_ratios(df: pd.DataFrame) -> pd.DataFrame:
    """Add `device`, `speedup` / `speedup_per_request` (speed rows) and `accuracy_ratio` (accuracy rows)
    against their baseline."""
    df = with_keys(with_device(df) if "device" not in df else df.copy())
    for _, _, _, ratio in RATIOS:
        df[ratio] = float("nan")
    if df.empty:
        return df
    for kind, keys, value, ratio in RATIOS:
        base = baselines(df, kind)
        if base.empty:
            continue
        rows = df[(df["kind"] == kind) & (df["status"] == "ok")]
        base = base[keys + [value]].rename(columns={value: "_base"})
        merged = df.loc[rows.index, keys + [value]].merge(base, on=keys, how="left")
        merged.index = rows.index
        df.loc[rows.index, ratio] = merged[value].astype(float) / merged["_base"].astype(float)
    return df


def versions_key(versions: Any) -> str:
    """A digest of a row's library versions ("" when the row has none)."""
    return digest(versions) if isinstance(versions, dict) and versions else ""


def with_identity(df: pd.DataFrame) -> pd.DataFrame:
    """Add `versions_key`, fill missing keys with "", and give same-named groups that measured different
    things different names: two models called `mine` from two folders become `mine [folder-a]` and
    `mine [folder-b]`; two files swept as `dataset=file` become `file [a.txt]` and `file [b.txt]` (the short
    key where the file names are the same too; `[?]` for rows that carry no key)."""
    df = df.copy()
    if df.empty:
        return df.assign(versions_key=pd.Series(dtype=object))
    df["versions_key"] = [versions_key(v) for v in df["versions"]]
    for key in ("model_key", "dataset_key"):
        df[key] = df[key].fillna("").astype(str)
    df["model"] = _disambiguate(df, ["run", "machine"], "model", "model_key", "model_source")
    df["dataset"] = _disambiguate(df, ["run", "machine", "model", "kind"], "dataset", "dataset_key", "dataset_source")
    return df


def _disambiguate(df: pd.DataFrame, within: list[str], name: str, key: str, source: str) -> pd.Series:
    out = df[name].copy()
    for _, group in df.groupby([*within, name], dropna=False, sort=False):
        keys = group[key].unique()
        if len(keys) < 2:
            continue
        sources = {k: {Path(str(s)).name for s in group.loc[group[key] == k, source].dropna()} for k in keys}
        labels = {k: (next(iter(s)) if len(s) == 1 else k[:6]) if k else "?" for k, s in sources.items()}
        if len(set(labels.values())) < len(labels):  # the same file name in two folders: the key says it
            labels = {k: (k[:6] if k else "?") for k in keys}
        out[group.index] = [f"{n} [{labels[k]}]" for n, k in zip(group[name], group[key], strict=True)]
    return out


def derive(df: pd.DataFrame) -> pd.DataFrame:
    """Every derived column `results.load` adds: device, speedup, accuracy_ratio, note."""
    return with_notes(with_ratios(df))


def with_notes(df: pd.DataFrame) -> pd.DataFrame:
    """Add `note`: what an ok speed row does not say by its status (None when nothing).

    A cell with fewer texts than its batch size timed one short batch, not the batch size it is
    filed under: a one-line text file gives a cross-encoder one pair "at batch size 32".
    """
    df = df.copy()
    df["note"] = None
    n = pd.to_numeric(df.get("n_texts"), errors="coerce")
    bs = pd.to_numeric(df.get("batch_size"), errors="coerce")
    small = (df["kind"] == "speed") & (df["status"] == "ok") & (n < bs)
    for i in df.index[small]:
        unit = "pair" if df.at[i, "model_kind"] == "cross-encoder" else "text"
        count = int(n[i])
        df.at[i, "note"] = (
            f"{count} {unit}{'s' if count != 1 else ''}, fewer than one batch of {int(bs[i])}: "
            f"timed as one batch of {count}"
        )
    return df


def contended_mask(df: pd.DataFrame) -> pd.Series:
    """True for rows measured under contention, or whose speedup rests on a contended torch-fp32.

    A contended baseline makes every speedup of its cell suspect, so those count as contended too.
    """
    own = df["contended"].isin([True]).astype(bool)
    if "device" not in df:
        df = with_device(df)
    df = with_keys(df)
    base = baselines(df, "speed")
    bad = base.loc[own[base.index], SPEED_PAIRING]
    if bad.empty:
        return own
    keys = set(map(tuple, bad.astype(str).to_numpy()))
    cell = df[SPEED_PAIRING].astype(str).apply(tuple, axis=1)
    return own | (cell.isin(keys) & (df["kind"] == "speed"))


def accuracy_by_configuration(
    df: pd.DataFrame,
    *,
    models: Iterable[str] | None = None,
    machines: Iterable[str] | None = None,
    by: tuple[str, ...] = (),
) -> pd.Series:
    """Mean accuracy_ratio per configuration (an accuracy row's label, e.g. "openvino [ov_precision=bf16]"),
    and per `by` columns: the mean per metric first, then the mean over metrics, so a metric with more
    evaluation sets does not outweigh another. A speed row finds its accuracy under its `accuracy_label`."""
    acc = _ok_accuracy(df, models, machines)
    keys = [*by, "label"]
    if acc.empty:
        return pd.Series(dtype=float, index=pd.MultiIndex.from_tuples([], names=keys) if by else None)
    return _per_metric(acc, keys).groupby(keys).mean()


def _per_metric(acc: pd.DataFrame, keys: list[str]) -> pd.Series:
    return (
        acc.assign(accuracy_ratio=acc["accuracy_ratio"].astype(float))
        .groupby([*keys, "metric"])["accuracy_ratio"]
        .mean()
    )


def accuracy_per_metric(
    df: pd.DataFrame, *, models: Iterable[str] | None = None, machines: Iterable[str] | None = None
) -> dict[str, dict[str, float]]:
    """label -> {metric: mean accuracy_ratio over its evaluation sets}: what `accuracy_by_configuration`
    averages, kept apart so a loss on one metric is not hidden by the mean."""
    acc = _ok_accuracy(df, models, machines)
    out: dict[str, dict[str, float]] = {}
    for (lab, metric), ratio in _per_metric(acc, ["label"]).items() if len(acc) else []:
        out.setdefault(str(lab), {})[str(metric)] = float(ratio)
    return out


def _ok_accuracy(df: pd.DataFrame, models: Iterable[str] | None, machines: Iterable[str] | None) -> pd.DataFrame:
    if "label" not in df:
        df = with_labels(df)
    acc = df[(df["kind"] == "accuracy") & (df["status"] == "ok") & df["accuracy_ratio"].notna()]
    if models is not None:
        acc = acc[acc["model"].isin(list(models))]
    if machines is not None:
        acc = acc[acc["machine"].isin(list(machines))]
    return acc


# Worst-case fidelity to torch-fp32 per model kind: (column, name, how the worst case pools rows).
# Embeddings: the lowest per-text cosine (and the mean cosine, averaged); cross-encoders: the lowest
# Spearman of the scores and the largest absolute score difference.
FIDELITY = {
    "bi-encoder": (("fidelity_min_cos", "min_cos", "min"), ("fidelity_mean_cos", "mean_cos", "mean")),
    "cross-encoder": (("fidelity_spearman", "spearman", "min"), ("fidelity_max_abs_diff", "max_abs_diff", "max")),
}
# The number a fidelity floor (--min-cosine / --min-spearman) is checked against, per model kind.
FIDELITY_FLOOR = {"bi-encoder": "min_cos", "cross-encoder": "spearman"}


def worst_fidelity(rows: pd.DataFrame, model_kind: str) -> dict[str, float]:
    """The worst case over `rows` of each fidelity number they carry ({} when none carries one)."""
    out = {}
    for column, name, how in FIDELITY[model_kind]:
        values = pd.to_numeric(rows[column], errors="coerce").dropna() if column in rows else pd.Series()
        if len(values):
            out[name] = float(getattr(values, how)())
    return out


def fidelity_by_configuration(
    df: pd.DataFrame, model_kind: str, *, models: Iterable[str] | None = None, machines: Iterable[str] | None = None
) -> dict[str, dict[str, float]]:
    """label -> worst-case fidelity to torch-fp32 over its ok accuracy rows (the evaluation sets)."""
    acc = _ok_accuracy(df, models, machines)
    out = {}
    for lab, rows in acc.groupby("label"):
        worst = worst_fidelity(rows, model_kind)
        if worst:
            out[str(lab)] = worst
    return out


def worst_agreement(rows: pd.DataFrame) -> dict[str, Any]:
    """The largest label-free task loss over `rows` (harness.evaluation.agreement; one per dataset, the same
    on every batch size) with its metric, dataset and the fewest texts any of them used; {} when none has one."""
    loss = pd.to_numeric(rows["agreement_loss"], errors="coerce").dropna() if "agreement_loss" in rows else []
    if not len(loss):
        return {}
    worst = rows.loc[loss.idxmax()]
    n = pd.to_numeric(rows.loc[loss.index, "agreement_n"], errors="coerce")
    return {
        "loss": float(loss.max()),
        "metric": str(worst["agreement_metric"]),
        "dataset": str(worst["dataset"]),
        "datasets": int(rows.loc[loss.index, "dataset"].nunique()),
        "n": int(n.min()) if n.notna().all() else None,
        "texts": str(worst.get("agreement_source") or "").split(";")[0],  # the dataset's own, or built-in ones
    }


def find_machine(df: pd.DataFrame, machine: str, option: str = "--machine") -> str:
    """The fingerprint `machine` names in `df`: itself, or the one fingerprint it is a prefix of.

    Anything else raises UsageError naming the option, what is in the store, and the closest name."""
    known = sorted(str(m) for m in df["machine"].dropna().unique()) if len(df) else []
    matches = [m for m in known if m == machine] or [m for m in known if m.startswith(machine)]
    if len(matches) == 1:
        return matches[0]
    why = "matches several machines" if matches else "is not in the result store"
    hint = "" if matches else did_you_mean(machine, known)
    raise UsageError(f"{option} {machine!r} {why}; machines in the store: {', '.join(known) or 'none'}.{hint}")
