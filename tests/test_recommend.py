"""The documented flowcharts, the evidence rule and the `harness recommend` command line."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from rows import accuracy_row, speed_row

from harness import analysis, hardware, recommend, results
from harness.hardware import Hardware
from harness.recommend import Query, evidence, flowchart

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
    assert hardware.qint8_config_for(hw) == config
    assert recommend.documented_model_kwargs("onnx-qint8", hw) == {"file_name": file_name}


def test_no_quantization_config_fits():
    hw = Hardware("old", "intel", ("avx",), 4, 8, 16.0)
    with pytest.raises(ValueError, match="no ONNX int8 quantization config"):
        recommend.documented_model_kwargs("onnx-qint8", hw)


def test_flag_overrides_build_the_hardware():
    hw = recommend.effective_hardware(INTEL, cpu_vendor="arm")
    assert (hw.cpu_vendor, hw.cpu_flags) == ("arm", ())
    hw = recommend.effective_hardware(INTEL, flags=("asimd",))
    assert (hw.cpu_vendor, hw.cpu_flags) == ("arm", ("asimd",))
    hw = recommend.effective_hardware(GPU, no_gpu=True, flags=("avx2", "avx512f"))
    assert hw.gpu is None and hardware.qint8_config_for(hw) == "avx512"
    assert recommend.effective_hardware(INTEL, gpu="RTX 3090").gpu == "RTX 3090"


# ---------------------------------------------------------------------------- CLI


@pytest.fixture
def detected(monkeypatch):
    """Detection is slow (imports torch, onnxruntime, openvino): pretend to be INTEL."""
    monkeypatch.setattr(hardware, "detect", lambda probe_runtimes=False: INTEL)


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
    assert recommend.main([*argv, "--results", str(tmp_path)]) == 2
    _one_error_line(capsys, *needles)


def test_cli_json_from_the_store(capsys, tmp_path, detected):
    for row in base_rows():
        results.write_row(tmp_path, row)
    assert recommend.main(["--results", str(tmp_path), "--json", "--tolerance", "0.01"]) == 0
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
    assert recommend.main(["--results", str(tmp_path), "--cpu-vendor", "amd", "--tolerance", "0"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Recommended backend: onnx  [documented]")
    assert "Do you have an Intel CPU? no (amd)" in out
    # --machine uses that machine's recorded hardware and measurements
    assert recommend.main(["--results", str(tmp_path), "--machine", FP[:6], "--tolerance", "0"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Recommended backend: onnx  [measured]")
    assert "expected speedup:  1.50x" in out


def test_speed_only_store_falls_back_to_the_flowchart_and_lists_speedups(tmp_path):
    """Without any accuracy rows only torch-fp32 'qualifies'; that must not be sold as a measured winner."""
    from harness import recommend as rec_mod
    from harness import results as res

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
