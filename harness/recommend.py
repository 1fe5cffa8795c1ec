"""Which backend to use: the documented sentence-transformers flowcharts, checked against measurements.

Two sources, always labelled as such:

* **documented** - the "Recommendations" flowcharts of the "Speeding up Inference" pages
  (embedding models: https://sbert.net/docs/sentence_transformer/usage/efficiency.html,
  cross-encoders: https://sbert.net/docs/cross_encoder/usage/efficiency.html), reproduced exactly
  by `flowchart`, plus the few per-backend numbers those pages state in their text (`DOCUMENTED`);
* **measured** - this machine's rows in the result store (`evidence`).

The flowcharts ask yes/no questions; these are the numbers we answer them with:

* "Is your text usually smaller than 500 characters?" (embedding models, GPU): ``text_length < 500``.
* "Is a 0.4% accuracy loss acceptable?" (embedding models, CPU): ``tolerance >= 0.004``.
* "Are minor performance degradations acceptable?" (cross-encoders, CPU): the page gives no number;
  we use ``tolerance >= 0.01`` (1%), the same order as the 0.4% of the embedding page.
* "Are you using a small batch size?" (cross-encoders, GPU): the page gives no number; we use
  ``batch_size <= 16``, the smallest batch size its benchmark grid uses for the small models
  ("ONNX seems to perform stronger at low batch sizes").

Measured evidence overrides the flowchart when it exists; see `evidence` for the rule.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from harness import hardware, results
from harness.analysis import accuracy_by_configuration, contended_mask, find_machine
from harness.config import BACKEND_NAMES, MODEL_KINDS
from harness.hardware import Hardware
from harness.usage import Parser, UsageError, did_you_mean

CPU_VENDORS = ("intel", "amd", "arm")
BACKENDS = BACKEND_NAMES  # canonical order, defined once in harness.config
DOCS_URL = {
    "bi-encoder": "https://sbert.net/docs/sentence_transformer/usage/efficiency.html",
    "cross-encoder": "https://sbert.net/docs/cross_encoder/usage/efficiency.html",
}

# The flowcharts' questions as numbers (see the module docstring for where each comes from).
SHORT_TEXT_CHARS = 500  # "smaller than 500 characters" -> text_length < 500
EMBEDDING_ACCURACY_LOSS = 0.004  # "Is a 0.4% accuracy loss acceptable?"
CROSS_ENCODER_ACCURACY_LOSS = 0.01  # "minor performance degradations" (no number in the docs)
SMALL_BATCH_SIZE = 16  # "small batch size" (no number in the docs)

# Speedups within this many decimals are a tie (the precision we print); ties go to the flowchart.
TIE_DECIMALS = 2

ARM_FLAGS = frozenset({"asimd", "asimddp", "sve"})
X86_FLAGS = frozenset(hardware.TRACKED_FLAGS) - ARM_FLAGS


@dataclass(frozen=True)
class Documented:
    """A number the docs state in their text; None where they only show it in a chart image."""

    speedup: float | None
    accuracy_ratio: float | None
    note: str


_STSB_GPU = "docs text, stsb (shortest texts, 39 chars) only, RTX 3090 GPU"
_STSB_CPU = "docs text, stsb (shortest texts, 39 chars) only, i7 CPU"
# (model_kind, device, backend) -> what the page's text says. The averaged per-backend numbers
# exist only as chart images on the page, so they are not reproduced here.
DOCUMENTED: dict[tuple[str, str, str], Documented] = {
    ("bi-encoder", "gpu", "onnx"): Documented(1.46, None, _STSB_GPU),
    ("bi-encoder", "gpu", "onnx-O4"): Documented(1.83, None, _STSB_GPU),
    ("bi-encoder", "gpu", "torch-fp16"): Documented(1.54, None, _STSB_GPU),
    ("bi-encoder", "gpu", "torch-bf16"): Documented(1.53, None, _STSB_GPU),
    ("bi-encoder", "cpu", "onnx"): Documented(1.39, None, _STSB_CPU),
    ("bi-encoder", "cpu", "openvino"): Documented(1.29, None, _STSB_CPU),
    ("bi-encoder", "cpu", "onnx-qint8"): Documented(3.08, None, _STSB_CPU),
    ("bi-encoder", "cpu", "openvino-qint8"): Documented(
        None, 1 - EMBEDDING_ACCURACY_LOSS, "the flowchart's '0.4% accuracy loss'"
    ),
}


def documented(model_kind: str, device: str, backend: str) -> Documented:
    if backend == results.BASELINE:
        return Documented(1.0, 1.0, "the baseline")
    return DOCUMENTED.get(
        (model_kind, device, backend),
        Documented(None, None, "not stated in the docs' text (only in their benchmark charts)"),
    )


# --------------------------------------------------------------------------------------------
# The flowcharts
# --------------------------------------------------------------------------------------------


def _pct(fraction: float) -> str:
    return f"{fraction * 100:.2g}%"


def flowchart(
    model_kind: str, hw: Hardware, *, text_length: float, batch_size: int, tolerance: float
) -> tuple[str, list[str]]:
    """The documented flowchart for `model_kind`: (backend, the decisions taken on the way)."""
    if model_kind not in MODEL_KINDS:
        raise ValueError(f"model_kind must be one of {', '.join(MODEL_KINDS)}; got {model_kind!r}")
    path: list[str] = []
    if hw.gpu:
        path.append(f"What is your hardware? GPU ({hw.gpu})")
        if model_kind == "bi-encoder":
            short = text_length < SHORT_TEXT_CHARS
            path.append(
                f"Is your text usually smaller than {SHORT_TEXT_CHARS} characters? "
                f"{'yes' if short else 'no'} ({text_length:g} characters)"
            )
        else:
            short = batch_size <= SMALL_BATCH_SIZE
            path.append(
                f"Are you using a small batch size? {'yes' if short else 'no'} "
                f"(batch size {batch_size}; small = <= {SMALL_BATCH_SIZE})"
            )
        return ("onnx-O4" if short else "torch-fp16"), path

    path.append(f"What is your hardware? CPU ({hw.cpu_vendor})")
    if model_kind == "bi-encoder":
        limit = EMBEDDING_ACCURACY_LOSS
        question = "Is a 0.4% accuracy loss acceptable?"
    else:
        limit = CROSS_ENCODER_ACCURACY_LOSS
        question = "Are minor performance degradations acceptable?"
    lossy_ok = tolerance >= limit
    path.append(
        f"{question} {'yes' if lossy_ok else 'no'} "
        f"(tolerance {_pct(tolerance)} {'>=' if lossy_ok else '<'} {_pct(limit)})"
    )
    if lossy_ok:
        return "openvino-qint8", path
    intel = hw.cpu_vendor == "intel"
    path.append(f"Do you have an Intel CPU? {'yes' if intel else 'no'} ({hw.cpu_vendor})")
    return ("openvino" if intel else "onnx"), path


# --------------------------------------------------------------------------------------------
# How to load a backend
# --------------------------------------------------------------------------------------------


def st_backend(backend: str) -> str:
    """The `backend=` argument of sentence-transformers for one of our backend names."""
    return backend.split("-", 1)[0]


def qint8_file_name(config: str) -> str:
    """What `export_dynamic_quantized_onnx_model(model, config, ...)` writes.

    The suffix is `{weights dtype}_{config}`; Optimum's avx2 config quantizes weights to QUInt8,
    the others to QInt8, so avx2 gives `model_quint8_avx2.onnx`.
    """
    dtype = "quint8" if config == "avx2" else "qint8"
    return f"onnx/model_{dtype}_{config}.onnx"


def documented_model_kwargs(backend: str, hw: Hardware) -> dict[str, Any]:
    """The model_kwargs the docs use to load `backend` from a folder holding the exported files."""
    if backend == "torch-fp16":
        return {"torch_dtype": "float16"}
    if backend == "torch-bf16":
        return {"torch_dtype": "bfloat16"}
    if backend.startswith("onnx-O"):
        return {"file_name": f"onnx/model_{backend.split('-', 1)[1]}.onnx"}
    if backend == "onnx-qint8":
        return {"file_name": qint8_file_name(hardware.qint8_config_for(hw))}
    if backend == "openvino-qint8":
        return {"file_name": "openvino/openvino_model_qint8_quantized.xml"}
    return {}


def _py(value: Any) -> str:
    """A Python literal with double-quoted strings (json.dumps escapes are valid Python too)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_py(k)}: {_py(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_py(v) for v in value) + "]"
    if isinstance(value, _Raw):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    return repr(value)


def python_snippet(
    model_kind: str, model_path: str, backend: str, model_kwargs: dict[str, Any] | None, st: str | None = None
) -> str:
    """The sentence-transformers call that loads `backend` (`st`: the recorded backend= value, if any)."""
    cls = "CrossEncoder" if model_kind == "cross-encoder" else "SentenceTransformer"
    st = st or st_backend(backend)
    args = [_py(model_path)]
    if st != "torch":
        args.append(f"backend={_py(st)}")
    prelude = ""
    kwargs = dict(model_kwargs or {})
    options = kwargs.get("session_options")
    if isinstance(options, dict):  # recorded as data; ONNX Runtime wants a SessionOptions object
        spin = "1" if options.get("allow_spinning") else "0"
        prelude = (
            "import onnxruntime as ort\n"
            "session_options = ort.SessionOptions()\n"
            f"session_options.intra_op_num_threads = {int(options['intra_op_num_threads'])}\n"
            f"session_options.inter_op_num_threads = {int(options['inter_op_num_threads'])}\n"
            f'session_options.add_session_config_entry("session.intra_op.allow_spinning", "{spin}")\n'
        )
        kwargs["session_options"] = _Raw("session_options")
    if kwargs:
        args.append(f"model_kwargs={_py(kwargs)}")
    return f"{prelude}from sentence_transformers import {cls}\n\nmodel = {cls}({', '.join(args)})"


class _Raw(str):
    """A name to print as code, not as a string literal."""

    def __repr__(self) -> str:
        return str(self)


def _export_hint(backend: str, model_kind: str, model_path: str, hw: Hardware) -> str:
    """Commented one-time export lines for backends whose files the docs create by exporting."""
    cls = "CrossEncoder" if model_kind == "cross-encoder" else "SentenceTransformer"
    p = _py(model_path)
    if backend.startswith("onnx-O"):
        level = backend.split("-", 1)[1]
        fn, load, arg = "export_optimized_onnx_model", f'{cls}({p}, backend="onnx")', _py(level)
    elif backend == "onnx-qint8":
        fn, load = "export_dynamic_quantized_onnx_model", f'{cls}({p}, backend="onnx")'
        arg = _py(hardware.qint8_config_for(hw))
    elif backend == "openvino-qint8":
        fn, load, arg = "export_static_quantized_openvino_model", f'{cls}({p}, backend="openvino")', "None"
    else:
        return ""
    return (
        "# once, to create the file inside the model's local folder (for a Hub model:\n"
        "# save_pretrained() it to a folder first, or pass push_to_hub=True):\n"
        f"# from sentence_transformers import {cls}, {fn}\n"
        f"# {fn}({load}, {arg}, {p})\n"
    )


# --------------------------------------------------------------------------------------------
# Evidence from the store
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# The recommendation
# --------------------------------------------------------------------------------------------


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
            flowchart_backend=chart_backend,
            flowchart_path=path,
            reasons=reasons,
            python=python,
            machine=machine,
            query=query,
            hardware=hw.to_dict(),
            documented=documented(query.model_kind, device, best.backend),
            docs_url=DOCS_URL[query.model_kind],
            evidence=ev,
        )

    reasons.append(f"no measured evidence: {ev.note}; using the documented flowchart")
    doc = documented(query.model_kind, device, chart_backend)
    reasons.append(
        f"documented expectation for {chart_backend}: speedup {_fmt_speedup(doc.speedup)}, "
        f"accuracy {_fmt_ratio(doc.accuracy_ratio)} ({doc.note})"
    )
    try:
        kwargs = documented_model_kwargs(chart_backend, hw)
        hint = _export_hint(chart_backend, query.model_kind, model_path, hw)
    except ValueError as exc:  # no int8 config fits this CPU
        kwargs, hint = {}, ""
        reasons.append(str(exc))
    python = hint + python_snippet(query.model_kind, model_path, chart_backend, kwargs)
    return Recommendation(
        backend=chart_backend,
        source="documented",
        speedup=doc.speedup,
        accuracy_ratio=doc.accuracy_ratio,
        flowchart_backend=chart_backend,
        flowchart_path=path,
        reasons=reasons,
        python=python,
        machine=machine,
        query=query,
        hardware=hw.to_dict(),
        documented=doc,
        docs_url=DOCS_URL[query.model_kind],
        evidence=ev,
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


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def build_parser(prog: str = "harness recommend") -> argparse.ArgumentParser:
    p = Parser(
        prog=prog,
        description="Recommend a sentence-transformers backend: the documented flowchart, "
        "overridden by this machine's measurements when there are any.",
    )
    p.add_argument("--model-kind", choices=MODEL_KINDS, default="bi-encoder")
    p.add_argument("--text-length", type=float, default=200, help="typical text length in characters (200)")
    p.add_argument("--batch-size", type=int, default=32, help="batch size you will encode with (32)")
    p.add_argument(
        "--tolerance",
        type=float,
        default=0.01,
        help="accuracy loss you accept, as a fraction of torch-fp32's score: 0.01 = 1%% (default)",
    )
    p.add_argument("--results", type=Path, default=Path("results"), help="result store (results/)")
    p.add_argument("--model", help="only use measurements of this model")
    p.add_argument(
        "--machine",
        help="use this machine fingerprint's measurements and recorded hardware instead of this machine's",
    )
    hw = p.add_argument_group("hardware overrides (default: detected)")
    hw.add_argument("--cpu-vendor", choices=CPU_VENDORS)
    hw.add_argument("--gpu", metavar="NAME", help="assume this GPU")
    hw.add_argument("--no-gpu", action="store_true", help="assume no GPU")
    hw.add_argument("--flags", help="CPU ISA flags replacing the detected ones, e.g. avx2,avx512f,avx512_vnni")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    return p


def parse_flags(text: str) -> tuple[str, ...]:
    flags = tuple(sorted({f.strip().lower() for f in text.split(",") if f.strip()}))
    for f in flags:
        if f not in hardware.TRACKED_FLAGS:
            known = ", ".join(hardware.TRACKED_FLAGS)
            raise UsageError(
                f"--flags: unknown flag {f!r}; known flags: {known}.{did_you_mean(f, hardware.TRACKED_FLAGS)}"
            )
    return flags


def effective_hardware(
    base: Hardware,
    *,
    cpu_vendor: str | None = None,
    gpu: str | None = None,
    no_gpu: bool = False,
    flags: tuple[str, ...] | None = None,
) -> Hardware:
    """`base` with the command line's overrides; contradictions raise UsageError naming the options."""
    if gpu is not None and no_gpu:
        raise UsageError("--gpu and --no-gpu contradict each other; give one of them")
    if gpu is not None and not gpu.strip():
        raise UsageError("--gpu needs a device name, e.g. --gpu 'NVIDIA H100'; use --no-gpu for none")
    if flags is not None:
        x86, arm = sorted(set(flags) & X86_FLAGS), sorted(set(flags) & ARM_FLAGS)
        if x86 and arm:
            raise UsageError(f"--flags mixes x86 ({', '.join(x86)}) and ARM ({', '.join(arm)}) instruction sets")
        if cpu_vendor == "arm" and x86:
            raise UsageError(f"--cpu-vendor arm contradicts --flags {','.join(x86)} (x86 instruction sets)")
        if cpu_vendor in ("intel", "amd") and arm:
            raise UsageError(f"--cpu-vendor {cpu_vendor} contradicts --flags {','.join(arm)} (ARM instruction sets)")
        if cpu_vendor is None:
            if arm and base.cpu_vendor != "arm":
                cpu_vendor = "arm"
            elif x86 and base.cpu_vendor == "arm":
                raise UsageError(
                    f"--flags {','.join(x86)} are x86 instruction sets but this CPU is arm; "
                    "add --cpu-vendor intel or amd"
                )
    vendor = cpu_vendor or base.cpu_vendor
    if flags is None:
        flags = base.cpu_flags
        if (vendor == "arm") != (base.cpu_vendor == "arm"):  # other architecture: detected flags don't apply
            flags = ()
    return dataclasses.replace(
        base,
        cpu_vendor=vendor,
        cpu_flags=tuple(sorted(flags)),
        gpu=None if no_gpu else (gpu if gpu is not None else base.gpu),
    )


def hardware_from_dict(d: dict[str, Any]) -> Hardware:
    names = {f.name for f in dataclasses.fields(Hardware)}
    kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in names}
    return Hardware(**kw)


