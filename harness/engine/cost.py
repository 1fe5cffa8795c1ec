"""What a speed cell of one model costs, from a measured cell of another (for `--plan`).

A cell's duration is a few parts that scale differently (harness.engine.units.speed):
- the timed passes: bulk passes until both `min_time_s` and `min_repeats` are met (or `max_time_s` /
  `max_repeats`), then per-request passes until `request_min_time_s` (>= 1 pass). A pass's time is its
  forward share, which scales with the model's compute (FLOPs per token x tokens), and the rest
  (tokenization, sentence-transformers' loop), which scales with the tokens alone. The pass count then
  follows from the rules: a cell held up by `min_time_s` runs fewer, longer passes for a slower model
  and takes about as long; one that already runs `min_repeats` passes gets longer in proportion;
- the warm-up and breakdown batches outside timing (a batch's time scales like a pass);
- the first cell of a worker process: the process start (imports, the same for every model) and the
  model load (~ its size: total parameters);
- what is left (fidelity, the round trip to the worker): the same for every model.
A try of the timed passes during which another process used the CPU is measured again: the estimate
counts as many tries as the measured cell needed (this machine as busy as it was then).
A pass's compute is `Shape.flops_per_token` (non-embedding weights: embedding tables are looked up, not
multiplied; plus attention's term in the text's length) x tokens, or total parameters x tokens when the
config is not at hand.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

from harness.engine.measure import passes_needed
from harness.inputs import models
from harness.inputs.models import Shape

# a pass's share in the model's forward when no breakdown was measured (MiniLM on a 2-core EPYC: 0.87-0.99)
DEFAULT_FORWARD_SHARE = 0.9
BREAKDOWN_BATCHES = 2  # measure.breakdown times up to two batches after the timed loop (round 0)


@dataclass(frozen=True)
class Work:
    """What a pass encodes, and with what model."""

    shape: Shape | None
    params: int | None  # total parameters
    n_texts: int | None = None
    tokens: float | None = None  # mean tokens per text

    def forward(self, other: Work) -> float | None:
        """This pass's forward compute over `other`'s (None: not comparable)."""
        n, t = self._texts(other)
        n0, t0 = other._texts(self)
        if self.shape is not None and other.shape is not None:
            mine = n * t * self.shape.flops_per_token(_cap(t, self.shape))
            theirs = n0 * t0 * other.shape.flops_per_token(_cap(t0, other.shape))
            return mine / theirs
        if self.params and other.params:
            return (n * t * self.params) / (n0 * t0 * other.params)
        return None

    def tokens_ratio(self, other: Work) -> float:
        n, t = self._texts(other)
        n0, t0 = other._texts(self)
        return (n * t) / (n0 * t0)

    def _texts(self, other: Work) -> tuple[float, float]:
        n = self.n_texts or other.n_texts or 1
        return float(n), float(self.tokens or other.tokens or 1.0)


def _cap(tokens: float, shape: Shape) -> float:
    return min(tokens, float(shape.max_seq_length or tokens))


@lru_cache(maxsize=64)
def shape_of(source: str | None, max_seq_length: int | None = None) -> Shape | None:
    """A model's shape from its source (offline), with the model config's `max_seq_length` applied."""
    found = models.shape(source) if source else None
    return replace(found, max_seq_length=max_seq_length) if found is not None and max_seq_length else found


@dataclass(frozen=True)
class Measured:
    """A speed row, in the parts its duration is made of."""

    model: str
    source: str | None
    params: int | None
    dataset: str
    backend: str
    variant: str
    batch_size: int
    round: int
    seconds: float  # the cell's whole duration (duration_s)
    timed_s: float  # inside the timed passes (measure_s)
    bulk_pass_s: float
    request_pass_s: float
    first: bool  # the first cell of its worker process: paid the process start and the load
    tries: int  # timed tries: a try while another process used the CPU is measured again
    load_s: float
    n_texts: int
    tokens: float | None
    forward_share: float | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Measured | None:
        """None for a row without the raw timings (an older row, a round that was skipped)."""
        pass_s, latencies = row.get("pass_s") or [], row.get("latencies_ms") or []
        n, bs = row.get("n_texts"), row.get("batch_size")
        if not pass_s or not latencies or not n or not bs:
            return None
        per_pass = math.ceil(n / bs)
        settings = row.get("settings") or {}
        return cls(
            model=row["model"], source=row.get("model_source"), params=row.get("model_params"),
            dataset=row["dataset"], backend=row["backend"], variant=row.get("variant") or "", batch_size=bs,
            round=int(row.get("round") or 0), seconds=float(row.get("duration_s") or 0.0),
            timed_s=float(row.get("measure_s") or (sum(pass_s) + sum(latencies) / 1000.0)),
            bulk_pass_s=statistics.median(pass_s),
            request_pass_s=sum(latencies) / 1000.0 / max(1.0, len(latencies) / per_pass),
            first=settings.get("process_cell") == 1, tries=max(1, int(row.get("tries") or 1)),
            load_s=float(settings.get("load_s") or 0.0),
            n_texts=int(n), tokens=row.get("text_tokens_mean"), forward_share=row.get("forward_share"),
        )  # fmt: skip

    def cell(self) -> tuple[str, str, str, str, int]:
        """The cell, whichever round."""
        return (self.model, self.dataset, self.backend, self.variant, self.batch_size)

    def work(self) -> Work:
        shape = shape_of(self.source)
        return Work(shape, self.params or (shape.params if shape else None), self.n_texts, self.tokens)

    def batch_s(self) -> float:
        return self.bulk_pass_s * min(self.batch_size, self.n_texts) / self.n_texts

    def extra_batches(self, warmup_batches: int, breakdown: bool) -> float:
        return _extra_batches(self.first, self.round, warmup_batches, breakdown)

    def fixed_s(self, start_s: float, warmup_batches: int, breakdown: bool) -> float:
        """What is left of the duration once the passes, warm-up, breakdown, process start and load are out."""
        extra = self.extra_batches(warmup_batches, breakdown) * self.batch_s()
        outside = self.seconds - self.tries * self.timed_s - extra
        return max(0.0, outside - (start_s + self.load_s if self.first else 0.0))


def _extra_batches(first: bool, round_: int, warmup_batches: int, breakdown: bool) -> float:
    warm = warmup_batches if first else min(1, warmup_batches)
    return warm + (BREAKDOWN_BATCHES if breakdown and round_ == 0 else 0)


@dataclass(frozen=True)
class Target:
    """The cell to estimate: its work, batch size, round and whether it starts its worker process."""

    work: Work
    batch_size: int
    round: int
    first: bool
    dataset: str = ""


def cell_seconds(refs: list[Measured], target: Target, measure: Any, start_s: float) -> float:
    """`target`'s duration, scaled from the measured `refs` (the rounds of a cell of another model, dataset or
    batch size) and run through the pass rules of `measure` (a MeasureConfig). A busy machine slows some
    rounds down: the passes are the least disturbed round's (the compute), tries and what is left outside
    the passes the rounds' median."""
    m, ref = measure, min(refs, key=lambda r: r.bulk_pass_s)
    ref_work, work = ref.work(), target.work
    if target.dataset == ref.dataset:  # the same texts: the ones the reference measured
        work = replace(work, n_texts=ref.n_texts, tokens=ref.tokens)
    forward = work.forward(ref_work)
    tokens = work.tokens_ratio(ref_work)
    share = ref.forward_share if ref.forward_share is not None else DEFAULT_FORWARD_SHARE
    scale = share * (forward if forward is not None else tokens) + (1.0 - share) * tokens
    bulk, request = ref.bulk_pass_s * scale, ref.request_pass_s * scale
    timed = bulk * passes_needed(bulk, m.min_time_s, m.min_repeats, m.max_repeats, m.max_time_s)
    timed += request * passes_needed(request, m.request_min_time_s, 1, m.max_repeats, m.max_time_s)
    n = float(work.n_texts or ref.n_texts)
    batch = bulk * min(target.batch_size, n) / n
    extra = _extra_batches(target.first, target.round, m.warmup_batches, bool(m.breakdown)) * batch
    size = work.params / ref_work.params if work.params and ref_work.params else 1.0
    process = start_s + statistics.median(r.load_s for r in refs) * size if target.first else 0.0
    fixed = statistics.median(r.fixed_s(start_s, m.warmup_batches, bool(m.breakdown)) for r in refs)
    # as many tries as the reference needed: the machine as busy as it was then
    return fixed + process + extra + statistics.median(r.tries for r in refs) * timed


