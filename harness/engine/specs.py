"""Typed specs of the work that crosses a process boundary, and the typed result that comes back.

A unit (an export, a speed cell, an accuracy pass, a bare loop) runs in a process that did not compose the
sweep's config: everything it needs travels in one of these frozen dataclasses (they pickle: to a forked
worker over a pipe, to a spawned process as its argument), and it answers with a `UnitResult`. Every spec
has `job`, the part all units of one Hydra job share.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from harness.config import MeasureConfig


@dataclass(frozen=True)
class ModelSpec:
    """The model as a unit loads it (the config's fields that matter in the process)."""

    name: str
    kind: str
    source: str
    trust_remote_code: bool = False
    max_seq_length: int | None = None


@dataclass(frozen=True)
class JobSpec:
    """What every unit of a job gets: the model, the backend configuration, the settings and the folders."""

    model: ModelSpec
    backend: dict[str, Any]  # a `harness.backends.schema()` config as a plain dict (families add their knobs)
    dataset: dict[str, Any]
    measure: MeasureConfig
    threads: int
    offline: bool  # the model is local: the unit's process sets the Hub offline
    source_dir: str
    export_dir: str
    cache_dir: str
    data_dir: str | None = None

    @property
    def job(self) -> JobSpec:
        return self

    def key(self) -> dict[str, Any]:
        """What a loaded model depends on: a worker reuses a model loaded for an equal key."""
        return {"model": dataclasses.asdict(self.model), "backend": self.backend, "threads": self.threads,
                "source_dir": self.source_dir, "export_dir": self.export_dir}  # fmt: skip


@dataclass(frozen=True)
class AgreementSpec:
    """The label-free task metric of a configuration on one dataset: >= 500 texts encoded once per worker
    after the timed passes (untimed), torch-fp32's outputs kept at `ref_path`, the others compared with them."""

    texts: tuple[str, ...]
    source: str  # what the texts are, for the row ("the dataset's 1000 texts", "1000 built-in short texts")
    ref_path: str
    batch_size: int  # the accuracy passes' batch size: the same batches for every backend
    # metric -> the value past which the cell is decisively slower than torch-fp32 (throughput below it, p99 above
    # it), set when every other batch size of the dataset already was (harness.engine.rounds.decisively_slower)
    slower_than: dict[str, float] | None = None


@dataclass(frozen=True)
class SpeedSpec:
    """One speed cell: the job's texts at one batch size (texts are read once by the sweep)."""

    job: JobSpec
    batch_size: int
    texts: tuple[str, ...]
    fidelity_ref: str | None = None  # where torch-fp32's outputs on these texts are (or go)
    is_reference: bool = False  # this is torch-fp32 as registered: it writes fidelity_ref
    breakdown: bool = True  # measure the tokenize / forward / rest shares (the first round does)
    agreement: AgreementSpec | None = None  # round 0 only: the label-free task metric (harness.evaluation.agreement)


@dataclass(frozen=True)
class AccuracyTask:
    task: str  # sts | retrieval
    source: dict[str, Any]  # what `evaluation.evaluate` reads: a local path or a Hub name, and its limits
    ref_path: str  # torch-fp32's outputs on this evaluation set


@dataclass(frozen=True)
class AccuracySpec:
    """Every accuracy task of one backend configuration, in one process."""

    job: JobSpec
    tasks: tuple[AccuracyTask, ...]
    batch_size: int
    is_reference: bool

    @property
    def offline(self) -> bool:
        """A local model evaluated on Hub sets must reach the Hub: offline only when every set is local."""
        return self.job.offline and all("path" in t.source for t in self.tasks)


@dataclass(frozen=True)
class BareSpec:
    """One side of `harness overhead`'s interleaved passes over the same texts: `side` "harness" (the harness's
    loading and pass loop) or "plain" (a user's `SentenceTransformer(...)` and `encode`), `passes` per call."""

    job: JobSpec
    batch_size: int
    texts: tuple[str, ...]
    passes: int
    side: str = "plain"


@dataclass
class UnitResult:
    """What a unit's process sends back: its row fields, or why it failed; the warnings it raised and its
    peak memory either way."""

    fields: dict[str, Any] | None = None
    error: str | None = None
    traceback: str | None = None
    warnings: list[str] = field(default_factory=list)
    peak_memory_mb: float = 0.0

    def outcome(self) -> dict[str, Any]:
        """The unit's fields plus what every unit reports: its peak memory (unless the unit read its own, e.g. a
        speed cell before its runtime read-back) and the warnings it raised."""
        return {"peak_memory_mb": self.peak_memory_mb, **(self.fields or {}), "warnings": self.warnings or None}


@dataclass(frozen=True)
class ServerSpec:
    """One instance's part of a server-scenario step (harness.engine.server): `warm` (load the model, run
    every batch size it will serve), `bulk` (encode its share of the texts from `origin`, `passes` times) or
    `serve` (claim batches of the seeded Poisson schedule from the shared queue at `queue_path`)."""

    job: JobSpec  # threads: this instance's
    texts: tuple[str, ...]
    mode: str  # warm | bulk | serve
    instance: int = 0
    instances: int = 1
    max_batch: int = 1
    max_wait_s: float = 0.0
    warm_sizes: tuple[int, ...] = ()
    solo: bool = True  # warm: then time requests served alone (their p99: the latency floor of every rate)
    origin: float = 0.0  # harness.engine.instances.CLOCK time the schedule (or the bulk pass) starts
    queue_path: str = ""
    rate: float = 0.0
    n: int = 0
    seed: int = 0
    batch_size: int = 32  # bulk
    passes: int = 1  # bulk
