"""Evaluation data as plain dataclasses: what evaluators read, what they see, what they return.

Evaluators see a model only through two callables (`Encode`, `Predict`) and return an
`EvalResult` that carries the raw outputs, so fidelity against torch-fp32 needs no second pass.
Loaders read local files or the Hugging Face Hub and fail with one-line `ValueError`s naming
the file and what is wrong, so the CLI can show them as they are. Hub loaders import `datasets`
lazily: local runs and unit tests never need it, and nothing downloads unless one is called.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from harness.core.usage import did_you_mean
from harness.inputs.datafiles import (
    doc_text,
    read_corpus,
    read_qrels,
    read_queries,
    read_sts,
    require_columns,
    sts_file,
)

log = logging.getLogger(__name__)


NANOBEIR_DATASETS: dict[str, str] = {
    "climatefever": "ClimateFEVER",
    "dbpedia": "DBPedia",
    "fever": "FEVER",
    "fiqa2018": "FiQA2018",
    "hotpotqa": "HotpotQA",
    "msmarco": "MSMARCO",
    "nfcorpus": "NFCorpus",
    "nq": "NQ",
    "quoraretrieval": "QuoraRetrieval",
    "scidocs": "SCIDOCS",
    "arguana": "ArguAna",
    "scifact": "SciFact",
    "touche2020": "Touche2020",
}
NANOBEIR_ORG = "zeta-alpha-ai"


@dataclass
class StsData:
    """Sentence pairs with gold similarity in 0..1 (the original 0-5 divided by 5)."""

    sentences1: list[str]
    sentences2: list[str]
    scores: np.ndarray
    name: str = "stsb"

    def __post_init__(self) -> None:
        n = len(self.sentences1)
        if len(self.sentences2) != n or len(self.scores) != n:
            raise ValueError(
                f"StsData {self.name!r}: sentences1, sentences2 and scores differ in length "
                f"({n}, {len(self.sentences2)}, {len(self.scores)})"
            )

    def __len__(self) -> int:
        return len(self.sentences1)


@dataclass
class RetrievalData:
    """A BEIR-style retrieval set; qrels keep only relevant docs (grade > 0) with their grade."""

    name: str
    corpus: dict[str, str]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]


class Encode(Protocol):
    """Bi-encoder protocol: texts -> float array of shape (n, dim)."""

    def __call__(self, texts: list[str]) -> np.ndarray: ...


class Predict(Protocol):
    """Cross-encoder protocol: (query, doc) pairs -> float array of shape (n,)."""

    def __call__(self, pairs: list[tuple[str, str]]) -> np.ndarray: ...


@dataclass
class EvalResult:
    """One accuracy number plus the raw model outputs it came from (for fidelity checks)."""

    metric: str
    value: float
    outputs: np.ndarray
    dataset: str = ""
    n: int = 0  # pairs (STS) or queries (retrieval) the value averages over


def check_outputs(outputs: Any, n: int, ndim: int, who: str) -> np.ndarray:
    """Model outputs as float64, with a clear error when a backend returns the wrong shape."""
    array = np.asarray(outputs, dtype=np.float64)
    if array.ndim != ndim or array.shape[0] != n:
        want = f"({n}, dim)" if ndim == 2 else f"({n},)"
        raise ValueError(f"{who} returned shape {array.shape}, expected {want}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{who} returned non-finite values (NaN or inf)")
    return array


# --- STS ---------------------------------------------------------------------------------


def load_sts_local(path_or_dir: str | Path, split: str = "test") -> StsData:
    """Read the original tab-separated STS-benchmark file (a file, or a dir with sts-<split>.csv)."""
    path = sts_file(path_or_dir, split)
    sentences1, sentences2, scores = read_sts(path)
    data = StsData(sentences1, sentences2, np.asarray(scores, dtype=np.float64), name=f"stsb-{split}")
    log.info("loaded %d STS pairs from %s", len(data), path)
    return data


def load_sts_hub(name: str = "sentence-transformers/stsb", split: str = "test") -> StsData:
    """Load an STS set from the Hub whose columns are sentence1, sentence2, score (0..1)."""
    from datasets import load_dataset

    ds = load_dataset(name, split=split)
    require_columns(ds.column_names, ("sentence1", "sentence2", "score"), f"{name} [{split}]")
    if len(ds) == 0:
        raise ValueError(f"dataset {name} [{split}] has no rows")
    data = StsData(
        sentences1=list(ds["sentence1"]),
        sentences2=list(ds["sentence2"]),
        scores=np.asarray(ds["score"], dtype=np.float64),
        name=f"{name.rsplit('/', 1)[-1]}-{split}",
    )
    log.info("loaded %d STS pairs from %s [%s]", len(data), name, split)
    return data


# --- retrieval ---------------------------------------------------------------------------


def build_retrieval_data(
    name: str,
    corpus: dict[str, str],
    queries: dict[str, str],
    judgements: Iterable[tuple[str, str, int]],
) -> RetrievalData:
    """Keep relevant judgements (grade > 0) that point at known docs, and queries that have one."""
    qrels: dict[str, dict[str, int]] = {}
    dropped_docs = 0
    for qid, docid, grade in judgements:
        if grade <= 0:
            continue
        if docid not in corpus:
            dropped_docs += 1
            continue
        qrels.setdefault(qid, {})[docid] = grade
    kept_queries = {qid: text for qid, text in queries.items() if qid in qrels}
    qrels = {qid: qrels[qid] for qid in kept_queries}
    if dropped_docs:
        log.warning("%s: %d relevant judgements point at docs not in the corpus", name, dropped_docs)
    if len(kept_queries) < len(queries):
        log.info(
            "%s: kept %d of %d queries (the others have no relevant docs)",
            name,
            len(kept_queries),
            len(queries),
        )
    if not kept_queries:
        raise ValueError(f"{name}: no query has a relevant document in the corpus")
    return RetrievalData(name=name, corpus=corpus, queries=kept_queries, qrels=qrels)


def load_beir_local(folder: str | Path, split: str = "test") -> RetrievalData:
    """Read a BEIR-layout folder: corpus.jsonl, queries.jsonl, qrels/<split>.tsv."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"BEIR folder {folder} does not exist")
    paths = {
        "corpus": folder / "corpus.jsonl",
        "queries": folder / "queries.jsonl",
        "qrels": folder / "qrels" / f"{split}.tsv",
    }
    for path in paths.values():
        if not path.is_file():
            raise ValueError(f"BEIR folder {folder} has no {path.relative_to(folder)}")
    corpus, queries = read_corpus(paths["corpus"]), read_queries(paths["queries"])
    data = build_retrieval_data(folder.name, corpus, queries, read_qrels(paths["qrels"]))
    log.info("loaded %s: %d docs, %d queries", data.name, len(data.corpus), len(data.queries))
    return data


