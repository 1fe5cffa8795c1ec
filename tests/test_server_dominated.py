"""Early stop in the server scenario: a configuration that cannot reach a rate another one of the same sweep
already sustains within a budget is `dominated` after at most one point; one that can is searched from there.
Fake shapes (an ideal single server of fixed service time), no workers."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from omegaconf import OmegaConf

from harness.config import ServerConfig
from harness.engine import server
from harness.engine import serving as sv


@dataclasses.dataclass(frozen=True)
class Model:
    name: str = "tiny"


def ideal(rate: float, d: float, n: int) -> sv.ServeResult:
    """A perfect FIFO server of service time d (Lindley's recursion, no clock)."""
    arrivals = sv.poisson_schedule(rate, n, 0)
    completion = np.empty(n)
    free = 0.0
    for i, a in enumerate(arrivals):
        free = max(free, a) + d
        completion[i] = free
    start = completion - d
    return sv.ServeResult(arrivals, start, completion, start, start, completion, np.ones(n, int), 1, 0.0, 30)


class FakeShape:
    def __init__(self, name: str, d: float, bulk: float, **server_overrides):
        s = OmegaConf.merge(OmegaConf.structured(ServerConfig),
                            {"min_requests": 150, "discard": 30, "point_s": 1.0, "rel_tol": 0.05, **server_overrides})
        self.cfg = OmegaConf.create({"server": s, "dataset": {"name": "short"}, "round": 0, "cache_dir": None,
                                    "model": {"name": "tiny", "source": "hub/tiny"},
                                    "measure": {"contention_threshold": 0.25}})
        self.job = type("Job", (), {"spec": type("Spec", (), {"model": Model()})()})()
        self.k, self.t, self.max_batch, self.max_wait_s = 1, 2, 1, 0.0
        self.what, self.label, self.d, self._bulk = name, name, d, bulk
        self.points: dict[float, sv.ServeResult] = {}
        self.cpu: list = []
        self.pss: list = []
        self.measured: list[float] = []
        self.steps: list[tuple[str, dict]] = []

    def step(self, mode, **fields):
        self.steps.append((mode, fields))
        solo = self.solo_p99_s if fields.get("solo", True) else None
        return [{"runtime": {}, "precision": "fp32", "settings": {}, "solo_p99_s": solo}]

    solo_p99_s = None

    def bulk(self):
        return self._bulk

    def measure_at(self, rate):
        key = round(rate, 6)
        if key not in self.points:
            self.measured.append(rate)
            self.points[key] = ideal(rate, self.d, sv.requests_for(rate, 1.0, 30, 150))
        return self.points[key]


@pytest.fixture(autouse=True)
def no_leaders():
    server.LEADERS.clear()
    server._SEEDED.clear()
    yield
    server.LEADERS.clear()
    server._SEEDED.clear()


def test_a_slower_configuration_stops_after_one_point_and_names_the_leader():
    fast = FakeShape("fast", 0.002, 500.0)
    first = server.measure_group(fast, [20.0, 50.0])
    assert all(f["sustainable_rate"] for f in first.values()) and not any(f.get("dominated_by") for f in first.values())
    slow = FakeShape("slow", 0.008, 125.0)  # bulk 125/s: it can be asked once at the leader's rate
    second = server.measure_group(slow, [20.0, 50.0])
    for budget, fields in second.items():
        assert fields["sustainable_rate"] is None and fields["dominated_by"] == "fast"
        assert fields["why_not"].startswith("dominated")
        assert fields["rate_bracket"] == [None, first[budget]["sustainable_rate"]]
    assert len(slow.measured) <= 2  # one point per budget at most
    hopeless = FakeShape("hopeless", 0.05, 20.0)  # its bulk rate is below the leader's: not even one point
    assert all(f["dominated_by"] == "fast" for f in server.measure_group(hopeless, [20.0, 50.0]).values())
    assert hopeless.measured == []


def test_a_faster_configuration_is_searched_upwards_and_becomes_the_leader():
    slow_rate = server.measure_group(FakeShape("slow", 0.008, 125.0), [50.0])[50.0]["sustainable_rate"]
    fast = FakeShape("fast", 0.002, 500.0)
    fields = server.measure_group(fast, [50.0])[50.0]
    theory = sv.md1_rate_for_p99(0.002, 0.05)
    assert fields["dominated_by"] is None and abs(fields["sustainable_rate"] / theory - 1) < 0.1
    assert fast.measured[0] == slow_rate and min(fast.measured) == slow_rate  # the leader's rate, then upwards
    assert server.leader(server.leader_key(fast, 50.0), "slow").what == "fast"


def test_a_configuration_is_never_dominated_by_itself():
    first = server.measure_group(FakeShape("onnx", 0.002, 500.0), [50.0])[50.0]
    other_shape = FakeShape("onnx", 0.004, 250.0)  # the same configuration, a slower shape: searched to the end
    fields = server.measure_group(other_shape, [50.0])[50.0]
    assert fields["dominated_by"] is None and 0 < fields["sustainable_rate"] < first["sustainable_rate"]
    assert len(other_shape.measured) > 2


def test_pruning_can_be_switched_off():
    server.measure_group(FakeShape("fast", 0.002, 500.0), [50.0])
    slow = FakeShape("slow", 0.008, 125.0, prune_dominated=False)
    fields = server.measure_group(slow, [50.0])[50.0]
    assert fields["sustainable_rate"] and not fields.get("dominated_by")


def contended_shape(tmp_path, others: list[float]) -> tuple[server.Shape, list[str]]:
    """A Shape whose steps report `others` cores used by other processes, one per try (no workers)."""
    from harness.engine.instances import SharedQueue

    shape = object.__new__(server.Shape)
    shape.cfg = OmegaConf.create({"measure": {"contention_retries": 2, "contention_threshold": 0.1},
                                  "server": {"bulk_batch_size": 8}})  # fmt: skip
    shape.cpu, shape.what, shape.queue = [], "fake 1x2", SharedQueue(tmp_path / "queue")
    tries = iter(others)
    calls: list[str] = []

    def step(mode, **fields):
        calls.append(mode)
        shape.cpu.append((1.9, next(tries)))
        return [{"texts": 100, "end": fields["origin"] + 1.0}]

    shape.step = step
    return shape, calls


def test_a_contended_point_is_measured_again_and_the_discarded_try_leaves_no_trace(tmp_path):
    shape, calls = contended_shape(tmp_path, [0.6, 0.3, 0.02])
    assert shape.bulk() == pytest.approx(100.0, rel=0.01)
    assert calls == ["bulk"] * 3 and shape.cpu == [(1.9, 0.02)]
    stubborn, calls = contended_shape(tmp_path, [0.6, 0.5, 0.4])  # past the retries: kept, and flagged by its cpu
    stubborn.bulk()
    assert len(calls) == 3 and stubborn.cpu == [(1.9, 0.4)]


def test_a_resumed_sweep_knows_the_leaders_from_the_stored_rows(tmp_path):
    import json

    from harness.engine.identity import model_key

    fast = FakeShape("fast", 0.002, 500.0)
    stored = {"kind": "server", "status": "ok", "model_key": model_key(fast.cfg), "dataset": "short", "threads": 2,
              "budget_p99_ms": 50.0, "round": 0, "backend": "onnx", "variant": "", "instances": 1,
              "threads_per_instance": 2, "max_batch": 8, "max_wait_ms": 2.0, "sustainable_rate": 400.0}  # fmt: skip
    (tmp_path / "server-a.json").write_text(json.dumps(stored))
    (tmp_path / "server-b.json").write_text("{damaged")
    (tmp_path / "server-c.json").write_text(json.dumps({**stored, "variant": "ov_hint=THROUGHPUT", "backend":
                                                        "openvino", "sustainable_rate": None}))  # fmt: skip
    server.seed_leaders(tmp_path)
    best = server.leader(server.leader_key(fast, 50.0), "torch-fp32")
    assert best.rate == 400.0 and best.what == "onnx 1x2 max_batch 8/2 ms"
    slow = FakeShape("torch-fp32", 0.008, 125.0)
    assert server.measure_group(slow, [50.0])[50.0]["dominated_by"] == "onnx 1x2 max_batch 8/2 ms"


def test_a_budget_below_a_lone_requests_latency_is_unreachable_without_a_point():
    shape = FakeShape("slow", 0.03, 30.0)
    shape.solo_p99_s = 0.03
    fields = server.measure_group(shape, [20.0, 100.0])
    assert fields[20.0]["sustainable_rate"] is None and fields[20.0]["why_not"].startswith("unreachable")
    assert fields[20.0]["solo_p99_ms"] == pytest.approx(30.0) and fields[100.0]["sustainable_rate"] > 0
    assert all(r >= 30.0 / 16 for r in shape.measured)  # only the 100 ms search measured points


def test_the_downward_search_stops_where_latency_no_longer_falls_with_the_load():
    d = 0.03  # every request takes 30 ms: a 20 ms budget is never met, and p99 flattens at low load
    calls = []

    def measure_at(rate):
        calls.append(rate)
        return ideal(rate, d, sv.requests_for(rate, 1.0, 30, 150))

    found = sv.sustainable_rate(measure_at, 0.02, 0.1, 40.0, start=20.0)
    assert found.rate is None and len(calls) <= 4 and min(calls) > 1.0  # not down to lo = 0.1


class FlakyShape(FakeShape):
    """An ideal server whose points between 90 and 110 req/s come out slow (a p99 set by a few slow requests)."""

    def measure_at(self, rate):
        key = round(rate, 6)
        if key not in self.points and 90.0 <= rate <= 110.0:
            self.points[key] = ideal(rate, 0.2, sv.requests_for(rate, 1.0, 30, 150))
        return super().measure_at(rate)


def test_a_looser_budget_never_holds_a_lower_rate_than_a_tighter_one():
    # the 100 ms search (first) meets the slow point and ends below it; the 50 ms search, from there, climbs past
    # it: before, the looser budget read 88 req/s and the tighter 240
    shape = FlakyShape("flaky", 0.004, 200.0)
    fields = server.measure_group(shape, [50.0, 100.0])
    assert fields[100.0]["sustainable_rate"] >= fields[50.0]["sustainable_rate"] > 0
    for budget, f in fields.items():  # every point up to the claimed rate met the budget
        held = [p for p in f["rate_points"] if p["rate"] <= f["sustainable_rate"] + 1e-3]
        assert held and all(p["p99_ms"] <= budget for p in held)
        assert f["rate_bracket"][1] is not None and f["rate_bracket"][1] > f["sustainable_rate"]
    assert server.LEADERS[server.leader_key(shape, 50.0)]["flaky"].rate == fields[50.0]["sustainable_rate"]


def test_held_rate_is_the_rate_every_lower_point_meets():
    points = {r: ideal(r, 0.004, sv.requests_for(r, 1.0, 30, 150)) for r in (50.0, 100.0, 200.0)}
    points[100.0] = ideal(100.0, 0.2, sv.requests_for(100.0, 1.0, 30, 150))
    assert sv.held_rate(points, 0.05) == (50.0, 100.0)
    assert sv.held_rate({}, 0.05) == (None, None)
    assert sv.held_rate({50.0: points[100.0]}, 0.05) == (None, 50.0)


def test_a_shape_whose_bulk_is_below_every_leader_is_not_warmed_for_serving():
    server.measure_group(FakeShape("fast", 0.002, 500.0), [50.0, 100.0])
    slow = FakeShape("slow", 0.02, 40.0)
    slow.solo_p99_s = 0.02
    fields = server.measure_group(slow, [50.0, 100.0])
    assert all(f["why_not"].startswith("dominated: bulk") for f in fields.values())
    assert slow.steps == [("warm", {"warm_sizes": (1, 32), "solo": False})]  # no lone requests, no batch sizes


def test_budgets_a_lone_request_cannot_meet_need_no_warm_up_of_every_batch_size():
    shape = FakeShape("slow", 0.03, 30.0)
    shape.solo_p99_s = 0.03
    fields = server.measure_group(shape, [20.0])
    assert fields[20.0]["why_not"].startswith("unreachable") and fields[20.0]["solo_p99_ms"] == pytest.approx(30.0)
    assert [f["warm_sizes"] for _, f in shape.steps] == [(1, 32), ()]
    reachable = FakeShape("ok", 0.003, 300.0)
    reachable.solo_p99_s = 0.003
    server.measure_group(reachable, [20.0])
    assert reachable.steps[-1][1]["warm_sizes"] == server.warm_sizes(1, 32)  # then every size it can form
