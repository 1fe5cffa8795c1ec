"""`harness` entry point: one thin module per subcommand, imported only when that command runs.

`harness.cli:main` dispatches `harness <command>` to `harness.cli.<command>:main(argv) -> int`; the
progress display of a sweep (`harness.cli.progress`) is the one module here that the others share.
Everything below the CLI reports through return values and callbacks, never by printing."""

from __future__ import annotations

import importlib
import os
import sys

from harness.core.usage import ConfigError, did_you_mean

# subcommand -> "module:function(argv) -> int"; imported only when used
COMMANDS = {
    "sweep": "harness.cli.sweep:main",
    "report": "harness.cli.report:main",
    "recommend": "harness.cli.recommend:main",
    "compare": "harness.cli.compare:main",
    "overhead": "harness.cli.overhead:main",
    "duel": "harness.cli.duel:main",
    "export": "harness.cli.export:main",
}
USAGE = """usage: harness <command> [args]

commands:
  sweep      run a benchmark sweep (Hydra overrides; e.g. harness sweep backend=onnx,openvino batch_sizes=[16,32])
             speed: interleaved rounds (rounds=auto: 2, a 3rd where the ranking is unsettled; rounds=N fixed)
             --plan: cells, exports, processes and an estimated duration; runs nothing
             a rerun measures timeouts, killed cells and damaged rows again; --retry-failed: every failure
  report     charts + HTML/Markdown report from the results store
  recommend  which backend to use on this machine, and why
  compare    set two runs side by side (repeatability)
  overhead   harness timing vs a plain encode loop, passes interleaved in two workers
  duel       A vs B on this machine, passes interleaved (e.g. harness duel openvino-qint8 onnx-qint8 dataset=short)
  export     write a backend's exported model to a folder sentence-transformers loads offline
             (e.g. harness export onnx-qint8 --model minilm --out ./minilm-qint8)

`harness <command> --help` for details. Sweeps: `harness sweep --help` lists config groups."""


def main(argv: list[str] | None = None) -> int:
    """Run a subcommand; a reader that goes away (`harness recommend | head`) ends it quietly."""
    try:
        return _dispatch(sys.argv[1:] if argv is None else argv)
    except BrokenPipeError:
        # Python's documented recipe: point stdout at devnull so the flush at exit cannot fail again.
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (AttributeError, OSError, ValueError):  # a stdout without a file descriptor
            pass
        return 141  # what a shell reports for a process ended by SIGPIPE (128 + 13)


def _dispatch(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"error: command: {command!r} is unknown; choose one of {', '.join(COMMANDS)}."
              + did_you_mean(command, list(COMMANDS)), file=sys.stderr)  # fmt: skip
        return 2
    module_name, _, func = COMMANDS[command].partition(":")
    try:
        return int(getattr(importlib.import_module(module_name), func)(rest) or 0)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: every finished cell is saved; rerun the same command to resume.", file=sys.stderr)
        return 130
