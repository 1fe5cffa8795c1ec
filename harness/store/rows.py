"""Result rows as types: a speed row, an accuracy row, a server row and a round row, each of named parts.

The store writes one flat JSON object per cell (`to_flat`: every column of `COLUMNS`, None where not
applicable) so pandas reads it as is; the types say which columns a kind of row has and refuse an
impossible row when it is built: a column no row has, a column of another kind (a speed row with an
accuracy metric), a status not in `STATUSES`, an ok speed row without its throughput, an ok accuracy
row without its metric and value. Pooled rounds of a speed cell are built by the same type
(`SpeedRow.aggregate`), as optimum-benchmark's `Latency.aggregate` pools its measurements.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from harness.store.speedstats import latency_stats, per_request_throughput, speed_stats  # noqa: F401 - found here

STATUSES = ("ok", "failed", "unsupported", "timeout")
BREAKDOWN = ("tokenize_share", "forward_share", "other_share", "forward_throughput")  # where the time goes


class InvalidRow(ValueError):
    """A row that cannot exist (a programming error, or a result file no version of the harness wrote)."""


# --- the parts ------------------------------------------------------------------------------------


@dataclass(kw_only=True)
class Identity:
    """Which cell: the run, the cell and (for every round of a speed cell) the key the rounds share."""

    run: str | None = None
    cell_id: str | None = None
    cell_key: str | None = None
    round: int | None = None
    kind: str | None = None
    model: str | None = None
    model_kind: str | None = None
    model_source: str | None = None
    model_params: int | None = None
    model_weights: str | None = None  # "trained", or "random" for a shape-faithful stand-in (speed only)
    dataset: str | None = None
    batch_size: int | None = None
    backend: str | None = None
    variant: str | None = None  # the runtime knobs that differ from the backend's defaults
    # what the names cannot tell apart (harness.engine.identity): the model's and the texts' content
    model_key: str | None = None
    dataset_key: str | None = None
    dataset_source: str | None = None  # a file's path, a Hub id, a built-in bucket: labels same-named datasets


@dataclass(kw_only=True)
class Outcome:
    status: str | None = None
    reason: str | None = None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise InvalidRow(f"status {self.status!r} is not one of {', '.join(STATUSES)}")


@dataclass(kw_only=True)
class Timing:
    """A speed cell's measurement: throughput of the real encode/predict call, per-batch latency, the
    spread, CPU use and contention, where the time goes, and the raw values rounds are pooled from."""

    throughput: float | None = None
    latency_mean_ms: float | None = None
    latency_p50_ms: float | None = None
    latency_p90_ms: float | None = None
    latency_p99_ms: float | None = None
    cv: float | None = None
    n_texts: int | None = None
    n_batches: int | None = None
    repeats: int | None = None
    measure_s: float | None = None
    cpu_self: float | None = None
    cpu_other: float | None = None
    contended: bool | None = None
    tries: int | None = None
    discarded_tries: list[dict[str, float]] | None = None  # contended tries a later try replaced
    tokenize_share: float | None = None
    forward_share: float | None = None
    other_share: float | None = None
    forward_throughput: float | None = None
    latencies_ms: list[float] | None = None
    pass_s: list[float] | None = None
    rounds: int | None = None
    per_request_throughput: float | None = None
    round_reason: str | None = None
    timed_window: list[float] | None = None  # [start, end] wall clock of the timed passes (one cell at a time)
    # a pooled row's per-round values, which paired ratios and rerun intervals rest on (harness.store.stats):
    # {"round": [0, 1], "throughput": [...], "per_request_throughput": [...], "latency_p99_ms": [...]}
    per_round: dict[str, list[Any]] | None = None


@dataclass(kw_only=True)
class Quality:
    """An accuracy cell's number: the metric (sts_spearman, ndcg@10 ...), its value and the time it took."""

    metric: str | None = None
    accuracy: float | None = None
    accuracy_s: float | None = None


