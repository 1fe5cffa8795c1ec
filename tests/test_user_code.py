"""#22 "Names mean the user's code": a backend name runs with its runtime's defaults as plain
sentence-transformers code gets them; rows written when the harness pinned ORT's spinning off are read
as the variant they were."""

from __future__ import annotations

from omegaconf import OmegaConf

from harness.store import results
from tests.rows import speed_row


def test_onnx_loads_with_ort_defaults_and_only_the_thread_budget():
    from harness.backends.onnx import OnnxBackend

    cfg = OmegaConf.create(
        {
            "name": "onnx",
            "family": "onnx",
            "ort_spinning": None,
            "optimization": None,
            "quantization": None,
            "device": "cpu",
        }
    )
    backend = OnnxBackend.__new__(OnnxBackend)
    backend.cfg, backend.threads = cfg, 2
    kwargs = backend.model_kwargs(
        {
            "file_name": "onnx/model.onnx",
            "provider": "CPUExecutionProvider",
            "session_options": {"intra_op_num_threads": 2},
        }
    )
    options = kwargs["session_options"]
    assert options.intra_op_num_threads == 2
    assert options.inter_op_num_threads == 0  # ORT's default, untouched
    from harness.backends.onnx import spinning

    assert spinning(options) == {"allow_spinning": True, "allow_spinning_source": "onnxruntime default"}


def test_a_pinned_spinning_knob_is_set_and_read_back_as_set():
    from harness.backends.onnx import OnnxBackend, spinning

    backend = OnnxBackend.__new__(OnnxBackend)
    options = backend.model_kwargs(
        {
            "file_name": "f.onnx",
            "provider": "CPUExecutionProvider",
            "session_options": {"intra_op_num_threads": 2, "allow_spinning": False},
        }
    )
    assert spinning(options["session_options"]) == {"allow_spinning": False, "allow_spinning_source": "session option"}


def test_rows_written_with_spinning_pinned_off_read_as_that_variant_never_pooled_with_the_name(tmp_path):
    common = dict(cell_key="k-onnx", pass_s=[1.0, 1.0], latencies_ms=[1.0], n_texts=100)
    old = speed_row("onnx", 100.0, cell_id="old", runtime={"allow_spinning": False, "precision": "fp32"}, **common)
    new = speed_row(
        "onnx",
        90.0,
        cell_id="new",
        cell_key="k-onnx-new",
        pass_s=[1.0],
        latencies_ms=[1.0],
        n_texts=90,
        runtime={"allow_spinning": True, "allow_spinning_source": "onnxruntime default"},
    )
    pinned_new = speed_row(
        "onnx",
        95.0,
        cell_id="pinned",
        variant="ort_spinning=False",
        runtime={"allow_spinning": False, "allow_spinning_source": "session option"},
    )
    for row in (old, new, pinned_new):
        results.write_row(tmp_path, row)
    rows = {r["cell_id"]: r for r in results.read_rows(tmp_path)}
    assert rows["old"]["variant"] == "ort_spinning=False"
    assert rows["new"]["variant"] in ("", None)
    assert rows["pinned"]["variant"] == "ort_spinning=False"
    df = results.load(tmp_path)
    labels = dict(zip(df["cell_id"], df["label"], strict=True))
    assert labels == {"old": "onnx [ort_spinning=False]", "new": "onnx", "pinned": "onnx [ort_spinning=False]"}


def test_the_snippet_sets_only_what_ran():
    from harness.recommend.snippet import python_snippet

    code = python_snippet(
        "bi-encoder", "path", "onnx", {"file_name": "onnx/model.onnx", "session_options": {"intra_op_num_threads": 2}}
    )
    assert "intra_op_num_threads = 2" in code
    assert "allow_spinning" not in code and "inter_op" not in code
    pinned = python_snippet(
        "bi-encoder",
        "path",
        "onnx",
        {"file_name": "onnx/model.onnx", "session_options": {"intra_op_num_threads": 2, "allow_spinning": False}},
    )
    assert 'allow_spinning", "0"' in pinned
