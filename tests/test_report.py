"""Charts, pages and the `harness report` command line, on a synthetic but realistic store."""

from __future__ import annotations

import random

import pandas as pd
import pytest
from matplotlib.figure import Figure
from rows import accuracy_row, speed_row

from harness.cli import report as cli
from harness.core.hardware import Hardware
from harness.report import charts, pages
from harness.store import analysis, results

CPU_HW = Hardware("Intel(R) Xeon(R) Platinum 8480+", "intel", ("avx2", "avx512_vnni", "avx512f"), 8, 16, 64.0)
GPU_HW = Hardware("AMD EPYC 9654", "amd", ("avx2", "avx512f"), 16, 32, 128.0, gpu="NVIDIA H100 80GB HBM3")

# backend -> (CPU speedup, GPU speedup or None when it runs on the CPU, accuracy ratio)
PROFILE = {
    "torch-fp32": (1.0, 1.0, 1.0),
    "torch-fp16": (0.35, 2.9, 0.9995),
    "torch-bf16": (0.9, 2.8, 0.993),
    "onnx": (1.3, 1.4, 1.0),
    "onnx-O1": (1.32, 1.45, 1.0),
    "onnx-O2": (1.36, 1.6, 1.0),
    "onnx-O3": (1.4, 1.62, 0.9999),
    "onnx-O4": (None, 1.85, 0.998),
    "onnx-qint8": (2.6, None, 0.988),
    "openvino": (1.25, None, 1.0),
    "openvino-qint8": (2.9, None, 0.995),
}
DATASETS = {"stsb": 39.0, "nq": 619.6}
KWARGS = {
    "onnx-O1": {"file_name": "onnx/model_O1.onnx"},
    "onnx-O2": {"file_name": "onnx/model_O2.onnx"},
    "onnx-O3": {"file_name": "onnx/model_O3.onnx"},
    "onnx-O4": {"file_name": "onnx/model_O4.onnx"},
    "onnx-qint8": {"file_name": "onnx/model_qint8_avx512_vnni.onnx"},
    "openvino-qint8": {"file_name": "openvino/openvino_model_qint8_quantized.xml"},
    "torch-fp16": {"torch_dtype": "float16"},
    "torch-bf16": {"torch_dtype": "bfloat16"},
}


