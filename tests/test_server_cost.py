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


def test_the_same_cpu_with_fewer_cpus_is_another_slot_with_its_own_price(tmp_path):
    two = {"cpu_model": "EPYC", "cores_physical": 2, "cpus_allowed": [0, 1]}
    one = {**two, "cpus_allowed": [0]}
    results.write_row(tmp_path, server_row("onnx", 100.0, run="two", hardware=two))
    results.write_row(tmp_path, server_row("onnx", 60.0, run="one", hardware=one))
    df = results.load(tmp_path)
    assert sorted(df["machine_slot"]) == ["m" * 16 + "/1cpu", "m" * 16 + "/2cpu"]
    priced = cost.with_cost(df, cost.parse_prices(["mmmm/2cpu=0.72", "mmmm/1cpu=0.36"])).set_index("run")
    assert priced.loc["two", "usd_per_million_texts"] == pytest.approx(2.0)
    assert priced.loc["one", "usd_per_million_texts"] == pytest.approx(0.36 / (60 * 3600) * 1e6)
    fingerprint = cost.with_cost(df, cost.parse_prices(["mmmm=0.72"])).set_index("run")  # both slots
    assert fingerprint["price_per_hour"].tolist() == [0.72, 0.72]
