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

from harness.core.usage import ConfigError, did_you_mean
from harness.inputs import datafiles

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
    "file": "a .txt file with one text per line (text<TAB>text for cross-encoder pairs), or a .jsonl or .csv "
    "file with dataset.column= naming the text column",
    "lines": "a text file with one text per line",
    "sts": "an STS-benchmark tab file (genre, file, year, id, score, sentence1, sentence2) or a folder with "
    "sts-test.csv",
    "beir": 'a BEIR folder with corpus.jsonl ({"_id", "title", "text"} per line) or the corpus.jsonl file',
}


def _local_path(path: str, data_dir: str | None, fmt: str = "lines") -> Path:
    p = Path(path).expanduser()
    if fmt == "file":  # a user's own file: relative to where the command runs, not to data_dir
        data_dir = None
    if not p.is_absolute() and data_dir:
        p = Path(data_dir).expanduser() / p
    if not p.exists():
        where = f"under data_dir {data_dir!r}" if data_dir and not Path(path).expanduser().is_absolute() else "as given"
        raise ConfigError(
            f"dataset.path: {str(p)!r} does not exist ({where}); format {fmt} needs {FORMAT_HELP.get(fmt, 'a file')}."
        )
    check_regular(p, "dataset.path")
    return p


MAX_TEXT_FILE_BYTES = 2 * 2**30  # a texts file larger than this is not a benchmark's texts (and would not fit)


def check_regular(path: Path, field: str) -> None:
    """A file of texts is a regular file of a sane size: a FIFO would block the sweep forever and /dev/zero
    would grow without bound, so both are refused before anything reads them."""
    if path.is_dir() or not path.exists():
        return
    if not path.is_file():
        raise ConfigError(
            f"{field}: {str(path)!r} is not a regular file (a pipe, a device or a socket); give a file of texts."
        )
    size = path.stat().st_size
    if size > MAX_TEXT_FILE_BYTES:
        raise ConfigError(f"{field}: {str(path)!r} is {size / 2**30:.1f} GiB; a file of texts must be under "
                          f"{MAX_TEXT_FILE_BYTES / 2**30:.0f} GiB (sample it first).")  # fmt: skip


def _bad(path: Path, fmt: str, what: str) -> ConfigError:
    return ConfigError(f"dataset.path: {str(path)!r} {what}; format {fmt} needs {FORMAT_HELP[fmt]}.")


def _read_text(path: Path, fmt: str) -> str:
    if path.is_dir():
        raise _bad(path, fmt, "is a folder")
    return _parsed(fmt, datafiles.read_text, path)


def read_lines(path: Path) -> list[str]:
    return [line.strip() for line in _read_text(path, "lines").splitlines() if line.strip()]


def read_sts_sentences(path: Path) -> list[str]:
    """Unique sentences of an original STS-benchmark tab file (or a folder with sts-test.csv), in file order."""
    if path.is_dir() and not (path / "sts-test.csv").is_file():
        raise _bad(path, "sts", "is a folder without sts-test.csv")
    sentences1, sentences2, _ = _parsed("sts", datafiles.read_sts, datafiles.sts_file(path))
    seen = dict.fromkeys(s for pair in zip(sentences1, sentences2, strict=True) for s in pair)
    seen.pop("", None)
    return list(seen)


def read_beir_corpus(path: Path) -> list[str]:
    corpus = path / "corpus.jsonl" if path.is_dir() else path
    if not corpus.is_file():
        raise _bad(path, "beir", "has no corpus.jsonl")
    return [text for text in _parsed("beir", datafiles.read_corpus, corpus).values() if text]


def _parsed(fmt: str, read: Any, path: Path) -> Any:
    """`read(path)` with a mistake in the file said as a mistake in dataset.path."""
    try:
        return read(path)
    except datafiles.DataFileError as exc:
        raise _bad(exc.path, fmt, exc.detail) from None


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