@dataclass(kw_only=True)
class Fidelity:
    """Label-free agreement with torch-fp32's outputs (speed: on the timed texts; accuracy: on the set)."""

    fidelity_mean_cos: float | None = None
    fidelity_min_cos: float | None = None
    fidelity_spearman: float | None = None
    fidelity_max_abs_diff: float | None = None
    fidelity_source: str | None = None
    # The label-free task metric (harness.evaluation.agreement): speed rows of round 0 only, measured
    # untimed on >= 500 texts (`agreement_source` says which), fp32's own rankings as the relevant set.
    # `agreement_loss` = 1 - agreement is a relative task-metric drop: the unit of --tolerance.
    agreement: float | None = None
    agreement_loss: float | None = None
    agreement_n: int | None = None
    agreement_metric: str | None = None
    agreement_source: str | None = None


AGREEMENT = ("agreement", "agreement_loss", "agreement_n", "agreement_metric", "agreement_source")


@dataclass(kw_only=True)
class TextStats:
    """What the texts were."""

    text_chars_mean: float | None = None
    text_chars_p50: float | None = None
    text_chars_max: int | None = None
    text_tokens_mean: float | None = None
    truncated_share: float | None = None
    max_seq_length: int | None = None


@dataclass(kw_only=True)
class Context:
    """What the cell ran under: the runtime's own read-back (`runtime`: precision, device, threads,
    kernels ...), the load settings (`settings`: model_kwargs, folder, load time ...), the hardware,
    the machine fingerprint and the library versions."""

    peak_memory_mb: float | None = None
    warnings: list[str] | None = None
    threads: int | None = None
    precision: str | None = None
    runtime: dict[str, Any] | None = None
    settings: dict[str, Any] | None = None
    hardware: dict[str, Any] | None = None
    machine: str | None = None
    versions: dict[str, Any] | None = None
    timestamp: str | None = None
    duration_s: float | None = None
    price_per_hour: float | None = None  # the machine's $/hour when the sweep was told (harness.store.cost)


def _names(part: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(part))


# --- the rows -------------------------------------------------------------------------------------


@dataclass
class Row:
    """A row: named parts; `from_flat` / `to_flat` convert to and from the store's flat object."""

    KIND: ClassVar[str]
    PARTS: ClassVar[dict[str, type]]  # attribute -> part type, in column order

    identity: Identity
    outcome: Outcome
    context: Context

    def __post_init__(self) -> None:
        if self.identity.kind != self.KIND:
            raise InvalidRow(f"a {type(self).__name__} has kind {self.KIND!r}, not {self.identity.kind!r}")
        if not self.identity.run or not self.identity.cell_id:
            raise InvalidRow("a row needs its run and cell_id")

    @classmethod
    def columns(cls) -> tuple[str, ...]:
        return tuple(name for part in cls.PARTS.values() for name in _names(part))

    @classmethod
    def from_flat(cls, flat: Mapping[str, Any], *, stored: bool = False) -> Row:
        """The row of this kind from flat columns. A column no row has is a KeyError (`stored`: ignored,
        as a column an older harness wrote); a column of another kind of row that has a value is an
        InvalidRow (None there is what the store writes for every column that does not apply)."""
        own = set(cls.columns())
        unknown = sorted(set(flat) - set(COLUMNS))
        if unknown and not stored:
            raise KeyError(f"unknown result columns: {unknown}")
        foreign = sorted(k for k in set(flat) - own if k in COLUMNS and flat[k] is not None)
        if foreign:
            article = "an" if cls.KIND[0] in "aeiou" else "a"
            raise InvalidRow(f"{article} {cls.KIND} row has no {', '.join(foreign)} (columns of another kind of row)")
        parts = {attr: part(**{k: flat[k] for k in _names(part) if k in flat}) for attr, part in cls.PARTS.items()}
        return cls(**parts)

    def to_flat(self) -> dict[str, Any]:
        """Every column of `COLUMNS`, None where this kind of row has none: what the store writes."""
        flat = dict.fromkeys(COLUMNS)
        for attr in self.PARTS:
            part = getattr(self, attr)
            flat.update({name: getattr(part, name) for name in _names(type(part))})
        return flat


