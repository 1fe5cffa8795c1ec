"""Label-free task agreement with torch-fp32: a relative NDCG@10 drop on the user's own texts.

The docs quote quantization costs as a relative drop in a task metric ("onnx-qint8 loses 0.4 %").
Without labels, torch-fp32's own rankings stand in for the qrels: a backend's NDCG@10 against them
is exactly 1.0 for fp32 itself, so `loss = 1 - value` has the docs' unit and `--tolerance 0.004`
can mean a 0.4 % drop. Unlike the worst single text's cosine, it is a mean over queries: one odd
text moves it by 1/n at most, and more texts make it more precise rather than worse. Ranking
among more texts is still harder (neighbours crowd closer), so with all n texts as the corpus the
loss creeps up with n: about +30 % from 500 to 4,000 noisy Gaussian texts, where the worst cosine's
loss grew 1.5-4x. `pool` fixes the corpus size and removes that drift.

Gains are graded by fp32's rank: the item fp32 puts at rank r (1..10) has gain 1/log2(r + 1),
others 0. Graded NDCG is then E[candidate's NDCG] / E[fp32's NDCG] on real labels when the one
relevant document sits at fp32's rank r with probability proportional to that gain: likelier near
the top, as for a good model. Binary gains (the uniform prior) would not see swaps inside the
top-10, which real labels do see (rank 1 and 2 exchanged costs on MS MARCO-like sets).
Rankings break ties by index (a stable sort, like `rank_desc`), the same way on both sides.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.evaluation.retrieval import rank_desc
from harness.evaluation.sts import normalize_rows

K = 10
# The floor. A mean of per-text NDCGs has standard error sd/sqrt(n): at 500 noisy Gaussian
# texts with a 1 % loss that is ~8 % of the loss itself; fewer texts are reported but flagged.
MIN_RELIABLE = 500
POOL = 1000  # texts per ranking pool in a sweep's rows: their loss does not drift with how many texts there are
PSEUDO_QUERY_SIZE = 100  # pairs per pseudo-query when no query repeats: the BM25 top-100 rerank size
BLOCK_ROWS = 1024  # query rows per similarity block: 1024 x n float64 (80 MB at n = 10,000)


@dataclass(frozen=True)
class Agreement:
    """A candidate's task metric against torch-fp32's outputs; fp32 itself scores 1.0, loss 0.0."""

    metric: str
    value: float  # mean NDCG@10 over queries
    loss: float  # 1 - value: the relative task-metric drop, the unit of --tolerance
    recall: float  # mean share of fp32's top-k that the candidate also puts in its top-k
    n: int  # texts (bi-encoder, after collapsing duplicates) or pairs (cross-encoder) used
    queries: int  # rankings averaged over
    reliable: bool  # n >= MIN_RELIABLE
    note: str = ""


def rank_gains(k: int = K) -> np.ndarray:
    """Gain of fp32's rank 1..k, equal to NDCG's discount there: 1/log2(r + 1)."""
    return 1.0 / np.log2(np.arange(2, k + 2))


def _ndcg_rows(ref_top: np.ndarray, cand_top: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-row NDCG and recall of candidate top-k index rows against fp32's (q, k) top-k rows.

    The ideal DCG goes through the same code as the candidate's, so identical rankings give
    exactly 1.0, not 1.0 up to rounding.
    """
    gains = rank_gains(ref_top.shape[1])

    def dcg(top: np.ndarray) -> np.ndarray:
        hits = top[:, :, None] == ref_top[:, None, :]  # (q, candidate position, fp32 rank)
        return np.sum(np.where(hits, gains, 0.0).sum(axis=2) * gains, axis=1)

    recall = (cand_top[:, :, None] == ref_top[:, None, :]).any(axis=2).mean(axis=1)
    return dcg(cand_top) / dcg(ref_top), recall


