"""What a text costs: `$ per million texts` = price per hour / (texts per second x 3600) x 1e6, derived at
load time like every ratio (never stored). The price is the machine's, from the sweep's `price_per_hour`
(carried by its rows) or given to `report` / `recommend` with `--price-per-hour` (one price for every
machine, or MACHINE=PRICE for one). The rate is a speed row's bulk throughput, or a server row's sustainable
rate (one text per request)."""

from __future__ import annotations

import math
from collections.abc import Sequence

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


def price_of(machine: object, stored: object, prices: Prices) -> float:
    for key, value in prices.items():
        if key is not None and isinstance(machine, str) and machine.startswith(key):
            return value
    if None in prices:
        return prices[None]
    return float(stored) if isinstance(stored, (int, float)) and stored == stored else math.nan


def with_cost(df: pd.DataFrame, prices: Prices | None = None) -> pd.DataFrame:
    """`price_per_hour` (given prices win over the rows' own) and `usd_per_million_texts` added."""
    df = df.copy()
    prices = prices or {}
    stored = df["price_per_hour"] if "price_per_hour" in df else pd.Series(math.nan, index=df.index)
    df["price_per_hour"] = [price_of(m, s, prices) for m, s in zip(df["machine"], stored, strict=True)]
    rate = pd.Series(math.nan, index=df.index, dtype=float)
    if "throughput" in df:
        speed = df["kind"] == "speed"
        rate[speed] = pd.to_numeric(df.loc[speed, "throughput"], errors="coerce")
    if "sustainable_rate" in df:
        server = df["kind"] == "server"
        rate[server] = pd.to_numeric(df.loc[server, "sustainable_rate"], errors="coerce")
    df["usd_per_million_texts"] = df["price_per_hour"] / (rate * 3600.0) * 1e6
    return df
