"""`harness export BACKEND --model NAME --out DIR`: a folder plain sentence-transformers loads offline.

The export itself is the sweep's: the same cache (harness.backends.cache), the same backend `prepare` in
its own process, the same `load_spec`, so the folder holds exactly the file the harness measured,
under sentence-transformers' own name (`onnx/model_O3.onnx`, `onnx/model_qint8_avx512_vnni.onnx`,
`openvino/openvino_model_qint8_quantized.xml`...), beside the model's tokenizer, modules and config.
Nobody has to copy a cache path; the printed snippet is the recommender's (`python_snippet`), with
the model_kwargs the harness loads the backend with.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import typing
import uuid
from pathlib import Path

from harness import backends
from harness.core.usage import ConfigError, check_choice, did_you_mean

USAGE_EXAMPLE = "e.g. harness export onnx-qint8 --model minilm --out ./minilm-qint8"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_intermixed_args(argv)
    check_choice("backend", args.backend, backends.names())
    out = Path(args.out).expanduser()
    check_out(args.out, out)
    cfg = _compose(args.backend, args.model, args.overrides)

    from harness.engine.sweep import prepare

    job = prepare(cfg)
    reason = job.backend.unsupported_reason()
    if reason:
        print(f"error: {args.backend} cannot run on this machine: {reason}", file=sys.stderr)
        return 1
    try:
        status, reason = job.export(cfg.measure.export_timeout_s)
    except ValueError as exc:  # e.g. no int8 config fits this CPU: the message names the setting to give
        raise ConfigError(f"{args.backend}: {exc}") from None
    if status != "ok":
        print(f"error: export of {args.backend} {status}: {reason}", file=sys.stderr)
        return 1
    folder, model_kwargs = job.backend.load_spec(Path(job.spec.source_dir), job.export_dir, job.cache)
    key = job.backend.export_key()
    files = job.cache.lookup(job.export_dir, *key) if key else []
    write_folder(folder, job.export_dir, files or [], out)
    print(f"{cfg.model.name} as {args.backend} in {out}" + (f" ({', '.join(files)})" if files else ""))
    print("\nLoad it (offline) with:\n")
    print(snippet(cfg, str(out.resolve()), model_kwargs, job.backend.st_backend))
    return 0


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> typing.NoReturn:  # type: ignore[override]
        raise ConfigError(f"harness export: {message}; {USAGE_EXAMPLE}.")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="harness export", description=__doc__.split("\n\n")[0])
    p.add_argument("backend", metavar="BACKEND", help=f"one of {', '.join(backends.names())}")
    p.add_argument("--model", required=True, help="a model config (minilm, minilm-ce, ...) or a model folder")
    p.add_argument("--out", required=True, help="the folder to write (new, or empty)")
    p.add_argument(
        "overrides", nargs="*", help="config overrides, e.g. backend.ov_precision=f32 measure.threads=4 (as a sweep)"
    )
    return p


def check_out(given: str, out: Path) -> None:
    """A new or empty folder in a writable place: never mix an export into someone's files."""
    from harness.engine.preflight import check_writable

    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        what = "is a file" if not out.is_dir() else "exists and is not empty"
        raise ConfigError(f"--out: {given!r} {what}; give a new or empty folder.")
    check_writable("--out", given, out.parent if not out.exists() else out)


def _compose(backend: str, model: str, overrides: list[str]) -> typing.Any:
    """The sweep's config for this model and backend, so the export and its settings are the sweep's."""
    from harness.config import CONF_DIR
    from harness.engine.grid import compose
    from harness.engine.overrides import group_options
    from harness.inputs import models

    names = group_options(CONF_DIR, "model")
    if model in names:
        chosen = [f"model={model}"]
    else:
        folder = Path(model).expanduser()
        if not folder.is_dir():
            why = "is a file" if folder.exists() else "is neither a model config nor a folder"
            raise ConfigError(
                f"--model: {model!r} {why}; choose one of {', '.join(names)}, or give a sentence-transformers "
                "model folder." + did_you_mean(model, names)
            )
        folder = folder.resolve()
        kind = models.detect_kind(folder)
        chosen = [f"model.source={_quoted(str(folder))}", f"model.name={_quoted(folder.name)}", f"model.kind={kind}"]
    # Only the export runs: no texts are timed and no accuracy data is read.
    return compose([f"backend={backend}", *chosen, "speed=false", "accuracy.enabled=false", *overrides])


def _quoted(value: str) -> str:
    """A Hydra override value that stays one string whatever it holds (spaces, commas, '=')."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def write_folder(folder: Path, export_dir: Path, files: list[str], out: Path) -> None:
    """`folder` (the model: config, tokenizer, modules; no other exports) plus the exported `files`,
    written beside `out` and renamed into place, so an interrupted export leaves no half folder."""
    staging = out.parent / f".{out.name}.partial-{uuid.uuid4().hex}"
    try:
        shutil.copytree(folder, staging, ignore=shutil.ignore_patterns(*backends.export_subdirs(), ".harness", ".git"))
        for name in files:
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(export_dir / name, staging / name)
        if out.exists():
            out.rmdir()  # empty: checked before the export
        os.replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def snippet(cfg: typing.Any, path: str, model_kwargs: dict[str, typing.Any], st_backend: str) -> str:
    from harness.recommend import python_snippet

    code = python_snippet(cfg.model.kind, path, cfg.backend.name, model_kwargs, st_backend)
    if cfg.model.max_seq_length:  # the harness truncates there too
        attr = "max_seq_length" if cfg.model.kind == "bi-encoder" else "max_length"
        code += f"\nmodel.{attr} = {int(cfg.model.max_seq_length)}"
    return code