def make_rows(
    hw: Hardware = CPU_HW,
    *,
    models=("sentence-transformers/all-MiniLM-L6-v2", "BAAI/bge-base-en-v1.5"),
    model_kind: str = "bi-encoder",
    batch_sizes=(16, 64),
    run: str = "synthetic",
    contended: tuple[str, ...] = ("openvino",),
    seed: int = 0,
) -> list[dict]:
    """Speed rows for every backend x dataset x batch size x model, plus accuracy rows.

    onnx-O4 is unsupported on a CPU-only machine; `contended` backends get one contended cell.
    """
    rng = random.Random(seed)
    rows = []
    gpu = hw.gpu is not None
    for model in models:
        base = 900.0 if "MiniLM" in model else 180.0
        for ds, chars in DATASETS.items():
            length_cost = 1.0 if chars < 100 else 6.0
            for bs in batch_sizes:
                fp32 = base / length_cost * (1 + 0.1 * (bs == 64)) * (4 if gpu else 1)
                for backend, (cpu_x, gpu_x, _) in PROFILE.items():
                    x = (gpu_x if gpu_x is not None else cpu_x * 0.3) if gpu else cpu_x
                    st = backend.split("-")[0]
                    kwargs = dict(KWARGS.get(backend, {}))
                    if st == "onnx":
                        on_gpu = gpu and gpu_x is not None
                        kwargs["provider"] = "CUDAExecutionProvider" if on_gpu else "CPUExecutionProvider"
                    row = dict(
                        run=run,
                        kind="speed",
                        model=model,
                        model_kind=model_kind,
                        dataset=ds,
                        batch_size=bs,
                        backend=backend,
                        machine=hw.fingerprint,
                        hardware=hw.to_dict(),
                        text_chars_mean=chars,
                        settings={
                            "st_backend": st,
                            "model_path": f"/cache/{model}/{backend}",
                            "model_kwargs": kwargs,
                        },
                        versions={
                            "sentence_transformers": "5.7.0",
                            "torch": "2.13.0",
                            "onnxruntime": "1.32.0",
                        },
                        threads=hw.cores_physical,
                        timestamp="2025-01-01T00:00:00",
                    )
                    row["cell_id"] = f"speed-{model.replace('/', '_')}-{ds}-{bs}-{backend}"
                    if x is None:
                        row.update(status="unsupported", reason="O4 is fp16 and needs a CUDA GPU")
                    else:
                        # long texts help int8 less
                        x = x * (0.8 if chars > 100 and "qint8" in backend else 1.0) * rng.uniform(0.95, 1.05)
                        x = 1.0 if backend == "torch-fp32" else x
                        tput = fp32 * x
                        lat = bs / tput * 1000
                        tok, fwd = (0.06, 0.9) if chars > 100 else (0.2, 0.75)  # at fp32
                        fwd = fwd / x  # the backend speeds up the forward pass, not tokenization
                        row.update(
                            status="ok",
                            throughput=tput,
                            latency_p50_ms=lat,
                            latency_p90_ms=lat * 1.1,
                            latency_p99_ms=lat * 1.3,
                            cv=0.03,
                            peak_memory_mb=900.0,
                            contended=backend in contended and bs == batch_sizes[0] and ds == "stsb",
                            tokenize_share=tok / (tok + fwd + 0.04),
                            forward_share=fwd / (tok + fwd + 0.04),
                            other_share=0.04 / (tok + fwd + 0.04),
                        )
                    rows.append(speed_row(row.pop("backend"), row.pop("throughput", None), **row))
        for backend, (cpu_x, gpu_x, ratio) in PROFILE.items():
            if (gpu_x if gpu else cpu_x) is None and not (gpu and cpu_x is not None):
                continue
            for metric, eval_ds, score in (("sts_spearman", "stsb", 0.82), ("ndcg@10", "nanobeir", 0.55)):
                rows.append(
                    accuracy_row(
                        backend,
                        score * ratio,
                        run=run,
                        model=model,
                        model_kind=model_kind,
                        dataset=eval_ds,
                        metric=metric,
                        fidelity_mean_cos=0.9999 if ratio == 1.0 else 0.995,
                        machine=hw.fingerprint,
                        hardware=hw.to_dict(),
                        cell_id=f"acc-{model.replace('/', '_')}-{eval_ds}-{backend}",
                    )
                )
    return rows


def make_store(root, rows) -> None:
    for row in rows:
        results.write_row(root, row)


@pytest.fixture
def df():
    rows = make_rows()
    rows += make_rows(models=("cross-encoder/ms-marco-MiniLM-L6-v2",), model_kind="cross-encoder", contended=())
    return analysis.with_ratios(pd.DataFrame(rows, columns=list(results.COLUMNS)))


def _bars(fig: Figure) -> int:
    return sum(len(ax.patches) for ax in fig.axes)


# ---------------------------------------------------------------------------- charts


def test_speedup_chart_one_bar_per_measured_backend(df):
    fig = charts.speedup_chart(df, "bi-encoder")
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 1  # CPU-only store: one panel
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == [b for b in charts.BACKEND_ORDER if b != "onnx-O4"]  # canonical order, no unsupported
    assert len(ax.patches) == 10
    texts = [t.get_text() for t in ax.texts]
    assert "98.8%" in texts and "100.0%" in texts and "99.95%" in texts  # fp16: 99.95% not rounded away
    foot = " ".join(t.get_text() for t in fig.texts)
    assert "onnx-O4: unsupported" in foot
    assert "2 contended measurement(s) excluded" in foot.replace("\n", " ")


