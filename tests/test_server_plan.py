"""`--plan` for the server scenario: this machine's newest server run of a model and texts, else a search's
points with the configurations after the first mostly stopped early (dominated)."""

from __future__ import annotations

from omegaconf import OmegaConf

from harness.config import ServerConfig
from harness.engine.cost import server_cell_s, server_group_s


def row(run: str, when: str, seconds: float, **kw) -> dict:
    return {"kind": "server", "machine": "m1", "status": "ok", "model": "mini", "dataset": "short", "run": run,
            "timestamp": when, "duration_s": seconds, **kw}  # fmt: skip


def test_a_server_cell_costs_what_the_newest_run_of_its_model_and_texts_took_on_this_machine():
    rows = [row("old", "2026-01-01T00:00", 30.0), row("old", "2026-01-01T00:01", 50.0),
            row("new", "2026-02-01T00:00", 4.0), row("new", "2026-02-01T00:05", 8.0),
            row("new", "2026-02-01T00:06", 99.0, status="timeout"),  # not a measured cell
            row("other", "2026-03-01T00:00", 1.0, machine="m2"),  # another machine
            row("new", "2026-02-01T00:00", 20.0, dataset="medium"),
            {**row("new", "2026-02-01T00:00", 3.0), "kind": "speed"}]  # fmt: skip
    assert server_cell_s(rows, "m1") == {("mini", "short"): 6.0, ("mini", "medium"): 20.0}
    assert server_cell_s(rows, "m3") == {}


def test_a_dominated_group_is_estimated_at_a_fraction_of_a_searched_one():
    s = OmegaConf.structured(ServerConfig(budgets_ms=[20, 50, 100], rel_tol=0.1, point_s=1.5))
    searched, dominated = server_group_s(s), server_group_s(s, dominated=True)
    assert 8.0 < dominated < searched / 2
    assert server_group_s(OmegaConf.structured(ServerConfig(budgets_ms=[50], rel_tol=0.1, point_s=1.5))) < searched
