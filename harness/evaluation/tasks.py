"""The one entry point the runner calls: task + model kind + model + data source -> EvalResult.

This is the only module that knows about model objects (SentenceTransformer-like `.encode`,
CrossEncoder-like `.predict`); it wraps them into the encode/predict protocols the
evaluators use, so every backend is evaluated by exactly the same code.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from harness.core.usage import did_you_mean
from harness.evaluation.data import (
    Encode,
    EvalResult,
    Predict,
    RetrievalData,
    StsData,
    load_beir_local,
    load_nanobeir_hub,
    load_sts_hub,
    load_sts_local,
    subsample_retrieval,
    subsample_sts,
)
from harness.evaluation.retrieval import bm25_candidates, ndcg_at_10_bi, ndcg_at_10_rerank
from harness.evaluation.sts import sts_spearman_bi, sts_spearman_cross

log = logging.getLogger(__name__)

TASKS = ("sts", "retrieval")
MODEL_KINDS = ("bi-encoder", "cross-encoder")
# For STS, max_queries caps the number of pairs (each pair is one model query).
SOURCE_KEYS = ("path", "hub", "split", "max_queries", "max_corpus", "seed")


def _check_choice(kind: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"unknown {kind} {value!r}.{did_you_mean(value, allowed)} Valid: {', '.join(allowed)}")


def check_source(source: Mapping[str, Any]) -> None:
    """Exactly one of path/hub, and no unknown keys (a typo would silently run the full set)."""
    for key in source:
        _check_choice("data source key", key, SOURCE_KEYS)
    if ("path" in source) == ("hub" in source):
        raise ValueError(f"data source needs exactly one of 'path' or 'hub', got {dict(source)}")


def load_sts(source: Mapping[str, Any]) -> StsData:
    """STS data from {"path": dir-or-file} or {"hub": name}, subsampled if asked."""
    check_source(source)
    split = source.get("split", "test")
    if "path" in source:
        data = load_sts_local(source["path"], split=split)
    else:
        data = load_sts_hub(source["hub"], split=split)
    return subsample_sts(data, source.get("max_queries"), seed=source.get("seed", 0))


def load_retrieval(source: Mapping[str, Any]) -> RetrievalData:
    """Retrieval data from {"path": BEIR folder} or {"hub": NanoBEIR name}, subsampled if asked."""
    check_source(source)
    if "path" in source:
        data = load_beir_local(source["path"], split=source.get("split", "test"))
    else:
        data = load_nanobeir_hub(source["hub"])
    return subsample_retrieval(data, source.get("max_queries"), source.get("max_corpus"), seed=source.get("seed", 0))


def encoder_of(model: Any, batch_size: int = 32) -> Encode:
    """Wrap a SentenceTransformer-like model into the `encode(texts)` protocol."""

    def encode(texts: list[str]) -> np.ndarray:
        return np.asarray(model.encode(texts, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False))

    return encode


def predictor_of(model: Any, batch_size: int = 32) -> Predict:
    """Wrap a CrossEncoder-like model into the `predict(pairs)` protocol; (n, 1) becomes (n,)."""

    def predict(pairs: list[tuple[str, str]]) -> np.ndarray:
        scores = np.asarray(model.predict(pairs, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False))
        return scores.reshape(-1) if scores.ndim == 2 and scores.shape[1] == 1 else scores

    return predict


def evaluate(
    task: str,
    model_kind: str,
    model: Any,
    source: Mapping[str, Any],
    batch_size: int = 32,
    rerank_top_k: int = 100,
) -> EvalResult:
    """Run one accuracy evaluation.

    source: {"path": "/abs/dir"} (STS dir with sts-<split>.csv, or a BEIR folder) or
    {"hub": "sentence-transformers/stsb" | "NanoMSMARCO"}, plus optional "split",
    "max_queries" (pairs for STS), "max_corpus", "seed" for deterministic subsampling.
    Cross-encoders on retrieval rerank the BM25 top `rerank_top_k`.
    """
    _check_choice("task", task, TASKS)
    _check_choice("model kind", model_kind, MODEL_KINDS)
    bi = model_kind == "bi-encoder"
    start = time.perf_counter()
    if task == "sts":
        sts = load_sts(source)
        loaded = time.perf_counter()
        if bi:
            result = sts_spearman_bi(encoder_of(model, batch_size), sts)
        else:
            result = sts_spearman_cross(predictor_of(model, batch_size), sts)
    else:
        data = load_retrieval(source)
        loaded = time.perf_counter()
        if bi:
            result = ndcg_at_10_bi(encoder_of(model, batch_size), data)
        else:
            candidates = bm25_candidates(data, top_k=rerank_top_k)
            result = ndcg_at_10_rerank(predictor_of(model, batch_size), data, candidates)
    log.info(
        "%s/%s on %s: %s = %.4f (load %.1fs, evaluate %.1fs)",
        task,
        model_kind,
        result.dataset,
        result.metric,
        result.value,
        loaded - start,
        time.perf_counter() - loaded,
    )
    return result
