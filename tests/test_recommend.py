"""The documented flowcharts, the evidence rule and the `harness recommend` command line."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from rows import accuracy_row, speed_row

from harness import recommend
from harness.backends.onnx import qint8_config_for
from harness.cli import recommend as recommend_cli
from harness.core import hardware
from harness.core.hardware import Hardware
from harness.recommend import Query, evidence, flowchart
from harness.store import analysis, results

INTEL = Hardware("Intel Xeon", "intel", ("avx2", "avx512_vnni", "avx512f"), 8, 16, 64.0)
AMD = Hardware("AMD EPYC", "amd", ("avx2",), 8, 16, 64.0)
ARM = Hardware("Neoverse", "arm", ("asimd",), 8, 8, 32.0)
GPU = Hardware("Intel Xeon", "intel", ("avx2",), 8, 16, 64.0, gpu="NVIDIA H100")
FP = INTEL.fingerprint


def speed(backend, throughput, **kw):
    defaults = dict(
        dataset="stsb", text_chars_mean=40.0, machine=FP, hardware=INTEL.to_dict(),
        settings={"st_backend": recommend.st_backend(backend), "model_path": f"/cache/{backend}", "model_kwargs": {}},
    )  # fmt: skip
    return speed_row(backend, throughput, **{**defaults, **kw})


def acc(backend, accuracy, **kw):
    return accuracy_row(backend, accuracy, **{"machine": FP, **kw})


def frame(*rows):
    return analysis.with_ratios(pd.DataFrame(list(rows), columns=list(results.COLUMNS)))


def base_rows():
    """fp32 100/s; onnx 150/s exact; onnx-qint8 300/s at 99.5%; openvino-qint8 250/s at 99.7%."""
    return [
        speed("torch-fp32", 100.0),
        speed("onnx", 150.0),
        speed("onnx-qint8", 300.0),
        speed("openvino-qint8", 250.0),
        acc("torch-fp32", 0.80),
        acc("onnx", 0.80),
        acc("onnx-qint8", 0.796),
        acc("openvino-qint8", 0.7976),
    ]


# ---------------------------------------------------------------------------- flowcharts


@pytest.mark.parametrize(
    ("kind", "hw", "text", "batch", "tol", "expected"),
    [
        # embedding models
        ("bi-encoder", GPU, 200, 32, 0.0, "onnx-O4"),
        ("bi-encoder", GPU, 499, 32, 0.0, "onnx-O4"),
        ("bi-encoder", GPU, 500, 32, 0.0, "torch-fp16"),
        ("bi-encoder", INTEL, 200, 32, 0.004, "openvino-qint8"),
        ("bi-encoder", AMD, 200, 32, 0.5, "openvino-qint8"),
        ("bi-encoder", INTEL, 200, 32, 0.0039, "openvino"),
        ("bi-encoder", AMD, 200, 32, 0.0, "onnx"),
        ("bi-encoder", ARM, 200, 32, 0.0, "onnx"),
        # cross-encoders
        ("cross-encoder", GPU, 5000, 16, 0.0, "onnx-O4"),
        ("cross-encoder", GPU, 10, 17, 0.0, "torch-fp16"),
        ("cross-encoder", INTEL, 200, 32, 0.01, "openvino-qint8"),
        ("cross-encoder", INTEL, 200, 32, 0.0099, "openvino"),
        ("cross-encoder", AMD, 200, 32, 0.0099, "onnx"),
        ("cross-encoder", ARM, 200, 32, 0.0, "onnx"),
    ],
)
def test_flowchart_branches(kind, hw, text, batch, tol, expected):
    backend, path = flowchart(kind, hw, text_length=text, batch_size=batch, tolerance=tol)
    assert backend == expected
    assert path[0].startswith("What is your hardware? " + ("GPU" if hw.gpu else "CPU"))


def test_flowchart_paths_name_the_questions():
    _, path = flowchart("bi-encoder", GPU, text_length=620, batch_size=32, tolerance=0)
    assert "smaller than 500 characters? no (620 characters)" in path[1]
    _, path = flowchart("bi-encoder", AMD, text_length=200, batch_size=32, tolerance=0.001)
    assert path[1].startswith("Is a 0.4% accuracy loss acceptable? no")
    assert path[2] == "Do you have an Intel CPU? no (amd)"
    _, path = flowchart("cross-encoder", INTEL, text_length=200, batch_size=32, tolerance=0.02)
    assert path[1].startswith("Are minor performance degradations acceptable? yes")
    assert len(path) == 2
    _, path = flowchart("cross-encoder", GPU, text_length=200, batch_size=8, tolerance=0)
    assert path[1].startswith("Are you using a small batch size? yes")


# ---------------------------------------------------------------------------- evidence


def test_fastest_qualifying_backend_wins_and_difference_is_explained():
    rec = recommend.recommend(frame(*base_rows()), Query(tolerance=0.01), INTEL)
    assert (rec.backend, rec.source) == ("onnx-qint8", "measured")
    assert rec.speedup == pytest.approx(3.0)
    assert rec.accuracy_ratio == pytest.approx(0.995)
    assert rec.flowchart_backend == "openvino-qint8"
    differs = next(r for r in rec.reasons if "differs" in r)
    assert "openvino-qint8" in differs and "2.50x" in differs and "3.00x" in differs
    assert 'SentenceTransformer("/cache/onnx-qint8", backend="onnx")' in rec.python


def test_tolerance_boundary():
    df = frame(*base_rows())
    # onnx-qint8 keeps exactly 99.5%: qualifies at 0.5%, not just below.
    assert recommend.recommend(df, Query(tolerance=0.005), INTEL).backend == "onnx-qint8"
    rec = recommend.recommend(df, Query(tolerance=0.0049), INTEL)
    assert rec.backend == "openvino-qint8"  # 99.7% still qualifies
    rejected = next(c for c in rec.evidence.candidates if c.backend == "onnx-qint8")
    assert not rejected.qualifies and "99.50% < 99.51%" in rejected.why
    # no loss accepted: only the lossless ones remain
    assert recommend.recommend(df, Query(tolerance=0.0), INTEL).backend == "onnx"


def test_ties_go_to_the_flowchart_then_to_the_name():
    rows = [
        speed("torch-fp32", 100.0),
        speed("onnx", 200.0),
        speed("openvino", 200.4),  # equal at the printed precision (2.00x)
        acc("torch-fp32", 0.8),
        acc("onnx", 0.8),
        acc("openvino", 0.8),
    ]
    df = frame(*rows)
    # tolerance 0 on Intel: the flowchart says openvino
    assert recommend.recommend(df, Query(tolerance=0.0), INTEL).backend == "openvino"
    # on AMD it says onnx
    assert recommend.recommend(df, Query(tolerance=0.0), AMD, machine=FP).backend == "onnx"
    # flowchart answer not among the tied: by name (onnx < openvino)
    assert recommend.recommend(df, Query(tolerance=0.5), INTEL).backend == "onnx"


def test_missing_fp32_baseline_means_no_evidence():
    rows = [r for r in base_rows() if not (r["kind"] == "speed" and r["backend"] == "torch-fp32")]
    rec = recommend.recommend(frame(*rows), Query(tolerance=0.01), INTEL)
    assert rec.source == "documented"
    assert rec.backend == "openvino-qint8"
    assert "no torch-fp32 baseline" in rec.reasons[0]
    assert rec.accuracy_ratio == pytest.approx(0.996)  # the flowchart's 0.4%
    assert "openvino/openvino_model_qint8_quantized.xml" in rec.python
    assert "export_static_quantized_openvino_model" in rec.python


def test_other_machines_rows_are_ignored():
    other = {"machine": "0123456789ab"}
    rows = base_rows() + [speed("onnx-O3", 900.0, **other), acc("onnx-O3", 0.8, **other)]
    rec = recommend.recommend(frame(*rows), Query(tolerance=0.01), INTEL)
    assert rec.backend == "onnx-qint8"
    assert "onnx-O3" not in {c.backend for c in rec.evidence.candidates}
    # and only other machines' rows: no evidence at all
    only_other = [dict(r, machine="0123456789ab") for r in base_rows()]
    rec = recommend.recommend(frame(*only_other), Query(tolerance=0.01), INTEL)
    assert rec.source == "documented" and f"on machine {FP}" in rec.reasons[0]


def test_contended_rows_are_ignored():
    rows = base_rows() + [speed("onnx-O3", 900.0, contended=True), acc("onnx-O3", 0.8)]
    rec = recommend.recommend(frame(*rows), Query(tolerance=0.01), INTEL)
    assert rec.backend == "onnx-qint8"
    assert "onnx-O3" not in {c.backend for c in rec.evidence.candidates}


def test_a_contended_baseline_makes_its_cell_contended():
    rows = [
        dict(r, contended=True) if r["backend"] == "torch-fp32" and r["kind"] == "speed" else r for r in base_rows()
    ]
    rec = recommend.recommend(frame(*rows), Query(tolerance=0.01), INTEL)
    assert rec.source == "documented"
    assert "measured under contention" in rec.reasons[0]


@pytest.mark.parametrize("status", ["unsupported", "failed", "timeout"])
def test_rows_that_did_not_run_are_ignored(status):
    rows = base_rows() + [speed("onnx-O4", 900.0, status=status, reason="x"), acc("onnx-O4", 0.8)]
    rec = recommend.recommend(frame(*rows), Query(tolerance=0.01), INTEL)
    assert rec.backend == "onnx-qint8"
    assert "onnx-O4" not in {c.backend for c in rec.evidence.candidates}


def test_backend_without_accuracy_rows_does_not_qualify_but_fp32_does():
    rows = [speed("torch-fp32", 100.0), speed("onnx-O3", 180.0)]
    ev = evidence(frame(*rows), Query(tolerance=1.0), FP)
    by = {c.backend: c for c in ev.candidates}
    assert not by["onnx-O3"].qualifies and "no accuracy" in by["onnx-O3"].why
    assert by["torch-fp32"].qualifies and by["torch-fp32"].accuracy_ratio == 1.0
    # with no accuracy measured for anything but the reference, the answer is the flowchart's,
    # not "torch-fp32 is the fastest qualifying backend"
    rec = recommend.recommend(frame(*rows), Query(tolerance=1.0), INTEL)
    assert rec.source == "documented" and rec.backend == rec.flowchart_backend
    assert "onnx-O3 1.80x" in " ".join(rec.reasons)


def test_accuracy_is_averaged_over_metrics():
    rows = [
        speed("torch-fp32", 100.0),
        speed("onnx-qint8", 300.0),
        acc("torch-fp32", 0.8),
        acc("torch-fp32", 0.5, metric="ndcg@10", dataset="nanobeir"),
        acc("onnx-qint8", 0.8),  # 100%
        acc("onnx-qint8", 0.49, metric="ndcg@10", dataset="nanobeir"),  # 98%
    ]
    ev = evidence(frame(*rows), Query(tolerance=0.01), FP)
    qint8 = next(c for c in ev.candidates if c.backend == "onnx-qint8")
    assert qint8.accuracy_ratio == pytest.approx(0.99)
    assert qint8.qualifies


def test_nearest_text_length_and_batch_size():
    rows = []
    for ds, chars, factor in (("stsb", 40.0, 3.0), ("nq", 620.0, 1.2)):
        for bs, bfactor in ((16, 1.0), (64, 1.1)):
            rows += [
                speed("torch-fp32", 100.0, dataset=ds, text_chars_mean=chars, batch_size=bs),
                speed("onnx-qint8", 100.0 * factor * bfactor, dataset=ds, text_chars_mean=chars, batch_size=bs),
            ]
    rows += [acc("torch-fp32", 0.8), acc("onnx-qint8", 0.8)]
    df = frame(*rows)
    ev = evidence(df, Query(text_length=60, batch_size=8), FP)
    assert ev.datasets == {"stsb": 40.0} and ev.batch_sizes == [16]
    assert ev.candidates[0].speedup == pytest.approx(3.0)
    # 200 characters is nearer 620 than 40 on a log scale
    ev = evidence(df, Query(text_length=200, batch_size=100), FP)
    assert list(ev.datasets) == ["nq"] and ev.batch_sizes == [64]
    assert ev.candidates[0].speedup == pytest.approx(1.32)
    # 32 is as near 16 as 64: both kept, speedup averaged
    ev = evidence(df, Query(text_length=40, batch_size=32), FP)
    assert ev.batch_sizes == [16, 64]
    assert ev.candidates[0].speedup == pytest.approx((3.0 + 3.3) / 2)


def test_model_kind_and_model_filters():
    rows = base_rows() + [
        speed("torch-fp32", 100.0, model_kind="cross-encoder", model="ce"),
        speed("onnx", 400.0, model_kind="cross-encoder", model="ce"),
        acc("torch-fp32", 0.5, model="ce"),
        acc("onnx", 0.5, model="ce"),
    ]
    df = frame(*rows)
    rec = recommend.recommend(df, Query(model_kind="cross-encoder", tolerance=0.0), INTEL)
    assert rec.backend == "onnx" and rec.speedup == pytest.approx(4.0)
    assert rec.python.startswith("from sentence_transformers import CrossEncoder")
    rec = recommend.recommend(df, Query(model="nope"), INTEL)
    assert rec.source == "documented" and "of nope" in rec.reasons[0]


def test_documented_gpu_recommendation_carries_docs_numbers():
    rec = recommend.recommend(frame(), Query(text_length=100), GPU)
    assert (rec.backend, rec.source, rec.speedup) == ("onnx-O4", "documented", 1.83)
    assert rec.accuracy_ratio is None
    assert '"file_name": "onnx/model_O4.onnx"' in rec.python
    rec = recommend.recommend(frame(), Query(text_length=1000), GPU)
    assert rec.backend == "torch-fp16"
    assert 'model_kwargs={"torch_dtype": "float16"}' in rec.python


# ---------------------------------------------------------------------------- quantization config


@pytest.mark.parametrize(
    ("flags", "vendor", "config", "file_name"),
    [
        (("avx2", "avx512f", "avx512_vnni"), "intel", "avx512_vnni", "onnx/model_qint8_avx512_vnni.onnx"),
        (("avx2", "avx512f"), "intel", "avx512", "onnx/model_qint8_avx512.onnx"),
        (("avx2",), "amd", "avx2", "onnx/model_quint8_avx2.onnx"),
        (("asimd",), "arm", "arm64", "onnx/model_qint8_arm64.onnx"),
        ((), "arm", "arm64", "onnx/model_qint8_arm64.onnx"),
    ],
)
def test_cpu_flags_choose_the_quantization_config(flags, vendor, config, file_name):
    hw = Hardware("cpu", vendor, flags, 4, 8, 16.0)
    assert qint8_config_for(hw) == config
    assert recommend.documented_model_kwargs("onnx-qint8", hw) == {"file_name": file_name}


def test_no_quantization_config_fits():
    hw = Hardware("old", "intel", ("avx",), 4, 8, 16.0)
    with pytest.raises(ValueError, match="no ONNX int8 quantization config"):
        recommend.documented_model_kwargs("onnx-qint8", hw)


def test_flag_overrides_build_the_hardware():
    hw = recommend_cli.effective_hardware(INTEL, cpu_vendor="arm")
    assert (hw.cpu_vendor, hw.cpu_flags) == ("arm", ())
    hw = recommend_cli.effective_hardware(INTEL, flags=("asimd",))
    assert (hw.cpu_vendor, hw.cpu_flags) == ("arm", ("asimd",))
    hw = recommend_cli.effective_hardware(GPU, no_gpu=True, flags=("avx2", "avx512f"))
    assert hw.gpu is None and qint8_config_for(hw) == "avx512"
    assert recommend_cli.effective_hardware(INTEL, gpu="RTX 3090").gpu == "RTX 3090"


# ---------------------------------------------------------------------------- CLI


@pytest.fixture
def detected(monkeypatch):
    """Detection is slow (imports torch, onnxruntime, openvino): pretend to be INTEL."""
    monkeypatch.setattr(hardware, "detect", lambda: INTEL)


def _one_error_line(capsys, *needles):
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("harness recommend: error:")
    for needle in needles:
        assert needle in lines[0]
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("argv", "needles"),
    [
        (["--gpu", "H100", "--no-gpu"], ("--gpu", "--no-gpu")),
        (
            ["--cpu-vendor", "arm", "--flags", "avx512f,avx512_vnni"],
            ("--cpu-vendor arm", "--flags", "avx512f"),
        ),
        (["--cpu-vendor", "amd", "--flags", "asimd"], ("--cpu-vendor amd", "asimd")),
        (["--flags", "avx2,asimd"], ("--flags", "x86", "ARM")),
        (["--flags", "avx512"], ("--flags", "'avx512'", "Did you mean")),
        (["--tolerance", "1.5"], ("--tolerance", "1.5", "between 0 and 1")),
        (["--tolerance", "-0.1"], ("--tolerance", "-0.1")),
        (["--batch-size", "0"], ("--batch-size", "0", "positive")),
        (["--text-length", "0"], ("--text-length", "positive")),
        (["--batch-size", "abc"], ("--batch-size", "abc")),
        (["--model-kind", "bi"], ("--model-kind", "bi-encoder")),
        (["--machine", "ffff"], ("--machine", "not in the result store")),
    ],
)
def test_cli_errors_exit_2_with_one_line(argv, needles, capsys, tmp_path, detected):
    assert recommend_cli.main([*argv, "--results", str(tmp_path)]) == 2
    _one_error_line(capsys, *needles)


def test_cli_json_from_the_store(capsys, tmp_path, detected):
    for row in base_rows():
        results.write_row(tmp_path, row)
    assert recommend_cli.main(["--results", str(tmp_path), "--json", "--tolerance", "0.01"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["backend"] == "onnx-qint8"
    assert out["speedup_source"] == out["accuracy_source"] == "measured"
    assert out["flowchart"]["backend"] == "openvino-qint8"
    assert out["machine"] == FP
    assert "SentenceTransformer(" in out["python"]


def test_cli_text_with_overrides_and_recorded_machine(capsys, tmp_path, detected):
    for row in base_rows():
        results.write_row(tmp_path, row)
    # Overriding the vendor describes another machine type: no evidence, documented answer.
    assert recommend_cli.main(["--results", str(tmp_path), "--cpu-vendor", "amd", "--tolerance", "0"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Recommended backend: onnx  [documented]")
    assert "Do you have an Intel CPU? no (amd)" in out
    # --machine uses that machine's recorded hardware and measurements
    assert recommend_cli.main(["--results", str(tmp_path), "--machine", FP[:6], "--tolerance", "0"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Recommended backend: onnx  [measured]")
    assert "expected speedup:  1.50x" in out


def test_speed_only_store_falls_back_to_the_flowchart_and_lists_speedups(tmp_path):
    """Without accuracy rows and without timed-text fidelity (rows written before it was measured) only
    torch-fp32 'qualifies'; that must not be sold as a measured winner."""
    from harness import recommend as rec_mod
    from harness.store import results as res

    hw = rec_mod.Hardware("AMD EPYC", "amd", ("avx", "avx2"), 2, 2, 16.0)
    for backend, tp in (("torch-fp32", 100.0), ("onnx", 150.0)):
        res.write_row(tmp_path, res.new_row(run="r", cell_id=backend, kind="speed", model="m", model_kind="bi-encoder",
                                            dataset="short", batch_size=32, backend=backend, status="ok",
                                            throughput=tp, machine=hw.fingerprint, threads=2,
                                            text_chars_mean=40.0, contended=False))  # fmt: skip
    query = rec_mod.Query(model_kind="bi-encoder", text_length=40, batch_size=32, tolerance=0.01)
    out = rec_mod.recommend(res.load(tmp_path), query, hw)
    assert out.source == "documented" and out.backend == "openvino-qint8"
    assert "accuracy was not" in " ".join(out.reasons) and "onnx 1.50x" in " ".join(out.reasons)


def test_snippet_builds_real_session_options_and_runs():
    """The recorded session options are data; the printed code must build the object ORT wants."""
    code = recommend.python_snippet(
        "bi-encoder", "/m", "onnx-qint8",
        {"file_name": "onnx/model_quint8_avx2.onnx", "provider": "CPUExecutionProvider",
         "session_options": {"intra_op_num_threads": 2, "inter_op_num_threads": 1, "allow_spinning": False}},
    )  # fmt: skip
    assert "ort.SessionOptions()" in code and '"session_options": session_options' in code
    prelude = code.split("from sentence_transformers")[0]
    scope: dict = {}
    exec(prelude, scope)  # the prelude itself runs and yields a real SessionOptions
    assert scope["session_options"].intra_op_num_threads == 2
    assert scope["session_options"].get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_swept_knob_variants_are_separate_candidates():
    """`-m backend.ov_precision=f32,bf16`: each variant is its own candidate with its own accuracy,
    never an average of both; a speed-only knob (ORT spinning) shares the accuracy of its backend."""
    bf16 = "ov_precision=bf16"
    rows = [
        speed("torch-fp32", 100.0),
        speed("openvino", 120.0),
        speed("openvino", 180.0, variant=bf16),
        speed("onnx", 110.0),
        speed("onnx", 115.0, variant="ort_spinning=True"),
        acc("torch-fp32", 0.80),
        acc("openvino", 0.80),
        acc("openvino", 0.784, variant=bf16),  # 98 %
        acc("onnx", 0.80),
    ]
    strict = evidence(frame(*rows), Query(tolerance=0.01), FP)
    by_label = {c.label: c for c in strict.candidates}
    assert set(by_label) == {"torch-fp32", "openvino", f"openvino [{bf16}]", "onnx", "onnx [ort_spinning=True]"}
    assert by_label["openvino"].speedup == pytest.approx(1.2)  # not (1.2 + 1.8) / 2
    assert by_label[f"openvino [{bf16}]"].accuracy_ratio == pytest.approx(0.98)
    assert not by_label[f"openvino [{bf16}]"].qualifies
    assert by_label["onnx [ort_spinning=True]"].accuracy_ratio == pytest.approx(1.0)
    assert strict.qualifying[0].label == "openvino"

    rec = recommend.recommend(frame(*rows), Query(tolerance=0.05), INTEL, FP)
    assert rec.backend == f"openvino [{bf16}]" and rec.speedup == pytest.approx(1.8)
    assert rec.evidence.candidates[0].variant == bf16


def _per_round(throughputs):
    return {"round": list(range(len(throughputs))), "throughput": list(throughputs),
            "per_request_throughput": list(throughputs), "latency_p99_ms": [1000.0 / t for t in throughputs],
            "requests": [300] * len(throughputs)}  # fmt: skip


@pytest.mark.parametrize("scenario", ["bulk", "online"])
def test_a_variant_tied_with_its_name_does_not_displace_it(scenario):
    """Measured on the AVX512-BF16 EPYC: `openvino-qint8 [ov_precision=f32]` 2.81x vs `openvino-qint8`
    2.80x. Their paired interval contains 1: the recommendation is the name (what `backend="openvino"`
    gives), and says they are tied; a variant better beyond the interval wins."""
    from harness.store.intervals import with_intervals

    f32 = "ov_precision=f32"
    timed = {"fidelity_source": "timed texts", "fidelity_min_cos": 0.995, "fidelity_mean_cos": 0.998,
             "agreement_loss": 0.003, "agreement_n": 1000, "agreement_metric": "neighbour_ndcg@10"}  # fmt: skip

    def rows(variant_speeds):
        base = [100.0, 96.0, 104.0]
        out = [speed("torch-fp32", 100.0, latency_p99_ms=10.0, per_round=_per_round(base), n_batches=900)]
        for variant, thr in (("", [280.0, 262.0, 295.0]), (f32, variant_speeds)):
            out.append(speed("openvino-qint8", sum(thr) / 3, variant=variant, latency_p99_ms=3000 / sum(thr),
                             per_round=_per_round(thr), n_batches=900, **timed))  # fmt: skip
        return [dict(r, batch_size=1) for r in out] if scenario == "online" else out

    rec = recommend.recommend(with_intervals(frame(*rows([283.0, 266.0, 290.0]))),
                              Query(tolerance=0.01, scenario=scenario), INTEL, FP)  # fmt: skip
    assert rec.backend == "openvino-qint8"
    tied = next(c for c in rec.evidence.candidates if c.variant == f32)
    assert tied.tied_with == "openvino-qint8" and tied.qualifies
    assert any("within the measurement's resolution" in r for r in rec.reasons)
    assert "tied with:" in recommend.format_text(rec)
    rec = recommend.recommend(with_intervals(frame(*rows([350.0, 330.0, 368.0]))),
                              Query(tolerance=0.01, scenario=scenario), INTEL, FP)  # fmt: skip
    assert rec.backend == f"openvino-qint8 [{f32}]"
    assert not any("within the measurement's resolution" in r for r in rec.reasons)


def test_same_kernels_tied_on_real_shapes_prefer_the_plain_name():
    """onnx and onnx-O1 run the same MatMul:fp32 kernels on CPU: tied; the recommendation is plain onnx
    (no O-level export), even when O1 measured a little faster."""
    from harness.store.intervals import with_intervals

    df = with_intervals(frame(
        speed("torch-fp32", 100.0, per_round=_per_round([100.0, 95.0, 103.0]), n_batches=900),
        speed("onnx", 150.0, per_round=_per_round([150.0, 140.0, 158.0]), n_batches=900),
        speed("onnx-O1", 155.0, per_round=_per_round([158.0, 141.0, 157.0]), n_batches=900),
        acc("torch-fp32", 0.8), acc("onnx", 0.8), acc("onnx-O1", 0.8),
    ))  # fmt: skip
    rec = recommend.recommend(df, Query(tolerance=0.0), AMD, machine=FP)
    assert rec.backend == "onnx"
    assert rec.chosen.tied_with == "onnx-O1"


@pytest.mark.parametrize("same", [True, False])
def test_same_kernels_are_tied_even_where_the_numbers_say_otherwise(same):
    """onnx-O1 measured 8 % above onnx in every round; its read-back is onnx's (the same executed graph and
    settings): tied, and the plain name is the answer. With another graph the numbers decide."""
    from harness.store.intervals import with_intervals

    ort = {"precision": "fp32", "kernels": {"MatMul:fp32": 36}, "graph_ops": 260, "graph_fingerprint": "a1b2c3d4"}
    o1 = ort if same else {**ort, "graph_fingerprint": "ffffffff"}
    df = with_intervals(frame(
        speed("torch-fp32", 100.0, per_round=_per_round([100.0, 95.0, 103.0]), n_batches=900),
        speed("onnx", 150.0, per_round=_per_round([150.0, 140.0, 158.0]), n_batches=900, runtime=ort),
        speed("onnx-O1", 162.0, per_round=_per_round([162.0, 151.2, 170.6]), n_batches=900, runtime=o1),
        acc("torch-fp32", 0.8), acc("onnx", 0.8), acc("onnx-O1", 0.8),
    ))  # fmt: skip
    rec = recommend.recommend(df, Query(tolerance=0.0), AMD, machine=FP)
    assert rec.backend == ("onnx" if same else "onnx-O1")
    if same:
        assert rec.chosen.tied_with == "onnx-O1"
        assert "the same kernels" in next(c for c in rec.evidence.candidates if c.label == "onnx-O1").tie


# ---------------------------------------------------------------------------- scenarios, constraints, fidelity


def rich_rows():
    """base_rows with p99 latency, peak memory and evaluation-set fidelity: onnx-qint8 is the fastest and
    qualifies on mean accuracy (99.5%), but its worst embedding has cosine 0.60 to torch-fp32."""
    extra = {
        "torch-fp32": dict(latency_p99_ms=10.0, peak_memory_mb=900.0),
        "onnx": dict(latency_p99_ms=7.0, peak_memory_mb=700.0),
        "onnx-qint8": dict(latency_p99_ms=4.0, peak_memory_mb=1500.0),
        "openvino-qint8": dict(latency_p99_ms=5.0, peak_memory_mb=600.0),
    }
    fidelity = {"onnx": (0.9999, 0.99999), "onnx-qint8": (0.60, 0.97), "openvino-qint8": (0.95, 0.995)}
    rows = []
    for r in base_rows():
        if r["kind"] == "speed":
            r = {**r, **extra[r["backend"]]}
        elif r["backend"] in fidelity:
            low, mean = fidelity[r["backend"]]
            r = {**r, "fidelity_min_cos": low, "fidelity_mean_cos": mean, "fidelity_source": "evaluation set"}
        rows.append(r)
    return rows


def rejected_reasons(rec, label):
    return next(r["reasons"] for r in rec.evidence.rejections if r["backend"] == label)


def test_a_latency_constraint_excludes_the_fastest():
    df = frame(*rich_rows())
    assert recommend.recommend(df, Query(tolerance=0.01), INTEL).backend == "onnx-qint8"
    rec = recommend.recommend(df, Query(tolerance=0.01, max_latency_ms=4.5), INTEL)
    assert rec.backend == "onnx-qint8"  # 4.0 ms fits
    rec = recommend.recommend(df, Query(tolerance=0.01, max_latency_ms=3.9), INTEL)
    assert rec.backend is None  # nothing is that fast
    rec = recommend.recommend(df, Query(tolerance=0.01, max_latency_ms=6.0), INTEL)
    assert rec.backend == "onnx-qint8"
    rec = recommend.recommend(df, Query(tolerance=0.01, max_memory_mb=1000), INTEL)
    assert rec.backend == "openvino-qint8"
    assert rejected_reasons(rec, "onnx-qint8") == ["--max-memory-mb 1000: peak memory 1500.0 MB"]
    assert "--max-memory-mb 1000: peak memory 1500.0 MB" in recommend.format_text(rec)
    assert "this agrees with the documented flowchart" in rec.reasons


def test_an_unmeasured_number_breaks_its_constraint():
    rows = [dict(r, peak_memory_mb=None) if r["backend"] == "onnx-qint8" else r for r in rich_rows()]
    rec = recommend.recommend(frame(*rows), Query(tolerance=0.01, max_memory_mb=5000), INTEL)
    assert rec.backend == "openvino-qint8"
    assert rejected_reasons(rec, "onnx-qint8") == ["--max-memory-mb 5000: peak memory not measured"]


def test_a_cosine_floor_excludes_a_candidate_whose_mean_accuracy_qualifies():
    df = frame(*rich_rows())
    rec = recommend.recommend(df, Query(tolerance=0.01, min_cosine=0.9), INTEL)
    assert rec.backend == "openvino-qint8"
    qint8 = next(c for c in rec.evidence.candidates if c.backend == "onnx-qint8")
    assert qint8.accuracy_ratio == pytest.approx(0.995) and "99.50% >= 99.00%" in qint8.why  # the aggregate is fine
    assert qint8.rejected == ["--min-cosine 0.9: worst-case min cosine 0.6000 (evaluation set)"]
    # the answer prints its own worst case, labelled with where it was measured
    assert rec.chosen.fidelity == {"min_cos": 0.95, "mean_cos": 0.995}
    text = recommend.format_text(rec)
    assert "worst-case fidelity to torch-fp32: min cosine 0.9500, mean cosine 0.9950  [evaluation set]" in text
    # the reference is never held to a fidelity floor
    assert recommend.recommend(df, Query(tolerance=0.0, min_cosine=0.9999), INTEL).backend == "onnx"


def test_accuracy_is_printed_per_metric():
    rows = rich_rows() + [
        acc("torch-fp32", 0.5, metric="ndcg@10", dataset="nanobeir"),
        acc("onnx-qint8", 0.5, metric="ndcg@10", dataset="nanobeir"),
        acc("openvino-qint8", 0.49, metric="ndcg@10", dataset="nanobeir"),
    ]
    rec = recommend.recommend(frame(*rows), Query(tolerance=0.02), INTEL)
    assert rec.backend == "onnx-qint8"
    assert rec.chosen.accuracy_by_metric == pytest.approx({"sts_spearman": 0.995, "ndcg@10": 1.0})
    assert "accuracy per metric: ndcg@10 100.00%, sts_spearman 99.50%" in rec.reasons
    assert "per metric:      ndcg@10 100.00%, sts_spearman 99.50%" in recommend.format_text(rec)


def test_no_candidate_left_says_which_rule_removed_what(capsys, tmp_path, detected):
    for row in rich_rows():
        results.write_row(tmp_path, row)
    argv = ["--results", str(tmp_path), "--tolerance", "0.01", "--max-memory-mb", "650", "--min-cosine", "0.99"]
    assert recommend_cli.main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("No backend meets every rule")
    assert "Load it with" not in out
    assert "  - torch-fp32: --max-memory-mb 650: peak memory 900.0 MB" in out
    assert "  - openvino-qint8: --min-cosine 0.99: worst-case min cosine 0.9500 (evaluation set)" in out
    assert "the documented flowchart's openvino-qint8 is rejected too" in out
    assert recommend_cli.main([*argv, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["backend"] is None and data["python"] == ""
    rejected = {r["backend"]: r["reasons"] for r in data["rejected"]}
    assert set(rejected) == {"torch-fp32", "onnx", "onnx-qint8", "openvino-qint8"}
    assert rejected["onnx-qint8"] == [
        "--min-cosine 0.99: worst-case min cosine 0.6000 (evaluation set)",
        "--max-memory-mb 650: peak memory 1500.0 MB",
    ]


def online_rows():
    """Batch 32: onnx-qint8 has the best throughput. Batch 1: openvino has the lowest p99 latency."""
    rows = [acc("torch-fp32", 0.8), acc("onnx-qint8", 0.8), acc("openvino", 0.8)]
    for backend, bulk, p99_32, p99_1, per_request_1 in (
        ("torch-fp32", 100.0, 300.0, 9.0, 110.0),
        ("onnx-qint8", 300.0, 110.0, 6.0, 170.0),
        ("openvino", 200.0, 150.0, 3.0, 330.0),
    ):
        rows.append(speed(backend, bulk, latency_p99_ms=p99_32))
        rows.append(speed(backend, bulk / 4, batch_size=1, latency_p99_ms=p99_1, per_request_throughput=per_request_1))
    return rows


def test_online_scenario_ranks_batch_1_rows_by_p99_latency():
    df = frame(*online_rows())
    assert recommend.recommend(df, Query(tolerance=0.01), INTEL).backend == "onnx-qint8"  # bulk, batch 32
    rec = recommend.recommend(df, Query(tolerance=0.01, scenario="online"), INTEL)
    assert rec.backend == "openvino" and rec.evidence.batch_sizes == [1]
    assert rec.chosen.latency_p99_ms == 3.0
    assert rec.speedup == pytest.approx(3.0)  # per-request throughput, batch size 1
    best = next(r for r in rec.reasons if "lowest p99 latency" in r)
    assert "p99 3.00 ms (torch-fp32 p99 9.00 ms)" in best
    assert any("scenario online" in r and "batch size 1" in r for r in rec.reasons)
    text = recommend.format_text(rec)
    assert "scenario:          online, batch size 1" in text
    assert "p99 latency:       3.00 ms per request of batch size 1" in text
    # the budget applies to the chosen (batch-1) rows: 5 ms rejects only torch-fp32 and onnx-qint8
    rec = recommend.recommend(df, Query(tolerance=0.01, scenario="online", max_latency_ms=5), INTEL)
    assert rec.backend == "openvino"
    assert rejected_reasons(rec, "onnx-qint8") == ["--max-latency-ms 5: p99 latency 6.0 ms"]
    # openvino slower at batch 1: onnx-qint8 wins, and the answer names the flowchart's pick
    rows = [dict(r, latency_p99_ms=7.0) if r["backend"] == "openvino" and r["batch_size"] == 1 else r
            for r in online_rows()]  # fmt: skip
    rec = recommend.recommend(frame(*rows), Query(tolerance=0.0, scenario="online"), INTEL)
    assert rec.backend == "onnx-qint8"
    assert any(r.startswith("this differs from the documented flowchart's openvino") for r in rec.reasons)


def test_online_without_batch_1_rows_says_which_batch_size_it_used():
    rows = [r for r in online_rows() if r["batch_size"] != 1]
    rec = recommend.recommend(frame(*rows), Query(tolerance=0.01, scenario="online"), INTEL)
    assert rec.evidence.batch_sizes == [32] and rec.backend == "onnx-qint8"  # 110 ms p99 at batch 32
    assert any("batch size 1 was not measured here" in r for r in rec.reasons)


def speed_only_rows():
    """No labelled data: speed rows with label-free fidelity on the timed texts (as the README's main command)."""
    timed = {"fidelity_source": "timed texts"}
    return [
        speed("torch-fp32", 100.0),
        speed("onnx", 150.0, fidelity_min_cos=0.99999, fidelity_mean_cos=1.0, **timed),
        speed("openvino-qint8", 250.0, fidelity_min_cos=0.992, fidelity_mean_cos=0.997, **timed),
        speed("onnx-qint8", 300.0, fidelity_min_cos=0.93, fidelity_mean_cos=0.99, **timed),
        speed("openvino", 400.0, fidelity_source="timed texts: no torch-fp32 outputs (its cell has not run or failed)"),
    ]


def test_a_store_with_timed_text_fidelity_but_no_task_loss_decides_on_an_explicit_floor_only():
    """Rows from before the label-free task loss: the tolerance (a task-metric drop) cannot be read off a
    cosine, so every candidate says so, and --min-cosine decides when given (tests/test_task_loss.py: with it)."""
    df = frame(*speed_only_rows())
    rec = recommend.recommend(df, Query(tolerance=0.01), INTEL)
    assert rec.evidence.basis == "label-free fidelity on the timed texts, no labelled data"
    assert rec.backend == "torch-fp32"  # the only one known to lose nothing
    assert all("--tolerance cannot be checked" in rejected_reasons(rec, b)[0] for b in ("onnx", "onnx-qint8"))
    rec = recommend.recommend(df, Query(tolerance=0.01, min_cosine=0.99), INTEL)
    assert (rec.backend, rec.source) == ("openvino-qint8", "measured")  # min cosine 0.992 >= 0.99
    assert rec.accuracy_ratio is None and rec.chosen.fidelity_source == "timed texts"
    assert rejected_reasons(rec, "onnx-qint8") == ["--min-cosine 0.99: worst-case min cosine 0.9300 (timed texts)"]
    assert rejected_reasons(rec, "openvino") == ["--min-cosine 0.99: no min cosine to torch-fp32 measured"]
    text = recommend.format_text(rec)
    assert "decided on:        measured speed and label-free fidelity on the timed texts, no labelled data" in text
    assert "accuracy retained: not measured (no labelled data)" in text
    assert "[timed texts]" in text and "this agrees with the documented flowchart" in text
    assert recommend.recommend(df, Query(tolerance=0.01, min_cosine=0.9), INTEL).backend == "onnx-qint8"
    assert recommend.recommend(df, Query(tolerance=0.0, min_cosine=1.0), INTEL).backend == "torch-fp32"


def test_cross_encoder_floor_is_on_spearman_and_prints_max_abs_diff():
    ce = dict(model_kind="cross-encoder", model="ce", agreement_loss=0.02, agreement_n=1000,
              agreement_metric="rerank_ndcg@10")  # fmt: skip
    rows = [
        speed("torch-fp32", 100.0, **ce),
        speed("onnx-qint8", 300.0, fidelity_spearman=0.97, fidelity_max_abs_diff=0.4, fidelity_source="timed texts",
              **ce),
        speed("onnx", 150.0, fidelity_spearman=0.9999, fidelity_max_abs_diff=0.001, fidelity_source="timed texts",
              **ce),
    ]  # fmt: skip
    q = dict(model_kind="cross-encoder", tolerance=0.05)
    rec = recommend.recommend(frame(*rows), Query(**q), INTEL)
    assert rec.backend == "onnx-qint8" and rec.chosen.fidelity == {"spearman": 0.97, "max_abs_diff": 0.4}
    assert "Spearman 0.9700, max |Δ| 0.4000  [timed texts]" in recommend.format_text(rec)
    rec = recommend.recommend(frame(*rows), Query(**q, min_spearman=0.99), INTEL)
    assert rec.backend == "onnx"
    assert rejected_reasons(rec, "onnx-qint8") == ["--min-spearman 0.99: worst-case Spearman 0.9700 (timed texts)"]


def test_evaluation_set_fidelity_wins_over_timed_texts():
    rows = [
        dict(r, fidelity_min_cos=0.999, fidelity_source="timed texts")
        if r["kind"] == "speed" and r["backend"] != "torch-fp32"
        else r
        for r in rich_rows()
    ]
    ev = evidence(frame(*rows), Query(tolerance=0.01), FP)
    qint8 = next(c for c in ev.candidates if c.backend == "onnx-qint8")
    assert qint8.fidelity["min_cos"] == 0.60 and qint8.fidelity_source == "evaluation set"


def test_cli_json_carries_per_metric_ratios_worst_fidelity_and_rejections(capsys, tmp_path, detected):
    for row in rich_rows():
        results.write_row(tmp_path, row)
    argv = ["--results", str(tmp_path), "--json", "--tolerance", "0.01", "--min-cosine", "0.9"]
    assert recommend_cli.main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["backend"] == "openvino-qint8" and out["scenario"] == "bulk" and out["batch_sizes"] == [32]
    assert out["accuracy_by_metric"] == pytest.approx({"sts_spearman": 0.997})
    assert out["fidelity"] == {"worst_case": {"min_cos": 0.95, "mean_cos": 0.995}, "source": "evaluation set"}
    assert out["latency_p99_ms"] == 5.0 and out["peak_memory_mb"] == 600.0
    assert out["basis"] == "labelled accuracy (evaluation sets)"
    assert out["rejected"] == [
        {"backend": "onnx-qint8", "reasons": ["--min-cosine 0.9: worst-case min cosine 0.6000 (evaluation set)"]}
    ]
    assert out["query"]["min_cosine"] == 0.9


@pytest.mark.parametrize(
    ("argv", "needles"),
    [
        (["--scenario", "batch"], ("--scenario", "online")),
        (["--max-latency-ms", "0"], ("--max-latency-ms", "positive")),
        (["--max-memory-mb", "-5"], ("--max-memory-mb", "positive")),
        (["--min-cosine", "1.5"], ("--min-cosine", "between -1 and 1")),
        (["--model-kind", "cross-encoder", "--min-cosine", "0.9"], ("--min-cosine", "--min-spearman")),
        (["--min-spearman", "0.9"], ("--min-spearman", "--min-cosine")),
    ],
)
def test_cli_rule_errors_exit_2_with_one_line(argv, needles, capsys, tmp_path, detected):
    assert recommend_cli.main([*argv, "--results", str(tmp_path)]) == 2
    _one_error_line(capsys, *needles)
