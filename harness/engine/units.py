"""The bodies of isolated work units: speed cells (run in a backend's worker, harness.engine.workers) and
exports and accuracy passes (each in a process of its own, harness.engine.isolation), and `harness overhead`'s
interleaved passes (in two workers).

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
from harness.engine import instances, measure
from harness.engine.agreement_unit import task_agreement
from harness.engine.measure import check_finite  # noqa: F401 - units.check_finite, as before
from harness.engine.serving import _wait_until, poisson_schedule
from harness.engine.specs import AccuracySpec, BareSpec, JobSpec, ServerSpec, SpeedSpec
from harness.inputs.texts import as_pairs, builtin_texts
from harness.store.stats import MIN_P99_SAMPLES

TASKS = ("speed", "export", "accuracy", "bare", "server")  # what `isolation.run_unit` may call by name


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


def token_counts(model: Any, kind: str, inputs: list[Any]) -> list[int]:
    """Each input's tokens as the model's tokenizer counts them (special tokens included, not truncated)."""
    if kind == "bi-encoder":
        ids = model.tokenizer(list(inputs), truncation=False)["input_ids"]
    else:
        ids = model.tokenizer([a for a, _ in inputs], [b for _, b in inputs], truncation=False)["input_ids"]
    return [len(x) for x in ids]


def shapes_of(model: Any, kind: str, inputs: list[Any], batch_size: int) -> list[list[Any]]:
    """One batch of each distinct shape the timed passes run (harness.engine.measure.one_per_shape): a batch-1
    cell of 256 short texts has ~20, not 256 (measure.warm_shapes runs them, untimed)."""
    counts = measure.batched(token_counts(model, kind, inputs), batch_size)
    return measure.one_per_shape(measure.batched(inputs, batch_size), counts, _max_len(model, kind))


def text_stats(model: Any, kind: str, texts: list[str], inputs: list[Any]) -> dict[str, Any]:
    chars = np.array([len(t) for t in texts])
    tokens = np.array(token_counts(model, kind, inputs))
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
        self.overhead: tuple[int, Any] | None = None  # `bare`'s loaded workload: texts per pass, the bulk call

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


def plain_model_kwargs(backend: Any, described: dict[str, Any], threads: int) -> dict[str, Any]:
    """What a user's own code passes for this backend: the file to load (onnx / openvino exports), the dtype
    the docs give (torch-fp16 / bf16) and the thread budget the way each runtime takes it - nothing else."""
    kwargs = {**backend.documented_model_kwargs()}
    if "file_name" in described:
        kwargs["file_name"] = described["file_name"]
    if backend.st_backend == "onnx":
        import onnxruntime as ort

        kwargs["session_options"] = ort.SessionOptions()
        kwargs["session_options"].intra_op_num_threads = threads
    elif backend.st_backend == "openvino":
        kwargs["ov_config"] = {"INFERENCE_NUM_THREADS": threads}
    return kwargs


def load_plain(job: JobSpec) -> Any:
    """The model as `SentenceTransformer(path, backend=..., model_kwargs={"file_name": ...})` loads it: not the
    harness's loading code (`_load`), so `harness overhead` compares the harness with what plain code gets.
    The thread budget is set (torch's by the process, ORT's and OpenVINO's here), as every cell gets it."""
    from sentence_transformers import CrossEncoder, SentenceTransformer

    backend = _backend(job)
    folder, described = backend.load_spec(Path(job.source_dir), Path(job.export_dir), ExportCache(job.cache_dir))
    cls = SentenceTransformer if job.model.kind == "bi-encoder" else CrossEncoder
    kwargs = plain_model_kwargs(backend, described, job.threads)
    model = cls(str(folder), backend=backend.st_backend, model_kwargs=kwargs or None)
    if job.model.max_seq_length:
        setattr(model, "max_seq_length" if job.model.kind == "bi-encoder" else "max_length", job.model.max_seq_length)
    return model


def bare(spec: BareSpec, state: State | None = None) -> dict[str, Any]:
    """One side of `harness overhead`'s interleaved comparison, in a worker that keeps its model between calls:
    "harness" loads as a cell does (`State.load`) and times with the cells' pass loop; "plain" loads as a
    user's code does (`load_plain`, none of the harness's loading code) with one clock around `encode(texts)`.
    The first call puts the process in the state the harness times (a process that has encoded these texts
    before: the runtime warmed up, then every shape once, untimed) and times nothing; each later call times
    `spec.passes` whole passes and meters the CPU over them."""
    state = state or State()
    if state.overhead is None:
        model = state.load(spec.job).model if spec.side == "harness" else load_plain(spec.job)
        texts, inputs, batches, call, call_all = _workload(spec, model)
        measure.warm_up(call, batches, spec.job.measure.warmup_batches)
        shapes = shapes_of(model, spec.job.model.kind, inputs, spec.batch_size)
        measure.warm_shapes(call, shapes, batches, spec.job.measure.warm_min_s)  # as a cell does before timing
        state.overhead = (len(inputs), call_all)
        return {"seconds": None}
    n, call_all = state.overhead
    with measure.CpuMeter() as meter:
        if spec.side == "harness":
            timing = measure.Passes(texts_per_pass=n)
            measure.bulk_passes(call_all, timing, 0.0, spec.passes, spec.passes)
            seconds = sum(timing.pass_seconds)
        else:
            start = time.perf_counter()
            for _ in range(spec.passes):
                call_all()
            seconds = time.perf_counter() - start
    return {"seconds": seconds, "throughput": n * spec.passes / seconds, "cpu_other": meter.cpu_other}


def speed(spec: SpeedSpec, state: State | None = None) -> dict[str, Any]:
    """One speed cell: bulk passes (throughput) and per-request passes (latency) under one CPU meter,
    re-measured while another process used the CPU; then fidelity of the timed outputs to torch-fp32's.

    A worker reuses the model and its read-back across cells. Before timing, its first cell warms the runtime up
    (`warmup_batches`) and every cell runs a batch of each shape once, untimed (`shapes_of`): no shape is first
    run inside a timed pass (README, "How numbers are kept honest")."""
    state = state or State()
    loaded = state.load(spec.job)
    state.cells += 1
    model, kind = loaded.model, loaded.kind
    texts, inputs, batches, call, call_all = _workload(spec, model)
    m = spec.job.measure
    if not loaded.warm:  # the process's first call: runtime set-up, allocator, thread pools
        measure.warm_up(call, batches, m.warmup_batches)
        loaded.warm = True
    measure.warm_shapes(call, shapes_of(model, kind, inputs, spec.batch_size), batches, m.warm_min_s)  # untimed
    timing, discarded, timed_window = _timed(call, call_all, batches, len(inputs), m, spec.batch_size)
    # what the user's process holds for this model: read before the runtime read-back (which may build a
    # second session) and the fidelity comparison, neither of which a user's process does
    peak_mb = measure.peak_rss_mb()
    check_finite(timing.outputs)
    runtime = loaded.runtime()
    timed = timing.fields()
    fields = {
        **timed,
        "timed_window": timed_window,
        **loaded.text_stats(digest(texts), texts, inputs),
        "tries": len(discarded) + 1,
        "discarded_tries": discarded,
        "contended": bool(timing.cpu_other > m.contention_threshold),
        "runtime": runtime,
        "precision": runtime["precision"],
        "settings": {**loaded.settings, "load_s": round(loaded.load_s, 3), "process_cell": state.cells},
        "peak_memory_mb": peak_mb,
        **timed_fidelity(spec, kind, timing.outputs),
        **task_agreement(spec, loaded, state, timed),  # untimed: after the timed window closed
    }
    if spec.breakdown:
        fields.update(measure.breakdown(model, batches, timing))
    return fields


def _timed(call: Any, call_all: Any, batches: list[list[Any]], n_inputs: int, m: Any,
           batch_size: int) -> tuple[measure.Passes, list[dict[str, float]], list[float]]:  # fmt: skip
    """Bulk passes then per-request passes under one CPU meter, tried again while another process used the
    CPUs (up to `contention_retries`). Per request, a batch-1 cell takes `request_min_samples` calls, or as
    many as `request_max_time_s` allows but never fewer than a p99 needs (stats.MIN_P99_SAMPLES; a slow
    configuration's later rounds add theirs); larger batches take whole passes for `request_min_time_s`."""
    discarded: list[dict[str, float]] = []  # contended tries that a later try replaced
    min_samples = m.request_min_samples if batch_size == 1 else 0
    timed_from = time.time()
    while True:
        timing = measure.Passes(texts_per_pass=n_inputs)
        with measure.CpuMeter() as meter:
            timing.outputs = measure.bulk_passes(call_all, timing, m.min_time_s, m.min_repeats, m.max_repeats,
                                                 m.max_time_s)  # fmt: skip
            measure.request_passes(call, batches, timing, m.request_min_time_s, 1, m.max_repeats, m.max_time_s,
                                   min_samples=min_samples, samples_time_s=m.request_max_time_s,
                                   floor_samples=MIN_P99_SAMPLES)  # fmt: skip
        timing.cpu_self, timing.cpu_other = meter.cpu_self, meter.cpu_other
        if timing.cpu_other <= m.contention_threshold or len(discarded) >= m.contention_retries:
            break
        throughput = timing.fields()["throughput"]
        discarded.append({"throughput": throughput, "cpu_self": timing.cpu_self, "cpu_other": timing.cpu_other})
    return timing, discarded, [round(timed_from, 3), round(time.time(), 3)]  # wall clock: cells never overlap


def _requests(spec: ServerSpec, model: Any) -> tuple[list[Any], Any]:
    """The requests (texts, or pairs for a cross-encoder) in arrival order, and the call that serves a batch
    (at `batch_size`; by default the whole batch in one forward pass)."""
    cross = spec.job.model.kind != "bi-encoder"
    inputs: list[Any] = as_pairs(list(spec.texts)) if cross else list(spec.texts)
    method = model.predict if cross else model.encode

    def call(batch: list[Any], batch_size: int | None = None) -> Any:
        return method(batch, batch_size=batch_size or len(batch), show_progress_bar=False, convert_to_numpy=True)

    return inputs, call


SOLO_REQUESTS = 200  # requests timed alone after the server warm-up (the latency floor of every rate)


def server(spec: ServerSpec, state: State | None = None) -> dict[str, Any]:
    """One instance of a deployment shape for one step of the server scenario (see ServerSpec). The model is
    loaded once per worker; `warm` runs every batch size the batcher can form, at the longest and shortest
    requests, so no step pays a first-call cost."""
    state = state or State()
    loaded = state.load(spec.job)
    inputs, call = _requests(spec, loaded.model)
    if spec.mode == "warm":
        by_length = sorted(inputs, key=lambda x: -len(x) if isinstance(x, str) else -(len(x[0]) + len(x[1])))
        for size in spec.warm_sizes:
            call(by_length[:size])
            call(by_length[-size:])
        loaded.warm = True
        solo = []  # each request alone, in serving order: no latency under load can be below its own service
        for x in inputs[: SOLO_REQUESTS if spec.solo else 0]:
            t0 = instances.CLOCK()
            call([x])
            solo.append(instances.CLOCK() - t0)
        runtime = loaded.runtime()
        stats = loaded.text_stats(digest(list(spec.texts)), list(spec.texts), inputs)
        found = {"solo_p99_s": float(np.quantile(solo, 0.99)) if solo else None, "texts": stats}
        return instances.instance_result(found, runtime=runtime,
                                         precision=runtime["precision"],
                                         settings={**loaded.settings, "load_s": round(loaded.load_s, 3)})  # fmt: skip
    if spec.mode == "bulk":
        share = inputs[spec.instance :: spec.instances]
        _wait_until(spec.origin, instances.CLOCK)
        for _ in range(spec.passes):
            check_finite(call(share, spec.batch_size))
        return instances.instance_result({"end": instances.CLOCK(), "texts": len(share) * spec.passes})
    due = (poisson_schedule(spec.rate, spec.n, spec.seed) + spec.origin).tolist()

    def service(batch: range) -> None:
        call([inputs[i % len(inputs)] for i in batch])

    queue = instances.SharedQueue(spec.queue_path)
    return instances.instance_result(instances.serve_instance(due, service, queue, spec.max_batch, spec.max_wait_s))


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
