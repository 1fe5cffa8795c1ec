"""The export cache: complete markers, staging left by a kill, keyed by the model folder's content."""

from __future__ import annotations

import pytest

from harness.backends.cache import ExportCache


def test_export_cache_marks_complete_last(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "config.json").write_text("{}")
    (src / "onnx").mkdir()  # pre-exported files of someone else are not copied
    (src / "onnx" / "model.onnx").write_text("theirs")
    cache = ExportCache(tmp_path / "cache")
    folder = cache.model_dir("m", src)
    assert (folder / "config.json").exists() and not (folder / "onnx").exists()

    def crash(staging):
        (staging / "onnx").mkdir(parents=True)
        (staging / "onnx" / "model_O3.onnx").write_text("half")
        raise RuntimeError("killed mid-export")

    with pytest.raises(RuntimeError):
        cache.produce(folder, "onnx-O3", {"o": 3}, crash)
    assert cache.lookup(folder, "onnx-O3", {"o": 3}) is None
    assert not (folder / "onnx" / "model_O3.onnx").exists()

    calls = []

    def export(staging):
        calls.append(1)
        (staging / "onnx").mkdir(parents=True)
        (staging / "onnx" / "model_O3.onnx").write_text("ok")

    assert cache.produce(folder, "onnx-O3", {"o": 3}, export) == ["onnx/model_O3.onnx"]
    assert cache.produce(folder, "onnx-O3", {"o": 3}, export) == ["onnx/model_O3.onnx"]
    assert len(calls) == 1  # the second call re-exports nothing
    assert cache.lookup(folder, "onnx-O3", {"o": 4}) is None  # other settings: not the same export
    (folder / "onnx" / "model_O3.onnx").unlink()  # a marker whose file vanished is not trusted
    assert cache.lookup(folder, "onnx-O3", {"o": 3}) is None


def test_export_cache_removes_staging_left_by_a_killed_export(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "config.json").write_text("{}")
    cache = ExportCache(tmp_path / "cache")
    folder = cache.model_dir("m", src)
    parent = folder.parent
    dead = parent / f".staging-{folder.name}-onnx-O3-{'a' * 32}"  # a SIGKILLed export of the same key
    other_key = parent / f".staging-{folder.name}-onnx-O3x-{'b' * 32}"  # another key: its own lock
    other_versions = parent / f".staging-0ther-onnx-O3-{'c' * 32}"  # another install's versions folder
    for d in (dead, other_key, other_versions):
        d.mkdir()

    def export(staging):
        (staging / "onnx").mkdir(parents=True)
        (staging / "onnx" / "model_O3.onnx").write_text("ok")

    cache.produce(folder, "onnx-O3", {"o": 3}, export)
    assert not dead.exists()
    assert other_key.exists() and other_versions.exists()
    assert not list(parent.glob(f".staging-{folder.name}-onnx-O3-*"))  # its own staging is gone too


def test_export_cache_follows_the_model_folders_content(tmp_path):
    """Retrain a model in place and its exports are made again, not taken from the stale cache."""
    import os

    src = tmp_path / "my-model"
    (src / "1_Pooling").mkdir(parents=True)
    (src / "config.json").write_text("{}")
    (src / "model.safetensors").write_bytes(b"weights-v1")
    (src / "1_Pooling" / "config.json").write_text("{}")
    cache = ExportCache(tmp_path / "cache")
    before = cache.model_dir("m", src)
    assert cache.model_dir("m", src) == before  # unchanged content: the same cached folder
    (src / "model.safetensors").write_bytes(b"weights-v2")  # same size, rewritten
    stat = (src / "model.safetensors").stat()
    os.utime(src / "model.safetensors", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    after = cache.model_dir("m", src)
    assert after != before
    assert (after / "model.safetensors").read_bytes() == b"weights-v2"