def _machine_hardware(df: pd.DataFrame, machine: str) -> tuple[str, Hardware]:
    fp = find_machine(df, machine)
    dicts = [h for h in df.loc[df["machine"] == fp, "hardware"] if isinstance(h, dict)]
    if not dicts:
        raise UsageError(f"--machine {fp}: its rows carry no hardware description")
    return fp, hardware_from_dict(dicts[-1])


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        query = Query(
            model_kind=args.model_kind,
            text_length=args.text_length,
            batch_size=args.batch_size,
            tolerance=args.tolerance,
            model=args.model,
        )
        flags = parse_flags(args.flags) if args.flags is not None else None
        # Contradictions are checked before anything slow (detection, loading the store).
        effective_hardware(
            Hardware("", "unknown", (), 1, 1, 0.0), cpu_vendor=args.cpu_vendor, gpu=args.gpu,
            no_gpu=args.no_gpu, flags=flags,
        )  # fmt: skip
        df = results.load(args.results)
        if args.machine:
            machine, base = _machine_hardware(df, args.machine)
        else:
            machine, base = None, hardware.detect(probe_runtimes=True)
        hw = effective_hardware(base, cpu_vendor=args.cpu_vendor, gpu=args.gpu, no_gpu=args.no_gpu, flags=flags)
    except (UsageError, ValueError) as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    rec = recommend(df, query, hw, machine=machine)
    if args.json:
        print(json.dumps(rec.to_dict(), default=str))
    else:
        print(format_text(rec))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
