"""The server scenario in a sweep: for each deployment shape and batching policy of a backend configuration,
the shape's bulk throughput, then the highest rate whose p99 stays within each budget.

The search (`serving.sustainable_rate`) runs here, in the sweep's process; each rate point is one step
in which every instance of the shape serves the same seeded Poisson schedule from one shared queue
(`harness.engine.instances`), in the backend's forked workers (`POOL.run_group`, one worker per instance
with its threads). Points are kept by rate, so the budgets' searches share the points they have in common.
The contention guard meters the whole machine around each point and subtracts the CPU of the sweep and of
every instance: the shape's own siblings are not contention.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from harness.core.files import digest
from harness.engine import identity, instances, measure, serving
from harness.engine.cells import Cell, backend_identity, label_of
from harness.engine.specs import ServerSpec
from harness.engine.workers import POOL
from harness.store.labels import label

log = logging.getLogger(__name__)

LEAD_S = 0.3  # a step's origin is this far after it is sent, so every instance is waiting when it starts
_STARTED: list[float] = []  # when this sweep process's first server group began (the time budget)


class GroupMeter(measure.CpuMeter):
    """CpuMeter whose "self" is this process and the shape's instances: only others are contention."""

    def __init__(self, pids: list[int]):
        super().__init__()
        self._procs = [psutil.Process(p) for p in pids]

    def _self(self) -> float:
        total = super()._self()
        for proc in self._procs:
            try:
                t = proc.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                continue
        return total


@dataclasses.dataclass(frozen=True)
class Leader:
    """The highest rate a configuration of this sweep sustained within one budget, for the same model,
    texts and CPUs: a later configuration that cannot reach it is `dominated` and stops early."""

    rate: float
    budget_s: float
    what: str  # "openvino-qint8 1x2 max_batch 32/5 ms"


# by leader_key, then configuration label: each configuration's best, in this sweep process (a resumed or
# launched job starts afresh). A configuration is compared with the others' best, never with its own: each of
# its shapes and batchings is searched to the end unless another configuration dominates it.
LEADERS: dict[tuple, dict[str, Leader]] = {}
_SEEDED: set[str] = set()  # run folders whose stored rows are in LEADERS


def leader(key: tuple, label: str) -> Leader | None:
    """The best rate another configuration than `label` sustained for `key`."""
    others = [v for k, v in LEADERS.get(key, {}).items() if k != label]
    return max(others, key=lambda v: v.rate, default=None)


def leader_key(shape: Shape, budget_ms: float) -> tuple:
    return (identity.model_key(shape.cfg), shape.cfg.dataset.name, shape.k * shape.t, float(budget_ms),
            int(shape.cfg.round))  # fmt: skip


def seed_leaders(run_dir: Path) -> None:
    """LEADERS from the run's stored server rows (once per run and process): a resumed sweep, or jobs that a
    launcher runs in separate processes, stop dominated configurations as one uninterrupted sweep would."""
    if str(run_dir) in _SEEDED:
        return
    _SEEDED.add(str(run_dir))
    for path in run_dir.glob("server-*.json"):
        try:
            row = json.loads(path.read_text())
            rate = row.get("sustainable_rate")
            if row.get("kind") != "server" or row.get("status") != "ok" or not rate:
                continue
            key = (row["model_key"], row["dataset"], int(row["threads"]), float(row["budget_p99_ms"]),
                   int(row.get("round") or 0))  # fmt: skip
            name = label(row["backend"], row.get("variant") or "")
            what = (f"{name} {row['instances']}x{row['threads_per_instance']} max_batch {row['max_batch']}/"
                    f"{row['max_wait_ms']:g} ms")  # fmt: skip
        except (OSError, ValueError, KeyError, TypeError):
            continue  # a damaged or older row: the sweep measures what it needs again
        own = LEADERS.setdefault(key, {}).get(name)
        if own is None or rate > own.rate:
            LEADERS[key][name] = Leader(float(rate), key[3] / 1e3, what)


class StepFailed(RuntimeError):
    def __init__(self, status: str, reason: str):
        super().__init__(reason)
        self.status = status


