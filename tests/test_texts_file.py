"""Your own texts: `dataset=file` (a .txt with one text per line or text<TAB>text pairs, a .jsonl or
.csv with dataset.column=) and `harness recommend --texts FILE`. Bad files are one line naming the
field, the value and what is allowed, before Hydra starts."""

from __future__ import annotations

import json
import statistics

import pytest
from omegaconf import OmegaConf
from test_bad_input import assert_nothing_written, assert_one_line_error, run_cli

from harness import cli
from harness.cli import recommend
from harness.config import ConfigError, DatasetConfig
from harness.engine.preflight import check_dataset
from harness.inputs.texts import as_pairs, load_texts, mean_chars, read_file
from harness.store import results

LINES = ["The river rose after the storm.", "A small startup repaired the old bridge.", "Our neighbour painted it."]
PAIRS = [f"{a}\t{b}" for a, b in zip(LINES, reversed(LINES), strict=True)]


def file_dataset(path, **kw):
    return OmegaConf.structured(DatasetConfig(name="file", source="local", format="file", path=str(path), **kw))


@pytest.fixture
def files(tmp_path):
    (tmp_path / "texts.txt").write_text("\n".join(LINES) + "\n\n")
    (tmp_path / "pairs.txt").write_text("\n".join(PAIRS) + "\n")
    (tmp_path / "mixed.txt").write_text("\n".join([PAIRS[0], LINES[1]]) + "\n")
    (tmp_path / "docs.jsonl").write_text("".join(json.dumps({"id": i, "body": t}) + "\n" for i, t in enumerate(LINES)))
    (tmp_path / "text.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in LINES))
    (tmp_path / "bad.jsonl").write_text(json.dumps({"body": LINES[0]}) + "\n{not json\n")
    (tmp_path / "docs.csv").write_text("id,body\n" + "".join(f'{i},"{t}"\n' for i, t in enumerate(LINES)))
    (tmp_path / "empty.txt").write_text("\n \n")
    (tmp_path / "texts.pdf").write_text("x")
    return tmp_path


def test_txt_is_one_text_per_line(files):
    assert read_file(files / "texts.txt", None) == LINES


@pytest.mark.parametrize(("name", "column"), [("docs.jsonl", "body"), ("docs.csv", "body"), ("text.jsonl", None)])
def test_jsonl_and_csv_read_the_column(files, name, column):
    assert read_file(files / name, column) == LINES  # unset column: "text", when the file has one


def test_a_file_of_pairs_gives_a_cross_encoder_real_pairs(files):
    texts = load_texts(file_dataset(files / "pairs.txt", samples=10))
    assert sorted(as_pairs(texts)) == sorted(zip(LINES, reversed(LINES), strict=True))
    doubled = load_texts(file_dataset(files / "pairs.txt", multiply=2))
    a, b = as_pairs(doubled)[0]
    assert a.count(".") == 2 and b.count(".") == 2  # each side repeated, still one pair
    check_dataset(json.dumps(OmegaConf.to_container(file_dataset(files / "pairs.txt"))), None, "cross-encoder")


def test_single_texts_still_pair_with_their_neighbours(files):
    texts = load_texts(file_dataset(files / "texts.txt", samples=10))
    assert as_pairs(texts) == [(texts[i], texts[(i + 1) % 3]) for i in range(3)]


def test_path_is_relative_to_where_the_command_runs_not_data_dir(files, monkeypatch, tmp_path_factory):
    monkeypatch.chdir(files)
    data_dir = tmp_path_factory.mktemp("data")
    assert sorted(load_texts(file_dataset("texts.txt"), str(data_dir))) == sorted(LINES)


def test_mixed_pairs_and_texts_for_a_cross_encoder_is_one_line(files):
    dataset = json.dumps(OmegaConf.to_container(file_dataset(files / "mixed.txt")))
    check_dataset(dataset, None, "bi-encoder")  # a bi-encoder encodes each line whole
    with pytest.raises(ConfigError, match=r"dataset.path: .*mixed.txt' has a line that is not one pair"):
        check_dataset(dataset, None, "cross-encoder")


# (case, overrides, fragments of the one error line: field, value, what is allowed)
BAD = [
    ("no-path", [], ["dataset.path: None is not allowed", "dataset=file needs dataset.path=FILE", ".jsonl / .csv"]),
    ("missing", ["dataset.path={d}/nope.txt"], ["dataset.path: '{d}/nope.txt' does not exist", "one text per line"]),
    ("empty", ["dataset.path={d}/empty.txt"], ["dataset.path: '{d}/empty.txt' has no texts", "allowed: .txt"]),
    ("extension", ["dataset.path={d}/texts.pdf"], ["dataset.path: '{d}/texts.pdf' has extension '.pdf'", ".csv"]),
    ("bad-jsonl-line", ["dataset.path={d}/bad.jsonl", "dataset.column=body"],
     ["dataset.path: '{d}/bad.jsonl' line 2 is not JSON", "one JSON object per line"]),
    ("unknown-column", ["dataset.path={d}/docs.csv", "dataset.column=bdy"],
     ["dataset.column: 'bdy' is not a column of '{d}/docs.csv'", "choose one of id, body", "Did you mean 'body'?"]),
    ("no-column", ["dataset.path={d}/docs.jsonl"],
     ["dataset.column: not set, and '{d}/docs.jsonl' has no 'text' column", "choose one of id, body"]),
    ("column-for-txt", ["dataset.path={d}/texts.txt", "dataset.column=body"],
     ["dataset.column: 'body' is not allowed for a .txt file", "leave it unset"]),
]  # fmt: skip


@pytest.mark.parametrize(("case", "overrides", "fragments"), BAD, ids=[b[0] for b in BAD])
def test_bad_file_is_one_line_before_hydra(case, overrides, fragments, files, tiny_models, capsys, monkeypatch):
    monkeypatch.chdir(files)
    args = ["sweep", "dataset=file", *[o.format(d=files) for o in overrides], "model.name=tiny",
            f"model.source={tiny_models[0]}", "backend=torch-fp32", "accuracy.enabled=false",
            f"results_dir={files}/results"]  # fmt: skip
    assert cli.main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    for fragment in fragments:
        assert fragment.format(d=files) in err[0], err[0]
    assert not (files / "outputs").exists() and not (files / "results").exists()


def test_bad_file_through_the_real_cli(files, tiny_models, tmp_path):
    """In a fresh process: exit 2, one line, no traceback, nothing written."""
    proc = run_cli(["sweep", "dataset=file", f"dataset.path={files}/bad.jsonl", "model.name=tiny",
                    f"model.source={tiny_models[0]}", f"results_dir={tmp_path}/results"], tmp_path)  # fmt: skip
    assert_one_line_error(proc, [f"dataset.path: '{files}/bad.jsonl' line 2 is not JSON", "one JSON object per line"])
    assert_nothing_written(tmp_path, tmp_path / "results")


def test_sweep_on_a_file_of_pairs_measures_those_pairs(files, tiny_models, tmp_path):
    proc = run_cli(["sweep", "rounds=1", "dataset=file", f"dataset.path={files}/pairs.txt", "model.name=tiny-ce",
                    "model.kind=cross-encoder", f"model.source={tiny_models[1]}", "backend=torch-fp32",
                    "accuracy.enabled=false", "measure.min_time_s=0", "measure.min_repeats=1",
                    "measure.warmup_batches=1", "measure.breakdown=false", f"results_dir={tmp_path}/results",
                    "run=t"], tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    row = results.load(tmp_path / "results").iloc[0]
    assert row["status"] == "ok" and row["dataset"] == "file" and row["n_texts"] == len(PAIRS)
    assert row["text_chars_mean"] == pytest.approx(statistics.mean(len(p) for p in PAIRS))


def test_recommend_takes_the_text_length_from_the_file(files, tmp_path, capsys):
    assert mean_chars(str(files / "docs.csv"), "body") == pytest.approx(statistics.mean(map(len, LINES)))
    argv = ["--results", str(tmp_path), "--no-gpu", "--json", "--texts", str(files / "texts.txt")]
    assert recommend.main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["query"]["text_length"] == pytest.approx(statistics.mean(map(len, LINES)))


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--texts", "{d}/nope.txt"], "--texts: '{d}/nope.txt' does not exist"),
        (["--texts", "{d}/docs.csv", "--texts-column", "bdy"], "--texts-column: 'bdy' is not a column"),
        (["--texts", "{d}/texts.pdf"], "--texts: '{d}/texts.pdf' has extension '.pdf'"),
    ],
)
def test_recommend_bad_texts_file_is_one_line(files, tmp_path, capsys, argv, fragment):
    assert recommend.main(["--results", str(tmp_path), *[a.format(d=files) for a in argv]]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and fragment.format(d=files) in err[0], err