def _as_arrays(ref: np.ndarray, cand: np.ndarray, ndim: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    ref, cand = np.asarray(ref, dtype=np.float64), np.asarray(cand, dtype=np.float64)
    if ref.shape != cand.shape:
        raise ValueError(f"agreement: reference {what} shape {ref.shape} differs from candidate's {cand.shape}")
    if ref.ndim != ndim:
        raise ValueError(f"agreement: expected {ndim}-d {what}, got shape {ref.shape}")
    if not (np.all(np.isfinite(ref)) and np.all(np.isfinite(cand))):
        raise ValueError(f"agreement: {what} contain non-finite values (NaN or inf)")
    return ref, cand


def top_k_neighbours(embeddings: np.ndarray, k: int = K, block: int = BLOCK_ROWS) -> np.ndarray:
    """(n, k) indices of each row's k nearest other rows by cosine, best first, ties by index.

    Block-wise, so memory is block x n: the k-th largest similarity comes from a partition, and
    every column reaching it is kept, so a tie at the cut-off is decided by index, not by
    argpartition's internal order. Rows with such a tie (rare) fall back to a full stable sort.
    """
    unit = normalize_rows(embeddings)
    n = len(unit)
    out = np.empty((n, k), dtype=np.intp)
    for start in range(0, n, block):
        sim = unit[start : start + block] @ unit.T
        rows = np.arange(len(sim))
        sim[rows, start + rows] = -np.inf  # a text is not its own neighbour
        kth = np.partition(sim, n - k, axis=1)[:, n - k : n - k + 1]
        keep = sim >= kth
        counts = keep.sum(axis=1)
        plain = counts == k
        cols = np.nonzero(keep[plain])[1].reshape(-1, k)  # ascending index within each row
        order = np.argsort(-np.take_along_axis(sim[plain], cols, axis=1), axis=1, kind="stable")
        out[start + rows[plain]] = np.take_along_axis(cols, order, axis=1)
        for row in rows[~plain]:
            out[start + row] = rank_desc(sim[row])[:k]
    return out


def _flag(n: int, unit: str) -> tuple[bool, str]:
    if n >= MIN_RELIABLE:
        return True, ""
    return False, f"; only {n} {unit} (< {MIN_RELIABLE}): reported, but too few for a tolerance check"


def embedding_agreement(
    ref: np.ndarray, cand: np.ndarray, k: int = K, pool: int | None = None, block: int = BLOCK_ROWS
) -> Agreement:
    """Bi-encoders: each text queries the others; fp32's top-k neighbours are the relevant set.

    pool=None ranks among all other n - 1 texts. pool=P splits the texts into consecutive pools
    of P (see `consecutive_blocks`) and ranks within each, so the corpus size, and with it the
    loss, no longer depends on how many texts the user gave.

    Rows identical in fp32 are the same model input (a repeated text, or texts cut to the same
    tokens), which would make fp32's top-k depend on which copy ranks first; they are collapsed
    to their first occurrence in both ref and cand before ranking.
    """
    ref, cand = _as_arrays(ref, cand, 2, "embeddings")
    _, first = np.unique(ref, axis=0, return_index=True)
    first.sort()
    dropped = len(ref) - len(first)
    ref, cand = ref[first], cand[first]
    n = len(ref)
    if n < k + 1:
        raise ValueError(f"agreement: need at least {k + 1} distinct texts for top-{k} neighbours, got {n}")
    if pool is not None and pool < 2 * (k + 1):
        raise ValueError(f"agreement: pool must be at least {2 * (k + 1)} texts, got {pool}")
    pools = consecutive_blocks(n, pool) if pool else [np.arange(n)]
    rows = [_ndcg_rows(top_k_neighbours(ref[p], k, block), top_k_neighbours(cand[p], k, block)) for p in pools]
    ndcg, recall = np.concatenate([r[0] for r in rows]), np.concatenate([r[1] for r in rows])
    value = float(np.mean(ndcg))
    reliable, flag = _flag(n, "texts")
    if len(pools) == 1:
        note = f"fp32's top-{k} neighbours of each of {n} texts among the other {n - 1}"
    else:
        note = f"fp32's top-{k} neighbours of each of {n} texts within {len(pools)} pools of ~{pool}"
    if dropped:
        note += f"; {dropped} duplicate rows collapsed"
    return Agreement(f"neighbour_ndcg@{k}", value, 1.0 - value, float(np.mean(recall)), n, n, reliable, note + flag)


def consecutive_blocks(n: int, size: int) -> list[np.ndarray]:
    """Index blocks of `size` in order; a last block under size/2 joins the previous one.

    So every block holds size/2 .. 1.5 size items (or all n when n < 1.5 size): a short tail
    would be an easier, different ranking task that still weighs like a full one.
    """
    bounds = list(range(0, n, size)) + [n]
    if len(bounds) > 2 and bounds[-1] - bounds[-2] < size / 2:
        del bounds[-2]
    return [np.arange(lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:], strict=False)]