@dataclasses.dataclass
class Shape:
    """One group's instances: the workers, their specs' common part and the points measured so far."""

    cfg: Any
    job: Any
    backend_cfg: Any
    k: int
    t: int
    max_batch: int
    max_wait_s: float
    texts: tuple[str, ...]
    points: dict[float, serving.ServeResult] = dataclasses.field(default_factory=dict)
    cpu: list[tuple[float, float]] = dataclasses.field(default_factory=list)  # (cpu_self, cpu_other) per step
    pss: list[float] = dataclasses.field(default_factory=list)
    solo: float | None = None  # p99 of a request served alone (s), measured after the warm-up

    def __post_init__(self) -> None:
        spec = self.job.spec
        ident = [dataclasses.asdict(spec.model), backend_identity(self.backend_cfg), self.t, spec.export_dir]
        self.keys = [f"{digest([*ident, i])}-i{i}of{self.k}-r{self.cfg.round}" for i in range(self.k)]
        self.spec = dataclasses.replace(spec, threads=self.t)
        self.label = label_of(self.backend_cfg)
        self.what = (f"{self.label} {self.k}x{self.t} max_batch {self.max_batch}/"
                     f"{self.max_wait_s * 1e3:g} ms")  # fmt: skip
        self.queue = instances.SharedQueue(Path(tempfile.gettempdir()) / f"harness-queue-{digest(self.keys)}")

    def step(self, mode: str, **fields: Any) -> list[dict[str, Any]]:
        """Every instance runs `mode` at once; their results (StepFailed if any instance failed)."""
        specs = [ServerSpec(job=self.spec, texts=self.texts, mode=mode, instance=i, instances=self.k,
                            max_batch=self.max_batch, max_wait_s=self.max_wait_s, queue_path=self.queue.path,
                            **fields) for i in range(self.k)]  # fmt: skip
        timeout = self.cfg.measure.cell_timeout_s
        what = f"{self.cfg.model.name} {label_of(self.backend_cfg)} {self.k}x{self.t}"
        with GroupMeter(POOL.pids(self.keys)) as meter:
            outcomes = POOL.run_group(self.keys, self.cfg.round, self.t, "server", specs, timeout, what)
        bad = next(((s, r) for s, _, r in outcomes if s != "ok"), None)
        if bad:
            raise StepFailed(bad[0], f"{mode}: {bad[1]}")
        if mode != "warm":
            self.cpu.append((meter.cpu_self, meter.cpu_other))
        out = [o for _, o, _ in outcomes]
        self.pss = [o["pss_mb"] for o in out if o.get("pss_mb") is not None]
        return out

    def metered(self, mode: str, **fields: Any) -> tuple[float, list[dict[str, Any]]]:
        """`step(mode)` from a fresh origin, measured again (up to `measure.contention_retries` times) while other
        processes used more than `measure.contention_threshold` cores during it; a discarded try leaves no trace."""
        m = self.cfg.measure
        for attempt in range(int(m.contention_retries) + 1):
            self.queue.reset()
            origin = instances.CLOCK() + LEAD_S
            out = self.step(mode, origin=origin, **fields)
            if self.cpu[-1][1] <= m.contention_threshold or attempt == int(m.contention_retries):
                return origin, out
            log.info("%s %s: %.2f cores used by others, measured again", self.what, mode, self.cpu.pop()[1])
        raise AssertionError("unreachable")

    def bulk(self) -> float:
        """Texts/s of the shape: each instance encodes its share of the texts from one origin."""
        origin, out = self.metered("bulk", batch_size=int(self.cfg.server.bulk_batch_size), passes=3)
        return sum(o["texts"] for o in out) / (max(o["end"] for o in out) - origin)

    def measure_at(self, rate: float) -> serving.ServeResult:
        key = round(rate, 6)
        if key not in self.points:
            s = self.cfg.server
            n = serving.requests_for(rate, s.point_s, int(s.discard), int(s.min_requests))
            origin, out = self.metered("serve", rate=float(rate), n=n, seed=int(s.seed))
            arrivals = serving.poisson_schedule(rate, n, int(s.seed))
            self.points[key], _ = instances.merge(arrivals, origin, out, self.max_batch, self.max_wait_s,
                                                  int(s.discard))  # fmt: skip
        return self.points[key]


def _point(rate: float, r: serving.ServeResult, budget_s: float, min_n: int) -> dict[str, Any]:
    why = serving.judge(r, budget_s, min_n)
    return {"rate": round(rate, 3), "offered": round(r.offered_rate, 3), "served": round(r.throughput, 3),
            "p50_ms": r.p50 * 1e3, "p90_ms": r.p90 * 1e3, "p99_ms": r.p99 * 1e3, "mean_ms": r.mean * 1e3,
            "n": r.n, "backlog": r.backlog, "sustainable": not why, "why_not": why}  # fmt: skip