@dataclass
class SpeedRow(Row):
    KIND = "speed"
    PARTS = {"identity": Identity, "outcome": Outcome, "timing": Timing, "fidelity": Fidelity,
             "texts": TextStats, "context": Context}  # fmt: skip

    timing: Timing = dataclasses.field(default_factory=Timing)
    fidelity: Fidelity = dataclasses.field(default_factory=Fidelity)
    texts: TextStats = dataclasses.field(default_factory=TextStats)

    def __post_init__(self) -> None:
        super().__post_init__()
        throughput = self.timing.throughput
        if self.outcome.status == "ok" and (throughput is None or not throughput > 0):
            raise InvalidRow(f"an ok speed row needs its throughput > 0, not {throughput!r}")

    @classmethod
    def aggregate(cls, rounds: Sequence[SpeedRow]) -> SpeedRow:
        """One row from interleaved rounds of the same cell, pooled from their raw values.

        Throughput = all texts / all timed seconds; latency percentiles and CV from the pooled raw
        per-batch latencies and per-pass times; CPU use weighted by time; contended if any round was;
        the time breakdown (shares, forward-only throughput) is the mean of the rounds that measured it.
        The identity, texts, fidelity and context are the first round's; the label-free task agreement
        is round 0's (the only round that measures it, and not always the first one read).
        """
        first = rounds[0]
        timings = [r.timing for r in rounds]
        pooled = dataclasses.replace(first.timing, rounds=len(rounds), per_round=_per_round(rounds))
        if len(rounds) > 1:
            seconds = [sum(t.pass_s) for t in timings]
            for cpu in ("cpu_self", "cpu_other"):  # a round without the number (an older row) does not count
                pairs = [(getattr(t, cpu), s) for t, s in zip(timings, seconds, strict=True)]
                known = [(v, s) for v, s in pairs if v is not None]
                weight = sum(s for _, s in known)
                setattr(pooled, cpu, sum(v * s for v, s in known) / weight if known and weight > 0 else None)
            pooled.latencies_ms = [v for t in timings for v in (t.latencies_ms or [])]
            pooled.pass_s = [v for t in timings for v in t.pass_s]
            pooled.measure_s = sum(t.measure_s or 0.0 for t in timings)
            pooled.round_reason = next((t.round_reason for t in reversed(timings) if t.round_reason), None)
            pooled.contended = any(bool(t.contended) for t in timings)
            pooled.tries = sum(t.tries or 0 for t in timings)
            pooled.discarded_tries = [d for t in timings for d in (t.discarded_tries or [])]
            n_texts = next((t.n_texts for t in timings if t.n_texts), None)
            if n_texts and pooled.latencies_ms:
                batches = math.ceil(n_texts / first.identity.batch_size)
                for name, value in speed_stats(pooled.latencies_ms, pooled.pass_s, n_texts, batches).items():
                    setattr(pooled, name, value)
            for name in BREAKDOWN:
                values = [getattr(t, name) for t in timings if getattr(t, name) is not None]
                setattr(pooled, name, float(np.mean(values)) if values else None)
        measured = next((r.fidelity for r in rounds if r.fidelity.agreement_source is not None), first.fidelity)
        fidelity = dataclasses.replace(first.fidelity, **{k: getattr(measured, k) for k in AGREEMENT})
        return dataclasses.replace(first, timing=pooled, fidelity=fidelity)


ROUND_VALUES = ("throughput", "per_request_throughput", "latency_p99_ms")


def _per_round(rounds: Sequence[SpeedRow]) -> dict[str, list[Any]]:
    """Each round's own numbers, in round order (a round measured twice: its latest row)."""
    by_round = {(r.identity.round or 0): r.timing for r in rounds}
    order = sorted(by_round)
    out = {name: [getattr(by_round[r], name) for r in order] for name in ROUND_VALUES}
    return {"round": order, **out, "requests": [len(by_round[r].latencies_ms or []) for r in order]}


@dataclass
class AccuracyRow(Row):
    KIND = "accuracy"
    PARTS = {"identity": Identity, "outcome": Outcome, "quality": Quality, "fidelity": Fidelity,
             "texts": TextStats, "context": Context}  # fmt: skip

    quality: Quality = dataclasses.field(default_factory=Quality)
    fidelity: Fidelity = dataclasses.field(default_factory=Fidelity)
    texts: TextStats = dataclasses.field(default_factory=TextStats)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.outcome.status == "ok" and (self.quality.metric is None or self.quality.accuracy is None):
            raise InvalidRow("an ok accuracy row needs its metric and accuracy")


