"""The bodies of isolated work units: speed cells (run in a backend's worker, harness.engine.workers) and
exports, accuracy passes and bare loops (each in a spawned process of its own, harness.engine.isolation).

Each takes a typed spec (`harness.engine.specs`) and returns plain fields for a result row. A process runs
a unit by its name (`TASKS`): the name crosses the process boundary, the function does not.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import OmegaConf

from harness import backends
from harness.backends.cache import ExportCache
from harness.core.files import digest
from harness.core.hardware import detect
from harness.engine import measure
from harness.engine.specs import AccuracySpec, AgreementSpec, BareSpec, JobSpec, SpeedSpec
from harness.inputs.texts import PAIR_SEP, as_pairs, builtin_texts

TASKS = ("speed", "export", "accuracy", "bare")  # what `isolation.run_unit` may call by name


def _backend(job: JobSpec) -> Any:
    return backends.create(OmegaConf.create(job.backend), detect(), job.threads)


def export(job: JobSpec) -> dict[str, Any]:
    """Export the backend's model into the cache (calibrating on our own medium-length texts)."""
    backend = _backend(job)
    calibration = builtin_texts("medium", 300, seed=1) + builtin_texts("short", 300, seed=1)
    start = time.perf_counter()
    backend.prepare(Path(job.export_dir), job.model.kind, ExportCache(job.cache_dir), calibration)
    return {"export_s": time.perf_counter() - start}


def _load(job: JobSpec) -> tuple[Any, Any, dict[str, Any]]:
    backend = _backend(job)
    folder, described = backend.load_spec(Path(job.source_dir), Path(job.export_dir), ExportCache(job.cache_dir))
    model = backend.load(job.model.kind, folder, described, job.model.trust_remote_code)
    limit = job.model.max_seq_length
    if limit:
        if job.model.kind == "bi-encoder":
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


class Loaded:
    """A model loaded once per process, with what was read back from its runtime (once, too)."""

    def __init__(self, job: JobSpec):
        start = time.perf_counter()
        self.backend, self.model, self.settings = _load(job)
        self.load_s = time.perf_counter() - start
        self.kind = job.model.kind
        self.warm = False  # the runtime has run at least once (first-call set-up is paid)
        self._runtime: dict[str, Any] | None = None
        self._stats: dict[str, dict[str, Any]] = {}

    def runtime(self) -> dict[str, Any]:
        if self._runtime is None:
            self._runtime = self.backend.runtime(self.model)
        return self._runtime

    def text_stats(self, dataset_key: str, texts: list[str], inputs: list[Any]) -> dict[str, Any]:
        if dataset_key not in self._stats:
            self._stats[dataset_key] = text_stats(self.model, self.kind, texts, inputs)
        return self._stats[dataset_key]


class State:
    """What a worker process keeps between the cells it measures (see harness.engine.workers)."""

    def __init__(self) -> None:
        self.loaded: dict[str, Loaded] = {}
        self.cells = 0
        self.agreements: dict[str, dict[str, Any]] = {}  # the label-free task metric, once per model and texts

    def load(self, job: JobSpec) -> Loaded:
        key = digest(job.key())
        if key not in self.loaded:
            self.loaded[key] = Loaded(job)
        return self.loaded[key]


def _workload(spec: SpeedSpec | BareSpec, model: Any) -> tuple[list[str], list[Any], list[list[Any]], Any, Any]:
    """Texts, model inputs, batches, the per-request call and the bulk call: identical for every backend.

    The texts come in the spec (loaded once by the parent), so a worker never reads a dataset."""
    kind = spec.job.model.kind
    texts = list(spec.texts)
    inputs: list[Any] = texts if kind == "bi-encoder" else as_pairs(texts)
    if spec.job.measure.sort_by_length:  # as encode() orders a corpus: longest first, so batches pad little
        inputs = sorted(inputs, key=lambda x: -len(x) if isinstance(x, str) else -(len(x[0]) + len(x[1])))
    bs = spec.batch_size
    method = model.encode if kind == "bi-encoder" else model.predict

    def call(batch: list[Any]) -> Any:
        return method(batch, batch_size=bs, show_progress_bar=False, convert_to_numpy=True)

    def call_all() -> Any:
        return method(inputs, batch_size=bs, show_progress_bar=False, convert_to_numpy=True)

    return texts, inputs, measure.batched(inputs, bs), call, call_all


