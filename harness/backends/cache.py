"""A persistent cache of exported models, laid out as sentence-transformers lays them out.

``<cache>/exports/<model>-<content hash>/<versions hash>/`` is a copy of the model folder; every
export for that model lands in its family's sub-folder (``onnx/``, ``openvino/``: `export_subdir`) under
the file names sentence-transformers uses, so the folder loads directly with
``SentenceTransformer(folder, backend=..., model_kwargs={"file_name": ...})``.

An export is built in a staging folder, moved into place, and only then marked complete
(``.harness/<key>.json``); a file without its marker is never trusted. A file lock per key keeps
two workers from exporting the same thing at once.

The content hash is over the source folder's file names, sizes and modification times (see
`content_key`), not its path: a model retrained in place gets a fresh copy and fresh exports. The
versions hash is over the libraries every registered family names (`harness.backends.libraries`).
"""

from __future__ import annotations

import glob
import json
import logging
import os
import re
import shutil
import statistics
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.backends import export_subdirs, libraries
from harness.core.files import digest, file_lock, library_versions, link_or_copy, write_json

log = logging.getLogger(__name__)


def versions() -> dict[str, str]:
    """Installed versions of the libraries that decide what an export looks like and how it runs."""
    return library_versions(libraries())


def content_key(source_dir: Path) -> str:
    """A hash of what is in `source_dir`: every file's relative path, size and mtime (ns).

    Cheap (no file is read) and it changes whenever a file is rewritten, which is what a retrained
    model does; exports already in the folder (onnx/, openvino/) and our own marks do not count.
    """
    entries = []
    for path in sorted(Path(source_dir).rglob("*")):
        rel = path.relative_to(source_dir)
        if rel.parts[0] in (*export_subdirs(), ".harness", ".git") or not path.is_file():
            continue
        stat = path.stat()
        entries.append((rel.as_posix(), stat.st_size, stat.st_mtime_ns))
    return digest(entries)


class ExportCache:
    def __init__(self, root: Path | str):
        self.root = Path(root).expanduser() / "exports"

    def model_dir(self, model_name: str, source_dir: Path) -> Path:
        """The cached copy of a model folder (created once, atomically), keyed by its content and versions."""
        slug = re.sub(r"[^\w.-]+", "_", model_name)
        folder = self.root / f"{slug}-{content_key(source_dir)}" / digest(versions())
        marker = folder / ".harness" / "base.json"
        if marker.exists():
            return folder
        with file_lock(folder.parent / f".{folder.name}.lock"):
            if marker.exists():
                return folder
            _remove_dead_staging(folder.parent, f"{folder.name}-")
            staging = folder.parent / f".staging-{folder.name}-{uuid.uuid4().hex}"
            shutil.copytree(
                source_dir,
                staging,
                copy_function=link_or_copy,
                ignore=shutil.ignore_patterns(*export_subdirs(), ".harness", ".git"),
            )
            if folder.exists():  # a half-made folder from an interrupted run
                shutil.rmtree(folder)
            os.replace(staging, folder)
            write_json(marker, {"source": str(source_dir), "versions": versions()})
        return folder

    def _markers(self, model_name: str, key: str) -> list[Path]:
        slug = re.sub(r"[^\w.-]+", "_", model_name)
        return sorted(self.root.glob(f"{glob.escape(slug)}-*/{digest(versions())}/.harness/{key}.json"))

    def has_export(self, model_name: str, key: str) -> bool:
        """Whether an export of this key exists for a model of this name (for plans: looks, never creates)."""
        return bool(self._markers(model_name, key))

    def export_seconds(self, key: str) -> float | None:
        """The median time the cached exports of this key took (any model), None if none was timed."""
        times = [seconds for seconds, _ in self.export_times(key)]
        return statistics.median(times) if times else None

    def export_times(self, key: str) -> list[tuple[float, Path]]:
        """Each timed cached export of this key (any model): its seconds and the model folder it was made from."""
        times = []
        for marker in self.root.glob(f"*/*/.harness/{key}.json"):
            try:
                seconds = json.loads(marker.read_text(encoding="utf-8")).get("seconds")
            except (OSError, ValueError):
                continue
            if seconds is not None:
                times.append((float(seconds), marker.parent.parent))
        return times

    def lookup(self, folder: Path, key: str, settings: dict[str, Any]) -> list[str] | None:
        """Files of a complete export with these settings, or None."""
        marker = folder / ".harness" / f"{key}.json"
        if not marker.exists():
            return None
        try:
            record = json.loads(marker.read_text(encoding="utf-8"))
        except ValueError:
            return None
        if record.get("settings") != settings or not all((folder / f).exists() for f in record["files"]):
            return None
        return record["files"]

    def produce(self, folder: Path, key: str, settings: dict[str, Any], export: Callable[[Path], None]) -> list[str]:
        """Run `export(staging)` unless already done; move what it wrote into the cache; mark it done."""
        with file_lock(folder / ".harness" / f"{key}.lock"):
            files = self.lookup(folder, key, settings)
            if files is not None:
                return files
            _remove_dead_staging(folder.parent, f"{folder.name}-{key}-")
            staging = folder.parent / f".staging-{folder.name}-{key}-{uuid.uuid4().hex}"
            try:
                log.info("exporting %s into %s", key, folder)
                start = time.monotonic()
                export(staging)
                seconds = round(time.monotonic() - start, 1)
                files = []
                for sub in export_subdirs():
                    for produced in sorted((staging / sub).glob("*")) if (staging / sub).exists() else []:
                        target = folder / sub / produced.name
                        target.parent.mkdir(parents=True, exist_ok=True)
                        os.replace(produced, target)
                        files.append(f"{sub}/{produced.name}")
                if not files:
                    raise RuntimeError(f"export {key} wrote no files")
                record = {"settings": settings, "files": files, "seconds": seconds}
                write_json(folder / ".harness" / f"{key}.json", record)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
            return files


def _remove_dead_staging(parent: Path, prefix: str) -> None:
    """Staging folders of this lock's own kind left by a killed export (a timed-out cell is
    SIGKILLed, so its `finally` never ran). Called under the lock, so none of them is in use; the
    prefix names the versions folder (and export key), whose lock guards exactly those names."""
    pattern = re.compile(rf"\.staging-{re.escape(prefix)}[0-9a-f]{{32}}")
    for stale in parent.glob(".staging-*") if parent.is_dir() else []:
        if pattern.fullmatch(stale.name):
            log.info("removing %s, left by an interrupted export", stale)
            shutil.rmtree(stale, ignore_errors=True)
