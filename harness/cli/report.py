"""`harness report`: render the result store as index.html + report.md + PNG charts."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from harness.config import MODEL_KINDS
from harness.core.usage import Parser, UsageError
from harness.report import pages, serving
from harness.store import cost, results
from harness.store.analysis import find_machine


def build_parser(prog: str = "harness report") -> argparse.ArgumentParser:
    p = Parser(prog=prog, description="Charts and tables from the result store.")
    p.add_argument("--results", type=Path, default=Path("results"), help="result store (results/)")
    p.add_argument("--out", type=Path, default=Path("reports"), help="output folder (reports/)")
    p.add_argument("--run", action="append", dest="runs", metavar="RUN", help="only this run (repeatable)")
    p.add_argument("--machine", help="only this machine fingerprint (a unique prefix is enough)")
    p.add_argument("--model-kind", choices=MODEL_KINDS, help="only this model kind")
    p.add_argument("--title", default="Backend benchmark report")
    p.add_argument(
        "--compare-machines",
        action="store_true",
        help="print the machines side by side (best backend, texts/s, sustainable rate, $ / M texts)",
    )
    p.add_argument(
        "--price-per-hour",
        action="append",
        metavar="[MACHINE=]PRICE",
        help="$/hour for $ per million texts (repeatable; MACHINE: a fingerprint prefix)",
    )
    return p


def select(df: pd.DataFrame, *, machine: str | None, model_kind: str | None) -> pd.DataFrame:
    if machine:
        df = df[df["machine"] == find_machine(df, machine)]
    if model_kind:
        models = set(df.loc[df["model_kind"] == model_kind, "model"])
        df = df[(df["model_kind"] == model_kind) | ((df["kind"] == "accuracy") & df["model"].isin(models))]
        if not (df["kind"] == "speed").any():
            raise UsageError(f"--model-kind {model_kind}: no speed rows of that kind in the selection")
    return df


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        df = results.load(args.results, args.runs)
        if df.empty:
            runs = f" for run(s) {', '.join(args.runs)}" if args.runs else ""
            raise UsageError(f"no result rows in {args.results}{runs}; run `harness sweep` first")
        df = select(df, machine=args.machine, model_kind=args.model_kind)
        if args.price_per_hour:
            df = cost.with_cost(df, cost.parse_prices(args.price_per_hour))
        foreign = pages.foreign_files(args.out)
        if foreign:
            raise UsageError(
                f"--out: {str(args.out)!r} holds files no report wrote ({', '.join(foreign[:3])}"
                f"{', ...' if len(foreign) > 3 else ''}); give a new or empty folder, or an earlier report's."
            )
    except UsageError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    if args.compare_machines:
        print(pages.to_markdown([pages.Block("table", table=serving.compare_machines(df))]))
    for path in pages.write_report(df, args.out, title=args.title):
        print(path)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
