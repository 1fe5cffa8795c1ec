"""The bodies of isolated work units (run by harness.cell in a spawned process).

Each takes a plain, JSON-able spec and returns plain fields for a result row.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import OmegaConf

from harness import backends, measure
from harness.exports import ExportCache
from harness.hardware import detect
from harness.texts import as_pairs, builtin_texts, load_texts


def _backend(spec: dict[str, Any]) -> Any:
    return backends.create(OmegaConf.create(spec["backend"]), detect(), spec["threads"])


def export(spec: dict[str, Any]) -> dict[str, Any]:
    """Export the backend's model into the cache (calibrating on our own medium-length texts)."""
    backend = _backend(spec)
    calibration = builtin_texts("medium", 300, seed=1) + builtin_texts("short", 300, seed=1)
    start = time.perf_counter()
    backend.prepare(Path(spec["export_dir"]), spec["model"]["kind"], ExportCache(spec["cache_dir"]), calibration)
    return {"export_s": time.perf_counter() - start}


def _load(spec: dict[str, Any]) -> tuple[Any, Any, dict[str, Any]]:
    backend = _backend(spec)
    folder, described = backend.load_spec(
        Path(spec["source_dir"]), Path(spec["export_dir"]), ExportCache(spec["cache_dir"])
    )
    model = backend.load(spec["model"]["kind"], folder, described, spec["model"]["trust_remote_code"])
    limit = spec["model"].get("max_seq_length")
    if limit:
        if spec["model"]["kind"] == "bi-encoder":
            model.max_seq_length = limit
        else:
            model.max_length = limit
    settings = {"st_backend": backend.st_backend, "model_path": str(folder), "model_kwargs": described}
    return backend, model, settings


def _max_len(model: Any, kind: str) -> int:
    return int(model.max_seq_length if kind == "bi-encoder" else model.max_length)


def text_stats(model: Any, kind: str, texts: list[str], inputs: list[Any]) -> dict[str, Any]:
    chars = np.array([len(t) for t in texts])
    if kind == "bi-encoder":
        ids = model.tokenizer(texts, truncation=False)["input_ids"]
    else:
        ids = model.tokenizer([a for a, _ in inputs], [b for _, b in inputs], truncation=False)["input_ids"]
    tokens = np.array([len(x) for x in ids])
    limit = _max_len(model, kind)
    return {
        "n_texts": len(inputs),
        "text_chars_mean": float(chars.mean()),
        "text_chars_p50": float(np.median(chars)),
        "text_chars_max": int(chars.max()),
        "text_tokens_mean": float(tokens.mean()),
        "truncated_share": float((tokens > limit).mean()),
        "max_seq_length": limit,
    }


def _workload(spec: dict[str, Any], model: Any) -> tuple[list[str], list[Any], list[list[Any]], Any]:
    """Texts, model inputs, batches and the encode/predict call: identical for every backend."""
    kind = spec["model"]["kind"]
    texts = load_texts(OmegaConf.create(spec["dataset"]), spec["data_dir"])
    inputs: list[Any] = texts if kind == "bi-encoder" else as_pairs(texts)
    if spec["measure"]["sort_by_length"]:  # as encode() orders a corpus: longest first, so batches pad little
        inputs = sorted(inputs, key=lambda x: -len(x) if isinstance(x, str) else -(len(x[0]) + len(x[1])))
    bs = spec["batch_size"]
    method = model.encode if kind == "bi-encoder" else model.predict

    def call(batch: list[Any]) -> Any:
        return method(batch, batch_size=bs, show_progress_bar=False, convert_to_numpy=True)

    return texts, inputs, measure.batched(inputs, bs), call


def bare(spec: dict[str, Any]) -> dict[str, Any]:
    """The reference for harness overhead: the same calls in a plain loop, one clock around it all."""
    _, model, _ = _load(spec)
    texts, inputs, batches, call = _workload(spec, model)
    measure.warm_up(call, batches, spec["measure"]["warmup_batches"])
    passes = spec["passes"]
    start = time.perf_counter()
    for _ in range(passes):
        for batch in batches:
            call(batch)
    return {"throughput": len(inputs) * passes / (time.perf_counter() - start)}


def speed(spec: dict[str, Any]) -> dict[str, Any]:
    kind = spec["model"]["kind"]
    backend, model, settings = _load(spec)
    texts, inputs, batches, call = _workload(spec, model)
    m = spec["measure"]
    measure.warm_up(call, batches, m["warmup_batches"])
    discarded: list[dict[str, float]] = []  # contended tries that a later try replaced
    while True:
        timing = measure.timed_passes(
            call, batches, m["min_time_s"], m["min_repeats"], m["max_repeats"], m["max_time_s"]
        )
        if timing.cpu_other <= m["contention_threshold"] or len(discarded) >= m["contention_retries"]:
            break
        discarded.append({"throughput": timing.throughput, "cpu_self": timing.cpu_self, "cpu_other": timing.cpu_other})
    fields = {
        **timing.fields(),
        **text_stats(model, kind, texts, inputs),
        "tries": len(discarded) + 1,
        "discarded_tries": discarded,
        "contended": bool(timing.cpu_other > m["contention_threshold"]),
        "runtime": backend.runtime(model),
        "settings": settings,
    }
    fields["precision"] = fields["runtime"]["precision"]
    if m["breakdown"]:
        fields.update(measure.breakdown(model, batches, timing))
    return fields


def accuracy(spec: dict[str, Any]) -> dict[str, Any]:
    """Every accuracy task of one backend; fidelity against the torch-fp32 outputs saved at each ref_path.

    A task that fails is reported as such without hiding the others.
    """
    from harness.evaluation import compare_embeddings, compare_scores, evaluate

    kind = spec["model"]["kind"]
    backend, model, settings = _load(spec)
    runtime = backend.runtime(model)
    out: dict[str, Any] = {}
    for unit in spec["units"]:
        start = time.perf_counter()
        try:
            result = evaluate(unit["task"], kind, model, unit["source"], batch_size=spec["batch_size"])
        except Exception as exc:  # noqa: BLE001 - recorded as the task's reason
            out[unit["task"]] = {"error": f"{type(exc).__name__}: {exc}"}
            continue
        fields: dict[str, Any] = {
            "metric": result.metric,
            "accuracy": float(result.value),
            "accuracy_s": time.perf_counter() - start,
            "runtime": runtime,
            "precision": runtime["precision"],
            "settings": settings,
        }
        ref = Path(unit["ref_path"])
        outputs = np.asarray(result.outputs, dtype=np.float32)
        if spec["is_reference"]:
            ref.parent.mkdir(parents=True, exist_ok=True)
            tmp = ref.with_name(ref.stem + ".tmp.npy")
            np.save(tmp, outputs)
            tmp.replace(ref)
        elif ref.exists():
            compare = compare_embeddings if kind == "bi-encoder" else compare_scores
            fields.update(compare(np.load(ref), outputs))
        out[unit["task"]] = fields
    return {"tasks": out}