# A user's own texts (format "file", conf/dataset/file.yaml): the extension says how to read them.
FILE_SUFFIXES = (".txt", ".jsonl", ".csv")
# A cross-encoder input pair travels as one string "a<TAB>b" (as it stood on its line), so every
# backend of a sweep gets the same list of strings; `as_pairs` splits it back.
PAIR_SEP = "\t"


def read_file(
    path: Path, column: str | None, path_field: str = "dataset.path", column_field: str = "dataset.column"
) -> list[str]:
    """The texts of a user's file, in file order: .txt one per line (a<TAB>b lines stay whole: pairs),
    .jsonl / .csv the `column` of each record. Mistakes name the field, the value and what is allowed."""
    allowed = ".txt (one text per line; text<TAB>text for cross-encoder pairs), .jsonl or .csv (with a column)"
    if path.suffix.lower() not in FILE_SUFFIXES:
        raise ConfigError(f"{path_field}: {str(path)!r} has extension {path.suffix or '(none)'!r}; allowed: {allowed}.")
    if path.is_dir():
        raise ConfigError(f"{path_field}: {str(path)!r} is a folder; give a file: {allowed}.")
    check_regular(path, path_field)
    try:
        content = path.read_text(encoding="utf-8-sig")  # -sig: a spreadsheet's byte-order mark is not text
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path_field}: {str(path)!r} cannot be read as UTF-8 text ({exc}).") from None
    suffix = path.suffix.lower()
    if suffix == ".txt":
        if column is not None:
            raise ConfigError(
                f"{column_field}: {column!r} is not allowed for a .txt file (one text per line); leave it unset."
            )
        texts = [line.strip() for line in content.splitlines() if line.strip()]
    else:
        records = _jsonl_records(content, path, path_field) if suffix == ".jsonl" else _csv_records(content)
        texts = _column(records, column, path, column_field) if records else []
    if not texts:
        raise ConfigError(f"{path_field}: {str(path)!r} has no texts; allowed: {allowed}.")
    return texts


