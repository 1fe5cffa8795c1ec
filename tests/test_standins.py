"""Stand-ins: built once into the cache from a spec, loaded offline by sentence-transformers,
the same weights from the same seed; random weights mean no accuracy."""

from __future__ import annotations

import json

import pytest

from harness.config import ConfigError
from harness.inputs import models, standins

# XLM-RoBERTa-shaped and tiny: the layout of bge-m3 (one token type, 250002-row vocabulary) in a second.
TINY = standins.StandinSpec(
    name="tiny-xlmr",
    like="tiny",
    architecture="xlm-roberta",
    layers=2,
    hidden=32,
    heads=2,
    intermediate=64,
    max_positions=514,
    vocab_size=250002,
    type_vocab_size=1,
    layer_norm_eps=1e-5,
    normalize=True,
)
TINY_CE = standins.StandinSpec(
    name="tiny-ce",
    like="tiny",
    architecture="xlm-roberta",
    kind="cross-encoder",
    layers=2,
    hidden=32,
    heads=2,
    intermediate=64,
    max_positions=514,
    type_vocab_size=1,
)


def _weights(folder):
    from safetensors.numpy import load_file

    return load_file(str(folder / "model.safetensors"))


def test_build_cache_hit_and_offline_load(tmp_path):
    from sentence_transformers import SentenceTransformer

    folder = standins.ensure(TINY, tmp_path, isolated=False)
    assert folder.parent == tmp_path / "standins" and (folder / standins.MARKER).exists()
    assert not list(folder.parent.glob(".staging-*")), "the staging folder was renamed, not left behind"
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    assert standins.ensure(TINY, tmp_path, isolated=False) == folder  # cache hit: not rebuilt
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp

    config = json.loads((folder / "config.json").read_text())
    assert (config["model_type"], config["vocab_size"], config["type_vocab_size"]) == ("xlm-roberta", 250002, 1)
    model = SentenceTransformer(str(folder), device="cpu", local_files_only=True)
    assert [type(m).__name__ for m in model] == ["Transformer", "Pooling", "Normalize"]
    assert model[1].pooling_mode == "cls"
    emb = model.encode(["a short text", "and a second, longer one to pad against"])
    assert emb.shape == (2, 32)
    assert abs(float((emb**2).sum(axis=1).min()) - 1) < 1e-5  # normalized
    assert "token_type_ids" not in model.tokenizer.model_input_names  # one token type in XLM-RoBERTa
    assert models.detect_kind(folder) == "bi-encoder"
    assert models.parameter_count(folder) == standins.parameter_count(TINY)


def test_same_seed_same_weights_other_seed_other_weights(tmp_path):
    import dataclasses

    import numpy as np

    a = _weights(standins.ensure(TINY, tmp_path / "a", isolated=False))
    b = _weights(standins.ensure(TINY, tmp_path / "b"))
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    other = dataclasses.replace(TINY, seed=1)
    assert other.key() != TINY.key()
    c = _weights(standins.ensure(other, tmp_path / "a", isolated=False))
    assert not np.array_equal(a["encoder.layer.0.attention.self.query.weight"],
                              c["encoder.layer.0.attention.self.query.weight"])  # fmt: skip


def test_cross_encoder_pairs_with_one_token_type(tmp_path):
    from sentence_transformers import CrossEncoder

    folder = standins.ensure(TINY_CE, tmp_path, isolated=False)
    assert models.detect_kind(folder) == "cross-encoder"
    scores = CrossEncoder(str(folder), device="cpu", local_files_only=True).predict([("a", "b"), ("query", "a doc")])
    assert scores.shape == (2,)


def test_interrupted_build_is_cleaned_and_redone(tmp_path):
    root = tmp_path / "standins"
    stale = root / f".staging-{TINY.key()}-{'0' * 32}"
    stale.mkdir(parents=True)
    half = root / TINY.key()  # a folder without its marker: never trusted
    half.mkdir()
    (half / "junk").write_text("x")
    folder = standins.ensure(TINY, tmp_path, isolated=False)
    assert not stale.exists() and not (folder / "junk").exists() and (folder / standins.MARKER).exists()


def test_resolve_standin_source(tmp_path, monkeypatch):
    monkeypatch.setattr(standins, "SPECS", {**standins.SPECS, TINY.name: TINY})
    assert models.is_local("standin:tiny-xlmr")
    folder = models.resolve("standin:tiny-xlmr", tmp_path)
    assert folder == standins.ensure(TINY, tmp_path, isolated=False)
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path))
    assert models.resolve("standin:tiny-xlmr") == folder  # default: the harness cache
    with pytest.raises(ConfigError, match=r"stand-in 'bge-m4' is not known.*Did you mean 'bge-m3'"):
        models.resolve("standin:bge-m4")


