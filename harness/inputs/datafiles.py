"""STS-benchmark and BEIR files, parsed once: for the texts a speed cell encodes (`harness.inputs.texts`) and
for the sets accuracy is measured on (`harness.evaluation.data`).

Every mistake is a `DataFileError` naming the file, the line and what is wrong, in one line; each
caller says it in its own terms (a config field for the texts, the file for an evaluation set).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

STS_MAX_SCORE = 5.0
# Original STS-benchmark layout; rows may carry extra licence columns after these.
STS_COLUMNS = ("genre", "file", "year", "id", "score", "sentence1", "sentence2")


class DataFileError(ValueError):
    """What is wrong with a data file, and where: `path`, `line` (None: the whole file) and `what`."""

    def __init__(self, path: Path | str, what: str, line: int | None = None):
        self.path, self.what, self.line = Path(path), what, line
        super().__init__(f"{path} {self.detail}")

    @property
    def detail(self) -> str:
        """The mistake without the file's name: "line 3 has 2 tab-separated column(s), ..."."""
        return f"line {self.line} {self.what}" if self.line else self.what


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataFileError(path, f"cannot be read as UTF-8 text ({exc})") from None


def sts_file(path_or_dir: str | Path, split: str = "test") -> Path:
    """The STS file itself, or `sts-<split>.csv` in a folder."""
    path = Path(path_or_dir)
    if path.is_dir():
        path = path / f"sts-{split}.csv"
    if not path.is_file():
        raise DataFileError(path, "does not exist")
    return path


def read_sts(path: Path) -> tuple[list[str], list[str], list[float]]:
    """The pairs of an original tab-separated STS-benchmark file and their gold score in 0..1 (the
    original 0-5 divided by 5). The files are not quoted (sentences contain bare quotes): QUOTE_NONE."""
    return parse_sts_rows(csv.reader(read_text(path).splitlines(), delimiter="\t", quoting=csv.QUOTE_NONE), path)


def parse_sts_rows(rows: Iterable[list[str]], path: Path | str) -> tuple[list[str], list[str], list[float]]:
    sentences1: list[str] = []
    sentences2: list[str] = []
    scores: list[float] = []
    for lineno, row in enumerate(rows, start=1):
        if not row or row == [""]:
            continue
        if len(row) < len(STS_COLUMNS):
            raise DataFileError(
                path,
                f"has {len(row)} tab-separated column(s), expected at least {len(STS_COLUMNS)} "
                f"({', '.join(STS_COLUMNS)})",
                lineno,
            )
        try:
            score = float(row[4])
        except ValueError:
            raise DataFileError(path, f"has a score column that is not a number: {row[4]!r}", lineno) from None
        if not 0.0 <= score <= STS_MAX_SCORE:
            raise DataFileError(path, f"has score {score}, outside 0-5", lineno)
        sentences1.append(row[5].strip())
        sentences2.append(row[6].strip())
        scores.append(score / STS_MAX_SCORE)
    if not scores:
        raise DataFileError(path, "has no rows")
    return sentences1, sentences2, scores


def require_columns(columns: Iterable[str], required: Iterable[str], source: str) -> None:
    missing = [c for c in required if c not in set(columns)]
    if missing:
        raise ValueError(f"{source} is missing column(s) {', '.join(missing)}")


def read_jsonl(path: Path, required: tuple[str, ...]) -> list[dict[str, Any]]:
    """The records of a JSON-lines file, each an object with the `required` fields."""
    records = []
    for lineno, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataFileError(path, f"is not valid JSON: {e.msg}", lineno) from None
        if not isinstance(record, dict):
            raise DataFileError(path, f"is a JSON {type(record).__name__}, not an object", lineno)
        missing = [c for c in required if c not in record]
        if missing:
            raise DataFileError(path, f"is missing column(s) {', '.join(missing)}", lineno)
        records.append(record)
    if not records:
        raise DataFileError(path, "has no rows")
    return records


def doc_text(record: Mapping[str, Any]) -> str:
    """BEIR convention: the title, when there is one, is prepended to the text."""
    title = str(record.get("title") or "").strip()
    text = str(record.get("text") or "").strip()
    return f"{title} {text}".strip()


def read_corpus(path: Path) -> dict[str, str]:
    """A BEIR corpus.jsonl: document id -> title and text."""
    return {str(r["_id"]): doc_text(r) for r in read_jsonl(path, ("_id", "text"))}


def read_queries(path: Path) -> dict[str, str]:
    """A BEIR queries.jsonl: query id -> text."""
    return {str(r["_id"]): str(r["text"]).strip() for r in read_jsonl(path, ("_id", "text"))}


def read_qrels(path: Path) -> list[tuple[str, str, int]]:
    """A BEIR qrels/<split>.tsv (header query-id, corpus-id, score): (query id, document id, grade)."""
    rows = [r for r in csv.reader(read_text(path).splitlines(), delimiter="\t", quoting=csv.QUOTE_NONE) if r]
    if not rows:
        raise DataFileError(path, "has no rows")
    header, body = rows[0], rows[1:]
    require_columns(header, ("query-id", "corpus-id", "score"), f"{path} header")
    qi, ci, si = (header.index(c) for c in ("query-id", "corpus-id", "score"))
    triples = []
    for lineno, row in enumerate(body, start=2):
        try:
            triples.append((row[qi], row[ci], int(float(row[si]))))
        except (IndexError, ValueError):
            raise DataFileError(path, f"is malformed: {row!r}", lineno) from None
    if not triples:
        raise DataFileError(path, "has no rows")
    return triples