def server_group_s(server: Any, dominated: bool = False) -> float:
    """One (shape, batching) group of server cells when this machine has none measured: warm-up and bulk, then a
    search from half the bulk rate (a step or two) and each budget's bisection to rel_tol; a group another
    configuration dominates (sweep order: the likely fastest first) stops after its bulk or one point a budget."""
    bisections = math.ceil(math.log2(math.log(2) / math.log1p(server.rel_tol)))
    budgets = len(server.budgets_ms)
    points = budgets / 2 if dominated else 2 + budgets * bisections
    return 8.0 + points * (1.5 * server.point_s + 0.8)


def server_cell_s(rows: list[dict[str, Any]], machine: str) -> dict[tuple[str, str], float]:
    """The mean seconds of a server cell per (model, dataset), from the newest run that measured that pair on
    this machine (a row's duration is its group's over its cells: searched, dominated and unreachable ones in
    the mix that run had)."""
    mine = [r for r in rows if r.get("kind") == "server" and r.get("machine") == machine and r.get("status") == "ok"]
    newest: dict[tuple[str, str], tuple[str, str]] = {}
    for r in mine:
        key, when = (r.get("model"), r.get("dataset")), (str(r.get("timestamp") or ""), str(r.get("run")))
        newest[key] = max(newest.get(key, when), when)
    seconds: dict[tuple[str, str], list[float]] = {}
    for r in mine:
        key = (r.get("model"), r.get("dataset"))
        if str(r.get("run")) == newest[key][1] and r.get("duration_s"):
            seconds.setdefault(key, []).append(float(r["duration_s"]))
    return {k: statistics.fmean(v) for k, v in seconds.items()}