def nanobeir_dataset_id(subset: str) -> str:
    """Accept 'msmarco', 'NanoMSMARCO' or 'zeta-alpha-ai/NanoMSMARCO'; unknown names get a hint."""
    key = subset.rsplit("/", 1)[-1].lower()
    key = key.removeprefix("nano")
    if key not in NANOBEIR_DATASETS:
        hint = did_you_mean(key, NANOBEIR_DATASETS)
        raise ValueError(f"unknown NanoBEIR dataset {subset!r}.{hint} Valid: {', '.join(NANOBEIR_DATASETS)}")
    return f"{NANOBEIR_ORG}/Nano{NANOBEIR_DATASETS[key]}"


def load_nanobeir_hub(subset: str) -> RetrievalData:
    """Load one NanoBEIR set (configs corpus/queries/qrels, split train) from the Hub."""
    from datasets import load_dataset

    dataset_id = nanobeir_dataset_id(subset)

    def load(config: str, required: tuple[str, ...]) -> Any:
        ds = load_dataset(dataset_id, config, split="train")
        require_columns(ds.column_names, required, f"{dataset_id} [{config}]")
        if len(ds) == 0:
            raise ValueError(f"{dataset_id} [{config}] has no rows")
        return ds

    corpus = {str(r["_id"]): doc_text(r) for r in load("corpus", ("_id", "text"))}
    queries = {str(r["_id"]): str(r["text"]).strip() for r in load("queries", ("_id", "text"))}
    qrels_ds = load("qrels", ("query-id", "corpus-id"))
    has_score = "score" in qrels_ds.column_names
    judgements = ((str(r["query-id"]), str(r["corpus-id"]), int(r["score"]) if has_score else 1) for r in qrels_ds)
    data = build_retrieval_data(dataset_id.rsplit("/", 1)[-1], corpus, queries, judgements)
    log.info("loaded %s: %d docs, %d queries", dataset_id, len(data.corpus), len(data.queries))
    return data


# --- subsampling -------------------------------------------------------------------------


def _sample_indices(n: int, k: int, seed: int) -> list[int]:
    """k of n indices, seeded, in their original order (so subsets keep file order)."""
    return sorted(np.random.default_rng(seed).permutation(n)[:k].tolist())


def subsample_sts(data: StsData, max_pairs: int | None, seed: int = 0) -> StsData:
    """A deterministic subset of pairs, for quick runs; every backend gets the same one."""
    if max_pairs is None or max_pairs >= len(data):
        return data
    if max_pairs < 2:
        raise ValueError(f"max pairs must be at least 2 for a correlation, got {max_pairs}")
    idx = _sample_indices(len(data), max_pairs, seed)
    return StsData(
        sentences1=[data.sentences1[i] for i in idx],
        sentences2=[data.sentences2[i] for i in idx],
        scores=data.scores[idx],
        name=data.name,
    )


def subsample_retrieval(
    data: RetrievalData,
    max_queries: int | None = None,
    max_corpus: int | None = None,
    seed: int = 0,
) -> RetrievalData:
    """Deterministic smaller set: sampled queries; corpus = their relevant docs + sampled others.

    Relevant docs are always kept so every kept query stays answerable (the NanoBEIR recipe);
    max_corpus is exceeded, with a warning, if they alone are more.
    """
    queries = data.queries
    if max_queries is not None and max_queries < len(queries):
        if max_queries < 1:
            raise ValueError(f"max_queries must be at least 1, got {max_queries}")
        qids = list(queries)
        queries = {qids[i]: queries[qids[i]] for i in _sample_indices(len(qids), max_queries, seed)}
    qrels = {qid: data.qrels[qid] for qid in queries}
    corpus = data.corpus
    if max_corpus is not None and max_corpus < len(corpus):
        relevant = {docid for rels in qrels.values() for docid in rels}
        if len(relevant) > max_corpus:
            log.warning(
                "%s: %d relevant docs exceed max_corpus=%d; keeping them all",
                data.name,
                len(relevant),
                max_corpus,
            )
        others = [docid for docid in corpus if docid not in relevant]
        n_fill = max(0, max_corpus - len(relevant))
        keep = relevant | {others[i] for i in _sample_indices(len(others), n_fill, seed)}
        corpus = {docid: text for docid, text in corpus.items() if docid in keep}
    return RetrievalData(name=data.name, corpus=corpus, queries=queries, qrels=qrels)
