"""$ per million texts (harness.store.cost): derived at load from the rows' price or --price-per-hour."""

from __future__ import annotations

import pytest
from rows import speed_row
from server_rows import server_row

from harness.core.usage import UsageError
from harness.store import cost, results


def test_cost_per_million_texts_from_the_rows_price_and_from_a_given_one(tmp_path):
    results.write_row(tmp_path, speed_row("torch-fp32", 100.0, price_per_hour=0.36))
    results.write_row(tmp_path, server_row("onnx", 50.0))
    df = results.load(tmp_path).set_index("kind")
    assert df.loc["speed", "usd_per_million_texts"] == pytest.approx(0.36 / (100 * 3600) * 1e6)  # $1.00
    assert df.loc["server", "usd_per_million_texts"] != df.loc["server", "usd_per_million_texts"]  # no price: NaN
    priced = cost.with_cost(df.reset_index(), cost.parse_prices(["0.72"])).set_index("kind")
    assert priced.loc["server", "usd_per_million_texts"] == pytest.approx(4.0)
    by_machine = cost.with_cost(df.reset_index(), cost.parse_prices(["mmmm=1.8", "zzz=9"])).set_index("kind")
    assert by_machine.loc["server", "usd_per_million_texts"] == pytest.approx(10.0)


@pytest.mark.parametrize("value", ["cheap", "0", "-1", "m=abc", "nan"])
def test_a_price_that_is_not_a_positive_number_is_refused(value):
    with pytest.raises(UsageError, match=r"^--price-per-hour: .* is not allowed"):
        cost.parse_prices([value])
