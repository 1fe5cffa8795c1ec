"""Accuracy evaluation: STS Spearman, retrieval NDCG@10, and fidelity to torch-fp32.

Evaluators see models only through `Encode` / `Predict` callables; `evaluate` is the single
entry point that turns a model object and a data source into an `EvalResult`.
"""

from harness.evaluation.data import (
    NANOBEIR_DATASETS,
    Encode,
    EvalResult,
    Predict,
    RetrievalData,
    StsData,
    load_beir_local,
    load_nanobeir_hub,
    load_sts_hub,
    load_sts_local,
    nanobeir_dataset_id,
    subsample_retrieval,
    subsample_sts,
)
from harness.evaluation.fidelity import compare_embeddings, compare_outputs, compare_scores
from harness.evaluation.retrieval import (
    bm25_candidates,
    ndcg_at_10_bi,
    ndcg_at_10_rerank,
    ndcg_at_k,
)
from harness.evaluation.sts import sts_spearman_bi, sts_spearman_cross
from harness.evaluation.tasks import MODEL_KINDS, TASKS, evaluate

__all__ = [
    "MODEL_KINDS",
    "NANOBEIR_DATASETS",
    "TASKS",
    "Encode",
    "EvalResult",
    "Predict",
    "RetrievalData",
    "StsData",
    "bm25_candidates",
    "compare_embeddings",
    "compare_outputs",
    "compare_scores",
    "evaluate",
    "load_beir_local",
    "load_nanobeir_hub",
    "load_sts_hub",
    "load_sts_local",
    "nanobeir_dataset_id",
    "ndcg_at_10_bi",
    "ndcg_at_10_rerank",
    "ndcg_at_k",
    "sts_spearman_bi",
    "sts_spearman_cross",
    "subsample_retrieval",
    "subsample_sts",
]
