"""`harness recommend --scenario server --max-latency-ms MS`: from this machine's server rows, the backend,
batching (max batch, max wait) and deployment shape that sustain the most requests a second with p99 within
MS, the rate's bracket from its search, and the code to run it: sentence-transformers loading plus the
dynamic batcher the harness measured (sentence-transformers has none)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from harness.core.usage import UsageError
from harness.recommend.snippet import python_snippet
from harness.recommend.ties import effort

BATCHER = '''
import queue, threading, time
from concurrent.futures import Future


class Batcher:
    """One call per batch: at most MAX_BATCH requests, waiting at most MAX_WAIT_S after the oldest one
    arrived (the policy the harness measured). submit() from any thread; .result() waits for its output."""

    def __init__(self, model, max_batch={max_batch}, max_wait_s={max_wait_s}):
        self.model, self.max_batch, self.max_wait_s = model, max_batch, max_wait_s
        self.requests = queue.Queue()
        threading.Thread(target=self._serve, daemon=True).start()

    def submit(self, text) -> Future:
        done = Future()
        self.requests.put((time.monotonic(), text, done))
        return done

    def _serve(self):
        while True:
            batch = [self.requests.get()]
            due = batch[0][0] + self.max_wait_s
            while len(batch) < self.max_batch:
                try:
                    batch.append(self.requests.get(timeout=max(0.0, due - time.monotonic())))
                except queue.Empty:
                    break
            try:
                outputs = self.model.{method}([t for _, t, _ in batch], batch_size=len(batch))
                for (_, _, done), out in zip(batch, outputs):
                    done.set_result(out)
            except Exception as exc:
                for _, _, done in batch:
                    done.set_exception(exc)


batcher = Batcher(model)
{example}
'''


@dataclass
class ServerChoice:
    backend: str | None
    label: str | None
    dataset: str | None
    max_batch: int | None
    max_wait_ms: float | None
    instances: int | None
    threads_per_instance: int | None
    budget_p99_ms: float | None
    sustainable_rate: float | None
    rate_bracket: list[Any] | None
    p99_ms: float | None
    memory_pss_mb: float | None
    usd_per_million_texts: float | None
    machine: str | None
    alternatives: list[dict[str, Any]] = field(default_factory=list)
    code: str = ""
    why: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _num(value: Any) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def _bracket(row: pd.Series) -> tuple[float, float]:
    """[highest sustainable, lowest unsustainable) rate of a row's search; no unsustainable one tried: inf."""
    b = row.get("rate_bracket")
    low = float(row["sustainable_rate"])
    high = b[1] if isinstance(b, (list, tuple)) and len(b) > 1 and b[1] is not None else None
    return low, (float(high) if high is not None else math.inf)


def tied(a: pd.Series, b: pd.Series) -> bool:
    """Two rows whose searches' brackets overlap: each one's rate could be the other's at the search's
    resolution (`server.rel_tol`), so the measured order is not an answer."""
    (a_lo, a_hi), (b_lo, b_hi) = _bracket(a), _bracket(b)
    return a_lo < b_hi and b_lo < a_hi


def nearest_texts(rows: pd.DataFrame, text_length: float | None, df: pd.DataFrame | None = None) -> pd.DataFrame:
    """The rows of the texts whose mean length is nearest `text_length` (log scale, as the bulk scenario); rows
    written before server rows kept their texts' length borrow it from other rows of the same dataset in `df`."""
    if text_length is None or "text_chars_mean" not in rows:
        return rows
    source = df if df is not None and "text_chars_mean" in df else rows
    chars = pd.to_numeric(source["text_chars_mean"], errors="coerce").groupby(source["dataset"]).mean().dropna()
    chars = chars[chars.index.isin(rows["dataset"])]
    chars = chars[chars > 0]
    if chars.empty:
        return rows
    dist = {d: abs(math.log(c / text_length)) for d, c in chars.items()}
    return rows[rows["dataset"].isin([d for d, v in dist.items() if v - min(dist.values()) <= 1e-9])]