def _query_lists(n: int, queries: list[str] | None, block: int) -> tuple[list[np.ndarray], str]:
    """The pairs' indices grouped by query (2+ documents), else consecutive pseudo-queries of `block` pairs."""
    groups: dict[str, list[int]] = {}
    for i, query in enumerate(queries or []):
        groups.setdefault(query, []).append(i)
    lists = [np.asarray(idx) for idx in groups.values() if len(idx) >= 2]
    if lists:
        singles = sum(len(idx) == 1 for idx in groups.values())
        note = f"{len(lists)} queries with 2+ documents"
        note += f"; {singles} single-pair queries skipped" if singles else ""
    else:
        lists = consecutive_blocks(n, block)
        why = "no query repeats" if queries is not None else "no queries given"
        note = f"{why}: {len(lists)} pseudo-queries of ~{block} consecutive pairs"
    return lists, note


def score_agreement(
    ref: np.ndarray, cand: np.ndarray, queries: list[str] | None = None, k: int = K, block: int = PSEUDO_QUERY_SIZE
) -> Agreement:
    """Cross-encoders: each query's documents ranked by the candidate, fp32's scores as the gains.

    Pairs are grouped by their query text (in any order); a query with one pair has nothing to
    rank and is skipped. When no query repeats (a file of unrelated pairs), consecutive blocks
    of `block` pairs are ranked as pseudo-queries instead. In a list of m <= k documents all m
    are relevant, graded by fp32's rank, so small groups still count swaps.
    """
    ref, cand = _as_arrays(ref, cand, 1, "scores")
    if queries is not None and len(queries) != len(ref):
        raise ValueError(f"agreement: {len(queries)} queries for {len(ref)} scores")
    if len(ref) < 2:
        raise ValueError(f"agreement: need at least 2 pairs to rank, got {len(ref)}")
    lists, note = _query_lists(len(ref), queries, block)
    ndcgs, recalls = [], []
    for idx in lists:
        top = min(k, len(idx))
        ndcg, recall = _ndcg_rows(rank_desc(ref[idx])[None, :top], rank_desc(cand[idx])[None, :top])
        ndcgs.append(ndcg[0])
        recalls.append(recall[0])
    used = int(sum(len(idx) for idx in lists))
    value = float(np.mean(ndcgs))
    reliable, flag = _flag(used, "pairs")
    return Agreement(
        f"rerank_ndcg@{k}", value, 1.0 - value, float(np.mean(recalls)), used, len(lists), reliable, note + flag
    )


SIMILARITY_PAIRS = 20_000  # random text pairs whose similarities are ranked (label-free STS)