def test_speedup_chart_has_a_panel_per_device():
    rows = make_rows(GPU_HW, contended=())
    fig = charts.speedup_chart(analysis.with_ratios(pd.DataFrame(rows, columns=list(results.COLUMNS))), "bi-encoder")
    assert [ax.get_title(loc="left") for ax in fig.axes] == ["GPU - NVIDIA H100 80GB HBM3"]
    assert len(fig.axes[0].patches) == 8  # torch x3 and onnx x5 (O4 runs on the GPU here)
    foot = " ".join(t.get_text() for t in fig.texts).replace("\n", " ")
    assert "No speedup for onnx-qint8, openvino, openvino-qint8: no torch-fp32" in foot  # CPU rows, GPU baseline

    # torch-fp32 run with backend.device=cpu in the same run: the CPU backends' baseline
    cpu_fp32 = [
        dict(r, runtime={"device": "cpu"}, cell_id=r["cell_id"] + "-cpu", throughput=r["throughput"] / 4)
        for r in rows
        if r["kind"] == "speed" and r["backend"] == "torch-fp32"
    ]
    df = analysis.with_ratios(pd.DataFrame(rows + cpu_fp32, columns=list(results.COLUMNS)))
    fig = charts.speedup_chart(df, "bi-encoder")
    titles = [ax.get_title(loc="left") for ax in fig.axes]
    assert titles == ["CPU - AMD EPYC 9654", "GPU - NVIDIA H100 80GB HBM3"]
    cpu, gpu = fig.axes
    assert len(cpu.patches) == 4  # torch-fp32 on the CPU, onnx-qint8, openvino, openvino-qint8
    assert len(gpu.patches) == 8


def test_no_chart_for_a_missing_model_kind(df):
    only_bi = df[df["model_kind"] == "bi-encoder"]
    assert charts.speedup_chart(only_bi, "cross-encoder") is None
    assert charts.all_charts(only_bi, "cross-encoder") == {}


def test_breakdowns(df):
    fig = charts.speedup_by_dataset(df, "bi-encoder")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["stsb\n39 chars", "nq\n620 chars"]
    assert len(ax.get_yticklabels()) == 11  # onnx-O4 row present, marked unsupported
    cells = [t.get_text() for t in ax.texts]
    assert cells.count("unsupported") == 2
    fig = charts.speedup_by_batch_size(df, "bi-encoder")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["16", "64"]
    assert ax.images[0].get_array().shape == (11, 2)


def test_contended_only_cell_is_hatched():
    rows = make_rows(models=("sentence-transformers/all-MiniLM-L6-v2",), batch_sizes=(16,))
    df = analysis.with_ratios(pd.DataFrame(rows, columns=list(results.COLUMNS)))
    fig = charts.speedup_by_dataset(df, "bi-encoder")
    ax = fig.axes[0]
    hatched = [p for p in ax.patches if p.get_hatch()]
    assert len(hatched) == 1
    assert any(t.get_text().startswith("~") for t in ax.texts)


def test_pareto_front():
    pts = {"a": (1.0, 100.0), "b": (2.0, 99.0), "c": (1.5, 98.0), "d": (3.0, 97.0), "e": (2.0, 99.0)}
    assert charts.pareto_front(pts) == ["a", "b", "e", "d"]


def test_accuracy_vs_speedup(df):
    fig = charts.accuracy_vs_speedup(df, "bi-encoder")
    ax = fig.axes[0]
    assert len(ax.collections) == 10  # one point per backend with accuracy and speed
    front = {t.get_text() for t in ax.texts}
    assert "openvino-qint8" in front  # fastest of all
    assert "torch-fp32" not in front  # plain onnx is as accurate and faster
    assert "torch-fp16" not in front  # slower and less accurate than fp32 on a CPU


def test_fidelity_vs_speedup_plots_the_worst_case():
    """Evaluation-set fidelity where measured, else the timed texts' (a speed-only store has a chart too);
    a backend with neither is left out, torch-fp32 sits at 1."""
    common = dict(machine=CPU_HW.fingerprint, hardware=CPU_HW.to_dict(), text_chars_mean=40.0)
    timed = dict(fidelity_source="timed texts", **common)
    rows = [
        speed_row("torch-fp32", 100.0, **common),
        speed_row("onnx", 150.0, fidelity_min_cos=0.9999, **timed),
        speed_row("onnx-qint8", 300.0, fidelity_min_cos=0.99, **timed),  # the evaluation set says 0.60
        speed_row("openvino", 200.0, **common),  # no fidelity at all
        accuracy_row("torch-fp32", 0.8, machine=CPU_HW.fingerprint),
        accuracy_row("onnx-qint8", 0.796, machine=CPU_HW.fingerprint, fidelity_min_cos=0.60,
                     fidelity_source="evaluation set"),
    ]  # fmt: skip
    df = charts.by_label(analysis.with_ratios(pd.DataFrame(rows, columns=list(results.COLUMNS))))
    fig = charts.fidelity_vs_speedup(df, "bi-encoder")
    ax = fig.axes[0]
    points = {c.get_label(): tuple(c.get_offsets()[0]) for c in ax.collections}
    assert points == {"torch-fp32": (1.0, 1.0), "onnx": (1.5, 0.9999), "onnx-qint8": (3.0, 0.60)}
    assert "worst-case cosine" in ax.get_ylabel()
    assert "fidelity-vs-speedup" in charts.all_charts(df, "bi-encoder")
    # nothing but the reference: no chart
    assert charts.fidelity_vs_speedup(df[df["backend"].isin(["torch-fp32", "openvino"])], "bi-encoder") is None