def budget_fields(shape: Shape, search: serving.RateSearch, bulk: float, warm: dict[str, Any]) -> dict[str, Any]:
    """One budget's row fields from its search and the shape's points (the curve)."""
    budget_s = search.budget_p99_s
    min_n = min(serving.MIN_N, int(shape.cfg.server.min_requests))
    points = [_point(rate, r, budget_s, min_n) for rate, r in sorted(shape.points.items())]
    at = shape.points.get(round(search.rate, 6)) if search.rate else None
    failing = next((p for p in points if not p["sustainable"]), None)
    cpu_self, cpu_other = (float(np.mean(v)) for v in zip(*shape.cpu, strict=True)) if shape.cpu else (None, None)
    worst = max((o for _, o in shape.cpu), default=0.0)
    return {
        "instances": shape.k, "threads_per_instance": shape.t, "threads": shape.k * shape.t,
        "max_batch": shape.max_batch, "max_wait_ms": shape.max_wait_s * 1e3, "budget_p99_ms": budget_s * 1e3,
        "sustainable_rate": search.rate, "rate_bracket": list(search.bracket), "sustainable": search.rate is not None,
        "why_not": failing["why_not"] if failing else "", "rate_points": points, "bulk_throughput": bulk,
        "offered_rate": at.offered_rate if at else None, "served_rate": at.throughput if at else None,
        "request_p50_ms": at.p50 * 1e3 if at else None, "request_p90_ms": at.p90 * 1e3 if at else None,
        "request_p99_ms": at.p99 * 1e3 if at else None, "request_mean_ms": at.mean * 1e3 if at else None,
        "requests_measured": at.n if at else None, "backlog": at.backlog if at else None,
        "memory_pss_mb": sum(shape.pss) if shape.pss else None, "point_s": float(shape.cfg.server.point_s),
        "cpu_self": cpu_self, "cpu_other": cpu_other,
        "contended": bool(worst > shape.cfg.measure.contention_threshold), "dominated_by": None,
        "solo_p99_ms": shape.solo * 1e3 if shape.solo is not None else None, **warm,
    }  # fmt: skip


def warm_sizes(max_batch: int, bulk: int) -> tuple[int, ...]:
    """Every batch size the batcher can form (1..max_batch; powers of two beyond 64) and the bulk one."""
    sizes = set(range(1, min(max_batch, 64) + 1)) | {2**i for i in range(int(math.log2(max_batch)) + 1)}
    return tuple(sorted(sizes | {max_batch, bulk}))


def bulk_below(bulk: float, leader: Leader | None) -> bool:
    """The shape's bulk throughput, the most it serves, is below the leader's rate (+ 10 % for noise)."""
    return leader is not None and bulk * 1.1 < leader.rate


def dominated(shape: Shape, leader: Leader | None, bulk: float, min_n: int) -> str:
    """Why the shape cannot beat the best rate this sweep already sustains within the budget ("" when it
    may): its bulk throughput, the most it serves, is below that rate (+ 10 % for noise), or it does not
    sustain that rate itself (one point)."""
    if leader is None:
        return ""
    if bulk_below(bulk, leader):
        return f"dominated: bulk {bulk:.0f} texts/s < {leader.rate:.0f} req/s that {leader.what} sustains"
    why = serving.judge(shape.measure_at(leader.rate), leader.budget_s, min_n)
    return f"dominated: at {leader.rate:.0f} req/s, which {leader.what} sustains, {why}" if why else ""


def measure_group(shape: Shape, budgets_ms: list[float]) -> dict[float, dict[str, Any]]:
    """The shape's bulk throughput and, per budget, its sustainable-rate search: row fields by budget.
    A budget whose best rate so far (`LEADERS`) this shape cannot reach stops after one point, `dominated`.
    Each budget's rate is then the one every point of the shape holds up to (`serving.held_rate`)."""
    s = shape.cfg.server
    bulk_size = int(s.bulk_batch_size)
    warm, _ = _warm(shape, sizes=(1, bulk_size), solo=False)  # enough for the bulk passes and requests alone
    bulk = shape.bulk()
    min_n = min(serving.MIN_N, int(s.min_requests))
    prune = bool(s.prune_dominated)  # a shape whose bulk is below a budget's leader needs no warm-up for it
    open_ = [b for b in budgets_ms if not (prune and bulk_below(bulk, leader(leader_key(shape, b), shape.label)))]
    shape.solo = None
    if open_:  # a budget below a lone request's p99 needs no rate point either
        _, shape.solo = _warm(shape, sizes=(), solo=True)
        if any(shape.solo is None or shape.solo <= 1.1 * b / 1e3 for b in open_):
            _warm(shape, sizes=warm_sizes(shape.max_batch, bulk_size), solo=False)  # every batch it can form
    searches: dict[float, tuple[serving.RateSearch, dict[str, Any]]] = {}
    start = float(s.rate_lo or bulk / 2)  # near a loose budget's answer: low rates are the slow points
    for budget in sorted(budgets_ms, reverse=True):  # the loosest first: the others reuse its points
        search, extra = _search(shape, float(budget), bulk, start, min_n)
        searches[float(budget)] = (search, extra)
        start = search.rate or start  # a tighter budget's rate is at most this one
    out: dict[float, dict[str, Any]] = {}
    for budget, (search, extra) in searches.items():
        if search.points or extra.get("dominated_by"):  # measured: every point of the shape counts
            held, above = serving.held_rate(shape.points, budget / 1e3, min_n)
            bracket = (held, extra["leader"]) if extra.get("dominated_by") else (held, above)
            search = serving.RateSearch(None if extra.get("dominated_by") else held, search.budget_p99_s,
                                        bracket, search.points)  # fmt: skip
        out[budget] = {**budget_fields(shape, search, bulk, warm), **{k: v for k, v in extra.items() if k != "leader"}}
        if search.rate:
            key = leader_key(shape, budget)
            own = LEADERS.setdefault(key, {}).get(shape.label)
            if own is None or search.rate > own.rate:
                LEADERS[key][shape.label] = Leader(search.rate, budget / 1e3, shape.what)
    return out