def bare(spec: BareSpec) -> dict[str, Any]:
    """The reference for harness overhead: what a user writes to encode a corpus, one clock around it all."""
    _, model, _ = _load(spec.job)
    texts, inputs, batches, call, call_all = _workload(spec, model)
    measure.warm_up(call, batches, spec.job.measure.warmup_batches)
    passes = spec.passes
    with measure.CpuMeter() as meter:  # the other side of the ratio is checked for contention too
        start = time.perf_counter()
        for _ in range(passes):
            call_all()
        seconds = time.perf_counter() - start
    return {"throughput": len(inputs) * passes / seconds, "cpu_other": meter.cpu_other}


def speed(spec: SpeedSpec, state: State | None = None) -> dict[str, Any]:
    """One speed cell: bulk passes (throughput) and per-request passes (latency) under one CPU meter,
    re-measured while another process used the CPU; then fidelity of the timed outputs to torch-fp32's.

    In a worker the model, its runtime read-back and the text statistics are reused across cells;
    the first cell of a process warms the runtime up fully, later ones warm the new shapes with one batch.
    """
    state = state or State()
    loaded = state.load(spec.job)
    state.cells += 1
    model, kind = loaded.model, loaded.kind
    texts, inputs, batches, call, call_all = _workload(spec, model)
    m = spec.job.measure
    measure.warm_up(call, batches, m.warmup_batches if not loaded.warm else min(1, m.warmup_batches))
    loaded.warm = True
    discarded: list[dict[str, float]] = []  # contended tries that a later try replaced
    timed_from = time.time()
    while True:
        timing = measure.Passes(texts_per_pass=len(inputs))
        with measure.CpuMeter() as meter:
            outputs = measure.bulk_passes(call_all, timing, m.min_time_s, m.min_repeats, m.max_repeats, m.max_time_s)
            measure.request_passes(call, batches, timing, m.request_min_time_s, 1, m.max_repeats, m.max_time_s)
        timing.cpu_self, timing.cpu_other = meter.cpu_self, meter.cpu_other
        if timing.cpu_other <= m.contention_threshold or len(discarded) >= m.contention_retries:
            break
        throughput = timing.fields()["throughput"]
        discarded.append({"throughput": throughput, "cpu_self": timing.cpu_self, "cpu_other": timing.cpu_other})
    timed_window = [round(timed_from, 3), round(time.time(), 3)]  # wall clock: timed cells never overlap
    check_finite(outputs)
    runtime = loaded.runtime()
    fields = {
        **timing.fields(),
        "timed_window": timed_window,
        **loaded.text_stats(digest(texts), texts, inputs),
        "tries": len(discarded) + 1,
        "discarded_tries": discarded,
        "contended": bool(timing.cpu_other > m.contention_threshold),
        "runtime": runtime,
        "precision": runtime["precision"],
        "settings": {**loaded.settings, "load_s": round(loaded.load_s, 3), "process_cell": state.cells},
        **timed_fidelity(spec, kind, outputs),
        **task_agreement(spec, loaded, state),  # untimed: after the timed window closed
    }
    if spec.breakdown:
        fields.update(measure.breakdown(model, batches, timing))
    return fields


