"""Shared pytest configuration."""

from __future__ import annotations

import pytest


def pytest_sessionstart(session: pytest.Session) -> None:
    """Tests never touch the user's export cache or the Hub."""
    import os
    import tempfile

    os.environ.setdefault("HARNESS_CACHE_DIR", tempfile.mkdtemp(prefix="harness-test-cache-"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def pytest_configure(config: pytest.Config) -> None:
    """Register markers here until pyproject's [tool.pytest.ini_options] declares them."""
    config.addinivalue_line("markers", "slow: needs ../shared data or real models; minutes on CPU")


def shared_dir():
    """../shared beside the checkout (or HARNESS_SHARED_DIR); None when absent."""
    import os
    from pathlib import Path

    path = Path(os.environ.get("HARNESS_SHARED_DIR", Path(__file__).resolve().parents[2] / "shared"))
    return path if path.exists() else None


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """(bi-encoder folder, cross-encoder folder), built once per session."""
    from tiny import make_bi_encoder, make_cross_encoder

    root = tmp_path_factory.mktemp("tiny")
    return make_bi_encoder(root), make_cross_encoder(root)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """A data_dir laid out like ../shared/data: a 12-pair STS file and a 12-doc BEIR folder."""
    import json

    from harness.inputs.texts import builtin_texts

    root = tmp_path_factory.mktemp("data")
    sts = root / "stsbenchmark"
    sts.mkdir()
    a, b = builtin_texts("short", 12, seed=1), builtin_texts("short", 12, seed=2)
    lines = [f"main-news\tf\t2012\t{i:04d}\t{(i * 7) % 6:.1f}\t{a[i]}\t{b[i]}" for i in range(12)]
    (sts / "sts-test.csv").write_text("\n".join(lines) + "\n")
    beir = root / "beir" / "dbpedia-5k"
    (beir / "qrels").mkdir(parents=True)
    docs = builtin_texts("medium", 12, seed=3)
    with open(beir / "corpus.jsonl", "w") as f:
        for i, doc in enumerate(docs):
            f.write(json.dumps({"_id": f"d{i}", "title": f"Doc {i}", "text": doc}) + "\n")
    with open(beir / "queries.jsonl", "w") as f:
        for q in range(3):
            f.write(json.dumps({"_id": f"q{q}", "text": docs[q * 3][:60]}) + "\n")
    qrels = ["query-id\tcorpus-id\tscore"] + [f"q{q}\td{q * 3}\t2" for q in range(3)] + ["q0\td1\t1"]
    (beir / "qrels" / "test.tsv").write_text("\n".join(qrels) + "\n")
    return root