def _jsonl_records(content: str, path: Path, path_field: str) -> list[tuple[int, dict[str, Any]]]:
    records = []
    for n, line in enumerate(content.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise ConfigError(
                f"{path_field}: {str(path)!r} line {n} is not JSON ({exc}); a .jsonl file needs one JSON object "
                "per line."
            ) from None
        if not isinstance(record, dict):
            raise ConfigError(
                f"{path_field}: {str(path)!r} line {n} is a JSON {type(record).__name__}, not an object; a .jsonl "
                'file needs one JSON object per line, e.g. {"text": "..."}.'
            )
        records.append((n, record))
    return records


def _csv_records(content: str) -> list[tuple[int, dict[str, Any]]]:
    reader = csv.DictReader(content.splitlines())
    return [(reader.line_num, row) for row in reader]


def _column(records: list[tuple[int, dict[str, Any]]], column: str | None, path: Path, field: str) -> list[str]:
    """The non-empty strings of `column` (unset: "text", if there is one); it must be in every record."""
    columns = list(dict.fromkeys(k for _, r in records for k in r if k is not None))
    if column is None and "text" in columns:
        column = "text"
    if column is None or column not in columns:
        given = (
            f"not set, and {str(path)!r} has no 'text' column"
            if column is None
            else f"{column!r} is not a column of {str(path)!r}"
        )
        raise ConfigError(
            f"{field}: {given}; choose one of {', '.join(columns) or '(no columns found)'}."
            + (did_you_mean(column, columns) if column is not None else "")
        )
    texts = []
    for n, record in records:
        if column not in record:
            raise ConfigError(f"{field}: {column!r} is missing on line {n} of {str(path)!r}; every record needs it.")
        value = record[column]
        if isinstance(value, str) and value.strip():
            texts.append(value.strip())
        elif value is not None and not isinstance(value, str):
            raise ConfigError(
                f"{field}: {column!r} on line {n} of {str(path)!r} is a {type(value).__name__}, not a text; "
                "choose a column of texts."
            )
    return texts


def mean_chars(path: str, column: str | None = None, field: str = "--texts") -> float:
    """Mean characters per text of a user's file, read as `dataset=file` reads it (a pair line counts
    whole, as a sweep's rows count it): what `harness recommend --texts` compares datasets by."""
    p = Path(path).expanduser()
    if not p.exists():
        raise ConfigError(
            f"{field}: {path!r} does not exist; give a .txt file (one text per line), or a .jsonl / .csv file "
            f"with {field}-column."
        )
    texts = read_file(p, column, path_field=field, column_field=f"{field}-column")
    return sum(len(t) for t in texts) / len(texts)


def load_texts(cfg: Any, data_dir: str | None = None) -> list[str]:
    """`cfg.samples` texts, deterministic for a given config; each repeated `cfg.multiply` times."""
    if cfg.source == "builtin":
        texts = builtin_texts(cfg.bucket, cfg.samples, cfg.seed)
    else:
        if cfg.source == "hub":
            pool = read_hub(cfg)
        else:
            path = _local_path(cfg.path, data_dir, cfg.format)
            pool = read_file(path, cfg.column) if cfg.format == "file" else READERS[cfg.format](path)
            if not pool:
                raise _bad(path, cfg.format, "has no texts")
        if not pool:
            raise ConfigError(
                f"dataset.column: {cfg.column!r} of {cfg.hub_name!r} (split {cfg.split!r}) has no non-empty texts; "
                "choose a text column."
            )
        rng = random.Random(cfg.seed)
        texts = rng.sample(pool, min(cfg.samples, len(pool)))
    if cfg.multiply > 1:  # a pair repeats each side, and stays one pair
        texts = [PAIR_SEP.join(" ".join([side] * cfg.multiply) for side in t.split(PAIR_SEP, 1)) for t in texts]
    return texts


AGREEMENT_SEED = 2  # not the timed texts' seed (0 by default), nor the int8 exports' calibration texts' (1)
BUCKET_CHARS = (("short", 150), ("medium", 2000))  # a dataset's bucket by mean characters; longer: long


def agreement_texts(dataset: Any, texts: list[str], n: int, minimum: int) -> tuple[list[str], str]:
    """The texts of the label-free task metric, and what they are: the dataset's own when it has at least
    `minimum` distinct ones (a user's file is their own task), else `n` built-in texts of its bucket (its
    mean length), drawn with their own seed. The timed sets (64-256 texts) are too few to rank."""
    if len(set(texts)) >= minimum:
        return texts, f"the dataset's {len(texts)} texts"
    bucket = dataset.get("bucket") if dataset.get("source") == "builtin" else None
    if bucket is None:
        chars = sum(map(len, texts)) / max(len(texts), 1)
        bucket = next((name for name, limit in BUCKET_CHARS if chars < limit), "long")
    return builtin_texts(bucket, n, AGREEMENT_SEED), f"{n} built-in {bucket} texts (seed {AGREEMENT_SEED})"


def as_pairs(texts: list[str]) -> list[tuple[str, str]]:
    """Cross-encoder inputs (the same for every backend): the file's own pairs when every text is a
    "a<TAB>b" line, else each text paired with the next one."""
    if texts and all(PAIR_SEP in t for t in texts):
        return [_split_pair(t) for t in texts]
    return [(texts[i], texts[(i + 1) % len(texts)]) for i in range(len(texts))]


def check_pairs(texts: list[str], path: str, field: str = "dataset.path") -> None:
    """A cross-encoder's file of pairs: every line "a<TAB>b", both sides non-empty. A file with no tab
    at all is a file of texts (paired with their neighbours) and passes; a mix would pair wrongly."""
    if not any(PAIR_SEP in t for t in texts):
        return
    for text in texts:
        parts = text.split(PAIR_SEP)
        if len(parts) != 2 or not all(p.strip() for p in parts):
            raise ConfigError(
                f"{field}: {path!r} has a line that is not one pair ({text[:40]!r}): a cross-encoder's file of "
                "pairs needs text<TAB>text on every line (one tab, both sides non-empty); a file of texts has no tabs."
            )


def _split_pair(text: str) -> tuple[str, str]:
    a, b = text.split(PAIR_SEP, 1)
    return a.strip(), b.strip()
