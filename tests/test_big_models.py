"""Models over ONNX's 2 GB single-file limit: the bge-m3-shaped stand-in (568M parameters, 2.27 GB
in fp32) exports to ONNX with external data and runs in ONNX Runtime through sentence-transformers;
an export that loses its external weights file fails with the reason instead of entering the cache."""

from __future__ import annotations

import resource
import shutil
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from harness.backends import named as _named
from harness.backends import onnx as onnx_backend
from harness.backends.cache import ExportCache
from harness.core.hardware import detect

BACKENDS = _named()


def _onnx_with_external_data(folder, name="model_O1.onnx"):
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.ones((4, 4), dtype=np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        [weight],
    )
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    onnx.save_model(helper.make_model(graph), str(path), save_as_external_data=True, location=f"{name}.data",
                    size_threshold=0)  # fmt: skip
    return path


def test_missing_external_data_is_found(tmp_path):
    path = _onnx_with_external_data(tmp_path / "onnx")
    assert onnx_backend.missing_external_data(path) == []
    (tmp_path / "onnx" / "model_O1.onnx.data").unlink()
    assert onnx_backend.missing_external_data(path) == ["model_O1.onnx.data"]
    with pytest.raises(RuntimeError) as err:
        onnx_backend.check_external_data(tmp_path, "export_optimized_onnx_model")
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("export_optimized_onnx_model (sentence-transformers ")
    assert "onnx/model_O1.onnx without its external weights file model_O1.onnx.data" in message
    assert "README, 'Models over 2 GB'" in message


def test_an_export_that_loses_its_weights_is_not_cached(tiny_models, tmp_path, monkeypatch):
    """What sentence-transformers' export_optimized_onnx_model does to a > 2 GB model, on a tiny one:
    the .onnx copied, its weights file left behind. The export fails with the reason; nothing is cached."""
    import sentence_transformers

    def loses_weights(model, level, out):
        path = _onnx_with_external_data(tmp_path / "optimum-out", f"model_{level}.onnx")
        (Path(out) / "onnx").mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(out) / "onnx" / path.name)  # the .onnx only, as save_or_push_to_hub_model does

    monkeypatch.setattr(sentence_transformers, "export_optimized_onnx_model", loses_weights)
    bi, _ = tiny_models
    cache = ExportCache(tmp_path / "cache")
    folder = cache.model_dir("tiny", bi)
    backend = onnx_backend.OnnxBackend(OmegaConf.structured(BACKENDS["onnx-O1"]), detect(), 1)
    with pytest.raises(RuntimeError, match="without its external weights file model_O1.onnx.data"):
        backend.prepare(folder, "bi-encoder", cache, [])
    assert backend.needs_export(cache, folder)  # not marked done
    assert not (folder / "onnx" / "model_O1.onnx").exists()
    assert (folder / "onnx" / "model.onnx").exists()  # the base export is fine and kept


@pytest.mark.slow
def test_bge_m3_standin_over_2gb_exports_to_onnx_and_runs(tmp_path):
    """The bge-m3-shaped stand-in through the harness's own ONNX backend: exported with its weights in
    model.onnx_data (the .onnx alone cannot hold 2.27 GB), loaded by sentence-transformers in ONNX
    Runtime, its precision read back from the optimized session graph (dumped with external
    initializers). Then onnx-O1: sentence-transformers' export_optimized_onnx_model either keeps the
    weights file (a fixed release) or the export fails with the reason.

    On a 2-core EPYC: ~1.5 minutes, peak RSS 7.4 GB, ~7 GB of disk under tmp_path (removed after).
    """
    from harness.inputs import models

    cache_dir = tmp_path / "cache"
    start = time.perf_counter()
    try:
        source = models.resolve("standin:bge-m3", cache_dir)
        assert models.parameter_count(source) == 567_754_752
        cache = ExportCache(cache_dir)
        folder = cache.model_dir("standin-bge-m3", source)
        hw = detect()
        backend = onnx_backend.OnnxBackend(OmegaConf.structured(BACKENDS["onnx"]), hw, 2)
        backend.prepare(folder, "bi-encoder", cache, [])
        onnx_dir = folder / "onnx"
        assert (onnx_dir / "model.onnx").stat().st_size < 2**31 < (onnx_dir / "model.onnx_data").stat().st_size
        assert onnx_backend.missing_external_data(onnx_dir / "model.onnx") == []

        load_folder, described = backend.load_spec(source, folder, cache)
        model = backend.load("bi-encoder", load_folder, described, trust_remote_code=False)
        emb = model.encode(["a short text", "a second, somewhat longer text to embed"], batch_size=2)
        assert emb.shape == (2, 1024)
        runtime = backend.runtime(model)
        assert (runtime["precision"], runtime["precision_source"]) == ("fp32", "optimized session graph")
        assert runtime["kernels"] == {"MatMul:fp32": 6 * 24}  # q, k, v, out, up, down per layer
        del model

        o1 = onnx_backend.OnnxBackend(OmegaConf.structured(BACKENDS["onnx-O1"]), hw, 2)
        try:
            o1.prepare(folder, "bi-encoder", cache, [])
        except RuntimeError as exc:  # sentence-transformers 5.7: the weights file is not copied
            assert "model_O1.onnx without its external weights file model_O1.onnx.data" in str(exc)
            assert o1.needs_export(cache, folder)
        else:  # a release that keeps the weights file: then it must load and run
            load_folder, described = o1.load_spec(source, folder, cache)
            model = o1.load("bi-encoder", load_folder, described, trust_remote_code=False)
            assert model.encode(["a text"]).shape == (1, 1024)
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)
        peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        print(f"bge-m3 stand-in > 2 GB ONNX test: {time.perf_counter() - start:.0f}s, peak RSS {peak_gb:.1f} GB")
