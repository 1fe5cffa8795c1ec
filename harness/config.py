"""The run schema: structured configs (dataclasses) that Hydra composes and validates.

YAML under conf/ only composes named variants of these. Validation lives in `validate()`,
which names the field, the value given and what is allowed, so the CLI can answer a mistake
with one line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from omegaconf import MISSING, OmegaConf

from harness.core.usage import (  # noqa: F401 - ConfigError: where callers have always found it
    ConfigError,
    check_choice,
    check_name,
    check_non_negative,
    check_positive_int,
)

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")  # the YAML that composes named variants
MODEL_KINDS = ("bi-encoder", "cross-encoder")
MODEL_WEIGHTS = ("trained", "random")  # random: a shape-faithful stand-in (harness.inputs.standins), speed only
DEVICES = ("auto", "cpu", "cuda")
DATASET_SOURCES = ("builtin", "local", "hub")
DATASET_FORMATS = ("lines", "sts", "beir", "file", "hf")  # file: a user's .txt / .jsonl / .csv, by extension
BUILTIN_BUCKETS = ("short", "medium", "long")
ACCURACY_TASKS = ("sts", "retrieval")
# accuracy.<task>: where the data is (local under data_dir, else hub) + what evaluate() reads
ACCURACY_SOURCE_KEYS = ("local", "hub", "split", "max_queries", "max_corpus", "seed")
# A backend family's runtime knobs (which fields make a variant, which only change speed) and their
# checks live with its backend class in harness/backends/. `backend.device` is not a knob but says
# where a cell runs, which the row reads back from the runtime (`runtime.device`).


@dataclass
class ModelConfig:
    name: str = MISSING
    kind: str = "bi-encoder"
    # "package:<module>" (a Python package whose get_model_path() returns the folder),
    # "standin:<name>" (harness.inputs.standins), a local folder, or a Hugging Face Hub id.
    source: str = MISSING
    # "random": the weights are not trained (a stand-in): speed is measured, accuracy is not
    weights: str = "trained"
    trust_remote_code: bool = False
    max_seq_length: Optional[int] = None  # None: the model's own limit
    batch_sizes: list[int] = field(default_factory=lambda: [32])  # the model's grid (the docs list one per model)
    batch_sizes_gpu: Any = "${.batch_sizes}"  # the docs use larger batches on GPU for some models


@dataclass
class DatasetConfig:
    name: str = MISSING
    source: str = "builtin"
    bucket: Optional[str] = None  # builtin: short | medium | long
    path: Optional[str] = None  # local: file or folder (relative to data_dir unless absolute)
    format: str = "lines"  # how to read a local source: lines | sts | beir | file (by extension) ; hub: hf
    hub_name: Optional[str] = None
    hub_config: Optional[str] = None
    split: str = "test"
    column: Optional[str] = None
    samples: int = 256  # texts (or pairs) per timed pass
    multiply: int = 1  # repeat each text N times (the docs' "imdb x4" long texts)
    seed: int = 0


@dataclass
class BackendConfig:
    name: str = MISSING
    family: str = MISSING
    device: str = "auto"
    dtype: str = "float32"  # torch only
    optimization: Optional[str] = None  # onnx: O1..O4
    quantization: Optional[str] = None  # onnx: auto|arm64|avx2|avx512|avx512_vnni ; openvino: static
    # Runtime knobs (backend.ort_spinning, backend.ov_precision, ...) are each family's own (`Knobs` in
    # harness/backends/), added to this schema by `harness.backends.schema()`; the named backends
    # (torch-fp32, onnx-O3, ...) are registered by their families too.


@dataclass
class MeasureConfig:
    threads: Optional[int] = None  # None: physical cores; the same budget for every runtime
    warmup_batches: int = 2
    # before each cell's timed passes: one batch of every shape they run, then its batches until this long
    warm_min_s: float = 0.5
    # bulk passes (one encode call over all texts): at least this long in all and at least this many passes.
    # Short on purpose: the spread that matters is between processes (the host's phase moves a 2-core VM by
    # 10-20 % within seconds), so time goes to more rounds where a place is open, not to longer cells
    min_time_s: float = 1.0
    min_repeats: int = 2
    max_repeats: int = 50
    max_time_s: float = 8.0  # stop after the pass that crosses this, even below min_repeats (slow backends)
    request_min_time_s: float = 0.5  # per-request loop (one call per batch: latency percentiles), >= 1 pass
    request_min_samples: int = 300  # batch-1 cells: this many requests per round (their p99 needs them) ...
    request_max_time_s: float = 3.0  # ... or as many as fit in this, but never fewer than a p99 needs (100)
    sort_by_length: bool = True  # as encode() does over a whole corpus
    breakdown: bool = True  # tokenize / forward / rest shares
    cell_timeout_s: int = 900
    export_timeout_s: int = 1800
    contention_threshold: float = 0.1  # cores used by other processes during a timed cell
    contention_retries: int = 2
    # a unit's process (speed worker, export, accuracy) over this resident memory is stopped and its row says
    # so, before the machine runs out and the kernel kills something; None: 90 % of the machine's memory
    memory_limit_mb: Optional[int] = None
    # the label-free task metric (harness.evaluation.agreement): texts per configuration and dataset, encoded
    # once in round 0 after the timed passes; the dataset's own when it has >= 500, else built-in ones of
    # its length; 0: not measured (then `harness recommend` without labels needs --min-cosine/--min-spearman)
    agreement_texts: int = 500


@dataclass
class AccuracyConfig:
    enabled: bool = True
    tasks: list[str] = field(default_factory=lambda: list(ACCURACY_TASKS))
    batch_size: int = 32
    sts: dict[str, Any] = field(default_factory=lambda: {"local": "stsbenchmark", "hub": "sentence-transformers/stsb"})
    retrieval: dict[str, Any] = field(
        default_factory=lambda: {
            "local": "beir/dbpedia-5k",
            "hub": "NanoMSMARCO",
            "max_queries": None,
            "max_corpus": None,
        }
    )


@dataclass
class ServerConfig:
    """The server scenario (harness.engine.server): Poisson requests through a dynamic batcher, on each
    deployment shape, searched for the highest rate whose p99 stays within each budget."""

    enabled: bool = False
    budgets_ms: list[float] = field(default_factory=lambda: [20.0, 50.0, 100.0])  # p99 latency budgets
    # instances x threads per instance, e.g. ["1x2", "2x1"]; None: every power-of-two split of the thread budget
    shapes: Optional[list[str]] = None
    # the dynamic batcher's policies: {max_batch, max_wait_ms} each
    batching: list[Any] = field(default_factory=lambda: [{"max_batch": 8, "max_wait_ms": 2.0}])
    point_s: float = 2.0  # arrivals per rate point (at least `min_requests` of them are measured)
    discard: int = 50  # the first requests of a point (warm caches, the queue filling) are not counted
    min_requests: int = 200
    rate_lo: Optional[float] = None  # requests/s the search starts from; None: the shape's bulk rate / 8
    rate_hi: Optional[float] = None  # the highest tried; None: 1.5x the shape's bulk texts/s
    rel_tol: float = 0.05  # the search stops when the bracket is this narrow
    bulk_batch_size: int = 32  # the shape's bulk throughput: each instance encodes its share at this size
    # stop a budget's search after one point when the shape cannot reach the best rate already sustained
    prune_dominated: bool = True
    time_budget_s: float = 1800.0  # the sweep process's server cells stop (`timeout` rows, resumed) after this
    seed: int = 0


@dataclass
class SweepConfig:
    model: ModelConfig = MISSING
    dataset: DatasetConfig = MISSING
    backend: Any = MISSING  # a `harness.backends.schema()` node: BackendConfig with every family's knobs
    batch_sizes: Optional[list[int]] = None  # None: model.batch_sizes
    run: str = "default"
    round: int = 0  # this job's interleaved round; conf/config.yaml sweeps 0..2 outermost (`rounds=N` to change)
    adaptive_rounds: bool = True  # rounds=auto: a round after the first only where a place is undecided
    round_cap: int = 3  # the rounds a sweep measures at most (`rounds=N` sets it): what is left to settle a place
    # a rerun measures timeouts, killed processes and damaged rows again by itself; other failures (an export
    # that cannot be made, a configuration error) only with this (`harness sweep --retry-failed`)
    retry_failed: bool = False
    speed: bool = True
    results_dir: str = "results"
    cache_dir: str = "${oc.env:HARNESS_CACHE_DIR,'~/.cache/harness'}"
    data_dir: Optional[str] = "${oc.env:HARNESS_DATA_DIR,null}"
    measure: MeasureConfig = field(default_factory=MeasureConfig)
    accuracy: AccuracyConfig = field(default_factory=AccuracyConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    price_per_hour: Optional[float] = None  # this machine's price ($/h): rows carry it for $ per million texts


def parse_shape(field_name: str, shape: Any) -> tuple[int, int]:
    """ "2x4" -> (2 instances, 4 threads each)."""
    parts = str(shape).lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ConfigError(f"{field_name}: {shape!r} is not allowed; give instances x threads, e.g. 2x1.")
    return int(parts[0]), int(parts[1])


def check_positive(field_name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
        raise ConfigError(f"{field_name}: {value!r} is not allowed; it must be a number > 0.")


def validate_server(s: Any, cpus: int) -> None:
    """The server scenario's fields: budgets and rates > 0, shapes within the `cpus` the harness may use."""
    if not s.budgets_ms:
        raise ConfigError("server.budgets_ms: [] is not allowed; give at least one p99 budget in ms, e.g. [50].")
    for budget in s.budgets_ms:
        check_positive("server.budgets_ms", budget)
    for name in ("rate_lo", "rate_hi"):
        if s[name] is not None:
            check_positive(f"server.{name}", s[name])
    for name in ("point_s", "rel_tol", "time_budget_s"):
        check_positive(f"server.{name}", s[name])
    check_non_negative("server.discard", s.discard)
    check_positive_int("server.min_requests", s.min_requests)
    check_positive_int("server.bulk_batch_size", s.bulk_batch_size)
    for shape in s.shapes or []:
        k, t = parse_shape("server.shapes", shape)
        if k * t > cpus:
            raise ConfigError(f"server.shapes: {shape!r} is not allowed; it asks for {k * t} CPUs and the harness "
                              f"may use {cpus} here (instances x threads <= {cpus}).")  # fmt: skip
    if not s.batching:
        raise ConfigError("server.batching: [] is not allowed; give at least one {max_batch, max_wait_ms}.")
    for policy in s.batching:
        if set(policy) != {"max_batch", "max_wait_ms"}:
            raise ConfigError(f"server.batching: {dict(policy)!r} is not allowed; "
                              "each is {max_batch: N, max_wait_ms: MS}.")  # fmt: skip
        check_positive_int("server.batching.max_batch", policy["max_batch"])
        check_non_negative("server.batching.max_wait_ms", policy["max_wait_ms"])


