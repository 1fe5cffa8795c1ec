"""`harness overhead` and `harness duel`: two sides' passes, interleaved in two loaded workers."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from harness.cli.duel import label_overrides, verdict_line
from harness.core.usage import ConfigError
from harness.engine import interleave
from harness.engine import units as work
from harness.engine.interleave import (
    MAX_PAIRS,
    MIN_PAIRS,
    PAIR_TIME_S,
    TARGET_SE,
    speed_ratio,
    standard_error,
    timed_pairs,
)


@pytest.fixture(autouse=True)
def no_settling(monkeypatch):
    monkeypatch.setattr(interleave, "SETTLE_S", 0.0)  # the fakes have no runtime threads to settle


MEASURE = SimpleNamespace(contention_retries=2, contention_threshold=0.1, cell_timeout_s=60)


def fake_sides(seconds, busy=None):
    """A `run(side)` standing in for the two workers: each side's first call loads (times nothing), later calls
    return the next of its `seconds` and of its `busy` (other processes' CPU use)."""
    calls = []
    loaded = set()
    it = {side: iter(v) for side, v in seconds.items()}
    others = {side: iter(v) for side, v in (busy or {}).items()}

    def run(side):
        calls.append(side)
        if side not in loaded:
            loaded.add(side)
            return "ok", {"seconds": None}, None
        return "ok", {"seconds": next(it[side]), "cpu_other": next(others[side], 0.0) if busy else 0.0}, None

    return run, calls


def test_passes_alternate_in_neighbouring_pairs_whose_order_turns():
    """#22: the host's swings over seconds cancel only in the ratio of neighbouring passes: after both sides
    loaded, the order turns every pair (h p, p h, h p), so neither side always runs second."""
    run, calls = fake_sides({"harness": [1.0] * 20, "plain": [1.1] * 20})
    pairs, retried, why = timed_pairs(run, ("harness", "plain"), MEASURE)
    assert why is None and retried == 0
    assert calls[:2] == ["harness", "plain"]  # loads, timing nothing
    timed = calls[2:]
    assert timed[:6] == ["harness", "plain", "plain", "harness", "harness", "plain"]
    # at least MIN_PAIRS pairs, and until the harness's passes add up to PAIR_TIME_S (steady pairs: known at once)
    assert len(pairs) == max(MIN_PAIRS, math.ceil(PAIR_TIME_S / 1.0)) and pairs[0] == (1.0, 1.1)
    run, calls = fake_sides({"harness": [0.01] * 50, "plain": [0.01] * 50})
    assert len(timed_pairs(run, ("plain", "harness"), MEASURE)[0]) == MAX_PAIRS and calls[:3] == [
        "plain",
        "harness",
        "plain",
    ]


def test_a_noisy_round_times_pairs_until_its_ratio_is_known_or_the_cap():
    """ONNX Runtime's passes swing +-15-35 % pass to pass here: a round goes on until the standard error of
    its mean log ratio is TARGET_SE, at most MAX_PAIRS pairs; a steady one stops at MIN_PAIRS."""
    swing = [1.0, 1.4] * 40
    run, _ = fake_sides({"harness": swing, "plain": [1.0] * 80})
    assert len(timed_pairs(run, ("harness", "plain"), MEASURE)[0]) == MAX_PAIRS
    run, _ = fake_sides({"harness": swing, "plain": [1.0] * 80})
    assert len(timed_pairs(run, ("harness", "plain"), MEASURE, max_pairs=30)[0]) == 30  # --max-pairs
    mild = [1.0, 1.02] * 40
    run, _ = fake_sides({"harness": mild, "plain": [1.0] * 80})
    pairs = timed_pairs(run, ("harness", "plain"), MEASURE)[0]
    assert MIN_PAIRS <= len(pairs) < MAX_PAIRS and standard_error(pairs) <= TARGET_SE


def test_a_contended_pair_is_timed_again_a_bounded_number_of_times():
    busy = {"harness": [0.0] * 40, "plain": [0.5, 0.0, 0.9, 0.9, 0.9] + [0.0] * 35}
    run, _ = fake_sides({"harness": [1.0, 2.0, 3.0, 4.0] + [4.0] * 36, "plain": [1.0] * 40}, busy)
    pairs, retried, why = timed_pairs(run, ("harness", "plain"), MEASURE)
    # the first try (plain busy 0.5) is timed again; the third (0.9) too, the second retry; the fourth is kept busy
    assert why is None and retried == 2 and pairs[0] == (2.0, 1.0) and pairs[1] == (4.0, 1.0)


def test_a_side_that_fails_ends_the_round_with_its_reason():
    def run(side):
        return ("failed", None, "killed by SIGSEGV") if side == "plain" else ("ok", {"seconds": None}, None)

    pairs, _, why = timed_pairs(run, ("harness", "plain"), MEASURE)
    assert pairs == [] and why == "plain side failed: killed by SIGSEGV"


def test_each_side_loads_once_then_times_its_passes(monkeypatch):
    """work.bare: the first call loads (the harness's side with the harness's loading, the plain side with
    plain code) and warms every shape; later calls time passes and meter the CPU, loading nothing again."""
    texts = ["a short text", "another one", "and a third"] * 4
    encoded, loads = [], []

    def encode(batch):
        encoded.extend(batch)

    monkeypatch.setattr(work, "load_plain", lambda job: loads.append("plain"))
    monkeypatch.setattr(work.State, "load", lambda self, job: loads.append("harness") or SimpleNamespace(model=None))
    workload = (texts, texts, [texts[:4], texts[4:8], texts[8:]], encode, lambda: encode(texts))
    monkeypatch.setattr(work, "_workload", lambda spec, model: workload)
    monkeypatch.setattr(work, "shapes_of", lambda model, kind, inputs, bs: workload[2])  # 3 shapes
    measure = SimpleNamespace(warmup_batches=1, warm_min_s=0.0)
    job = SimpleNamespace(measure=measure, model=SimpleNamespace(kind="bi-encoder"))
    for side in ("harness", "plain"):
        encoded.clear()
        state = work.State()
        spec = SimpleNamespace(job=job, passes=2, side=side, batch_size=4)
        assert work.bare(spec, state) == {"seconds": None}
        assert len(encoded) == 4 + len(texts)  # one warm-up batch, then every batch (shape) once
        out = work.bare(spec, state)
        assert out["seconds"] > 0 and out["cpu_other"] >= 0 and out["throughput"] == 2 * len(texts) / out["seconds"]
        assert len(encoded) == 4 + 3 * len(texts)
    assert loads == ["harness", "plain"]


def test_the_bare_loop_loads_as_plain_code_does(monkeypatch):
    """#22: the reference loop is not the harness's loading code: the file, the docs' dtype and the thread
    budget, nothing else (no spinning setting, no inter-op threads, no performance hint)."""
    from harness.backends.onnx import OnnxBackend, spinning
    from harness.backends.openvino import OpenVINOBackend
    from harness.backends.torch import TorchBackend

    onnx = OnnxBackend.__new__(OnnxBackend)
    onnx.cfg = SimpleNamespace(optimization="O3", quantization=None)
    kwargs = work.plain_model_kwargs(onnx, {"file_name": "onnx/model_O3.onnx", "session_options": {}}, 2)
    assert set(kwargs) == {"file_name", "session_options"} and kwargs["file_name"] == "onnx/model_O3.onnx"
    assert kwargs["session_options"].intra_op_num_threads == 2 and kwargs["session_options"].inter_op_num_threads == 0
    assert spinning(kwargs["session_options"])["allow_spinning_source"] == "onnxruntime default"
    ov = OpenVINOBackend.__new__(OpenVINOBackend)
    ov.cfg = SimpleNamespace(quantization=None)
    described = {"file_name": "openvino/openvino_model.xml", "ov_config": {"PERFORMANCE_HINT": "LATENCY"}}
    assert work.plain_model_kwargs(ov, described, 2) == {"file_name": "openvino/openvino_model.xml",
                                                          "ov_config": {"INFERENCE_NUM_THREADS": 2}}  # fmt: skip
    torch = TorchBackend.__new__(TorchBackend)
    torch.cfg = SimpleNamespace(dtype="float16")
    assert work.plain_model_kwargs(torch, {"torch_dtype": "float16"}, 2) == {"torch_dtype": "float16"}


def test_the_round_ratio_is_the_geometric_mean_of_its_pairs():
    ratio, spread = speed_ratio([(1.0, 1.2), (1.0, 1.2 * 1.1), (1.0, 1.2 / 1.1)])
    assert math.isclose(ratio, 1.2) and math.isclose(spread, math.log(1.1))
    assert speed_ratio([(2.0, 1.0)]) == (0.5, 0.0)


def test_duel_labels_are_the_tables_labels():
    assert label_overrides("openvino-qint8") == ["backend=openvino-qint8"]
    assert label_overrides("openvino-qint8 [ov_precision=f32]") == ["backend=openvino-qint8",
                                                                     "backend.ov_precision=f32"]  # fmt: skip
    assert label_overrides("onnx[ort_spinning=False,other=1]")[1:] == [
        "backend.ort_spinning=False", "backend.other=1"]  # fmt: skip
    for bad, said in (("onnx-q8", "'onnx-q8' is not a backend"), ("onnx [spin]", "'spin' in"), ("a b c", "label")):
        try:
            label_overrides(bad)
        except ConfigError as exc:
            assert said in str(exc)
        else:
            raise AssertionError(bad)


def test_a_duel_reads_its_interval_as_the_sweep_reads_a_verdict():
    """Decided when the rerun interval excludes 1, tied within +-5 %, else undecided; one round has none."""
    line = verdict_line("A", "B", [math.log(1.20), math.log(1.22), math.log(1.21)], "here")
    assert "decided: A is faster" in line and line.startswith("here: A / B = 1.21x (")
    assert "tied" in verdict_line("A", "B", [math.log(1.01), math.log(0.99), math.log(1.0)], "here")
    assert "undecided" in verdict_line("A", "B", [math.log(1.3), math.log(0.8)], "here")
    assert "decided: B is faster" in verdict_line("A", "B", [math.log(0.5), math.log(0.52)], "here")
    assert "no interval" in verdict_line("A", "B", [0.1], "here")


def test_the_sweep_names_the_duel_that_settles_an_undecided_bulk_group():
    from harness.cli.progress import duel_commands
    from harness.store.intervals import Verdict
    from harness.store.stats import Estimate

    group = ("r", "m", "all-MiniLM-L6-v2", "short", 32, 2, "cpu")
    e = Estimate(0.98, 0.87, 1.1, 2)
    bulk = Verdict(group, "bulk", "openvino-qint8", "openvino-qint8 [ov_precision=f32]", e)
    online = Verdict(group[:4] + (1,) + group[5:], "online", "onnx-qint8", "openvino", e)
    (line,) = duel_commands([bulk, online])  # a duel times bulk passes: not an online (p99) verdict
    assert "harness duel openvino-qint8 'openvino-qint8 [ov_precision=f32]' dataset=short batch_sizes=[32]" in line


def test_too_few_pairs_is_a_one_line_error(capsys):
    from harness.cli import duel, overhead

    assert overhead.main(["--max-pairs", "2"]) == 2 and duel.main(["onnx", "openvino", "--max-pairs", "1"]) == 2
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("error: --max-pairs: 2 is too few") and len(out) == 2


def test_a_worker_round_alternates_who_goes_first_and_returns_pairs_in_the_specs_order(monkeypatch):
    """Round 1 loads and times the second side first; its pairs still come back as (first spec, second spec),
    and the round's workers are closed after it, whatever happened."""
    from harness.engine import workers

    calls, closed = [], []
    seconds = {"harness": 1.0, "plain": 2.0}

    class Pool:
        def run(self, key, round_, threads, task, spec, timeout):
            calls.append(key)
            first = sum(k == key for k in calls) == 1
            return "ok", {"seconds": None} if first else {"seconds": seconds[spec], "cpu_other": 0.0}, None

        def close(self):
            closed.append(True)

    monkeypatch.setattr(workers, "POOL", Pool())
    specs = {"harness": "harness", "plain": "plain"}
    pairs, retried, why = interleave.worker_round("overhead-x", specs, 1, 2, MEASURE)
    assert why is None and retried == 0 and closed == [True]
    assert calls[:2] == ["overhead-x-plain-r1", "overhead-x-harness-r1"]
    assert set(pairs) == {(1.0, 2.0)}
