"""Checks that need a composed config, run before a job does any work: a mistake costs one line, not a sweep.

`harness sweep` runs them for every variant of the grid before Hydra starts (harness.engine.grid), and
every job runs them again (a launcher on another host sees its own files). Each check names the
field, the value given and what is allowed. Hub sources are not fetched here: they need the
network, and a job reports what it could not download.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from harness import backends, config
from harness.config import DEVICES
from harness.core.usage import ConfigError
from harness.inputs import models, standins, texts

# What each accuracy task reads from a local folder under data_dir.
ACCURACY_LAYOUT = {
    "sts": "an STS-benchmark folder with sts-test.csv (or the .csv file itself)",
    "retrieval": "a BEIR folder with corpus.jsonl, queries.jsonl and qrels/test.tsv",
}


def check_config(cfg: Any) -> None:
    """The composed config's own fields (`config.validate`), then its backend's (each family checks the
    fields it owns)."""
    config.validate(cfg)
    backends.check(cfg.backend)


def preflight(cfg: Any) -> None:
    """Raise ConfigError (field, value given, what is allowed) for input that cannot work."""
    check_config(cfg)
    check_writable("results_dir", cfg.results_dir, Path(cfg.results_dir).expanduser() / cfg.run)
    check_writable("cache_dir", cfg.cache_dir, Path(cfg.cache_dir).expanduser())
    check_lock_dir(os.environ.get("HARNESS_LOCK_DIR"))
    check_model(_key(cfg.model))
    if cfg.speed:
        check_dataset(_key(cfg.dataset), cfg.data_dir, cfg.model.kind)
    if cfg.accuracy.enabled and cfg.data_dir:
        for task in cfg.accuracy.tasks:
            check_accuracy_data(task, str(cfg.accuracy[task]["local"]), cfg.data_dir)


def check_device(cfg: Any) -> None:
    """An explicit `backend.device=cuda` for a single run on a machine without a CUDA GPU.

    Only for requests made on the command line: inside a multirun grid (e.g. +experiment=docs-gpu)
    such cells become `unsupported` rows instead, so one grid can cover machines of every kind.
    """
    if cfg.backend.device != "cuda":
        return
    from harness.core.hardware import detect_gpu

    if detect_gpu() is None:
        allowed = ", ".join(d for d in DEVICES if d != "cuda")
        raise ConfigError(
            f"backend.device: 'cuda' is not available: this machine has no CUDA GPU; choose one of {allowed}. "
            "(In a multirun, cuda cells on machines without a GPU are recorded as unsupported instead.)"
        )


def _key(node: Any) -> str:
    """A config section as a hashable key, so each distinct model/dataset is checked once per process."""
    return json.dumps(OmegaConf.to_container(node, resolve=True), sort_keys=True)


def check_writable(field: str, value: str, target: Path) -> None:
    """A folder the sweep writes into can be created and written: else every cell would run for nothing."""
    existing = target
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"{field}: {value!r} cannot be created: {str(existing)!r} is a file; give a writable folder.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{field}: {value!r} is not writable ({str(existing)!r}); give a writable folder.")


def check_lock_dir(lock_dir: str | None) -> None:
    """HARNESS_LOCK_DIR holds the per-machine timing lock (`isolation.machine_lock`): it must be a folder."""
    if lock_dir is None:
        return
    path = Path(lock_dir).expanduser()
    if not path.is_dir() or not os.access(path, os.W_OK | os.X_OK):
        why = "is not a writable folder" if path.exists() else "does not exist"
        raise ConfigError(
            f"HARNESS_LOCK_DIR: {lock_dir!r} {why}; give a writable folder local to this machine "
            "(or unset it for the temp dir)."
        )


@lru_cache(maxsize=64)
def check_model(model_json: str) -> None:
    """A local model source exists, is a sentence-transformers folder and holds the kind configured."""
    model = json.loads(model_json)
    source = model["source"]
    if not models.is_local(source):
        return  # a Hub id: fetched (and its kind checked) by the job
    if source.startswith(standins.PREFIX):  # checked from its spec: built (minutes, GBs) by the job
        found = standins.spec_for(source).kind
        if found != model["kind"]:
            raise ConfigError(
                f"model.kind: {model['kind']!r} does not match model {model['name']!r} ({source}), which is a "
                f"{found}; set model.kind={found} or choose another model."
            )
        return
    folder = models.resolve(source)
    models.check_kind(folder, model["kind"], model["name"])


@lru_cache(maxsize=64)
def check_dataset(dataset_json: str, data_dir: str | None, model_kind: str = "bi-encoder") -> None:
    """A builtin or local dataset yields texts (local: the file exists, has the columns, has rows);
    a user's file of text<TAB>text pairs for a cross-encoder has one pair on every line measured."""
    dataset = OmegaConf.create(json.loads(dataset_json))
    if dataset.source == "hub":
        return  # needs the network: the job reports a dataset it could not load
    loaded = texts.load_texts(dataset, data_dir)
    if model_kind == "cross-encoder" and dataset.format == "file":
        texts.check_pairs(loaded, dataset.path)


@lru_cache(maxsize=64)
def check_accuracy_data(task: str, local: str, data_dir: str) -> None:
    """With data_dir set, accuracy reads local folders: they must be complete, not fail cell by cell."""
    from harness.evaluation.data import load_beir_local, load_sts_local

    path = Path(data_dir).expanduser() / local
    field = f"accuracy.{task}.local"
    if not path.exists():
        raise ConfigError(
            f"{field}: {local!r} does not exist under data_dir {data_dir!r} ({path}); "
            f"it must be {ACCURACY_LAYOUT[task]}, or unset data_dir to use the Hub."
        )
    try:
        load_sts_local(path) if task == "sts" else load_beir_local(path)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"{field}: {local!r} under data_dir {data_dir!r} is not usable ({exc}); it must be {ACCURACY_LAYOUT[task]}."
        ) from None