LATER_ROUND_SHARE = 0.3  # rounds=auto: the share of a later round's cells measured, before this machine has swept


def later_round_share(rows: list[dict[str, Any]], machine: str) -> float:
    """The share of later-round (round >= 1) speed cells that earlier adaptive sweeps on this machine measured
    (the rest were decided: rows of kind "round"); LATER_ROUND_SHARE when there are none."""
    later = [r for r in rows if r.get("machine") == machine and (r.get("round") or 0) >= 1
             and r.get("kind") in ("speed", "round")]  # fmt: skip
    if len(later) < 20:
        return LATER_ROUND_SHARE
    return sum(r["kind"] == "speed" for r in later) / len(later)


def later_round_counts(rows: list[dict[str, Any]], machine: str) -> dict[int, float]:
    """round -> how many configurations of a group (run, model, dataset, batch size) earlier adaptive sweeps on
    this machine measured in that later round, on average: the leaders, torch-fp32 and what was undecided, a
    number that does not grow with the group (a 5-configuration sweep measures most of them again, a
    13-configuration one a third). Empty before this machine has swept adaptively."""
    groups: dict[tuple, dict[int, int]] = {}
    for r in rows:
        round_ = int(r.get("round") or 0)
        if r.get("machine") != machine or round_ < 1 or r.get("kind") not in ("speed", "round"):
            continue
        key = (r.get("run"), r.get("model"), r.get("dataset"), r.get("batch_size"))
        per = groups.setdefault(key, {})
        per[round_] = per.get(round_, 0) + (r["kind"] == "speed")
    if len(groups) < 4:
        return {}
    rounds = sorted({r for per in groups.values() for r in per})
    return {r: statistics.fmean(per[r] for per in groups.values() if r in per) for r in rounds}


CHARS_PER_TOKEN = 4.0  # English text in a WordPiece / BPE vocabulary, roughly (the texts' own count once measured)


def builtin_texts(d: Any) -> tuple[int | None, float | None]:
    """A dataset's text count and estimated tokens per text before any row has them: a built-in bucket's
    texts are made here (no file, no model) and counted in characters; other sources: unknown."""
    if d.source != "builtin" or d.bucket is None:
        return None, None
    from harness.inputs.texts import builtin_texts

    texts = builtin_texts(str(d.bucket), int(d.samples), int(d.seed))
    chars = sum(len(t) for t in texts) * int(d.multiply) / max(1, len(texts))
    return len(texts), chars / CHARS_PER_TOKEN + 2  # + [CLS] and [SEP]


