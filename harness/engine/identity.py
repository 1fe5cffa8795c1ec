"""What a row measured, beyond the names it carries: the content of its model and of its texts.

Names collide: `dataset=file` is always called `file`, two model folders can share `model.name`, and a
change to `dataset.samples`, `seed`, `multiply` or `model.max_seq_length` keeps both names. Cell ids digest
the configs, so such rows never overwrite each other; but ratios are paired and groups labelled by what
the rows *are*, so every row also carries

* `model_key`: the model's config as it names cells, and the content of a local folder (file names,
  sizes and modification times: `backends.cache.content_key`, no file read, so a 2 GB model costs a
  directory listing);
* `dataset_key`: the dataset's config, a digest of the texts themselves and the measure settings that
  change what is timed (order by length, warm-up), or the evaluation set's source for accuracy rows;
* `dataset_source`: where the texts came from (a file's path, a Hub id, a built-in bucket), to label them.

The library versions are in every row already (`versions`); `store.analysis` digests them when pairing.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from harness.backends.cache import content_key
from harness.core.files import digest
from harness.core.usage import ConfigError
from harness.engine.cells import accuracy_source, model_identity
from harness.inputs import models, standins


@functools.lru_cache(maxsize=32)
def _content(source: str, cache_dir: str | None) -> str | None:
    """A local model folder's content key; None for a Hub id or a stand-in (its spec is its content)."""
    if source.startswith(standins.PREFIX) or not models.is_local(source):
        return None
    try:
        return content_key(models.resolve(source, cache_dir))
    except ConfigError:
        return None


def model_key(cfg: DictConfig) -> str:
    return digest([model_identity(cfg), _content(str(cfg.model.source), cfg.cache_dir)])


def dataset_key(cfg: DictConfig, texts: list[str] | None) -> str:
    """The texts as timed: the dataset's config, their content, and the settings that change the workload."""
    workload = {
        "dataset": OmegaConf.to_container(cfg.dataset, resolve=True),
        "sort_by_length": cfg.measure.sort_by_length,
        "warmup_batches": cfg.measure.warmup_batches,
    }
    return digest([workload, digest(texts) if texts is not None else None])


def dataset_source(cfg: DictConfig) -> str:
    d = cfg.dataset
    return str(d.path or d.hub_name or d.bucket or d.name)


def accuracy_identity(cfg: DictConfig, task: str) -> dict[str, Any]:
    """An accuracy row's evaluation set: its source (a local path or a Hub name) and limits."""
    try:
        source = accuracy_source(cfg, task)
    except ConfigError:
        return {"dataset_key": None, "dataset_source": None}
    where = source.get("path") or source.get("hub")
    return {"dataset_key": digest(source), "dataset_source": str(Path(where)) if source.get("path") else where}
