"""The recommendation: the measured candidate that passes every rule (or why none does), set beside the
documented flowchart, with the code to load it and how to read it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import pandas as pd

from harness.core.hardware import Hardware
from harness.recommend.evidence import (
    FIDELITY_NAMES,
    FIDELITY_ONLY,
    LABEL_FREE,
    ONLINE_BATCH_SIZE,
    Candidate,
    Evidence,
    Query,
    evidence,
    fmt_fidelity,
)
from harness.recommend.flowchart import DOCS_URL, Documented, documented, flowchart
from harness.recommend.snippet import documented_model_kwargs, export_hint, python_snippet
from harness.recommend.task_loss import describe
from harness.store import results
from harness.store.analysis import FIDELITY_FLOOR
from harness.store.stats import span


@dataclass
class Recommendation:
    backend: str | None  # None: measured candidates exist but none meets every rule (see evidence.rejections)
    source: str  # "measured" | "documented"
    speedup: float | None  # the scenario's: bulk throughput (bulk), per-request throughput (online)
    accuracy_ratio: float | None
    flowchart_backend: str
    flowchart_path: list[str]
    reasons: list[str]
    python: str
    machine: str
    query: Query
    hardware: dict[str, Any]
    documented: Documented
    docs_url: str
    evidence: Evidence | None = None
    chosen: Candidate | None = None  # the measured candidate behind a measured answer

    def to_dict(self) -> dict[str, Any]:
        c, ev = self.chosen, self.evidence
        return {
            "backend": self.backend,
            "speedup": self.speedup,
            "speedup_kind": SPEEDUP_KIND[self.query.scenario],
            "speedup_source": self.source,
            "accuracy_ratio": self.accuracy_ratio,
            "accuracy_source": self.source,
            "accuracy_by_metric": c.accuracy_by_metric if c else {},
            "fidelity": {"worst_case": c.fidelity, "source": c.fidelity_source} if c else None,
            "task_loss": c.task_loss if c else None,  # label-free: the worst over datasets (`analysis.worst_agreement`)
            "latency_p99_ms": c.latency_p99_ms if c else None,
            "peak_memory_mb": c.peak_memory_mb if c else None,
            "scenario": self.query.scenario,
            "batch_sizes": ev.batch_sizes if ev else [],
            "basis": ev.basis if ev else "",
            "rejected": ev.rejections if ev else [],
            "flowchart": {
                "backend": self.flowchart_backend,
                "path": self.flowchart_path,
                "docs": self.docs_url,
            },
            "documented": dataclasses.asdict(self.documented),
            "reasons": self.reasons,
            "python": self.python,
            "machine": self.machine,
            "query": dataclasses.asdict(self.query),
            "hardware": self.hardware,
            "evidence": ev.to_dict() if ev else None,
        }


SPEEDUP_KIND = {"bulk": "bulk throughput (one encode call over all texts)", "online": "per-request throughput"}


def _fmt_speedup(x: float | None) -> str:
    return "unknown" if x is None else f"{x:.2f}x"


def _fmt_ratio(x: float | None) -> str:
    return "unknown" if x is None else f"{x:.2%}"


def _score(c: Candidate, scenario: str) -> str:
    """What a candidate is ranked by, as printed with its 95 % rerun interval: '2.35x (2.21-2.50)' (bulk) or
    'p99 3.10 ms (2.90-3.40)' (online)."""
    if scenario == "online":
        if c.latency_p99_ms is None:
            return "p99 unknown"
        return f"p99 {c.latency_p99_ms:.2f} ms" + span(c.latency_p99_low_ms, c.latency_p99_high_ms)
    return f"{c.speedup:.2f}x" + span(c.speedup_low, c.speedup_high)


def _per_metric(ratios: dict[str, float]) -> str:
    return ", ".join(f"{m} {r:.2%}" for m, r in sorted(ratios.items()))


def recommend(df: pd.DataFrame, query: Query, hw: Hardware, machine: str | None = None) -> Recommendation:
    """The flowchart's answer, replaced by the best qualifying measured backend when there is measured
    accuracy or fidelity; none at all when every measured backend breaks a rule. The server scenario has its
    own answer (batching, shape, rate): `harness.recommend.recommend_server`."""
    if query.scenario == "server":
        raise ValueError(
            "scenario 'server' is answered by harness.recommend.recommend_server(df, max_latency_ms, "
            "model=..., machine=..., text_length=...), not recommend()"
        )
    machine = machine or hw.fingerprint
    chart_backend, path = flowchart(
        query.model_kind,
        hw,
        text_length=query.text_length,
        batch_size=query.batch_size,
        tolerance=query.tolerance,
    )
    device = "gpu" if hw.gpu else "cpu"
    ev = evidence(df, query, machine, preferred=chart_backend)
    reasons: list[str] = []
    model_path = query.model or "<model name or path>"
    # what both answers (measured or documented) share
    common = dict(
        flowchart_backend=chart_backend, flowchart_path=path, reasons=reasons, machine=machine, query=query,
        hardware=hw.to_dict(), docs_url=DOCS_URL[query.model_kind], evidence=ev,
    )  # fmt: skip

    if ev.candidates and not ev.basis:
        # Only the reference would qualify: that is "accuracy not measured", not "torch-fp32 wins".
        speeds = ", ".join(f"{c.label} {c.speedup:.2f}x" for c in sorted(ev.candidates, key=lambda c: -c.speedup))
        ev.note = (
            "speed was measured but accuracy was not (sweep with HARNESS_DATA_DIR set, or online), nor "
            f"fidelity to torch-fp32 on the timed texts; measured speedups here: {speeds}"
        )
    if ev.candidates and ev.basis:
        return _measured(ev, query, hw, chart_backend, model_path, device, common)

    reasons.append(f"no measured evidence: {ev.note}; using the documented flowchart")
    doc = documented(query.model_kind, device, chart_backend)
    reasons.append(
        f"documented expectation for {chart_backend}: speedup {_fmt_speedup(doc.speedup)}, "
        f"accuracy {_fmt_ratio(doc.accuracy_ratio)} ({doc.note})"
    )
    try:
        kwargs = documented_model_kwargs(chart_backend, hw)
        hint = export_hint(chart_backend, query.model_kind, model_path, hw)
    except ValueError as exc:  # no int8 config fits this CPU
        kwargs, hint = {}, ""
        reasons.append(str(exc))
    python = hint + python_snippet(query.model_kind, model_path, chart_backend, kwargs)
    return Recommendation(
        backend=chart_backend,
        source="documented",
        speedup=doc.speedup,
        accuracy_ratio=doc.accuracy_ratio,
        python=python,
        documented=doc,
        **common,
    )


def _measured(
    ev: Evidence, query: Query, hw: Hardware, chart_backend: str, model_path: str, device: str, common: dict
) -> Recommendation:
    reasons: list[str] = common["reasons"]
    scenario = query.scenario
    chars = ", ".join(f"{d} ({c:g} chars)" if c else d for d, c in ev.datasets.items())
    sizes = ", ".join(map(str, ev.batch_sizes))
    target = ONLINE_BATCH_SIZE if scenario == "online" else query.batch_size
    reasons.append(
        f"measured on machine {ev.machine}: {len(ev.models)} model(s) ({', '.join(ev.models)}), "
        f"dataset(s) {chars} nearest to {query.text_length:g} characters, batch size {sizes} "
        f"nearest to {target}; runs {', '.join(ev.runs)}"
    )
    if scenario == "online":
        reasons.append(
            f"scenario online: one request at a time, ranked by p99 latency (lowest first) at batch size {sizes}"
            + ("" if ev.batch_sizes == [ONLINE_BATCH_SIZE] else " - batch size 1 was not measured here")
        )
    else:
        reasons.append(f"scenario bulk: ranked by bulk throughput (one encode call over all texts), batch size {sizes}")
    floor = FIDELITY_NAMES[FIDELITY_FLOOR[query.model_kind]]
    option = "--min-cosine" if query.model_kind == "bi-encoder" else "--min-spearman"
    if ev.basis == LABEL_FREE:
        reasons.append(
            f"decided on measured speed and {LABEL_FREE} (sweep with HARNESS_DATA_DIR set to measure accuracy): "
            f"--tolerance {query.tolerance:g} is the largest label-free task loss accepted (1 - the Spearman "
            f"correlation of the backend's text-pair similarities, or a cross-encoder's per-query scores, with "
            f"torch-fp32's), worst over the datasets; the worst-case {floor} to "
            f"torch-fp32 is reported, and a rule only with {option}"
        )
    elif ev.basis == FIDELITY_ONLY:
        reasons.append(
            f"decided on measured speed and {FIDELITY_ONLY}: these rows carry no label-free task loss, so "
            f"--tolerance cannot be checked; {option} decides on the worst-case {floor} instead"
        )
    by_name = {c.label: c for c in ev.candidates}
    chart = by_name.get(chart_backend)
    if not ev.qualifying:
        reasons.append(f"no measured backend meets every rule ({len(ev.candidates)} rejected, see below)")
        if chart is None:
            reasons.append(f"the documented flowchart's {chart_backend} was not measured in these cells")
        else:
            reasons.append(f"the documented flowchart's {chart_backend} is rejected too: {'; '.join(chart.rejected)}")
        return Recommendation(
            backend=None, source="measured", speedup=None, accuracy_ratio=None, python="",
            documented=documented(query.model_kind, device, chart_backend), **common,
        )  # fmt: skip

    best = ev.qualifying[0]
    if scenario == "online":
        base = by_name.get(results.BASELINE)
        ref = f" (torch-fp32 {_score(base, scenario)})" if base and base is not best else ""
        reasons.append(
            f"{best.label} has the lowest p99 latency of the qualifying backends: "
            f"{_score(best, scenario)}{ref}, {best.why}"
        )
    else:
        reasons.append(
            f"{best.label} is the fastest qualifying backend: {_score(best, scenario)} torch-fp32 bulk throughput "
            f"(95 % rerun interval), {best.why}"
        )
    tied = [c for c in ev.qualifying if c.tied_with == best.label]
    if tied:
        reasons.append(
            f"{best.label} is tied with {', '.join(c.label for c in tied)} within the measurement's resolution "
            f"(paired per round: {best.tie}); of tied backends the one a user gets with the least is taken "
            "(a plain name before an export step before a pinned knob, then the documented flowchart's)"
        )
    if best.accuracy_by_metric:
        reasons.append(f"accuracy per metric: {_per_metric(best.accuracy_by_metric)}")
    if best.fidelity:
        reasons.append(f"worst-case fidelity to torch-fp32: {fmt_fidelity(best.fidelity)} ({best.fidelity_source})")
    if best.label != chart_backend:
        if chart is None:
            detail = "was not measured in these cells"
        elif not chart.qualifies:
            detail = f"measured {_score(chart, scenario)} but is rejected: {'; '.join(chart.rejected)}"
        else:
            detail = f"measured {_score(chart, scenario)}, {chart.why}"
        reasons.append(
            f"this differs from the documented flowchart's {chart_backend}, which {detail}; "
            f"{best.label} measured {_score(best, scenario)}"
        )
    else:
        reasons.append("this agrees with the documented flowchart")
    settings = best.settings or {}
    path_ = settings.get("model_path") or (ev.models[0] if len(ev.models) == 1 else model_path)
    kwargs = settings.get("model_kwargs")
    if kwargs is None:
        try:
            kwargs = documented_model_kwargs(best.backend, hw)
        except ValueError:
            kwargs = {}
    python = python_snippet(query.model_kind, str(path_), best.backend, kwargs, settings.get("st_backend"))
    if len(ev.models) > 1 and settings:
        python = (
            f"# as measured for {best.settings_model}; other models load the same way from their own folder\n" + python
        )
    return Recommendation(
        backend=best.label,  # with its knobs when a swept variant won; the snippet carries them
        source="measured",
        speedup=best.speedup_per_request if scenario == "online" else best.speedup,
        accuracy_ratio=best.accuracy_ratio,
        python=python,
        documented=documented(query.model_kind, device, best.backend),
        chosen=best,
        **common,
    )


def format_text(rec: Recommendation) -> str:
    kind = "embedding models" if rec.query.model_kind == "bi-encoder" else "cross-encoders"
    ev, c = rec.evidence, rec.chosen
    sizes = ", ".join(map(str, ev.batch_sizes)) if ev and ev.batch_sizes else str(rec.query.batch_size)
    scenario = f"{rec.query.scenario}, batch size {sizes}" + (
        " (one request at a time, ranked by p99 latency)"
        if rec.query.scenario == "online"
        else " (one encode call over all texts, ranked by throughput)"
    )
    if rec.backend is None:
        lines = [
            "No backend meets every rule: each measured candidate broke at least one (listed below).",
            f"  scenario:          {scenario}",
            f"  machine:           {rec.machine}",
        ]
    else:
        unstated = " - not stated in the docs' text (only in their charts)" if rec.source == "documented" else ""
        what = ""
        if rec.source == "measured":
            what = " per-request throughput" if rec.query.scenario == "online" else " bulk throughput"
        speedup = f"{rec.speedup:.2f}x{what} vs torch-fp32" if rec.speedup is not None else f"unknown{unstated}"
        if c is not None and rec.query.scenario != "online":
            speedup = f"{_score(c, 'bulk')}{what} vs torch-fp32 (95 % rerun interval)"
        elif c is not None:
            speedup += span(c.speedup_per_request_low, c.speedup_per_request_high)
        if rec.accuracy_ratio is not None:
            accuracy = f"{rec.accuracy_ratio:.2%} of torch-fp32"
        elif ev and ev.basis in (LABEL_FREE, FIDELITY_ONLY):
            accuracy = "not measured (no labelled data)"
        else:
            accuracy = f"unknown{unstated}"
        lines = [
            f"Recommended backend: {rec.backend}  [{rec.source}]",
            f"  scenario:          {scenario}",
            f"  expected speedup:  {speedup}  [{rec.source}]",
            f"  accuracy retained: {accuracy}  [{rec.source}]",
        ]
        if c is not None:
            if c.accuracy_by_metric:
                lines.append(f"    per metric:      {_per_metric(c.accuracy_by_metric)}")
            if c.task_loss:
                lines.append(f"  {describe(c.task_loss)}")
            if c.fidelity:
                lines.append(f"  worst-case fidelity to torch-fp32: {fmt_fidelity(c.fidelity)}  [{c.fidelity_source}]")
            if c.latency_p99_ms is not None:
                lines.append(f"  p99 latency:       {_score(c, 'online')[4:]} per request of batch size {sizes}")
            if c.tied_with:
                lines.append(f"  tied with:         {c.tied_with} within the measurement's resolution ({c.tie})")
            if c.peak_memory_mb is not None:
                lines.append(f"  peak memory:       {c.peak_memory_mb:.0f} MB")
        if ev and ev.basis and rec.source == "measured":
            lines.append(f"  decided on:        measured speed and {ev.basis}")
        lines.append(f"  machine:           {rec.machine}")
    lines += [
        "",
        f"Documented flowchart ({kind}, {rec.docs_url}): {rec.flowchart_backend}",
        *(f"  {step}" for step in rec.flowchart_path),
        "",
        "Reasons:",
        *(f"  - {r}" for r in rec.reasons),
    ]
    if ev and rec.source == "measured" and ev.rejections:
        lines += ["", "Rejected (the rule each broke):"]
        lines += [f"  - {r['backend']}: {'; '.join(r['reasons'])}" for r in ev.rejections]
    if rec.python:
        lines += ["", "Load it with:", *(f"  {line}" if line else "" for line in rec.python.splitlines())]
    return "\n".join(lines)
