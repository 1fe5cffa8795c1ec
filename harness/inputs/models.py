"""Where a model's files are, and what kind of model they hold.

A source is "package:<module>" (a Python package that ships the weights and has
get_model_path()), "standin:<name>" (a shape-faithful model with random weights, built once into
the harness cache: harness.inputs.standins), a local folder, or a Hugging Face Hub id (downloaded once by
the hub's own cache; needs network). Loading always goes through sentence-transformers.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.core.usage import ConfigError
from harness.inputs import packages, standins

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


RANDOM_WEIGHTS_REASON = "random weights: speed only"


def is_local(source: str) -> bool:
    return (
        source.startswith(("package:", standins.PREFIX))
        or not HUB_ID.match(source)
        or Path(source).expanduser().exists()
    )


def resolve(source: str, cache_dir: str | Path | None = None) -> Path:
    """The local folder for a model source; builds stand-ins into `cache_dir` (default: HARNESS_CACHE_DIR,
    else ~/.cache/harness) once; downloads hub ids (users with network)."""
    if source.startswith(standins.PREFIX):
        return standins.ensure(standins.spec_for(source), cache_dir)
    if source.startswith("package:"):
        return packages.model_folder(source.removeprefix("package:"))
    path = Path(source).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ConfigError(
                f"model.source: {source!r} is a file; give the model's folder, package:<module> or a Hub id."
            )
        return path.resolve()
    if not HUB_ID.match(source):
        raise ConfigError(
            f"model.source: {source!r} does not exist; give a model folder, package:<module>, standin:<name> "
            "or a Hugging Face Hub id."
        )
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(source))
    except Exception as exc:  # noqa: BLE001 - any hub failure is one user-facing line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(
            f"model.source: could not fetch {source!r} from the Hugging Face Hub ({first}); "
            "offline? give a model folder or package:<module>."
        ) from None


def detect_kind(folder: Path) -> str:
    """'bi-encoder' or 'cross-encoder', from the files sentence-transformers reads."""
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise ConfigError(
            f"model.source: {str(folder)!r} is not a sentence-transformers model folder (no config.json); "
            "give a folder saved by SentenceTransformer.save() or CrossEncoder.save(), package:<module> or a Hub id."
        )
    config = _read_json(config_file)
    st_config = folder / "config_sentence_transformers.json"
    if st_config.is_file():
        model_type = _read_json(st_config).get("model_type")
        if model_type == "CrossEncoder":
            return "cross-encoder"
        if model_type == "SentenceTransformer":
            return "bi-encoder"
    architectures = config.get("architectures") or []
    if any(a.endswith("ForSequenceClassification") for a in architectures):
        return "cross-encoder"
    return "bi-encoder"


def _read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"model.source: {str(path)!r} is not valid JSON ({exc}); the folder is damaged.") from None
    if not isinstance(value, dict):
        raise ConfigError(f"model.source: {str(path)!r} is not a JSON object; the model folder is damaged.")
    return value


def check_kind(folder: Path, expected: str, name: str) -> None:
    found = detect_kind(folder)
    if found != expected:
        raise ConfigError(
            f"model.kind: {expected!r} does not match model {name!r} at {str(folder)!r}, which is a {found}; "
            f"set model.kind={found} or choose another model."
        )


def accuracy_unsupported_reason(model_cfg: Any) -> str | None:
    """Why accuracy cannot be measured for this model, or None: a model with random weights
    (`weights: random`, the stand-ins) has an accuracy, but it says nothing about any backend."""
    weights = _get(model_cfg, "weights", "trained")
    if weights == "random":
        return RANDOM_WEIGHTS_REASON
    return None


def row_facts(model_cfg: Any, folder: Path | None = None) -> dict[str, Any]:
    """`model_params` and `model_weights` for a result row: how large the model is and whether its
    weights are trained, so charts can plot by size and label stand-ins "speed only".

    `folder` is the resolved model folder when the caller has it (the sweep does); without it the
    count comes from a stand-in's spec or a local source, and is None for a Hub id (never downloaded here).
    """
    source = str(_get(model_cfg, "source", ""))
    weights = _get(model_cfg, "weights", None) or ("random" if source.startswith(standins.PREFIX) else "trained")
    params: int | None = None
    if source.startswith(standins.PREFIX):
        params = standins.parameter_count(standins.spec_for(source))
    else:
        if folder is None and source and is_local(source) and not HUB_ID.match(source):
            try:
                folder = resolve(source)
            except ConfigError:
                folder = None
        if folder is not None:
            params = parameter_count(Path(folder))
    return {"model_params": params, "model_weights": weights}


def parameter_count(folder: Path) -> int | None:
    """Parameters stored in a model folder, read from the safetensors headers (no weights loaded);
    None when the folder has no safetensors files."""
    files = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("*/*.safetensors"))
    if not files:
        return None
    total = 0
    for path in files:
        with open(path, "rb") as f:
            size = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(size))
        for name, tensor in header.items():
            if name != "__metadata__":
                count = 1
                for dim in tensor["shape"]:
                    count *= dim
                total += count
    return total


@dataclass(frozen=True)
class Shape:
    """What a transformer encoder costs per token, from its config.json (no weights loaded)."""

    layers: int
    hidden: int
    intermediate: int
    embedding_params: int  # (vocabulary + positions + token types) x hidden: looked up, no FLOPs
    max_seq_length: int | None = None  # sentence-transformers' limit (sentence_bert_config.json), else positions

    @property
    def non_embedding_params(self) -> int:
        """Attention (Q, K, V, output) and feed-forward weights and biases, layer norms: what every token multiplies."""
        h, i = self.hidden, self.intermediate
        return self.layers * (4 * h * h + 4 * h + 2 * h * i + i + h + 4 * h)

    @property
    def params(self) -> int:
        return self.non_embedding_params + self.embedding_params

    def flops_per_token(self, tokens: float) -> float:
        """Forward FLOPs for one token of a text of `tokens` tokens: 2 per weight, plus attention's scores and
        weighted sum (2 x 2 x tokens x hidden a layer), the term that grows with the text's length."""
        return 2.0 * self.non_embedding_params + 4.0 * self.layers * self.hidden * tokens


