"""Tests for harness.evaluation.agreement: label-free NDCG@10 of a backend against torch-fp32.

Seeded random outputs, no model. Hand cases spell out their expected value in comments.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.evaluation.agreement import (
    MIN_RELIABLE,
    consecutive_blocks,
    embedding_agreement,
    rank_gains,
    score_agreement,
    task_agreement,
    top_k_neighbours,
)
from harness.evaluation.fidelity import compare_embeddings
from harness.evaluation.retrieval import rank_desc

D = [1 / math.log2(p + 1) for p in range(1, 11)]  # NDCG's discount at positions 1..10 (= fp32-rank gains)
IDEAL = sum(d * d for d in D)  # 2.4950: fp32's own DCG, every query


def gaussian(n: int, dim: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim))


# --- bi-encoders ---------------------------------------------------------------------------


def test_identical_outputs_score_exactly_one() -> None:
    ref = gaussian(600).astype(np.float32)
    for result in (embedding_agreement(ref, ref.copy()), embedding_agreement(ref, ref, pool=200)):
        assert (result.value, result.loss, result.recall) == (1.0, 0.0, 1.0)
        assert (result.n, result.queries, result.reliable) == (600, 600, True)
    scores = np.random.default_rng(1).standard_normal(300)
    queries = [f"q{i % 7}" for i in range(300)]
    for result in (score_agreement(scores, scores.copy(), queries), score_agreement(scores, scores.copy())):
        assert (result.value, result.loss, result.recall) == (1.0, 0.0, 1.0)


def test_reversed_rankings_by_hand() -> None:
    # 12 points on an arc at Golomb-ruler angles (all pairwise gaps differ, so no ties), padded
    # from 2-d to 12-d. The candidate's Gram matrix is (1 + b) I - b G: its cosines are -b times
    # fp32's, so every query's ranking of its 11 others is exactly reversed.
    angles = np.radians([0, 2, 6, 24, 29, 40, 43, 55, 68, 75, 76, 85])
    ref = np.zeros((12, 12))
    ref[:, 0], ref[:, 1] = np.cos(angles), np.sin(angles)
    b = 0.05  # keeps (1 + b) I - b G positive definite: G's largest eigenvalue is below 12
    cand = np.linalg.cholesky((1 + b) * np.eye(12) - b * ref @ ref.T)
    result = embedding_agreement(ref, cand)
    # Candidate position p (1..10) holds fp32's rank 12 - p; rank 11 has no gain.
    # DCG = sum_{p=2..10} D[12-p] D[p] = 1.3225, IDCG = sum D[p]^2 = 2.4950 -> 0.5300
    dcg = sum(D[12 - p - 1] * D[p - 1] for p in range(2, 11))
    assert result.value == pytest.approx(dcg / IDEAL, abs=1e-12)
    assert result.value == pytest.approx(0.53000, abs=1e-5)
    assert result.recall == pytest.approx(0.9)  # all but fp32's nearest neighbour stay in the top 10
    assert (result.n, result.reliable) == (12, False)


def test_random_permutation_loses_almost_everything() -> None:
    # A candidate unrelated to fp32 picks its top 10 at random from n - 1 texts: expected
    # recall 10/(n-1) and NDCG sum(D) * sum(gains) / ((n - 1) IDCG) = 4.5436^2 / (1999 * 2.4950).
    n = 2000
    ref = gaussian(n)
    cand = ref[np.random.default_rng(3).permutation(n)]
    result = embedding_agreement(ref, cand)
    assert result.recall == pytest.approx(10 / (n - 1), abs=0.002)
    assert result.value == pytest.approx(sum(D) ** 2 / ((n - 1) * IDEAL), abs=0.002)
    assert result.loss > 0.99


def test_loss_grows_with_noise_and_stays_small_for_tiny_noise() -> None:
    ref = gaussian(600, seed=7)
    noise = np.random.default_rng(8).standard_normal(ref.shape)
    losses = [embedding_agreement(ref, ref + sigma * noise).loss for sigma in (0.001, 0.01, 0.03)]
    assert losses[0] < losses[1] < losses[2]
    assert losses[0] < 0.002  # 0.1 % coordinate noise: ~0.08 % task loss
    assert losses[2] > 5 * losses[0]


def test_loss_does_not_grow_with_n_like_the_worst_cosine() -> None:
    # One file of 4000 texts against the typical file of 500 (the mean over 8 disjoint ones), at
    # the same noise. Per-text noise scales are heavy-tailed (lognormal), as quantization drift is
    # between texts. The worst cosine is a maximum over texts, so its loss grows with the file
    # (x2.6 here; x1.5-4.3 over seeds 11-18). The NDCG loss is a mean: with a fixed pool size the
    # big file's loss *is* the small files' mean; over all n texts it creeps up, because
    # neighbours crowd closer (x1.30 here; x1.24-1.40 over seeds 11-18).
    rng = np.random.default_rng(11)
    ref = rng.standard_normal((4000, 32))
    cand = ref + 0.01 * rng.lognormal(0.0, 1.0, size=(4000, 1)) * rng.standard_normal(ref.shape)
    files = [slice(start, start + 500) for start in range(0, 4000, 500)]
    worst_small = np.mean([1 - compare_embeddings(ref[f], cand[f])["fidelity_min_cos"] for f in files])
    worst_big = 1 - compare_embeddings(ref, cand)["fidelity_min_cos"]
    small = np.mean([embedding_agreement(ref[f], cand[f]).loss for f in files])
    assert worst_big > 2 * worst_small
    assert embedding_agreement(ref, cand, pool=500).loss == pytest.approx(small, abs=1e-12)
    assert 1.0 < embedding_agreement(ref, cand).loss / small < 1.5


def test_top_k_neighbours_ties_broken_by_index_across_blocks() -> None:
    # Four coordinates of +-0.5 make unit rows whose cosines are exact multiples of 0.25: ties
    # everywhere, computed exactly in any summation order, so a full stable sort is the truth.
    rng = np.random.default_rng(5)
    x = np.zeros((60, 8))
    for row in x:
        row[rng.choice(8, 4, replace=False)] = rng.choice([-0.5, 0.5], 4)
    sim = x @ x.T
    np.fill_diagonal(sim, -np.inf)
    expected = np.array([rank_desc(row)[:10] for row in sim])
    for block in (7, 60, 1024):
        np.testing.assert_array_equal(top_k_neighbours(x, 10, block=block), expected)


def test_duplicate_rows_are_collapsed_to_first_occurrence() -> None:
    rng = np.random.default_rng(9)
    distinct = rng.standard_normal((40, 16))
    ref = np.vstack([distinct, distinct[[3, 3, 17, 25, 39]]])
    cand = ref + 0.05 * rng.standard_normal(ref.shape)  # copies drift apart in the candidate
    result = embedding_agreement(ref, cand)
    assert result.n == 40
    assert "5 duplicate rows collapsed" in result.note
    assert result.value == embedding_agreement(distinct, cand[:40]).value
    assert embedding_agreement(ref, ref).value == 1.0


def test_rank_gains_are_the_discounts() -> None:
    np.testing.assert_allclose(rank_gains(10), D, rtol=0, atol=1e-15)


# --- cross-encoders ----------------------------------------------------------------------------


def test_scores_grouped_by_repeated_query_text_by_hand() -> None:
    # 'a' and 'b' interleave (grouping is by text, not by adjacency); 'c' has one pair: skipped.
    queries = ["a", "b", "a", "b", "a", "b", "b", "c"]
    ref = np.array([0.9, 0.8, 0.5, 0.6, 0.1, 0.4, 0.2, 0.7])
    cand = ref.copy()
    cand[[0, 2, 4]] = [0.3, 0.2, 0.1]  # 'a': other values, same order -> 1
    cand[[1, 3]] = [0.6, 0.8]  # 'b': fp32's ranks 1 and 2 swapped
    # 'b' has 4 docs, all relevant with gains D1..D4; candidate order = fp32 ranks 2, 1, 3, 4:
    # DCG = 2 D1 D2 + D3^2 + D4^2 = 1.69738, IDCG = D1^2 + .. + D4^2 = 1.83359 -> 0.92571
    ndcg_b = (2 * D[0] * D[1] + D[2] ** 2 + D[3] ** 2) / sum(d * d for d in D[:4])
    result = score_agreement(ref, cand, queries)
    assert result.value == pytest.approx((1 + ndcg_b) / 2, abs=1e-12)
    assert result.value == pytest.approx(0.96286, abs=1e-5)
    assert (result.n, result.queries, result.reliable) == (7, 2, False)
    assert "1 single-pair queries skipped" in result.note
    assert result.recall == 1.0  # groups under 10 docs keep all of them in the top 10


@pytest.mark.parametrize(("n", "expected"), [(240, 1 / 2), (250, 1 / 3)])
def test_scores_fall_back_to_consecutive_blocks(n: int, expected: float) -> None:
    # Every query is unique. Pairs 100.. have their scores negated (order reversed), so those
    # blocks put fp32's ranks m, m-1, .. in the top 10: no gain, NDCG 0. With 240 pairs the last
    # 40 join the second block (100, 140): 1/2; with 250, 50 pairs stand alone (100, 100, 50): 1/3.
    ref = np.random.default_rng(n).standard_normal(n)
    cand = ref.copy()
    cand[100:] *= -1
    for queries in ([f"q{i}" for i in range(n)], None):
        result = score_agreement(ref, cand, queries)
        assert result.value == pytest.approx(expected, abs=1e-12)
        assert result.queries == round(1 / expected)
        assert result.n == n
        assert "pseudo-queries" in result.note


def test_consecutive_blocks() -> None:
    sizes = {n: [len(b) for b in consecutive_blocks(n, 100)] for n in (2, 100, 149, 150, 240, 250, 1000)}
    assert sizes == {
        2: [2],
        100: [100],
        149: [149],
        150: [100, 50],
        240: [100, 140],
        250: [100, 100, 50],
        1000: [100] * 10,
    }
    assert np.concatenate(consecutive_blocks(250, 100)).tolist() == list(range(250))


# --- flags, dispatch and errors -----------------------------------------------------------------


def test_reliable_from_500() -> None:
    assert MIN_RELIABLE == 500
    for n, reliable in ((499, False), (500, True)):
        ref = gaussian(n, dim=8)
        bi = embedding_agreement(ref, ref)
        scores = np.arange(n, dtype=float)
        cross = score_agreement(scores, scores)
        assert (bi.reliable, cross.reliable) == (reliable, reliable)
        assert ("only 499" in bi.note, "only 499" in cross.note) == (not reliable, not reliable)
    # pairs *used* count: one single-pair query of 500 pairs leaves 499
    scores = np.arange(500, dtype=float)
    assert not score_agreement(scores, scores, ["lone"] + ["q"] * 499).reliable


def test_task_agreement_dispatches_by_output_kind() -> None:
    ref = gaussian(50)
    assert task_agreement(ref, ref).metric == "pair_similarity_spearman"
    scores = np.array([3.0, 2.0, 1.0, 0.0, 1.0, 2.0])
    result = task_agreement(scores, scores[::-1].copy(), ["a", "a", "a", "b", "b", "b"])
    # per query: a's 3, 2, 1 against 2, 1, 0 (same order: 1.0); b's 0, 1, 2 against 1, 2, 3 (same order: 1.0)
    assert (result.metric, result.queries, result.value) == ("rerank_spearman", 2, pytest.approx(1.0))
    reversed_ = task_agreement(scores[:3], scores[:3][::-1].copy(), ["a", "a", "a"])
    assert reversed_.value == pytest.approx(-1.0) and reversed_.loss == pytest.approx(2.0)


def test_label_free_sts_is_gentler_than_exact_top_10_and_exact_for_fp32() -> None:
    """#22: near-tie swaps in fp32's top-10 cost neighbour NDCG dearly; the pairs' similarity ranking (the STS
    task without labels) moves by what the similarities move."""
    from harness.evaluation.agreement import embedding_agreement, similarity_agreement

    ref = gaussian(600)
    noisy = ref + np.random.default_rng(7).normal(0, 0.02, ref.shape)
    assert similarity_agreement(ref, ref).loss == 0.0
    sts, top10 = similarity_agreement(ref, noisy), embedding_agreement(ref, noisy)
    assert 0.0 < sts.loss < top10.loss


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: embedding_agreement(np.ones((20, 4)), np.ones((20, 5))), "shape"),
        (lambda: embedding_agreement(gaussian(10), gaussian(10)), "at least 11 distinct texts .* got 10"),
        (lambda: embedding_agreement(gaussian(11)[[0, *range(10)]], gaussian(11)), "at least 11 distinct texts"),
        (lambda: embedding_agreement(np.ones(20), np.ones(20)), "expected 2-d"),
        (lambda: embedding_agreement(gaussian(20), gaussian(20), pool=21), "pool must be at least 22"),
        (lambda: embedding_agreement(gaussian(20), np.full((20, 32), np.nan)), "non-finite"),
        (lambda: score_agreement(np.ones(5), np.ones(6)), "shape"),
        (lambda: score_agreement(np.ones(1), np.ones(1)), "at least 2 pairs"),
        (lambda: score_agreement(np.ones(5), np.ones(5), ["q"] * 4), "4 queries for 5 scores"),
        (lambda: task_agreement(gaussian(20), gaussian(20)[:, :3]), "shape"),
    ],
)
def test_bad_input_one_line_errors(call, message: str) -> None:
    with pytest.raises(ValueError, match=message) as err:
        call()
    assert "\n" not in str(err.value)