def test_time_breakdown(df):
    fig = charts.time_breakdown(df, "bi-encoder")
    assert _bars(fig) == 3 * 10
    no_shares = df.assign(tokenize_share=None, forward_share=None, other_share=None)
    assert charts.time_breakdown(no_shares, "bi-encoder") is None


def test_device_of():
    gpu = GPU_HW.to_dict()
    assert charts.device_of({"backend": "torch-fp16", "hardware": gpu}) == "GPU"
    assert charts.device_of({"backend": "openvino", "hardware": gpu}) == "CPU"
    provider = {"model_kwargs": {"provider": "CPUExecutionProvider"}}
    assert charts.device_of({"backend": "onnx", "hardware": gpu, "settings": provider}) == "CPU"
    assert (
        charts.device_of({"backend": "onnx", "hardware": dict(gpu, ort_providers=["CUDAExecutionProvider"])}) == "GPU"
    )
    assert charts.device_of({"backend": "torch-fp32", "hardware": CPU_HW.to_dict()}) == "CPU"
    assert charts.device_of({"backend": "torch-fp32", "hardware": gpu, "runtime": {"device": "cpu"}}) == "CPU"


# ---------------------------------------------------------------------------- pages and CLI


@pytest.fixture(autouse=True)
def low_dpi(monkeypatch):
    """Rendering PNGs dominates the run time; the pixels' count is not what these tests check."""
    monkeypatch.setattr(pages, "DPI", 30)


def test_pages_carry_fingerprint_tables_and_images(df, tmp_path):
    written = pages.write_report(df, tmp_path)
    names = {p.name for p in written}
    assert {"index.html", "report.md", "bi-encoder-speedup.png", "cross-encoder-speedup.png"} <= names
    html = (tmp_path / "index.html").read_text()
    md = (tmp_path / "report.md").read_text()
    for page in (html, md):
        assert CPU_HW.fingerprint in page
        assert "Intel(R) Xeon(R) Platinum 8480+" in page
        assert "O4 is fp16 and needs a CUDA GPU" in page
        assert "sentence_transformers" in page and "5.7.0" in page
        assert "contended" in page
    assert html.count("data:image/png;base64,") == sum(n.endswith(".png") for n in names)
    assert "<table" in html and "<th>throughput" in html
    assert "![" in md and "(bi-encoder-speedup.png)" in md
    assert "| backend |" in md


@pytest.fixture
def fast_png(monkeypatch):
    """The CLI tests check what is written where, not the pixels (rendering is tested above)."""
    monkeypatch.setattr(pages, "figure_png", lambda fig: b"\x89PNG fake")


def test_cli_writes_files(tmp_path, capsys, fast_png):
    store, out = tmp_path / "results", tmp_path / "reports"
    make_store(store, make_rows(models=("sentence-transformers/all-MiniLM-L6-v2",)))
    assert cli.main(["--results", str(store), "--out", str(out)]) == 0
    printed = capsys.readouterr().out.split()
    assert str(out / "index.html") in printed and str(out / "report.md") in printed
    assert (out / "bi-encoder-speedup.png").read_bytes().startswith(b"\x89PNG")