def shape(source: str) -> Shape | None:
    """A model's shape from its source, offline and without loading or building it: a stand-in's spec, a local
    folder's or package's config.json, a Hub id's config.json when the Hub cache holds it; None otherwise."""
    if source.startswith(standins.PREFIX):
        spec = standins.SPECS.get(source.removeprefix(standins.PREFIX))
        if spec is None:
            return None
        rows = spec.vocab_size + spec.max_positions + spec.type_vocab_size
        return Shape(spec.layers, spec.hidden, spec.intermediate, rows * spec.hidden, spec.max_seq_length)
    folder: Path | None = None
    try:
        if source.startswith("package:") or Path(source).expanduser().is_dir():
            folder = resolve(source)
        elif HUB_ID.match(source):
            from huggingface_hub import try_to_load_from_cache

            found = try_to_load_from_cache(source, "config.json")
            folder = Path(found).parent if isinstance(found, str) else None
    except (ConfigError, OSError, ValueError):
        return None
    return _folder_shape(folder) if folder is not None else None


def _folder_shape(folder: Path) -> Shape | None:
    try:
        cfg = _read_json(folder / "config.json")
        h, layers = int(cfg["hidden_size"]), int(cfg["num_hidden_layers"])
    except (ConfigError, KeyError, TypeError, ValueError):
        return None
    positions = int(cfg.get("max_position_embeddings") or 512)
    rows = int(cfg.get("vocab_size") or 0) + positions + int(cfg.get("type_vocab_size") or 0)
    try:
        limit = _read_json(folder / "sentence_bert_config.json").get("max_seq_length")
    except ConfigError:
        limit = None
    return Shape(layers, h, int(cfg.get("intermediate_size") or 4 * h), rows * h, int(limit or positions))


def _get(cfg: Any, key: str, default: Any) -> Any:
    if isinstance(cfg, dict):
        return cfg.get(key, default)
    return getattr(cfg, key, default)
