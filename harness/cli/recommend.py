"""`harness recommend`: the command line, and the hardware it assumes (detected, recorded or overridden)."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from harness import backends
from harness.config import MODEL_KINDS
from harness.core import hardware
from harness.core.hardware import Hardware
from harness.core.usage import Parser, UsageError, did_you_mean
from harness.recommend import server
from harness.recommend.decision import format_text, recommend
from harness.recommend.evidence import SCENARIOS, Query
from harness.recommend.flowchart import CPU_VENDORS
from harness.store import cost, results
from harness.store.analysis import find_machine

ARM_FLAGS = frozenset({"asimd", "asimddp", "sve"})
X86_FLAGS = frozenset(hardware.TRACKED_FLAGS) - ARM_FLAGS


def build_parser(prog: str = "harness recommend") -> Parser:
    p = Parser(
        prog=prog,
        description="Recommend a sentence-transformers backend: the documented flowchart, "
        "overridden by this machine's measurements when there are any.",
    )
    p.add_argument("--model-kind", choices=MODEL_KINDS, default="bi-encoder")
    p.add_argument("--text-length", type=float, default=200, help="typical text length in characters (200)")
    p.add_argument(
        "--texts", metavar="FILE", help="your texts (.txt, .jsonl, .csv): their mean length replaces --text-length"
    )
    p.add_argument("--texts-column", metavar="NAME", help="the text column of a .jsonl / .csv --texts file (text)")
    p.add_argument("--batch-size", type=int, default=32, help="batch size you will encode with (32)")
    p.add_argument(
        "--tolerance",
        type=float,
        default=0.01,
        help="accuracy loss you accept, as a fraction of torch-fp32's score: 0.01 = 1%% (default)",
    )
    p.add_argument(
        "--scenario",
        choices=SCENARIOS,
        default="bulk",
        help="bulk: encode a corpus in one call, ranked by throughput (default); "
        "online: one request at a time (batch size 1 rows), ranked by p99 latency; "
        "server: requests arriving under load (server rows), ranked by the sustainable rate at p99 <= --max-latency-ms",
    )
    p.add_argument(
        "--price-per-hour",
        action="append",
        metavar="[MACHINE=]PRICE",
        help="the machine's price in $/hour, for $ per million texts (repeatable per machine)",
    )
    rules = p.add_argument_group("constraints (each rejected backend is listed with the rule it broke)")
    rules.add_argument("--max-latency-ms", type=float, metavar="MS", help="p99 latency of the chosen rows at most MS")
    rules.add_argument("--max-memory-mb", type=float, metavar="MB", help="peak memory at most MB")
    rules.add_argument(
        "--min-cosine", type=float, metavar="F", help="embeddings: worst-case cosine to torch-fp32 at least F"
    )
    rules.add_argument(
        "--min-spearman", type=float, metavar="F", help="cross-encoders: worst-case Spearman to torch-fp32 at least F"
    )
    p.add_argument("--results", type=Path, default=Path("results"), help="result store (results/)")
    p.add_argument("--model", help="only use measurements of this model")
    p.add_argument(
        "--machine",
        help="use this machine fingerprint's measurements and recorded hardware instead of this machine's",
    )
    hw = p.add_argument_group("hardware overrides (default: detected)")
    hw.add_argument("--cpu-vendor", choices=CPU_VENDORS)
    hw.add_argument("--gpu", metavar="NAME", help="assume this GPU")
    hw.add_argument("--no-gpu", action="store_true", help="assume no GPU")
    hw.add_argument("--flags", help="CPU ISA flags replacing the detected ones, e.g. avx2,avx512f,avx512_vnni")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    return p


def parse_flags(text: str) -> tuple[str, ...]:
    flags = tuple(sorted({f.strip().lower() for f in text.split(",") if f.strip()}))
    for f in flags:
        if f not in hardware.TRACKED_FLAGS:
            known = ", ".join(hardware.TRACKED_FLAGS)
            raise UsageError(
                f"--flags: unknown flag {f!r}; known flags: {known}.{did_you_mean(f, hardware.TRACKED_FLAGS)}"
            )
    return flags


def effective_hardware(
    base: Hardware,
    *,
    cpu_vendor: str | None = None,
    gpu: str | None = None,
    no_gpu: bool = False,
    flags: tuple[str, ...] | None = None,
) -> Hardware:
    """`base` with the command line's overrides; contradictions raise UsageError naming the options."""
    if gpu is not None and no_gpu:
        raise UsageError("--gpu and --no-gpu contradict each other; give one of them")
    if gpu is not None and not gpu.strip():
        raise UsageError("--gpu needs a device name, e.g. --gpu 'NVIDIA H100'; use --no-gpu for none")
    if flags is not None:
        x86, arm = sorted(set(flags) & X86_FLAGS), sorted(set(flags) & ARM_FLAGS)
        if x86 and arm:
            raise UsageError(f"--flags mixes x86 ({', '.join(x86)}) and ARM ({', '.join(arm)}) instruction sets")
        if cpu_vendor == "arm" and x86:
            raise UsageError(f"--cpu-vendor arm contradicts --flags {','.join(x86)} (x86 instruction sets)")
        if cpu_vendor in ("intel", "amd") and arm:
            raise UsageError(f"--cpu-vendor {cpu_vendor} contradicts --flags {','.join(arm)} (ARM instruction sets)")
        if cpu_vendor is None:
            if arm and base.cpu_vendor != "arm":
                cpu_vendor = "arm"
            elif x86 and base.cpu_vendor == "arm":
                raise UsageError(
                    f"--flags {','.join(x86)} are x86 instruction sets but this CPU is arm; "
                    "add --cpu-vendor intel or amd"
                )
    vendor = cpu_vendor or base.cpu_vendor
    if flags is None:
        flags = base.cpu_flags
        if (vendor == "arm") != (base.cpu_vendor == "arm"):  # other architecture: detected flags don't apply
            flags = ()
    return dataclasses.replace(
        base,
        cpu_vendor=vendor,
        cpu_flags=tuple(sorted(flags)),
        gpu=None if no_gpu else (gpu if gpu is not None else base.gpu),
    )