def test_cli_filters(tmp_path, capsys, fast_png):
    store, out = tmp_path / "results", tmp_path / "reports"
    make_store(store, make_rows(models=("sentence-transformers/all-MiniLM-L6-v2",), batch_sizes=(16,)))
    assert cli.main(["--results", str(store), "--out", str(out), "--machine", CPU_HW.fingerprint[:5]]) == 0
    capsys.readouterr()
    assert cli.main(["--results", str(store), "--out", str(out), "--run", "nope"]) == 2
    assert "no result rows" in capsys.readouterr().err
    assert cli.main(["--results", str(store), "--out", str(out), "--model-kind", "cross-encoder"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--model-kind cross-encoder" in err[0]


def test_cli_empty_store_exits_2(tmp_path, capsys):
    assert cli.main(["--results", str(tmp_path / "none"), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("harness report: error: no result rows")
    assert not (tmp_path / "r").exists()


def test_swept_variants_are_their_own_backends_in_tables():
    """`-m backend.ov_precision=f32,bf16`: the report names each variant, never averages them, shows
    the precision each ran in, and a speed-only variant shows the accuracy it shares."""
    fp = CPU_HW.fingerprint
    common = dict(machine=fp, hardware=CPU_HW.to_dict(), text_chars_mean=40.0)
    rows = [
        speed_row("torch-fp32", 100.0, precision="fp32", **common),
        speed_row("openvino", 120.0, precision="fp32", **common),
        speed_row("openvino", 180.0, precision="bf16", variant="ov_precision=None", **common),
        speed_row("onnx", 110.0, precision="fp32", **common),
        speed_row("onnx", 112.0, precision="fp32", variant="ort_spinning=True", **common),
        accuracy_row("torch-fp32", 0.80, machine=fp),
        accuracy_row("openvino", 0.80, machine=fp),
        accuracy_row("openvino", 0.784, variant="ov_precision=None", machine=fp),
        accuracy_row("onnx", 0.80, machine=fp),
    ]
    df = results.with_labels(analysis.with_ratios(pd.DataFrame(rows, columns=list(results.COLUMNS))))
    labelled = charts.by_label(df)
    summary = {r[1]: r for r in pages.summary_table(labelled, "bi-encoder").rows}
    assert summary["openvino"][3] == "1.20x" and summary["openvino [ov_precision=None]"][3] == "1.80x"
    assert summary["openvino [ov_precision=None]"][5] == "98.00%"
    assert summary["onnx [ort_spinning=True]"][5] == "100.00%"
    table = pages.cells_table(labelled, "bi-encoder")
    cells = {r[1]: dict(zip(table.columns, r, strict=True)) for r in table.rows}
    assert cells["openvino [ov_precision=None]"]["precision"] == "bf16"
    assert cells["onnx [ort_spinning=True]"]["accuracy ratio"] == "100.00%"


def test_variants_follow_their_backend_in_order_and_colour():
    names = ["openvino-qint8 [ov_precision=None]", "custom", "openvino [ov_precision=None]", "openvino", "torch-fp32"]
    assert charts.backend_order(names) == [
        "torch-fp32", "openvino", "openvino [ov_precision=None]", "openvino-qint8 [ov_precision=None]", "custom"
    ]  # fmt: skip
    variant, base = charts.color_of("openvino [ov_precision=None]"), charts.color_of("openvino")
    assert variant != base and variant not in charts.BACKEND_COLORS.values()
    assert charts.color_of("openvino-qint8 [x=1]") != variant  # each family keeps its own hue


def test_cli_does_not_write_into_a_folder_of_other_files(tmp_path, capsys, fast_png):
    """--out pointing at a folder of the user's own files is refused in one line (it overwrote them); a folder
    an earlier report was written to is replaced as before."""
    store, out = tmp_path / "results", tmp_path / "mine"
    make_store(store, make_rows(models=("sentence-transformers/all-MiniLM-L6-v2",)))
    out.mkdir()
    (out / "index.html").write_text("my own page")
    assert cli.main(["--results", str(store), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--out" in err and "index.html" in err and len(err.strip().splitlines()) == 1
    assert (out / "index.html").read_text() == "my own page"
    again = tmp_path / "reports"
    assert cli.main(["--results", str(store), "--out", str(again)]) == 0
    assert cli.main(["--results", str(store), "--out", str(again)]) == 0  # its own earlier report: replaced
