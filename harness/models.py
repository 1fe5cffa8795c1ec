"""Where a model's files are, and what kind of model they hold.

A source is "package:<module>" (a Python package that ships the weights and has
get_model_path()), a local folder, or a Hugging Face Hub id (downloaded once by the hub's own
cache; needs network). Loading always goes through sentence-transformers.
"""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

from harness.config import ConfigError

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def is_local(source: str) -> bool:
    return source.startswith("package:") or not HUB_ID.match(source) or Path(source).expanduser().exists()


def resolve(source: str) -> Path:
    """The local folder for a model source; downloads hub ids (users with network)."""
    if source.startswith("package:"):
        module_name = source.removeprefix("package:")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ConfigError(
                f"model.source: package {module_name!r} is not installed ({exc}); pip install it or use a path."
            ) from exc
        return Path(module.get_model_path()).resolve()
    path = Path(source).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ConfigError(f"model.source: {source!r} is a file; give the model's folder.")
        return path.resolve()
    if not HUB_ID.match(source):
        raise ConfigError(f"model.source: {source!r} does not exist (not a folder, package:<name> or hub id).")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(source))
    except Exception as exc:  # noqa: BLE001 - any hub failure is one user-facing line
        raise ConfigError(f"model.source: could not fetch {source!r} from the Hugging Face Hub: {exc}") from exc


def detect_kind(folder: Path) -> str:
    """'bi-encoder' or 'cross-encoder', from the files sentence-transformers reads."""
    config_file = folder / "config.json"
    if not config_file.exists():
        raise ConfigError(f"model.source: {folder} is not a sentence-transformers model folder (no config.json).")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ConfigError(f"model.source: {config_file} is not valid JSON ({exc}).") from exc
    st_config = folder / "config_sentence_transformers.json"
    if st_config.exists():
        model_type = json.loads(st_config.read_text(encoding="utf-8")).get("model_type")
        if model_type == "CrossEncoder":
            return "cross-encoder"
        if model_type == "SentenceTransformer":
            return "bi-encoder"
    architectures = config.get("architectures") or []
    if any(a.endswith("ForSequenceClassification") for a in architectures):
        return "cross-encoder"
    return "bi-encoder"


def check_kind(folder: Path, expected: str, name: str) -> None:
    found = detect_kind(folder)
    if found != expected:
        raise ConfigError(
            f"model.kind: model {name!r} at {folder} is a {found}, but model.kind is {expected!r}; "
            f"set model.kind={found} or choose another model."
        )