def hardware_from_dict(d: dict[str, Any]) -> Hardware:
    names = {f.name for f in dataclasses.fields(Hardware)}
    kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in names}
    return Hardware(**kw)


def _machine_hardware(df: pd.DataFrame, machine: str) -> tuple[str, Hardware]:
    fp = find_machine(df, machine)
    dicts = [h for h in df.loc[df["machine"] == fp, "hardware"] if isinstance(h, dict)]
    if not dicts:
        raise UsageError(f"--machine {fp}: its rows carry no hardware description")
    return fp, hardware_from_dict(dicts[-1])


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.texts is not None:  # mean characters per text of the user's file (harness.inputs.texts)
            from harness.inputs.texts import mean_chars

            args.text_length = mean_chars(args.texts, args.texts_column)
        query = Query(
            model_kind=args.model_kind,
            text_length=args.text_length,
            batch_size=args.batch_size,
            tolerance=args.tolerance,
            model=args.model,
            scenario=args.scenario,
            max_latency_ms=args.max_latency_ms,
            max_memory_mb=args.max_memory_mb,
            min_cosine=args.min_cosine,
            min_spearman=args.min_spearman,
        )
        flags = parse_flags(args.flags) if args.flags is not None else None
        # Contradictions are checked before anything slow (detection, loading the store).
        effective_hardware(
            Hardware("", "unknown", (), 1, 1, 0.0), cpu_vendor=args.cpu_vendor, gpu=args.gpu,
            no_gpu=args.no_gpu, flags=flags,
        )  # fmt: skip
        df = results.load(args.results)
        if args.price_per_hour:
            df = cost.with_cost(df, cost.parse_prices(args.price_per_hour))
        if args.scenario == "server":
            machine = find_machine(df, args.machine) if args.machine else None
            here = hardware.detect()
            choice = server.choose(df, args.max_latency_ms, args.model, machine, args.text_length,
                                   slot=f"{here.fingerprint}/{here.cpu_budget}cpu")  # fmt: skip
            print(json.dumps(choice.to_dict(), default=str) if args.json else server.format_server(choice))
            return 0 if choice.backend else 1
        if args.machine:
            machine, base = _machine_hardware(df, args.machine)
        else:
            machine, base = None, backends.probe(hardware.detect())
        hw = effective_hardware(base, cpu_vendor=args.cpu_vendor, gpu=args.gpu, no_gpu=args.no_gpu, flags=flags)
    except (UsageError, ValueError) as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    rec = recommend(df, query, hw, machine=machine)
    if args.json:
        print(json.dumps(rec.to_dict(), default=str))
    else:
        print(format_text(rec))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
