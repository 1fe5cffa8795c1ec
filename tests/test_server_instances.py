"""Several instances behind one shared queue (harness.engine.instances): forked processes with a fake
service that busy-waits, held request by request to the M/D/k replay of the same schedule."""

from __future__ import annotations

import multiprocessing as mp

import numpy as np
import pytest

from harness.engine import instances, serving


def _busy(d: float):
    def service(batch: range) -> None:
        until = instances.CLOCK() + d
        while instances.CLOCK() < until:
            pass

    return service


def _instance(due, path, max_batch, max_wait, d, conn):
    conn.send(instances.serve_instance(due, _busy(d), instances.SharedQueue(path), max_batch, max_wait))


def _run(tmp_path, k, rate, n, max_batch, max_wait, d=0.001):
    arrivals = serving.poisson_schedule(rate, n, seed=3)
    queue = instances.SharedQueue(tmp_path / "queue")
    queue.reset()
    origin = instances.CLOCK() + 0.2
    due = (arrivals + origin).tolist()
    ctx = mp.get_context("fork")
    pipes, procs = [], []
    for _ in range(k):
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_instance, args=(due, str(queue.path), max_batch, max_wait, d, child))
        proc.start()
        pipes.append(parent)
        procs.append(proc)
    records = [p.recv() for p in pipes]
    for proc in procs:
        proc.join(10)
    return arrivals, records, origin


@pytest.mark.parametrize(("k", "max_batch", "max_wait"), [(1, 1, 0.0), (2, 1, 0.0), (2, 8, 0.002)])
def test_every_latency_matches_the_shared_queue_replay(tmp_path, k, max_batch, max_wait):
    arrivals, records, origin = _run(tmp_path, k, rate=700.0 * k, n=1200, max_batch=max_batch, max_wait=max_wait)
    result, occupancy = instances.merge(arrivals, origin, records, max_batch, max_wait, discard=100)
    assert result.batch_size.sum() == 1200 and result.batch_size.max() <= max_batch
    assert sum(len(r["i"]) > 0 for r in records) == k  # every instance served
    replay, sizes = instances.shared_queue_replay(arrivals, occupancy, k, max_batch, max_wait)
    assert list(sizes) == list(result.batch_size)
    measured = result.completion - result.arrival
    off = np.abs(replay - measured) >= 5e-4
    # k > 1: an instance descheduled between finishing and claiming (a busy machine) claims after one that
    # became free later, which the earliest-free replay does not; it shifts a few requests, never most
    # (k = 1 too, rarely: a CI run beside another test process once put one request of 1,100 off by > 0.5 ms;
    # the one-server batcher's exact check is tests/test_serving.py's)
    assert off.mean() <= (0.005 if k == 1 else 0.02), np.max(np.abs(replay - measured))


def test_a_shared_queue_is_not_round_robin():
    # two servers, service 1 s, requests at 0, 0.1, 0.2: the third goes to the first server free (at 1.0)
    latency, _ = instances.shared_queue_replay([0.0, 0.1, 0.2], [1.0, 1.0, 1.0], 2, 1, 0.0)
    assert latency == pytest.approx([1.0, 1.0, 1.8])
    single, _ = instances.shared_queue_replay([0.0, 0.1, 0.2], [1.0, 1.0, 1.0], 1, 1, 0.0)
    assert single == pytest.approx(serving.lindley_replay([0.0, 0.1, 0.2], [1.0, 1.0, 1.0]))
