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


# What a local file of each format must look like (named in every error about one).
FORMAT_HELP = {
    "lines": "a text file with one text per line",
    "sts": "an STS-benchmark tab file (genre, file, year, id, score, sentence1, sentence2) or a folder with "
    "sts-test.csv",
    "beir": 'a BEIR folder with corpus.jsonl ({"_id", "title", "text"} per line) or the corpus.jsonl file',
}


def _local_path(path: str, data_dir: str | None, fmt: str = "lines") -> Path:
    p = Path(path).expanduser()
    if not p.is_absolute() and data_dir:
        p = Path(data_dir).expanduser() / p
    if not p.exists():
        where = f"under data_dir {data_dir!r}" if data_dir and not Path(path).expanduser().is_absolute() else "as given"
        raise ConfigError(
            f"dataset.path: {str(p)!r} does not exist ({where}); format {fmt} needs {FORMAT_HELP.get(fmt, 'a file')}."
        )
    return p


def _bad(path: Path, fmt: str, what: str) -> ConfigError:
    return ConfigError(f"dataset.path: {str(path)!r} {what}; format {fmt} needs {FORMAT_HELP[fmt]}.")


def _read_text(path: Path, fmt: str) -> str:
    if path.is_dir():
        raise _bad(path, fmt, "is a folder")
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _bad(path, fmt, f"cannot be read as UTF-8 text ({exc})") from None


def read_lines(path: Path) -> list[str]:
    return [line.strip() for line in _read_text(path, "lines").splitlines() if line.strip()]


def read_sts_sentences(path: Path) -> list[str]:
    """Unique sentences of an original STS-benchmark tab file, in file order."""
    if path.is_dir():
        if not (path / "sts-test.csv").is_file():
            raise _bad(path, "sts", "is a folder without sts-test.csv")
        path = path / "sts-test.csv"
    seen: dict[str, None] = {}
    rows = csv.reader(_read_text(path, "sts").splitlines(), delimiter="\t", quoting=csv.QUOTE_NONE)
    for n, row in enumerate(rows, 1):
        if not row or row == [""]:
            continue
        if len(row) < 7:
            raise _bad(path, "sts", f"line {n} has {len(row)} tab-separated column(s), not 7")
        seen.setdefault(row[5].strip())
        seen.setdefault(row[6].strip())
    seen.pop("", None)
    return list(seen)


def read_beir_corpus(path: Path) -> list[str]:
    corpus = path / "corpus.jsonl" if path.is_dir() else path
    if not corpus.is_file():
        raise _bad(path, "beir", "has no corpus.jsonl")
    texts = []
    for n, line in enumerate(_read_text(corpus, "beir").splitlines(), 1):
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
        except ValueError as exc:
            raise _bad(corpus, "beir", f"line {n} is not JSON ({exc})") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("text"), str):
            raise _bad(corpus, "beir", f"line {n} has no 'text' field")
        text = f"{doc.get('title') or ''} {doc['text']}".strip()
        if text:
            texts.append(text)
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
            path = _local_path(cfg.path, data_dir, cfg.format)
            pool = READERS[cfg.format](path)
            if not pool:
                raise _bad(path, cfg.format, "has no texts")
        if not pool:
            raise ConfigError(
                f"dataset.column: {cfg.column!r} of {cfg.hub_name!r} (split {cfg.split!r}) has no non-empty texts; "
                "choose a text column."
            )
        rng = random.Random(cfg.seed)
        texts = rng.sample(pool, min(cfg.samples, len(pool)))
    if cfg.multiply > 1:
        texts = [" ".join([t] * cfg.multiply) for t in texts]
    return texts


def as_pairs(texts: list[str]) -> list[tuple[str, str]]:
    """Cross-encoder inputs: each text paired with the next one (same for every backend)."""
    return [(texts[i], texts[(i + 1) % len(texts)]) for i in range(len(texts))]
