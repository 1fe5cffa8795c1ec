"""Measured evidence from the store, and the recommendation built on it and on the flowchart."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from harness import results
from harness.analysis import accuracy_by_configuration, contended_mask
from harness.config import MODEL_KINDS
from harness.hardware import Hardware
from harness.recommend.flowchart import DOCS_URL, TIE_DECIMALS, Documented, documented, flowchart
from harness.recommend.snippet import documented_model_kwargs, export_hint, python_snippet


@dataclass(frozen=True)
class Query:
    """What the user asks about; validated so the CLI can show the message as it is."""

    model_kind: str = "bi-encoder"
    text_length: float = 200
    batch_size: int = 32
    tolerance: float = 0.01
    model: str | None = None

    def __post_init__(self) -> None:
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
    speedup: float
    accuracy_ratio: float | None
    qualifies: bool
    why: str
    n_cells: int
    settings: dict[str, Any] | None = None  # of its fastest cell
    settings_model: str | None = None  # the model of that cell
    variant: str = ""  # swept runtime knobs that differ from the backend's defaults ("" = as registered)

    @property
    def label(self) -> str:
        return results.label(self.backend, self.variant)

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "label": self.label}


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

    @property
    def qualifying(self) -> list[Candidate]:
        return [c for c in self.candidates if c.qualifies]

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["candidates"] = [c.to_dict() for c in self.candidates]
        return d


def _nearest(values: list[float], target: float) -> list[float]:
    """All values nearest `target` on a log scale (ties kept)."""
    dist = {v: abs(math.log(v / target)) for v in values}
    best = min(dist.values())
    return sorted(v for v, d in dist.items() if d - best <= 1e-9)


def _sort_key(c: Candidate, preferred: str) -> tuple:
    return (-round(c.speedup, TIE_DECIMALS), c.label != preferred, c.label)


def evidence(df: pd.DataFrame, query: Query, machine: str, preferred: str | None = None) -> Evidence:
    """This machine's measured candidates for `query`, fastest qualifying first.

    The rule:
    * speed rows with status ok, not contended, on `machine` (other machines are ignored),
      of `query.model_kind` (and `query.model` if given);
    * of those, the dataset(s) whose mean text length is nearest `query.text_length`, then the
      measured batch size(s) nearest `query.batch_size` - both on a log scale, because text lengths
      and batch sizes span orders of magnitude (a 200-character text is closer to 620 than to 39);
      ties keep both;
    * a candidate is a backend with its swept runtime knobs (`label`, e.g. "openvino [ov_precision=bf16]"):
      variants of one backend are never averaged together;
    * a candidate's speedup is the mean over the cells left (models x datasets x batch sizes);
      cells without a torch-fp32 baseline have no speedup: if none has one there is no evidence;
    * a candidate qualifies if its accuracy_ratio (accuracy rows of its `accuracy_label`, status ok,
      same machine and models; mean per metric, then mean over metrics) is >= 1 - tolerance. One
      with no accuracy rows does not qualify - an unmeasured loss is not an acceptable one - except
      torch-fp32, the reference (ratio 1 by definition);
    * order: speedup (rounded to TIE_DECIMALS), then `preferred` (the flowchart's answer), then name.
    """
    ev = Evidence(machine=machine)
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
        ev.batch_sizes = [int(b) for b in _nearest(sizes, query.batch_size)]
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

    acc_ratio = accuracy_by_configuration(df, models=ev.models, machines=[machine])

    floor = 1 - query.tolerance
    for _, rows in timed.groupby("label"):
        backend, variant = str(rows["backend"].iloc[0]), str(rows["variant"].iloc[0] or "")
        ratio = acc_ratio.get(rows["accuracy_label"].iloc[0])
        if ratio is not None and not pd.isna(ratio):
            ratio = float(ratio)
            ok = ratio >= floor - 1e-9
            why = f"accuracy {ratio:.2%} {'>=' if ok else '<'} {floor:.2%} of torch-fp32"
        elif backend == results.BASELINE and not results.accuracy_variant(variant):
            ratio, ok, why = 1.0, True, "the reference (accuracy ratio 1 by definition)"
        else:
            ratio, ok, why = None, False, "no accuracy measurement, so its accuracy loss is unknown"
        best = rows.loc[rows["throughput"].astype(float).idxmax()]
        settings = best["settings"] if isinstance(best["settings"], dict) else None
        ev.candidates.append(
            Candidate(
                backend=str(backend),
                speedup=float(rows["speedup"].astype(float).mean()),
                accuracy_ratio=ratio,
                qualifies=ok,
                why=why,
                n_cells=len(rows),
                settings=settings,
                settings_model=str(best["model"]),
                variant=variant,
            )
        )
    ev.candidates.sort(key=lambda c: _sort_key(c, preferred or ""))
    if not ev.qualifying:
        ev.note = "no measured backend qualifies"
    return ev


@dataclass
class Recommendation:
    backend: str
    source: str  # "measured" | "documented"
    speedup: float | None
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

    def to_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "speedup": self.speedup,
            "speedup_source": self.source,
            "accuracy_ratio": self.accuracy_ratio,
            "accuracy_source": self.source,
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
            "evidence": self.evidence.to_dict() if self.evidence else None,
        }


def _fmt_speedup(x: float | None) -> str:
    return "unknown" if x is None else f"{x:.2f}x"


def _fmt_ratio(x: float | None) -> str:
    return "unknown" if x is None else f"{x:.2%}"


def recommend(df: pd.DataFrame, query: Query, hw: Hardware, machine: str | None = None) -> Recommendation:
    """The flowchart's answer, replaced by the fastest qualifying measured backend when there is one."""
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

    accuracy_known = any(c.accuracy_ratio is not None for c in ev.candidates if c.backend != results.BASELINE)
    if ev.candidates and not accuracy_known:
        # Only the reference would qualify: that is "accuracy not measured", not "torch-fp32 wins".
        speeds = ", ".join(f"{c.label} {c.speedup:.2f}x" for c in sorted(ev.candidates, key=lambda c: -c.speedup))
        ev.note = (
            "speed was measured but accuracy was not (sweep with HARNESS_DATA_DIR set, or online); "
            f"measured speedups here: {speeds}"
        )
    if ev.qualifying and accuracy_known:
        best = ev.qualifying[0]
        chars = ", ".join(f"{d} ({c:g} chars)" if c else d for d, c in ev.datasets.items())
        reasons.append(
            f"measured on machine {machine}: {len(ev.models)} model(s) ({', '.join(ev.models)}), "
            f"dataset(s) {chars} "
            f"nearest to {query.text_length:g} characters, batch size {', '.join(map(str, ev.batch_sizes))} "
            f"nearest to {query.batch_size}; runs {', '.join(ev.runs)}"
        )
        reasons.append(
            f"{best.label} is the fastest qualifying backend: {best.speedup:.2f}x torch-fp32 throughput, {best.why}"
        )
        by_name = {c.label: c for c in ev.candidates}
        if best.label != chart_backend:
            other = by_name.get(chart_backend)
            if other is None:
                detail = "was not measured in these cells"
            elif not other.qualifies:
                detail = f"measured {other.speedup:.2f}x but does not qualify: {other.why}"
            else:
                detail = f"measured {other.speedup:.2f}x, {other.why}"
            reasons.append(
                f"this differs from the documented flowchart's {chart_backend}, which {detail}; "
                f"{best.label} measured {best.speedup:.2f}x"
            )
        else:
            reasons.append("this agrees with the documented flowchart")
        rejected = [c for c in ev.candidates if not c.qualifies]
        if rejected:
            reasons.append("not qualifying: " + "; ".join(f"{c.label} {c.speedup:.2f}x ({c.why})" for c in rejected))
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
                f"# as measured for {best.settings_model}; other models load the same way from their own folder\n"
                + python
            )
        return Recommendation(
            backend=best.label,  # with its knobs when a swept variant won; the snippet carries them
            source="measured",
            speedup=best.speedup,
            accuracy_ratio=best.accuracy_ratio,
            python=python,
            documented=documented(query.model_kind, device, best.backend),
            **common,
        )

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


def format_text(rec: Recommendation) -> str:
    kind = "embedding models" if rec.query.model_kind == "bi-encoder" else "cross-encoders"
    unstated = " - not stated in the docs' text (only in their charts)" if rec.source == "documented" else ""
    speedup = f"{rec.speedup:.2f}x vs torch-fp32" if rec.speedup is not None else f"unknown{unstated}"
    accuracy = f"{rec.accuracy_ratio:.2%} of torch-fp32" if rec.accuracy_ratio is not None else f"unknown{unstated}"
    lines = [
        f"Recommended backend: {rec.backend}  [{rec.source}]",
        f"  expected speedup:  {speedup}  [{rec.source}]",
        f"  accuracy retained: {accuracy}  [{rec.source}]",
        f"  machine:           {rec.machine}",
        "",
        f"Documented flowchart ({kind}, {rec.docs_url}): {rec.flowchart_backend}",
        *(f"  {step}" for step in rec.flowchart_path),
        "",
        "Reasons:",
        *(f"  - {r}" for r in rec.reasons),
        "",
        "Load it with:",
        *(f"  {line}" if line else "" for line in rec.python.splitlines()),
    ]
    return "\n".join(lines)