def check_finite(outputs: Any) -> None:
    """A backend whose outputs hold NaN or inf computed nothing usable (an fp16 overflow, a broken export): its
    cell fails with that reason, never a throughput."""
    if outputs is None:
        return
    values = np.asarray(outputs, dtype=np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        rows = int(bad.reshape(len(values), -1).any(axis=1).sum()) if values.ndim else 1
        raise ValueError(f"outputs: {rows} of {len(values) if values.ndim else 1} texts gave NaN or inf; "
                         "the backend computed no usable result")  # fmt: skip


def timed_fidelity(spec: SpeedSpec, kind: str, outputs: Any) -> dict[str, Any]:
    """Label-free fidelity on the texts that were timed: torch-fp32's outputs are saved (its own
    configuration only), every other backend's are compared with them. Needs no evaluation data."""
    ref_path = spec.fidelity_ref
    if not ref_path or outputs is None:
        return {}
    from harness.evaluation.fidelity import compare_outputs

    ref = Path(ref_path)
    outputs = np.asarray(outputs, dtype=np.float32)
    if spec.is_reference:
        if not ref.exists():
            ref.parent.mkdir(parents=True, exist_ok=True)
            tmp = ref.with_name(f"{ref.stem}.{os.getpid()}.tmp.npy")
            np.save(tmp, outputs)
            tmp.replace(ref)
        return {}
    if not ref.exists():
        return {"fidelity_source": "timed texts: no torch-fp32 outputs (its cell has not run or failed)"}
    return {**compare_outputs(np.load(ref), outputs), "fidelity_source": "timed texts"}


def task_agreement(spec: SpeedSpec, loaded: Loaded, state: State) -> dict[str, Any]:
    """Round 0's label-free task metric (harness.evaluation.agreement), outside the timed window: measured
    once per worker and texts, so every batch size's row of the dataset carries the same numbers. A failure
    leaves the speed cell standing and says why in `agreement_source`."""
    if spec.agreement is None:
        return {}
    key = digest([spec.job.key(), spec.agreement.ref_path])
    if key not in state.agreements:
        try:
            state.agreements[key] = _agreement(spec.agreement, loaded, spec.is_reference)
        except Exception as exc:  # noqa: BLE001 - recorded in the row, the timing is still good
            why = f"{spec.agreement.source}: failed: {type(exc).__name__}: {exc}"
            state.agreements[key] = {"agreement_source": why}
    return state.agreements[key]


def _agreement(a: AgreementSpec, loaded: Loaded, is_reference: bool) -> dict[str, Any]:
    """Encode the texts; torch-fp32 keeps its outputs (and agrees with itself: 1.0 exactly), others are ranked
    against them."""
    from harness.evaluation.agreement import POOL, task_agreement

    texts = list(a.texts)
    inputs: list[Any] = texts if loaded.kind == "bi-encoder" else as_pairs(texts)
    method = loaded.model.encode if loaded.kind == "bi-encoder" else loaded.model.predict
    outputs = method(inputs, batch_size=a.batch_size, show_progress_bar=False, convert_to_numpy=True)
    check_finite(outputs)
    outputs = np.asarray(outputs, dtype=np.float32)
    ref = Path(a.ref_path)
    if is_reference:
        if not ref.exists():
            ref.parent.mkdir(parents=True, exist_ok=True)
            tmp = ref.with_name(f"{ref.stem}.{os.getpid()}.tmp.npy")
            np.save(tmp, outputs)
            tmp.replace(ref)
        base = outputs
    elif ref.exists():
        base = np.load(ref)
    else:
        return {"agreement_source": f"{a.source}: no torch-fp32 outputs (its cell has not run or failed)"}
    # a file's own pairs rank per query; texts paired with their neighbours have no queries (a repeated text
    # would group a few pairs and drop the rest), so they rank in pseudo-queries of consecutive pairs
    real_pairs = loaded.kind == "cross-encoder" and all(PAIR_SEP in t for t in texts)
    queries = [q for q, _ in inputs] if real_pairs else None
    result = task_agreement(base, outputs, queries, pool=POOL)
    return {"agreement": result.value, "agreement_loss": result.loss, "agreement_n": result.n,
            "agreement_metric": result.metric, "agreement_source": f"{a.source}; {result.note}"}  # fmt: skip


def accuracy(spec: AccuracySpec) -> dict[str, Any]:
    """Every accuracy task of one backend; fidelity against the torch-fp32 outputs saved at each ref_path.

    A task that fails is reported as such without hiding the others.
    """
    from harness.evaluation import compare_embeddings, compare_scores, evaluate

    kind = spec.job.model.kind
    backend, model, settings = _load(spec.job)
    runtime = backend.runtime(model)
    out: dict[str, Any] = {}
    for unit in spec.tasks:
        start = time.perf_counter()
        try:
            result = evaluate(unit.task, kind, model, unit.source, batch_size=spec.batch_size)
        except Exception as exc:  # noqa: BLE001 - recorded as the task's reason
            out[unit.task] = {"error": f"{type(exc).__name__}: {exc}"}
            continue
        fields: dict[str, Any] = {
            "metric": result.metric,
            "accuracy": float(result.value),
            "accuracy_s": time.perf_counter() - start,
            "runtime": runtime,
            "precision": runtime["precision"],
            "settings": settings,
        }
        ref = Path(unit.ref_path)
        outputs = np.asarray(result.outputs, dtype=np.float32)
        if spec.is_reference:
            ref.parent.mkdir(parents=True, exist_ok=True)
            tmp = ref.with_name(ref.stem + ".tmp.npy")
            np.save(tmp, outputs)
            tmp.replace(ref)
        elif ref.exists():
            compare = compare_embeddings if kind == "bi-encoder" else compare_scores
            fields.update(compare(np.load(ref), outputs), fidelity_source="evaluation set")
        out[unit.task] = fields
    return {"tasks": out}
