"""STS-benchmark Spearman for bi-encoders (cosine) and cross-encoders (predicted score).

Both follow sentence-transformers' evaluators (EmbeddingSimilarityEvaluator's cosine Spearman,
CrossEncoderCorrelationEvaluator's Spearman), so numbers are comparable to model cards.
"""

from __future__ import annotations

import logging

import numpy as np

from harness.evaluation.data import Encode, EvalResult, Predict, StsData, check_outputs

log = logging.getLogger(__name__)

METRIC = "sts_spearman"


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation; NaN (with a warning) when either side is constant."""
    from scipy.stats import spearmanr  # lazy: scipy.stats costs ~0.7 s to import

    if np.ptp(a) == 0 or np.ptp(b) == 0:
        log.warning("Spearman is undefined for a constant input; returning NaN")
        return float("nan")
    return float(spearmanr(a, b).statistic)


def unique_texts(*lists: list[str]) -> list[str]:
    """Texts in first-seen order without repeats, so each is encoded once."""
    return list(dict.fromkeys(t for texts in lists for t in texts))


def normalize_rows(x: np.ndarray) -> np.ndarray:
    """Unit-length rows; all-zero rows stay zero rather than becoming NaN."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, np.finfo(np.float64).tiny)


def paired_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two equally shaped matrices."""
    return np.sum(normalize_rows(a) * normalize_rows(b), axis=1)


def sts_spearman_bi(encode: Encode, data: StsData) -> EvalResult:
    """Cosine of paired embeddings vs gold; outputs = embeddings of the unique sentences."""
    texts = unique_texts(data.sentences1, data.sentences2)
    embeddings = check_outputs(encode(texts), len(texts), 2, "encode")
    row = {text: i for i, text in enumerate(texts)}
    emb1 = embeddings[[row[t] for t in data.sentences1]]
    emb2 = embeddings[[row[t] for t in data.sentences2]]
    value = spearman(paired_cosine(emb1, emb2), data.scores)
    log.info("%s: cosine Spearman %.4f over %d pairs", data.name, value, len(data))
    return EvalResult(METRIC, value, embeddings, dataset=data.name, n=len(data))


def sts_spearman_cross(predict: Predict, data: StsData) -> EvalResult:
    """Predicted pair scores vs gold; outputs = the scores, in pair order."""
    pairs = list(zip(data.sentences1, data.sentences2, strict=True))
    scores = check_outputs(predict(pairs), len(pairs), 1, "predict")
    value = spearman(scores, data.scores)
    log.info("%s: cross-encoder Spearman %.4f over %d pairs", data.name, value, len(data))
    return EvalResult(METRIC, value, scores, dataset=data.name, n=len(data))
