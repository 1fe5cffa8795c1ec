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

from dataclasses import dataclass

from harness.config import MODEL_KINDS
from harness.core.hardware import Hardware
from harness.store import results

CPU_VENDORS = ("intel", "amd", "arm")
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
