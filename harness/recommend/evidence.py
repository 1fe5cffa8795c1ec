"""Measured evidence from the store: the candidates of this machine, their speed, accuracy and fidelity,
and the rules (constraints, floors, tolerance) each one passes or breaks (harness.recommend.decision decides)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from harness.config import MODEL_KINDS
from harness.recommend import task_loss, ties
from harness.store import results
from harness.store.analysis import (
    FIDELITY_FLOOR,
    accuracy_by_configuration,
    accuracy_per_metric,
    contended_mask,
    fidelity_by_configuration,
    worst_agreement,
    worst_fidelity,
)

# bulk: a corpus encoded in one call, ranked by bulk throughput speedup; online: one request at a time
# (batch size 1), ranked by p99 latency.
SCENARIOS = ("bulk", "online", "server")  # server: harness.recommend.server answers it
ONLINE_BATCH_SIZE = 1
# What the decision rests on (`Evidence.basis`).
LABELLED = "labelled accuracy (evaluation sets)"
LABEL_FREE = "label-free task agreement with torch-fp32 (>= 500 texts), no labelled data"
FIDELITY_ONLY = "label-free fidelity on the timed texts, no labelled data"  # rows without a task loss
FIDELITY_NAMES = {"min_cos": "min cosine", "mean_cos": "mean cosine", "spearman": "Spearman",
                  "max_abs_diff": "max |Δ|"}  # fmt: skip


@dataclass(frozen=True)
class Query:
    """What the user asks about; validated so the CLI can show the message as it is."""

    model_kind: str = "bi-encoder"
    text_length: float = 200
    batch_size: int = 32
    tolerance: float = 0.01
    model: str | None = None
    scenario: str = "bulk"  # SCENARIOS
    max_latency_ms: float | None = None  # p99 of the chosen rows
    max_memory_mb: float | None = None  # peak memory of the chosen rows
    min_cosine: float | None = None  # worst-case cosine to torch-fp32 (embeddings)
    min_spearman: float | None = None  # worst-case Spearman to torch-fp32 (cross-encoders)

    def __post_init__(self) -> None:
        if self.scenario not in SCENARIOS:
            raise ValueError(f"--scenario must be one of {', '.join(SCENARIOS)}; got {self.scenario!r}")
        for option, value in (("--max-latency-ms", self.max_latency_ms), ("--max-memory-mb", self.max_memory_mb)):
            if value is not None and not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{option} must be a positive number; got {value}")
        for option, value in (("--min-cosine", self.min_cosine), ("--min-spearman", self.min_spearman)):
            if value is not None and not -1 <= value <= 1:
                raise ValueError(f"{option} must be between -1 and 1; got {value}")
        if self.min_cosine is not None and self.model_kind != "bi-encoder":
            raise ValueError("--min-cosine is a floor on embeddings' cosine; for cross-encoders use --min-spearman")
        if self.min_spearman is not None and self.model_kind != "cross-encoder":
            raise ValueError("--min-spearman is a floor on cross-encoder scores; for embeddings use --min-cosine")
        if self.model_kind not in MODEL_KINDS:
            raise ValueError(f"--model-kind must be one of {', '.join(MODEL_KINDS)}; got {self.model_kind!r}")
        if not 0 <= self.tolerance <= 1:
            raise ValueError(
                f"--tolerance must be a fraction between 0 and 1 (0.01 = 1% accuracy loss); got {self.tolerance}"
            )
        if self.batch_size <= 0:
            raise ValueError(f"--batch-size must be a positive integer; got {self.batch_size}")
        if not self.text_length > 0 or math.isinf(self.text_length):
            raise ValueError(f"--text-length must be a positive number of characters; got {self.text_length}")


@dataclass
class Candidate:
    backend: str
    speedup: float  # bulk throughput (one encode call over all texts) vs torch-fp32
    accuracy_ratio: float | None
    qualifies: bool
    why: str  # the accuracy (or, without labelled data, fidelity) verdict
    n_cells: int
    settings: dict[str, Any] | None = None  # of its fastest cell
    settings_model: str | None = None  # the model of that cell
    variant: str = ""  # swept runtime knobs that differ from the backend's defaults ("" = as registered)
    speedup_per_request: float | None = None  # one encode call per batch vs torch-fp32
    latency_p99_ms: float | None = None  # worst p99 over its cells
    peak_memory_mb: float | None = None  # largest over its cells
    accuracy_by_metric: dict[str, float] = field(default_factory=dict)  # metric -> accuracy ratio
    fidelity: dict[str, float] = field(default_factory=dict)  # worst case vs torch-fp32 (`analysis.FIDELITY`)
    fidelity_source: str | None = None  # "evaluation set" | "timed texts" | "the reference"
    task_loss: dict[str, Any] = field(default_factory=dict)  # worst label-free task loss (`analysis.worst_agreement`)
    rejected: list[str] = field(default_factory=list)  # every rule it broke (empty when it qualifies)
    cv: float | None = None  # largest throughput cv over its cells (its own spread)
    # 95 % rerun intervals (harness.store.intervals), means over its cells like the numbers they bound
    speedup_low: float | None = None
    speedup_high: float | None = None
    speedup_per_request_low: float | None = None
    speedup_per_request_high: float | None = None
    latency_p99_low_ms: float | None = None
    latency_p99_high_ms: float | None = None
    # the candidates it is tied with within the measurement's resolution (harness.recommend.ties), and how
    tied_with: str | None = None
    tie: str | None = None
    cells: list[dict[str, Any]] = field(default_factory=list, repr=False)  # per-round values, for ties.compare

    @property
    def label(self) -> str:
        return results.label(self.backend, self.variant)

    def to_dict(self) -> dict[str, Any]:
        out = {**dataclasses.asdict(self), "label": self.label}
        out.pop("cells")
        return out


@dataclass
class Evidence:
    """The measured cells behind a recommendation; empty `candidates` means no evidence (see note)."""

    machine: str
    note: str = ""
    models: list[str] = field(default_factory=list)
    datasets: dict[str, float | None] = field(default_factory=dict)  # name -> mean characters
    batch_sizes: list[int] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)
    candidates: list[Candidate] = field(default_factory=list)
    scenario: str = "bulk"
    basis: str = ""  # LABELLED | LABEL_FREE | "" (neither accuracy nor fidelity measured)

    @property
    def qualifying(self) -> list[Candidate]:
        return [c for c in self.candidates if c.qualifies]

    @property
    def rejections(self) -> list[dict[str, Any]]:
        return [{"backend": c.label, "reasons": c.rejected} for c in self.candidates if not c.qualifies]

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["candidates"] = [c.to_dict() for c in self.candidates]
        d["rejections"] = self.rejections
        return d


def _nearest(values: list[float], target: float) -> list[float]:
    """All values nearest `target` on a log scale (ties kept)."""
    dist = {v: abs(math.log(v / target)) for v in values}
    best = min(dist.values())
    return sorted(v for v, d in dist.items() if d - best <= 1e-9)


def _score(c: Candidate, scenario: str) -> float:
    """What the scenario ranks by, lower is better: p99 latency (online) or minus the bulk speedup. Which
    differences count is the tie rule's to say (harness.recommend.ties), not a rounding."""
    if scenario == "online":
        return math.inf if c.latency_p99_ms is None else c.latency_p99_ms
    return -c.speedup