def test_specs_match_the_docs_model_sizes():
    sizes = {name: standins.parameter_count(spec) for name, spec in standins.SPECS.items()}
    assert sizes == {
        "bge-base-en-v1.5": 109_482_240,
        "mxbai-embed-large-v1": 335_141_888,
        "bge-m3": 567_754_752,
        "bge-reranker-base": 278_044_417,
    }


def test_random_weights_mean_no_accuracy():
    assert models.accuracy_unsupported_reason({"weights": "random"}) == "random weights: speed only"
    assert models.accuracy_unsupported_reason({"weights": "trained"}) is None
    assert models.accuracy_unsupported_reason({"source": "package:x"}) is None  # default: trained


def test_row_facts(tiny_models):
    bi, _ = tiny_models
    facts = models.row_facts({"source": "standin:bge-m3", "weights": "random"})
    assert facts == {"model_params": 567_754_752, "model_weights": "random"}
    assert models.row_facts({"source": str(bi)}) == {
        "model_params": models.parameter_count(bi),
        "model_weights": "trained",
    }
    assert models.row_facts({"source": "BAAI/bge-m3"}) == {"model_params": None, "model_weights": "trained"}


def test_model_weights_is_checked(tmp_path, monkeypatch):
    from harness.engine.grid import compose
    from harness.engine.preflight import check_config as validate

    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path))
    cfg = compose(["model=standin-bge-m3"])  # checks the grid: a stand-in is checked, not built
    assert cfg.model.weights == "random"
    assert not (tmp_path / "standins").exists()
    validate(cfg)
    cfg.model.weights = "randm"
    with pytest.raises(ConfigError, match=r"model.weights: 'randm' is not allowed.*Did you mean 'random'"):
        validate(cfg)


def test_standin_kind_is_checked_without_building(tmp_path, monkeypatch):
    from harness.engine.grid import compose

    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path))
    with pytest.raises(ConfigError, match=r"model.kind: 'cross-encoder' does not match .*which is a bi-encoder"):
        compose(["model=standin-bge-m3", "model.kind=cross-encoder"])
    with pytest.raises(ConfigError, match=r"stand-in 'bge-m4' is not known"):
        compose(["model=standin-bge-m3", "model.source=standin:bge-m4"])
    assert not (tmp_path / "standins").exists()


def test_sizes_experiment_composes_offline_without_building(tmp_path, monkeypatch):
    """Every model of +experiment=sizes composes and validates, at its smallest docs batch size;
    checking the grid builds no stand-in (the job does)."""
    from harness.engine.grid import compose
    from harness.engine.preflight import check_config as validate

    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path))
    smallest = {
        "minilm": 32,
        "standin-bge-base-en-v1.5": 16,
        "standin-mxbai-embed-large-v1": 8,
        "standin-bge-m3": 2,
        "standin-bge-reranker-base": 16,
    }
    for model, batch_size in smallest.items():
        cfg = compose(["+experiment=sizes", f"model={model}", "backend=onnx-O4", "dataset=medium"])
        validate(cfg)
        assert list(cfg.batch_sizes) == [batch_size] and cfg.run == "sizes"
        assert cfg.model.weights == ("trained" if model == "minilm" else "random")
    assert not (tmp_path / "standins").exists()


@pytest.mark.parametrize("backend_name", ["onnx", "openvino"])
def test_xlm_roberta_cross_encoder_standin_exports(tmp_path, backend_name):
    """bge-reranker-base's layout (XLM-RoBERTa, one token type) through the harness's ONNX and OpenVINO
    exports: pairs reach the exported graph without token type ids."""
    from omegaconf import OmegaConf

    from harness import backends
    from harness.backends import named

    BACKENDS = named()
    from harness.backends.cache import ExportCache
    from harness.core.hardware import detect

    source = standins.ensure(TINY_CE, tmp_path, isolated=False)
    cache = ExportCache(tmp_path / "cache")
    folder = cache.model_dir("tiny-ce", source)
    backend = backends.create(OmegaConf.structured(BACKENDS[backend_name]), detect(), 1)
    backend.prepare(folder, "cross-encoder", cache, [])
    load_folder, described = backend.load_spec(source, folder, cache)
    model = backend.load("cross-encoder", load_folder, described, trust_remote_code=False)
    assert model.predict([("a query", "a passage about it"), ("q", "p")]).shape == (2,)
