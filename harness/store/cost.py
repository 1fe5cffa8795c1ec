"""What a text costs: `$ per million texts` = price per hour / (texts per second x 3600) x 1e6, derived at
load time like every ratio (never stored). The price is the machine's, from the sweep's `price_per_hour`
(carried by its rows) or given to `report` / `recommend` with `--price-per-hour` (one price for every
machine, MACHINE=PRICE for one fingerprint, or MACHINE/2cpu=PRICE for one slot:
`slot_of`). The rate is a speed row's bulk throughput, or a server row's sustainable
rate (one text per request)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from harness.core.usage import UsageError

Prices = dict[str | None, float]  # machine fingerprint (or its start) -> $/hour; None: every machine


def parse_prices(values: Sequence[str] | None) -> Prices:
    """`--price-per-hour 0.52` or `--price-per-hour MACHINE=0.52` (repeatable): a one-line UsageError for a
    price that is not a number > 0."""
    prices: Prices = {}
    for value in values or []:
        machine, _, price = value.rpartition("=")
        try:
            number = float(price)
        except ValueError:
            number = math.nan
        if not (number > 0 and math.isfinite(number)):
            raise UsageError(f"--price-per-hour: {value!r} is not allowed; give dollars per hour as a number > 0 "
                             "(e.g. 0.52), or MACHINE=PRICE for one machine.")  # fmt: skip
        prices[machine or None] = number
    return prices


def cpus_of(hw: object) -> int | None:
    """The CPUs the harness could use on that machine (its `cpu_budget`: physical cores, allowed CPUs, quota)."""
    if not isinstance(hw, dict) or not hw.get("cores_physical"):
        return None
    limits = [int(hw["cores_physical"])]
    if hw.get("cpus_allowed"):
        limits.append(len(hw["cpus_allowed"]))
    if hw.get("cpu_quota"):
        limits.append(math.ceil(float(hw["cpu_quota"]) - 1e-9))
    return max(1, min(limits))


def slot_of(machine: object, hw: object) -> str:
    """A machine as a deployment buys it: its fingerprint and the CPUs the run had ("3f2a…/2cpu"). The same
    CPU type with fewer CPUs (a smaller instance, a SLURM allocation, taskset) is another slot, another price."""
    cpus = cpus_of(hw)
    return f"{machine}/{cpus}cpu" if cpus else str(machine)


def price_of(machine: object, stored: object, prices: Prices) -> float:
    """A given price for the slot ("FINGERPRINT/2cpu=", exact) or the machine (a fingerprint prefix), else every
    machine's given price, else the row's own."""
    fingerprint, _, cpus = machine.partition("/") if isinstance(machine, str) else ("", "", "")
    for key, value in prices.items():
        if key is not None and "/" in key and key.split("/")[1] == cpus and fingerprint.startswith(key.split("/")[0]):
            return value
    for key, value in prices.items():
        if key is not None and "/" not in key and fingerprint.startswith(key):
            return value
    if None in prices:
        return prices[None]
    return float(stored) if isinstance(stored, (int, float)) and stored == stored else math.nan


def usd_per_million(price_per_hour: Any, texts_per_s: Any) -> Any:
    """$ per million texts at a rate (scalars or columns)."""
    return price_per_hour / (texts_per_s * 3600.0) * 1e6


def with_cost(df: pd.DataFrame, prices: Prices | None = None) -> pd.DataFrame:
    """`price_per_hour` (given prices win over the rows' own) and `usd_per_million_texts` added."""
    df = df.copy()
    prices = prices or {}
    stored = df["price_per_hour"] if "price_per_hour" in df else pd.Series(math.nan, index=df.index)
    hws = df["hardware"] if "hardware" in df else pd.Series(None, index=df.index)
    df["machine_slot"] = [slot_of(m, h) for m, h in zip(df["machine"], hws, strict=True)]
    df["price_per_hour"] = [price_of(m, s, prices) for m, s in zip(df["machine_slot"], stored, strict=True)]
    rate = pd.Series(math.nan, index=df.index, dtype=float)
    if "throughput" in df:
        speed = df["kind"] == "speed"
        rate[speed] = pd.to_numeric(df.loc[speed, "throughput"], errors="coerce")
    if "sustainable_rate" in df:
        server = df["kind"] == "server"
        rate[server] = pd.to_numeric(df.loc[server, "sustainable_rate"], errors="coerce")
    df["usd_per_million_texts"] = usd_per_million(df["price_per_hour"], rate)
    return df