INTERVAL_COLUMNS = ("speedup_low", "speedup_high", "speedup_per_request_low", "speedup_per_request_high",
                    "latency_p99_low_ms", "latency_p99_high_ms")  # fmt: skip


def _mean(rows: pd.DataFrame, column: str) -> float | None:
    return _worst(rows, column, "mean")


def _worst(rows: pd.DataFrame, column: str, how: str) -> float | None:
    values = pd.to_numeric(rows[column], errors="coerce").dropna() if column in rows else pd.Series()
    return float(getattr(values, how)()) if len(values) else None


def fmt_fidelity(fidelity: dict[str, float]) -> str:
    """'min cosine 0.9712, mean cosine 0.9981' (in `analysis.FIDELITY` order)."""
    return ", ".join(f"{FIDELITY_NAMES[k]} {v:.4f}" for k, v in fidelity.items())


def evidence(df: pd.DataFrame, query: Query, machine: str, preferred: str | None = None) -> Evidence:
    """This machine's measured candidates for `query`, best qualifying first.

    The rule:
    * speed rows with status ok, not contended, on `machine` (other machines are ignored),
      of `query.model_kind` (and `query.model` if given);
    * of those, the dataset(s) whose mean text length is nearest `query.text_length`, then the
      measured batch size(s) nearest `query.batch_size` (scenario bulk) or nearest 1 (scenario online:
      one request at a time) - both on a log scale, because text lengths and batch sizes span orders of
      magnitude (a 200-character text is closer to 620 than to 39); ties keep both;
    * a candidate is a backend with its swept runtime knobs (`label`, e.g. "openvino [ov_precision=bf16]"):
      variants of one backend are never averaged together;
    * a candidate's speedups (bulk, per request) are the means over the cells left (models x datasets x
      batch sizes); its p99 latency and peak memory the worst over them; cells without a torch-fp32
      baseline have no speedup: if none has one there is no evidence;
    * its fidelity to torch-fp32 is the worst case over its accuracy rows (the evaluation sets) when they
      carry one, else over its cells' timed texts (`analysis.worst_fidelity`);
    * with labelled accuracy (any candidate but torch-fp32 has accuracy rows), a candidate qualifies if
      its accuracy_ratio (accuracy rows of its `accuracy_label`, status ok, same machine and models; mean
      per metric, then mean over metrics) is >= 1 - tolerance; one with no accuracy rows does not - an
      unmeasured loss is not an acceptable one - except torch-fp32, the reference (ratio 1 by definition);
    * without labelled accuracy, a candidate qualifies if its label-free task loss (1 - the Spearman correlation of
      its pair similarities / per-query scores with torch-fp32's on >= 500 texts, the worst over the datasets;
      `task_loss`) is <= tolerance; a
      store with timed-text fidelity but no task loss (older rows) cannot check the tolerance, and decides
      on --min-cosine / --min-spearman alone when given;
    * then the constraints: --min-cosine / --min-spearman (worst-case fidelity), --max-latency-ms (p99),
      --max-memory-mb (peak memory); a number a constraint needs that was not measured breaks it.
      Every rule a candidate breaks is listed in its `rejected`;
    * order: bulk - speedup; online - p99 latency; then `preferred` (the flowchart's answer), then name;
      the qualifying candidates tied with the best one (their paired rerun interval contains 1 or lies
      within +-2 %) are one set, led by the one a user gets with the least (harness.recommend.ties).
    """
    ev = Evidence(machine=machine, scenario=query.scenario)
    if df.empty:
        ev.note = "the result store is empty"
        return ev
    if "label" not in df:
        df = results.with_labels(df)
    speed = df[
        (df["kind"] == "speed")
        & (df["status"] == "ok")
        & (df["machine"] == machine)
        & (df["model_kind"] == query.model_kind)
    ]
    if query.model:
        speed = speed[speed["model"] == query.model]
    contended = contended_mask(df).loc[speed.index]
    what = f"{query.model_kind} speed rows" + (f" of {query.model}" if query.model else "")
    if speed.empty:
        ev.note = f"no ok {what} on machine {machine}"
        return ev
    speed = speed[~contended]
    if speed.empty:
        ev.note = f"all ok {what} on machine {machine} were measured under contention"
        return ev

    chars = pd.to_numeric(speed["text_chars_mean"], errors="coerce").groupby(speed["dataset"]).mean()
    known = chars.dropna()
    known = known[known > 0]
    if known.empty:
        datasets = sorted(chars.index)
        ev.datasets = dict.fromkeys(datasets)
    else:
        nearest = set(_nearest(list(known.values), query.text_length))
        datasets = sorted(d for d, c in known.items() if c in nearest)
        ev.datasets = {d: round(float(known[d]), 1) for d in datasets}
    speed = speed[speed["dataset"].isin(datasets)]
    sizes = sorted({int(b) for b in speed["batch_size"].dropna()})
    if sizes:
        target = ONLINE_BATCH_SIZE if query.scenario == "online" else query.batch_size
        ev.batch_sizes = [int(b) for b in _nearest(sizes, target)]
        speed = speed[speed["batch_size"].isin(ev.batch_sizes)]
    ev.models = sorted(speed["model"].dropna().unique())
    ev.runs = sorted(speed["run"].dropna().unique())

    timed = speed[speed["speedup"].notna()]
    if timed.empty:
        ev.note = (
            f"no torch-fp32 baseline measured for the nearest cells ({', '.join(datasets)}; batch size "
            f"{', '.join(map(str, ev.batch_sizes))}) on machine {machine}, so no speedups to compare"
        )
        return ev

    accuracy_labels = {}
    for label, rows in timed.groupby("label"):
        ev.candidates.append(_candidate(rows))
        accuracy_labels[str(label)] = str(rows["accuracy_label"].iloc[0])
    _add_accuracy(ev, df, query, machine, accuracy_labels)
    for c in ev.candidates:
        _judge(c, query, ev.basis)
    ev.candidates = ties.order(ev.candidates, query.scenario, preferred or "", lambda c: _score(c, query.scenario))
    if not ev.qualifying:
        ev.note = "no measured backend meets every rule"
    return ev


