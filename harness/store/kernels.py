"""Configurations that run the same kernels are tied, whatever their numbers say.

Two configurations of one cell execute the same computation when everything their runtime read back is
equal: the fingerprint of the whole executed graph (every op or layer with its precision and, for OpenVINO,
its primitive: `backends.base.graph_fingerprint`), the matmul kernels, the threads, hints, spinning and
versions. `onnx` and `onnx-O1` on a CPU are the usual case (ONNX Runtime's session applies O1's fusions
itself), and so is any knob pinned to the value the runtime already chooses. A difference measured between
them is the measurement's noise, so the verdicts, the effort rule and the recommender call them tied without
spending rounds on them. Only read-backs with a graph fingerprint count: torch reports no executed graph, and
rows written before the fingerprint was read back are compared by their numbers as before.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

# the cell a comparison stays inside
CELL = ["run", "machine", "model", "dataset", "batch_size", "threads", "device"]
COLUMN = "same_kernels"  # the labels of the cell's other configurations that run the same kernels


def signature(runtime: Any) -> str | None:
    """What a configuration executes and how, as one comparable string; None without a graph fingerprint.
    How a value was learned (`*_source`: a session option or the runtime's default) is not what runs."""
    if not isinstance(runtime, dict) or not runtime.get("graph_fingerprint"):
        return None
    kept = {k: v for k, v in runtime.items() if not str(k).endswith("_source")}
    return json.dumps(kept, sort_keys=True, default=str)


def same(a: Any, b: Any) -> bool:
    """Whether two runtime read-backs run the same kernels."""
    sa = signature(a)
    return sa is not None and sa == signature(b)


def with_twins(df: pd.DataFrame) -> pd.DataFrame:
    """`df` with `same_kernels`: for each ok speed row, the labels of the other ok speed rows of its cell
    that run the same kernels (a tuple, empty when none)."""
    df = df.copy()
    df[COLUMN] = [() for _ in range(len(df))]
    if df.empty or "runtime" not in df:
        return df
    ok = df[(df["kind"] == "speed") & (df["status"] == "ok")]
    labels = ok["label"] if "label" in ok else ok["backend"]
    for _, group in ok.groupby([c for c in CELL if c in ok], dropna=False, sort=False):
        sigs = {i: signature(df.at[i, "runtime"]) for i in group.index}
        for i, sig in sigs.items():
            if sig is not None:
                df.at[i, COLUMN] = tuple(sorted(str(labels[j]) for j, s in sigs.items() if j != i and s == sig))
    return df


def twins_of(row: Any) -> tuple[str, ...]:
    value = row.get(COLUMN) if hasattr(row, "get") else None
    return tuple(value) if isinstance(value, (tuple, list)) else ()