def _warm(shape: Shape, sizes: tuple[int, ...], solo: bool) -> tuple[dict[str, Any], float | None]:
    """Every instance runs `sizes` (the longest and the shortest texts at each), then, with `solo`, times
    requests served alone: the row fields of the runtime's read-backs and the texts' stats, and the lone
    requests' p99 on the fastest instance (None without `solo`)."""
    warmed = shape.step("warm", warm_sizes=tuple(sizes), solo=solo)
    warm = {k: warmed[0][k] for k in ("runtime", "precision", "settings")}
    stats = warmed[0].get("texts") or {}
    warm.update({k: stats[k] for k in ("text_chars_mean", "text_chars_p50", "text_chars_max", "text_tokens_mean",
                                       "truncated_share", "max_seq_length") if k in stats})  # fmt: skip
    solos = [o["solo_p99_s"] for o in warmed if o.get("solo_p99_s") is not None]
    return warm, min(solos) if solos else None


def _search(shape: Shape, budget: float, bulk: float, start: float, min_n: int
            ) -> tuple[serving.RateSearch, dict[str, Any]]:  # fmt: skip
    """One budget's search, or why there is none: unreachable (a lone request's p99 over the budget), or
    dominated (`extra` names the leader and its rate)."""
    s = shape.cfg.server
    empty = serving.RateSearch(None, budget / 1e3, (None, None), [])
    if shape.solo is not None and shape.solo > 1.1 * budget / 1e3:  # no rate beats a request's own service time
        return empty, {"why_not": f"unreachable: a request served alone takes p99 {shape.solo * 1e3:.1f} ms > "
                                  f"budget {budget:g} ms"}  # fmt: skip
    best = leader(leader_key(shape, budget), shape.label)
    why = dominated(shape, best, bulk, min_n) if s.prune_dominated else ""
    if why and best:
        return empty, {"why_not": why, "dominated_by": best.what, "leader": best.rate}
    if best and s.prune_dominated:  # sustained there (measured above): search upwards from it
        start = max(start, best.rate)
    hi = float(s.rate_hi or 1.5 * bulk)
    lo = float(s.rate_lo or hi / 16)
    search = serving.sustainable_rate(shape.measure_at, budget / 1e3, lo, max(hi, lo), float(s.rel_tol),
                                      min_n=min_n, start=min(start, max(hi, lo)))  # fmt: skip
    return search, {}


def run_cells(cfg: Any, job: Any, backend_cfg: Any, cells: list[Cell], record: Any, texts: list[str]) -> None:
    """Each group (shape, batching) of a configuration's server cells: measured together, one row per budget.
    Past the sweep's `server.time_budget_s` the remaining groups are recorded as timed out (a rerun resumes)."""
    groups: dict[tuple, list[Cell]] = {}
    for cell in cells:
        p = cell.server
        groups.setdefault((p["instances"], p["threads"], p["max_batch"], p["max_wait_ms"]), []).append(cell)
    if cfg.server.prune_dominated:
        seed_leaders(Path(cfg.results_dir) / str(cfg.run))
    for (k, t, max_batch, wait_ms), group in groups.items():
        if not _STARTED:
            _STARTED.append(time.monotonic())
        if time.monotonic() - _STARTED[0] > cfg.server.time_budget_s:
            record.all(group, "timeout", f"server.time_budget_s={cfg.server.time_budget_s:g} spent; rerun to resume")
            continue
        start = time.monotonic()
        shape = Shape(cfg, job, backend_cfg, k, t, max_batch, wait_ms / 1e3, tuple(texts))
        try:
            by_budget = measure_group(shape, [c.server["budget_ms"] for c in group])
        except StepFailed as exc:
            record.all(group, exc.status, str(exc), time.monotonic() - start)
            continue
        except Exception as exc:  # noqa: BLE001 - recorded as the group's reason; the sweep goes on
            log.debug("server group failed", exc_info=exc)
            record.all(group, "failed", f"{type(exc).__name__}: {exc}", time.monotonic() - start)
            continue
        finally:
            shape.queue.remove()
        seconds = (time.monotonic() - start) / len(group)
        for cell in group:
            record(cell, "ok", None, by_budget[cell.server["budget_ms"]], seconds)