def _candidate(rows: pd.DataFrame) -> Candidate:
    """One configuration's cells: speed, latency, memory and (for now) timed-text fidelity."""
    backend, variant = str(rows["backend"].iloc[0]), str(rows["variant"].iloc[0] or "")
    best = rows.loc[rows["throughput"].astype(float).idxmax()]
    per_request = pd.to_numeric(rows["speedup_per_request"], errors="coerce").dropna()
    c = Candidate(
        backend=backend,
        speedup=float(rows["speedup"].astype(float).mean()),
        accuracy_ratio=None,
        qualifies=False,
        why="",
        n_cells=len(rows),
        settings=best["settings"] if isinstance(best["settings"], dict) else None,
        settings_model=str(best["model"]),
        variant=variant,
        speedup_per_request=float(per_request.mean()) if len(per_request) else None,
        latency_p99_ms=_worst(rows, "latency_p99_ms", "max"),
        peak_memory_mb=_worst(rows, "peak_memory_mb", "max"),
        cv=_worst(rows, "cv", "max"),
        cells=ties.cells_of(rows),
        **{k: _mean(rows, k) for k in INTERVAL_COLUMNS},
    )
    if _is_reference(c):
        c.fidelity_source = "the reference"
    else:
        on_timed = rows[rows["fidelity_source"] == "timed texts"]
        kind = str(rows["model_kind"].iloc[0])
        c.fidelity = worst_fidelity(on_timed, kind)
        c.fidelity_source = "timed texts" if c.fidelity else None
        c.task_loss = worst_agreement(rows)
    return c