def choose(df: pd.DataFrame, max_latency_ms: float | None, model: str | None = None,
           machine: str | None = None, text_length: float | None = None,
           slot: str | None = None) -> ServerChoice:  # fmt: skip
    """The server row with the highest sustainable rate among those whose budget is within the asked p99 (a rate
    sustained within 50 ms is sustained within 100 ms too), of the texts nearest `text_length`, each configuration
    once at its best rate over those budgets;
    uncontended rows first. Rows tied with it (overlapping search brackets) are resolved by what a user does
    (plain name < export < knob, `ties.effort`), then by rate."""
    if max_latency_ms is None:
        raise UsageError("--scenario server needs --max-latency-ms MS (the p99 budget a request may take)")
    if not max_latency_ms > 0:
        raise UsageError(f"--max-latency-ms: {max_latency_ms!r} is not allowed; it must be a number > 0.")
    rows = df[(df["kind"] == "server") & (df["status"] == "ok") & df["sustainable_rate"].notna()]
    rows = rows[pd.to_numeric(rows["budget_p99_ms"]) <= max_latency_ms]
    if model:
        rows = rows[rows["model"] == model]
    if machine:
        rows = rows[rows["machine"] == machine]
    if slot and "machine_slot" in rows and (rows["machine_slot"] == slot).any():
        rows = rows[rows["machine_slot"] == slot]  # this machine with the CPUs it has now, not a smaller slot of it
    rows = nearest_texts(rows, text_length, df)
    if rows.empty:
        return ServerChoice(*([None] * 14), why=f"no server row sustains any rate with p99 <= {max_latency_ms:g} ms "
                            "(run `harness sweep +experiment=server`)")  # fmt: skip
    clean = rows[~rows["contended"].isin([True])]
    ranked = (clean if len(clean) else rows).sort_values("sustainable_rate", ascending=False)
    same = [c for c in ("label", "backend", "variant", "instances", "threads_per_instance", "max_batch", "max_wait_ms",
                        "dataset", "machine_slot") if c in ranked]  # fmt: skip
    ranked = ranked.drop_duplicates(subset=same)  # one configuration once: its best rate over the budgets
    top = ranked.iloc[0]
    ties = [r for _, r in ranked.iterrows() if tied(r, top)]
    best = min(ties, key=lambda r: (effort(str(r.get("label", r["backend"]))), -float(r["sustainable_rate"])))
    tie = ", ".join(f"{r.get('label', r['backend'])} {int(r['instances'])}x{int(r['threads_per_instance'])} "
                    f"batch {int(r['max_batch'])}: {float(r['sustainable_rate']):.0f} req/s"
                    for r in ties if r.name != best.name)  # fmt: skip
    alternatives = [{"label": r["label"], "shape": f"{int(r['instances'])}x{int(r['threads_per_instance'])}",
                     "max_batch": int(r["max_batch"]), "max_wait_ms": r["max_wait_ms"], "dataset": r["dataset"],
                     "sustainable_rate": r["sustainable_rate"], "tied": bool(tied(r, best))}
                    for _, r in ranked.iterrows() if r.name != best.name][:5]  # fmt: skip
    return ServerChoice(
        backend=best["backend"], label=best.get("label", best["backend"]), dataset=best["dataset"],
        max_batch=int(best["max_batch"]), max_wait_ms=float(best["max_wait_ms"]), instances=int(best["instances"]),
        threads_per_instance=int(best["threads_per_instance"]), budget_p99_ms=float(best["budget_p99_ms"]),
        sustainable_rate=float(best["sustainable_rate"]), rate_bracket=best["rate_bracket"],
        p99_ms=_num(best["request_p99_ms"]), memory_pss_mb=_num(best["memory_pss_mb"]),
        usd_per_million_texts=_num(best.get("usd_per_million_texts")), machine=best["machine"],
        alternatives=alternatives, code=code(best),
        why=f"the highest sustainable rate of {len(rows)} measured (backend, batching, shape, texts) with p99 "
            f"<= {float(best['budget_p99_ms']):g} ms" + (" (uncontended rows only)" if len(clean) else "")
            + (f"; tied within the search's resolution (overlapping brackets) with {tie}: the least to set up "
               "is chosen" if tie else ""),
    )  # fmt: skip


def code(row: pd.Series) -> str:
    """Loading (as the row's runtime was loaded) and the batcher at the row's policy."""
    settings = row["settings"] if isinstance(row.get("settings"), dict) else {}
    path = settings.get("model_path") or row["model_source"]
    cross = row["model_kind"] == "cross-encoder"
    load = python_snippet(row["model_kind"], str(path), row["backend"], settings.get("model_kwargs"),
                          settings.get("st_backend"))  # fmt: skip
    example = ('print(batcher.submit(("query", "passage")).result())' if cross
               else 'print(batcher.submit("a request").result()[:4])')  # fmt: skip
    body = BATCHER.format(max_batch=int(row["max_batch"]), max_wait_s=float(row["max_wait_ms"]) / 1e3,
                          method="predict" if cross else "encode", example=example)  # fmt: skip
    k, t = int(row["instances"]), int(row["threads_per_instance"])
    threads = f"import torch\ntorch.set_num_threads({t})  # threads per instance\n" if row["backend"].startswith(
        "torch") else ""  # fmt: skip
    shape = (f"# shape {k}x{t}: run {k} processes of this, {t} threads each, fed from ONE queue (an idle process "
             "takes the next batch: M/D/k);\n# a round-robin balancer queues requests behind a busy process.\n"
             if k > 1 else "")  # fmt: skip
    return f"{shape}{threads}{load}\n{body}"


def format_server(choice: ServerChoice) -> str:
    if choice.backend is None:
        return f"server scenario: {choice.why}"
    low, high = (choice.rate_bracket or [None, None]) + [None, None][len(choice.rate_bracket or []) :]
    bracket = f" (search bracket {low:.0f}-{high:.0f} req/s)" if low and high else " (no unsustainable rate found)"
    lines = [
        f"server scenario, p99 <= {choice.budget_p99_ms:g} ms on {choice.machine}: {choice.label}",
        f"  batching: max batch {choice.max_batch}, max wait {choice.max_wait_ms:g} ms; "
        f"shape {choice.instances} instance(s) x {choice.threads_per_instance} thread(s)",
        f"  sustainable rate: {choice.sustainable_rate:.0f} requests/s{bracket}, p99 there "
        + (f"{choice.p99_ms:.1f} ms" if choice.p99_ms is not None else "unknown")
        + f", texts: {choice.dataset}",
    ]
    if choice.memory_pss_mb is not None:
        lines.append(f"  memory: {choice.memory_pss_mb:.0f} MB PSS over the instances")
    if choice.usd_per_million_texts is not None:
        lines.append(f"  cost: ${choice.usd_per_million_texts:.3f} per million texts at that rate")
    lines.append(f"  why: {choice.why}")
    for alt in choice.alternatives:
        lines.append(f"  then: {alt['label']} {alt['shape']} batch {alt['max_batch']}/{alt['max_wait_ms']:g} ms "
                     f"({alt['dataset']}): {alt['sustainable_rate']:.0f} req/s"
                     + (" (tied: brackets overlap)" if alt.get("tied") else ""))  # fmt: skip
    return "\n".join(lines) + "\n\n" + choice.code