@dataclass(kw_only=True)
class RoundNote:
    round_reason: str | None = None


@dataclass
class RoundRow(Row):
    """A later round of a speed cell that was not needed (rounds=auto, harness.engine.rounds), and why."""

    KIND = "round"
    PARTS = {"identity": Identity, "outcome": Outcome, "note": RoundNote, "context": Context}

    note: RoundNote = dataclasses.field(default_factory=RoundNote)


@dataclass(kw_only=True)
class Serving:
    """The server scenario (harness.engine.serving) for one configuration, deployment shape, batching policy
    and p99 budget: the highest sustainable rate found, the point measured there, and every point the search
    measured (`rate_points`: the latency-vs-rate curve). Latency runs from each request's scheduled arrival."""

    instances: int | None = None
    threads_per_instance: int | None = None
    max_batch: int | None = None
    max_wait_ms: float | None = None
    budget_p99_ms: float | None = None
    sustainable_rate: float | None = None  # requests/s; None: not even the lowest rate tried was sustainable
    rate_bracket: list[float | None] | None = None  # [highest sustainable, lowest unsustainable above it]
    sustainable: bool | None = None
    why_not: str | None = None  # the lowest unsustainable point's judgement ("" when all were sustainable)
    solo_p99_ms: float | None = None  # p99 of a request served alone: no rate's p99 can be below it
    dominated_by: str | None = None  # the configuration whose sustained rate this one could not reach (stopped)
    offered_rate: float | None = None  # at the sustainable rate: offered and achieved requests/s
    served_rate: float | None = None
    request_p50_ms: float | None = None
    request_p90_ms: float | None = None
    request_p99_ms: float | None = None
    request_mean_ms: float | None = None
    requests_measured: int | None = None
    backlog: int | None = None
    rate_points: list[dict[str, Any]] | None = None
    bulk_throughput: float | None = None  # texts/s of the shape: every instance encoding its share at once
    memory_pss_mb: float | None = None  # PSS summed over the instances (forked instances share pages)
    point_s: float | None = None
    cpu_self: float | None = None
    cpu_other: float | None = None  # other processes' CPU, the harness's own instances not counted
    contended: bool | None = None


@dataclass
class ServerRow(Row):
    KIND = "server"
    PARTS = {"identity": Identity, "outcome": Outcome, "serving": Serving, "texts": TextStats, "context": Context}

    serving: Serving = dataclasses.field(default_factory=Serving)
    texts: TextStats = dataclasses.field(default_factory=TextStats)

    def __post_init__(self) -> None:
        super().__post_init__()
        s = self.serving
        if self.outcome.status == "ok" and (s.budget_p99_ms is None or s.instances is None or s.max_batch is None):
            raise InvalidRow("an ok server row needs its budget_p99_ms, instances and max_batch")
        if s.sustainable_rate is not None and not s.sustainable_rate > 0:
            raise InvalidRow(f"a server row's sustainable_rate must be > 0, not {s.sustainable_rate!r}")


ROW_TYPES: dict[str, type[Row]] = {t.KIND: t for t in (SpeedRow, AccuracyRow, RoundRow, ServerRow)}
# Every column any row has, in the order of the parts: the one list the store and pandas use.
COLUMNS: tuple[str, ...] = tuple(dict.fromkeys(c for t in ROW_TYPES.values() for c in t.columns()))


def parse(flat: Mapping[str, Any], *, stored: bool = False) -> Row:
    """The typed row of a flat one, by its kind."""
    kind = flat.get("kind")
    if kind not in ROW_TYPES:
        unknown = sorted(set(flat) - set(COLUMNS))
        if unknown and not stored:
            raise KeyError(f"unknown result columns: {unknown}")
        raise InvalidRow(f"kind {kind!r} is not one of {', '.join(ROW_TYPES)}")
    return ROW_TYPES[kind].from_flat(flat, stored=stored)
