"""What a configuration is called: its label ("openvino [ov_precision=f32]"), the backend of a label,
whose accuracy a speed row has, and the baseline every ratio is over."""

from __future__ import annotations

from typing import Any

import pandas as pd

from harness.backends import speed_only_fields

BASELINE = "torch-fp32"
# Fields that made a variant in rows written before they stopped being knobs; `load` drops them.
FORMER_KNOBS = ("device",)


def label(backend: str, variant: str) -> str:
    """A backend with swept runtime knobs is its own configuration: "openvino [ov_precision=bf16]"."""
    return f"{backend} [{variant}]" if variant else backend


def backend_of(configuration: str) -> str:
    """The backend of a label (the inverse of `label`): "openvino [ov_precision=bf16]" -> "openvino"."""
    return configuration.split(" [", 1)[0]


def current_variant(variant: str | None) -> str:
    """A stored variant without the fields that are no longer knobs (`FORMER_KNOBS`): an old
    docs-gpu row's "device=cuda" is where it ran, not a configuration of its own."""
    parts = variant.split(",") if isinstance(variant, str) else []  # None / NaN: the backend as registered
    return ",".join(p for p in parts if p and p.partition("=")[0] not in FORMER_KNOBS)


def former_defaults(row: dict[str, Any]) -> dict[str, Any]:
    """A stored row named as it is today, where a backend's defaults have changed since it was written.

    Until #22 every `onnx*` speed row ran ONNX Runtime with spinning off (the `ort_spinning` knob defaulted to
    False); now the name runs ORT's own default (spinning) as plain `backend="onnx"` code does. Such a row is
    read as the variant `ort_spinning=False` (its runtime read back `allow_spinning: false` and carries no
    `allow_spinning_source`), so it is never averaged with, or ranked as, the new `onnx`."""
    runtime = row.get("runtime")
    if row.get("kind") != "speed" or not isinstance(runtime, dict) or "allow_spinning_source" in runtime:
        return row
    variant = row.get("variant") or ""
    if runtime.get("allow_spinning") is False and "ort_spinning=" not in variant:
        row = {**row, "variant": ",".join(p for p in (variant, "ort_spinning=False") if p)}
    return row


def accuracy_variant(variant: str) -> str:
    """The part of a variant that can change outputs: knobs that only change speed share accuracy."""
    speed_only = speed_only_fields()
    return ",".join(p for p in variant.split(",") if p and p.partition("=")[0] not in speed_only)


def with_labels(df: pd.DataFrame) -> pd.DataFrame:
    """Add `label` and `accuracy_label`: a speed row's accuracy is the accuracy row whose label equals
    its accuracy_label (e.g. "onnx [ort_spinning=True]" has the accuracy of "onnx")."""
    df = df.copy()
    df["variant"] = df["variant"].fillna("") if "variant" in df else ""
    backends, variants = df["backend"].astype(str), df["variant"].astype(str)
    acc_labels = [label(b, accuracy_variant(v)) for b, v in zip(backends, variants, strict=True)]
    full = [label(b, v) for b, v in zip(backends, variants, strict=True)]
    df["label"] = [a if k == "accuracy" else f for k, a, f in zip(df["kind"], acc_labels, full, strict=True)]
    df["accuracy_label"] = acc_labels
    return df