def validate(cfg: Any) -> None:
    """Check a composed SweepConfig; raise ConfigError naming field, value and what is allowed."""
    check_name("run", cfg.run, "a run")
    if not str(cfg.model.name).strip():
        raise ConfigError("model.name: '' is not allowed; give the model a short name (it names rows and exports).")
    check_choice("model.kind", cfg.model.kind, MODEL_KINDS)
    check_choice("model.weights", cfg.model.weights, MODEL_WEIGHTS)
    if cfg.model.max_seq_length is not None:
        check_positive_int("model.max_seq_length", cfg.model.max_seq_length)
    sizes = cfg.batch_sizes if cfg.batch_sizes is not None else cfg.model.batch_sizes
    field_name = "batch_sizes" if cfg.batch_sizes is not None else "model.batch_sizes"
    if not isinstance(sizes, Sequence) and not OmegaConf.is_list(sizes):
        raise ConfigError(f"{field_name}: {sizes!r} is not allowed; give a list of whole numbers > 0, e.g. [16,32].")
    if not sizes:
        raise ConfigError(f"{field_name}: [] is not allowed; give at least one batch size > 0, e.g. [32].")
    for size in sizes:
        check_positive_int(field_name, size)
    if len(set(sizes)) != len(sizes):
        raise ConfigError(f"{field_name}: {list(sizes)!r} is not allowed; each batch size once.")
    check_choice("backend.device", cfg.backend.device, DEVICES)  # the family's fields: harness.backends.check
    d = cfg.dataset
    check_choice("dataset.source", d.source, DATASET_SOURCES)
    check_choice("dataset.format", d.format, DATASET_FORMATS)
    if d.source == "builtin":
        check_choice("dataset.bucket", d.bucket, BUILTIN_BUCKETS)
    if d.source == "local":
        check_choice("dataset.format", d.format, tuple(f for f in DATASET_FORMATS if f != "hf"))
        if not d.path and d.format == "file":
            raise ConfigError(
                f"dataset.path: {d.path!r} is not allowed; dataset=file needs dataset.path=FILE: a .txt file with one "
                "text per line (text<TAB>text for cross-encoder pairs), or a .jsonl / .csv file with dataset.column=."
            )
        if not d.path:
            raise ConfigError(f"dataset.path: {d.path!r} is not allowed; a local dataset needs a file or folder path.")
    if d.source == "hub" and not d.hub_name:
        raise ConfigError("dataset.hub_name: a hub dataset needs a dataset id.")
    check_positive_int("dataset.samples", d.samples)
    check_positive_int("dataset.multiply", d.multiply)
    m = cfg.measure
    if m.threads is not None:
        check_positive_int("measure.threads", m.threads)
    check_positive_int("measure.min_repeats", m.min_repeats)
    check_positive_int("measure.max_repeats", m.max_repeats)
    if m.max_repeats < m.min_repeats:
        raise ConfigError(
            f"measure.max_repeats: {m.max_repeats!r} is not allowed; "
            f"it must be >= measure.min_repeats ({m.min_repeats})."
        )
    check_non_negative("measure.warmup_batches", m.warmup_batches)
    check_non_negative("measure.warm_min_s", m.warm_min_s)
    check_non_negative("measure.min_time_s", m.min_time_s)
    check_non_negative("measure.max_time_s", m.max_time_s)
    check_non_negative("measure.request_min_time_s", m.request_min_time_s)
    if m.memory_limit_mb is not None:
        check_positive_int("measure.memory_limit_mb", m.memory_limit_mb)
    check_non_negative("measure.contention_retries", m.contention_retries)
    check_positive_int("measure.cell_timeout_s", m.cell_timeout_s)
    check_positive_int("measure.export_timeout_s", m.export_timeout_s)
    check_non_negative("measure.contention_threshold", m.contention_threshold)
    check_non_negative("measure.agreement_texts", m.agreement_texts)
    if cfg.price_per_hour is not None:
        check_positive("price_per_hour", cfg.price_per_hour)
    if cfg.server.enabled:
        from harness.core.hardware import detect

        validate_server(cfg.server, m.threads or detect().cpu_budget)
    a = cfg.accuracy
    for task in a.tasks:
        check_choice("accuracy.tasks", task, ACCURACY_TASKS)
    check_positive_int("accuracy.batch_size", a.batch_size)
    for task in ACCURACY_TASKS:
        spec = a[task]
        for key in spec:
            check_choice(f"accuracy.{task}", key, ACCURACY_SOURCE_KEYS)
        for key in ("local", "hub"):
            if not spec.get(key):
                raise ConfigError(
                    f"accuracy.{task}.{key}: {spec.get(key)!r} is not allowed; give the "
                    + ("folder under data_dir." if key == "local" else "Hugging Face Hub dataset name.")
                )
