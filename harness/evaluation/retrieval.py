"""NDCG@10 for dense retrieval (bi-encoder) and BM25-then-rerank (cross-encoder).

NDCG uses graded gains (gain = qrels grade, log2 discount, ideal DCG from all relevant grades),
i.e. trec_eval's / pytrec_eval's ndcg_cut_10. Rankings break ties by a stable sort on the
input order, so the same scores always give the same number on every backend.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence

import numpy as np

from harness.evaluation.data import Encode, EvalResult, Predict, RetrievalData, check_outputs
from harness.evaluation.sts import normalize_rows

log = logging.getLogger(__name__)

METRIC = "ndcg@10"
_TOKEN = re.compile(r"\w+")


def dcg(gains: Sequence[float]) -> float:
    """Discounted cumulative gain: gain at rank r (1-based) divided by log2(r + 1)."""
    return float(sum(g / np.log2(rank + 2) for rank, g in enumerate(gains)))


def ndcg_at_k(ranked: Sequence[str], relevant: Mapping[str, int], k: int = 10) -> float:
    """NDCG@k of one ranking; docs missing from `ranked` simply earn nothing."""
    ideal = dcg(sorted(relevant.values(), reverse=True)[:k])
    if ideal <= 0:
        return 0.0
    return dcg([relevant.get(docid, 0) for docid in ranked[:k]]) / ideal


def mean_ndcg(rankings: Mapping[str, Sequence[str]], qrels: Mapping[str, Mapping[str, int]], k: int = 10) -> float:
    """Average NDCG@k over the queries in qrels; a query with no ranking scores 0."""
    if not qrels:
        raise ValueError("no queries with relevance judgements to average over")
    return float(np.mean([ndcg_at_k(rankings.get(qid, []), rels, k) for qid, rels in qrels.items()]))


def rank_desc(scores: np.ndarray) -> np.ndarray:
    """Indices by score descending; equal scores keep their input order."""
    return np.argsort(-scores, kind="stable")


def ndcg_at_10_bi(encode: Encode, data: RetrievalData, k: int = 10) -> EvalResult:
    """Rank the whole corpus by cosine to each query; outputs = corpus then query embeddings."""
    doc_ids, query_ids = list(data.corpus), list(data.queries)
    texts = [data.corpus[d] for d in doc_ids] + [data.queries[q] for q in query_ids]
    embeddings = check_outputs(encode(texts), len(texts), 2, "encode")
    docs = normalize_rows(embeddings[: len(doc_ids)])
    queries = normalize_rows(embeddings[len(doc_ids) :])
    similarity = queries @ docs.T
    rankings = {qid: [doc_ids[i] for i in rank_desc(similarity[row])[:k]] for row, qid in enumerate(query_ids)}
    value = mean_ndcg(rankings, data.qrels, k)
    log.info(
        "%s: dense NDCG@%d %.4f over %d queries, %d docs",
        data.name,
        k,
        value,
        len(query_ids),
        len(doc_ids),
    )
    return EvalResult(f"ndcg@{k}", value, embeddings, dataset=data.name, n=len(query_ids))


def tokenize(text: str) -> list[str]:
    """Lowercase word tokens: simple on purpose, candidates only need to be reproducible."""
    return _TOKEN.findall(text.lower())


def bm25_candidates(data: RetrievalData, top_k: int = 100) -> dict[str, list[str]]:
    """BM25Okapi top-k docs per query: the fixed first stage every reranking backend shares."""
    from rank_bm25 import BM25Okapi

    doc_ids = list(data.corpus)
    bm25 = BM25Okapi([tokenize(data.corpus[d]) for d in doc_ids])
    candidates = {
        qid: [doc_ids[i] for i in rank_desc(np.asarray(bm25.get_scores(tokenize(text))))[:top_k]]
        for qid, text in data.queries.items()
    }
    log.info("%s: BM25 top-%d candidates for %d queries", data.name, top_k, len(candidates))
    return candidates


def ndcg_at_10_rerank(
    predict: Predict, data: RetrievalData, candidates: Mapping[str, Sequence[str]], k: int = 10
) -> EvalResult:
    """Rerank each query's candidates by predicted score; outputs = the flat score array.

    Relevant docs outside the candidates count as missed; the ideal DCG still uses all qrels.
    """
    query_ids = [qid for qid in data.queries if qid in candidates]
    if len(query_ids) < len(data.queries):
        log.warning(
            "%s: %d queries have no candidates and score 0",
            data.name,
            len(data.queries) - len(query_ids),
        )
    unknown = {d for qid in query_ids for d in candidates[qid] if d not in data.corpus}
    if unknown:
        raise ValueError(f"{data.name}: {len(unknown)} candidate doc ids are not in the corpus, e.g. {min(unknown)!r}")
    pairs = [(data.queries[qid], data.corpus[d]) for qid in query_ids for d in candidates[qid]]
    scores = check_outputs(predict(pairs), len(pairs), 1, "predict")
    rankings: dict[str, list[str]] = {}
    start = 0
    for qid in query_ids:
        cands = list(candidates[qid])
        block = scores[start : start + len(cands)]
        rankings[qid] = [cands[i] for i in rank_desc(block)[:k]]
        start += len(cands)
    value = mean_ndcg(rankings, data.qrels, k)
    log.info(
        "%s: reranked NDCG@%d %.4f over %d queries, %d pairs",
        data.name,
        k,
        value,
        len(data.qrels),
        len(pairs),
    )
    return EvalResult(f"ndcg@{k}", value, scores, dataset=data.name, n=len(data.qrels))