def _is_reference(c: Candidate) -> bool:
    return c.backend == results.BASELINE and not results.accuracy_variant(c.variant)


def _add_accuracy(ev: Evidence, df: pd.DataFrame, query: Query, machine: str, accuracy_labels: dict[str, str]) -> None:
    """Accuracy ratios (mean and per metric) and evaluation-set fidelity of each candidate, and what the
    decision rests on (`ev.basis`)."""
    scope = dict(models=ev.models, machines=[machine])
    acc_ratio = accuracy_by_configuration(df, **scope)
    per_metric = accuracy_per_metric(df, **scope)
    eval_fidelity = fidelity_by_configuration(df, query.model_kind, **scope)
    for c in ev.candidates:
        name = accuracy_labels[c.label]
        ratio = acc_ratio.get(name)
        if ratio is not None and not pd.isna(ratio):
            c.accuracy_ratio = float(ratio)
            c.accuracy_by_metric = per_metric.get(name, {})
        elif _is_reference(c):
            c.accuracy_ratio = 1.0
        if name in eval_fidelity and not _is_reference(c):
            c.fidelity, c.fidelity_source = eval_fidelity[name], "evaluation set"
    others = [c for c in ev.candidates if not _is_reference(c)]
    if any(c.accuracy_ratio is not None for c in others):
        ev.basis = LABELLED
    elif any(c.task_loss for c in others):
        ev.basis = LABEL_FREE
    elif any(c.fidelity for c in others):
        ev.basis = FIDELITY_ONLY


def _judge(c: Candidate, query: Query, basis: str) -> None:
    """Apply every rule to `c`: its `why` (the accuracy or fidelity verdict), `rejected` and `qualifies`."""
    reasons = []
    kind_floor = FIDELITY_FLOOR[query.model_kind]
    name = FIDELITY_NAMES[kind_floor]
    given = query.min_cosine if query.model_kind == "bi-encoder" else query.min_spearman
    option = "--min-cosine" if query.model_kind == "bi-encoder" else "--min-spearman"
    if _is_reference(c):
        c.why = "the reference (accuracy ratio 1 by definition)"
    elif basis in (LABEL_FREE, FIDELITY_ONLY):  # the tolerance is on the task loss; a fidelity floor is its own rule
        floor_only = basis == FIDELITY_ONLY and given is not None
        c.why, broke = task_loss.verdict(c.task_loss, query.tolerance, option, floor_only)
        reasons += broke
    elif c.accuracy_ratio is not None:
        floor = 1 - query.tolerance
        ok = c.accuracy_ratio >= floor - 1e-9
        c.why = f"accuracy {c.accuracy_ratio:.2%} {'>=' if ok else '<'} {floor:.2%} of torch-fp32"
        c.why += f" ({task_loss.describe(c.task_loss)})" if c.task_loss else ""
        if not ok:
            reasons.append(c.why + f" (--tolerance {query.tolerance:g})")
    else:
        c.why = "no accuracy measurement, so its accuracy loss is unknown"
        reasons.append(c.why)
    if given is not None and not _is_reference(c):
        value = c.fidelity.get(kind_floor)
        if value is None:
            reasons.append(f"{option} {given:g}: no {name} to torch-fp32 measured")
        elif value < given - 1e-9:
            reasons.append(f"{option} {given:g}: worst-case {name} {value:.4f} ({c.fidelity_source})")
    for option, limit, value, unit, what in (
        ("--max-latency-ms", query.max_latency_ms, c.latency_p99_ms, "ms", "p99 latency"),
        ("--max-memory-mb", query.max_memory_mb, c.peak_memory_mb, "MB", "peak memory"),
    ):
        if limit is None:
            continue
        if value is None:
            reasons.append(f"{option} {limit:g}: {what} not measured")
        elif value > limit:
            reasons.append(f"{option} {limit:g}: {what} {value:.1f} {unit}")
    if query.scenario == "online" and c.latency_p99_ms is None:
        reasons.append("scenario online: p99 latency not measured")
    c.rejected = reasons
    c.qualifies = not reasons