def similarity_agreement(ref: np.ndarray, cand: np.ndarray, pairs: int = SIMILARITY_PAIRS, seed: int = 0) -> Agreement:
    """Bi-encoders, label-free STS: random pairs of the texts are ranked by cosine similarity, fp32's
    similarities standing in for the annotators' scores; the value is the Spearman correlation of the
    candidate's similarities with fp32's (1.0 for fp32 itself), the loss 1 - value.

    Why this and not `embedding_agreement` for --tolerance (README, "label-free task loss"): on the shared data
    the int8 backends lost 2-11 % of neighbour NDCG@10 while their labelled STS / NDCG@10 losses were within
    noise of 0; reproducing fp32's exact top-10 among near-ties is a stricter task than any labelled one. Ranking
    pairs by similarity is the STS benchmark's task, the docs' unit; it lost 0.2-0.35 % on the same texts."""
    from scipy.stats import spearmanr

    ref, cand = _as_arrays(ref, cand, 2, "embeddings")
    n = len(ref)
    if n < 3:
        raise ValueError(f"agreement: need at least 3 texts to rank pairs, got {n}")
    rng = np.random.default_rng(seed)
    i, j = rng.integers(0, n, pairs), rng.integers(0, n, pairs)
    keep = i != j
    i, j = i[keep], j[keep]

    def sims(e: np.ndarray) -> np.ndarray:
        e = normalize_rows(e)
        return np.einsum("ij,ij->i", e[i], e[j])

    a, b = sims(ref), sims(cand)
    value = 1.0 if np.array_equal(a, b) else float(spearmanr(a, b).statistic)
    reliable, flag = _flag(n, "texts")
    note = f"Spearman of {len(i)} random pairs' cosine similarities with fp32's, over {n} texts"
    top = embedding_agreement(ref, cand, pool=POOL if n > POOL else None)
    return Agreement("pair_similarity_spearman", value, 1.0 - value, top.recall, n, len(i), reliable,
                     note + f"; neighbour NDCG@{K} loss {top.loss:.2%} (stricter)" + flag)  # fmt: skip


def task_agreement(
    ref: np.ndarray, cand: np.ndarray, queries: list[str] | None = None, pool: int | None = None
) -> Agreement:
    """Pick by output kind, like `compare_outputs`: embeddings (2-d: label-free STS, `similarity_agreement`)
    or scores (1-d: per-query ranking, `score_agreement`). `pool` is kept for callers; the pair sample does not
    drift with the number of texts."""
    if np.ndim(ref) == 2:
        return similarity_agreement(ref, cand)
    return score_rank_agreement(ref, cand, queries)


def score_rank_agreement(ref: np.ndarray, cand: np.ndarray, queries: list[str] | None = None,
                         block: int = PSEUDO_QUERY_SIZE) -> Agreement:  # fmt: skip
    """Cross-encoders: per query (or pseudo-query), the Spearman correlation of the candidate's scores of its
    documents with fp32's, averaged; loss 1 - mean. The reranking counterpart of `similarity_agreement`
    (`score_agreement`'s NDCG@10 of fp32's order is reported in the note: stricter, see above)."""
    from scipy.stats import spearmanr

    ref, cand = _as_arrays(ref, cand, 1, "scores")
    if len(ref) < 2:
        raise ValueError(f"agreement: need at least 2 pairs to rank, got {len(ref)}")
    lists, note = _query_lists(len(ref), queries, block)
    lists = [idx for idx in lists if len(idx) >= 3]
    if not lists:
        raise ValueError("agreement: no query with 3+ documents to rank")
    rhos = [1.0 if np.array_equal(ref[i], cand[i]) else float(spearmanr(ref[i], cand[i]).statistic) for i in lists]
    value = float(np.nanmean(rhos))
    used = int(sum(len(i) for i in lists))
    reliable, flag = _flag(used, "pairs")
    strict = score_agreement(ref, cand, queries, block=block)
    return Agreement("rerank_spearman", value, 1.0 - value, strict.recall, used, len(lists), reliable,
                     note + f"; rerank NDCG@{K} loss {strict.loss:.2%} (stricter)" + flag)  # fmt: skip