class Timings:
    """This machine's durations in the store, by cell and by backend, and its speed cells in parts (to scale)."""

    def __init__(self, rows: Iterable[dict[str, Any]], machine: str):
        self.cell: dict[tuple, list[float]] = {}
        self.backend: dict[tuple, list[float]] = {}
        self.all: dict[str, list[float]] = {"speed": [], "accuracy": []}
        self.measured: list[Measured] = []
        self.works: dict[tuple[str, str], Work] = {}  # the plan's (model, dataset) workloads, made once
        self.start: float | None = None  # a worker process's start (start_s)
        self.server_s: dict[tuple[str, str], float] | None = None  # a server cell's seconds (server_cell_s)
        self.machine = machine
        self.rows = rows = list(rows)
        for r in rows:
            if r.get("machine") != machine or r.get("status") != "ok" or r.get("kind") not in self.all:
                continue
            seconds = float(r.get("duration_s") or 0.0)
            key = (r["kind"], r["model"], r["dataset"] if r["kind"] == "speed" else "", r["backend"],
                   r.get("variant") or "", r.get("batch_size"))  # fmt: skip
            self.cell.setdefault(key, []).append(seconds)
            self.backend.setdefault((r["kind"], r["backend"]), []).append(seconds)
            self.all[r["kind"]].append(seconds)
            measured = Measured.from_row(r) if r["kind"] == "speed" else None
            if measured is not None:
                self.measured.append(measured)
        # the breakdown is measured in round 0 only: the cell's other rounds share its forward share
        shares = {m.cell(): m.forward_share for m in self.measured if m.forward_share is not None}
        self.measured = [replace(m, forward_share=shares.get(m.cell())) if m.forward_share is None else m
                         for m in self.measured]  # fmt: skip

    def estimate(self, kind: str, model: str, dataset: str, backend: str, variant: str, bs: int | None,
                 target: Target | None = None, measure: Any = None) -> float | None:  # fmt: skip
        """The cell's own timing; else (a speed cell with its `target` and the `measure` rules) a measured
        cell scaled to it; else the backend's median, else the machine's."""
        own = self.cell.get((kind, model, dataset if kind == "speed" else "", backend, variant, bs))
        if own:
            return statistics.median(own)
        if kind == "speed" and target is not None and measure is not None:
            scaled = self.scaled(backend, variant, dataset, target, measure)
            if scaled is not None:
                return scaled
        for values in (self.backend.get((kind, backend)), self.all[kind]):
            if values:
                return statistics.median(values)
        return None

    def scaled(self, backend: str, variant: str, dataset: str, target: Target, measure: Any) -> float | None:
        """The nearest measured cells of the backend (its variant, the dataset, the batch size, the model's
        size, in that order), each scaled to `target`; their median."""
        pool = ([m for m in self.measured if (m.backend, m.variant) == (backend, variant)]
                or [m for m in self.measured if m.backend == backend])  # fmt: skip
        if not pool:
            return None

        def distance(m: Measured) -> tuple[bool, float, float]:
            params = m.params or (m.work().params or 1)
            return (m.dataset != dataset, abs(math.log(m.batch_size / target.batch_size)),
                    abs(math.log(params / (target.work.params or params))))  # fmt: skip

        nearest = min(distance(m) for m in pool)
        return cell_seconds([m for m in pool if distance(m) == nearest], target, measure, self.start_s(measure))

    def texts(self, dataset: str) -> tuple[int | None, float | None]:
        """The dataset's texts per pass and mean tokens per text, as its measured rows say (None, None: never run)."""
        rows = [m for m in self.measured if m.dataset == dataset and m.tokens]
        if not rows:
            return None, None
        return int(statistics.median(m.n_texts for m in rows)), statistics.median(float(m.tokens or 0) for m in rows)

    def start_s(self, measure: Any) -> float:
        """A worker process's start (imports, runtime set-up; not the model's load): what the first cells of a
        process take outside their passes, warm-up and load, over what later cells take (medians: the
        machine's, every backend's cells together, as a busy machine disturbs a few)."""
        if self.start is None:
            fixed = {m: m.fixed_s(0.0, measure.warmup_batches, bool(measure.breakdown)) for m in self.measured}
            firsts = [fixed[m] for m in self.measured if m.first]
            later = [fixed[m] for m in self.measured if not m.first]
            start = statistics.median(firsts) - statistics.median(later) if firsts and later else 0.0
            self.start = max(0.0, start)
        return self.start
