"""The texts a speed cell encodes: built-in (offline, three length buckets), local files, or the Hub.

Every backend of a sweep sees exactly the same list, in the same order: `load_texts` is
deterministic for a given DatasetConfig.
"""

from __future__ import annotations

import csv
import json
import logging
import random
from pathlib import Path
from typing import Any

from harness.config import ConfigError

log = logging.getLogger(__name__)

# A small vocabulary of our own: enough variety for realistic WordPiece token counts.
_SUBJECTS = [
    "The committee", "A young engineer", "The old lighthouse keeper", "Our neighbour", "The city council",
    "A small startup", "The research team", "My grandmother", "The orchestra", "A stray cat",
    "The new library", "The river", "A group of hikers", "The museum curator", "The football club",
    "An elderly farmer", "The school principal", "A local baker", "The night train", "The software update",
]  # fmt: skip
_VERBS = [
    "announced", "repaired", "painted", "discovered", "cancelled", "celebrated", "questioned", "delivered",
    "photographed", "described", "rebuilt", "measured", "ignored", "welcomed", "postponed", "translated",
]  # fmt: skip
_OBJECTS = [
    "the annual budget", "a wooden bridge", "the harbour wall", "an ancient manuscript", "the spring festival",
    "a quiet garden", "the broken clock", "a shipment of apples", "the winter schedule", "a rare butterfly",
    "the marketing plan", "the village church", "a pair of boots", "the final report", "the mountain road",
]  # fmt: skip
_TAILS = [
    "after a long debate", "before the storm arrived", "with surprising care", "despite the rain",
    "for the third time this year", "without telling anyone", "early on Sunday morning", "in front of a crowd",
    "as the sun went down", "to everyone's relief", "under strict supervision", "with help from volunteers",
]  # fmt: skip
_CONNECTIVES = [
    "Meanwhile,",
    "Later,",
    "As a result,",
    "However,",
    "In the end,",
    "At first,",
    "Surprisingly,",
]


def _sentence(rng: random.Random, tail: bool = True) -> str:
    parts = [rng.choice(_SUBJECTS), rng.choice(_VERBS), rng.choice(_OBJECTS)]
    if tail:
        parts.append(rng.choice(_TAILS))
    return " ".join(parts) + "."


def _paragraph(rng: random.Random, n_sentences: int) -> str:
    out = []
    for i in range(n_sentences):
        s = _sentence(rng)
        if i and rng.random() < 0.4:
            s = f"{rng.choice(_CONNECTIVES)} {s[0].lower()}{s[1:]}"
        out.append(s)
    return " ".join(out)


def builtin_texts(bucket: str, n: int, seed: int = 0) -> list[str]:
    """short ≈ 40 chars (one clause), medium ≈ 300-700 chars, long ≈ several thousand chars."""
    rng = random.Random(f"{bucket}-{seed}")
    if bucket == "short":
        return [_sentence(rng, tail=rng.random() < 0.3) for _ in range(n)]
    if bucket == "medium":
        return [_paragraph(rng, rng.randint(4, 8)) for _ in range(n)]
    if bucket == "long":
        return [_paragraph(rng, rng.randint(40, 70)) for _ in range(n)]
    raise ConfigError(f"dataset.bucket: {bucket!r} is not one of short, medium, long.")


def _local_path(path: str, data_dir: str | None) -> Path:
    p = Path(path).expanduser()
    if not p.is_absolute() and data_dir:
        p = Path(data_dir).expanduser() / p
    if not p.exists():
        raise ConfigError(f"dataset.path: {str(p)!r} does not exist (data_dir={data_dir!r}).")
    return p


def read_lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def read_sts_sentences(path: Path) -> list[str]:
    """Unique sentences of an original STS-benchmark tab file, in file order."""
    if path.is_dir():
        path = path / "sts-test.csv"
    seen: dict[str, None] = {}
    with open(path, encoding="utf-8") as f:
        for row in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
            if len(row) < 7:
                raise ConfigError(f"dataset.path: {path} line {len(seen) + 1} has {len(row)} columns; STS needs 7.")
            seen.setdefault(row[5].strip())
            seen.setdefault(row[6].strip())
    return list(seen)


def read_beir_corpus(path: Path) -> list[str]:
    corpus = path / "corpus.jsonl" if path.is_dir() else path
    if not corpus.exists():
        raise ConfigError(f"dataset.path: BEIR folder {path} has no corpus.jsonl.")
    texts = []
    with open(corpus, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                doc = json.loads(line)
            except ValueError as exc:
                raise ConfigError(f"dataset.path: {corpus} line {n} is not JSON ({exc}).") from exc
            if "text" not in doc:
                raise ConfigError(f"dataset.path: {corpus} line {n} has no 'text' field.")
            texts.append(f"{doc.get('title', '')} {doc['text']}".strip())
    return texts


def read_hub(cfg: Any) -> list[str]:
    import datasets

    try:
        ds = datasets.load_dataset(cfg.hub_name, cfg.hub_config, split=cfg.split)
    except Exception as exc:  # noqa: BLE001 - offline or unknown dataset: one clear line
        raise ConfigError(
            f"dataset.hub_name: could not load {cfg.hub_name!r} from the Hub ({type(exc).__name__}: {exc}); "
            "offline? use a builtin or local dataset (HARNESS_DATA_DIR)."
        ) from exc
    column = cfg.column or ds.column_names[0]
    if column not in ds.column_names:
        raise ConfigError(f"dataset.column: {column!r} is not in {cfg.hub_name} (columns: {ds.column_names}).")
    return [t for t in ds[column] if isinstance(t, str) and t.strip()]


READERS = {"lines": read_lines, "sts": read_sts_sentences, "beir": read_beir_corpus}


def load_texts(cfg: Any, data_dir: str | None = None) -> list[str]:
    """`cfg.samples` texts, deterministic for a given config; each repeated `cfg.multiply` times."""
    if cfg.source == "builtin":
        texts = builtin_texts(cfg.bucket, cfg.samples, cfg.seed)
    else:
        if cfg.source == "hub":
            pool = read_hub(cfg)
        else:
            path = _local_path(cfg.path, data_dir)
            pool = READERS[cfg.format](path)
        if not pool:
            raise ConfigError(f"dataset.path: {cfg.name} has no texts.")
        rng = random.Random(cfg.seed)
        texts = rng.sample(pool, min(cfg.samples, len(pool)))
    if cfg.multiply > 1:
        texts = [" ".join([t] * cfg.multiply) for t in texts]
    return texts


def as_pairs(texts: list[str]) -> list[tuple[str, str]]:
    """Cross-encoder inputs: each text paired with the next one (same for every backend)."""
    return [(texts[i], texts[(i + 1) % len(texts)]) for i in range(len(texts))]
