"""The server scenario through the real CLI on a tiny model: one backend, two shapes, rows of kind server
with their searched points, a rerun that finds every cell done, and the one-line errors of its fields."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from harness.core.hardware import detect
from harness.store import results

QUICK = [
    "+experiment=server", "backend=torch-fp32", "dataset=short", "dataset.samples=16",
    "server.budgets_ms=[100,400]", "server.batching=[{max_batch:4,max_wait_ms:1}]", "server.point_s=0.3",
    "server.discard=10", "server.min_requests=60", "server.rel_tol=0.5", "server.rate_lo=20", "server.rate_hi=80",
]  # fmt: skip


def harness(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True,
                          env=env or os.environ, timeout=900)  # fmt: skip


@pytest.mark.slow  # about 2 min on 2 cores: worker starts, exports, two shapes
def test_a_tiny_server_sweep_writes_server_rows(tiny_models, tmp_path):
    (tmp_path / "tmp").mkdir()
    env = {**os.environ, "HARNESS_CACHE_DIR": str(tmp_path / "cache"), "TMPDIR": str(tmp_path / "tmp")}
    shapes = "server.shapes=[1x1,2x1]" if detect().cpu_budget >= 2 else "server.shapes=[1x1]"
    args = ["sweep", "model.name=tiny", f"model.source={tiny_models[0]}", f"results_dir={tmp_path / 'results'}",
            "run=s", shapes, *QUICK]  # fmt: skip
    first = harness(*args, env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    df = results.load(tmp_path / "results")
    server = df[df["kind"] == "server"]
    assert set(server["status"]) == {"ok"}, server[["reason"]].to_string()
    assert sorted(server["budget_p99_ms"].unique()) == [100.0, 400.0]
    for _, row in server.iterrows():
        assert row["bulk_throughput"] > 0 and row["rate_points"] and row["memory_pss_mb"] > 0
        assert row["text_chars_mean"] > 0 and row["solo_p99_ms"] > 0  # the texts served, a lone request's p99
        assert row["threads"] == row["instances"] * row["threads_per_instance"]
        rates = [p["rate"] for p in row["rate_points"]]
        assert rates == sorted(rates) and rates[0] == pytest.approx(20.0)
        if row["sustainable_rate"] is not None:
            assert 20.0 <= row["sustainable_rate"] <= 80.0 and row["request_p99_ms"] <= row["budget_p99_ms"]
    assert not list((tmp_path / "tmp").glob("harness-queue-*"))  # each shape's queue file removed when done
    again = harness(*args, env=env)
    assert again.returncode == 0 and "nothing to run" in again.stdout, again.stderr[-2000:]


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("server.rate_lo=0", "server.rate_lo: 0"),
        ("server.rate_hi=-5", "server.rate_hi: -5"),
        ("server.budgets_ms=[50,0]", "server.budgets_ms: 0"),
        ("server.shapes=[64x2]", "server.shapes: '64x2'"),
        ("server.shapes=[2y1]", "server.shapes: '2y1'"),
        ("price_per_hour=-1", "price_per_hour: -1"),
    ],
)
def test_bad_server_input_is_one_line(override, field, tmp_path):
    out = harness("sweep", "+experiment=server", f"results_dir={tmp_path}", override)
    assert out.returncode == 2, out.stderr[-2000:]
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and field in lines[0] and "Traceback" not in out.stderr, out.stderr


def test_a_price_that_is_not_a_number_is_one_line(tmp_path):
    out = harness("sweep", "+experiment=server", f"results_dir={tmp_path}", "price_per_hour=cheap")
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "price_per_hour" in lines[0] and "cheap" in lines[0], out.stderr
