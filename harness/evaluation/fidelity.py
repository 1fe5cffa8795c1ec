"""Label-free agreement of a backend's outputs with the torch-fp32 reference outputs.

Accuracy on a benchmark can hide drift (a backend can be wrong differently yet score the
same); comparing raw outputs row by row shows how far an export or quantization moved it.
"""

from __future__ import annotations

import numpy as np

from harness.evaluation.sts import normalize_rows, spearman


def _same_shape(ref: np.ndarray, other: np.ndarray, ndim: int) -> tuple[np.ndarray, np.ndarray]:
    ref = np.asarray(ref, dtype=np.float64)
    other = np.asarray(other, dtype=np.float64)
    if ref.shape != other.shape:
        raise ValueError(f"fidelity: reference shape {ref.shape} differs from {other.shape}")
    if ref.ndim != ndim or ref.shape[0] == 0:
        raise ValueError(f"fidelity: expected a non-empty {ndim}-d array, got shape {ref.shape}")
    return ref, other


def compare_embeddings(ref: np.ndarray, other: np.ndarray) -> dict[str, float]:
    """Row-wise cosine between reference and other embeddings: mean and worst row."""
    ref, other = _same_shape(ref, other, ndim=2)
    cos = np.clip(np.sum(normalize_rows(ref) * normalize_rows(other), axis=1), -1.0, 1.0)
    return {"fidelity_mean_cos": float(np.mean(cos)), "fidelity_min_cos": float(np.min(cos))}


def compare_scores(ref: np.ndarray, other: np.ndarray) -> dict[str, float]:
    """Rank agreement and largest absolute difference of cross-encoder scores."""
    ref, other = _same_shape(ref, other, ndim=1)
    return {
        "fidelity_spearman": spearman(ref, other),
        "fidelity_max_abs_diff": float(np.max(np.abs(ref - other))),
    }


def compare_outputs(ref: np.ndarray, other: np.ndarray) -> dict[str, float]:
    """Pick the comparison by output kind: embeddings (2-d) or scores (1-d)."""
    return compare_embeddings(ref, other) if np.ndim(ref) == 2 else compare_scores(ref, other)
