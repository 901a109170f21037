"""Nothing lost when a worker dies: 10,000 async evaluations, two workers, ``kill -9`` one.

The proof is read from Redis and from ``/metrics`` (cluster-wide counters):
- every eval id ends ``completed``, and ``fi_evals_evaluations_total`` (results stored, only
  the first result of an evaluation counts) is exactly 10,000, with no duplicate result;
- ``fi_evals_evaluation_starts_total`` (evaluations claimed, re-runs included) exceeds
  10,000 by at most the evaluations the killed worker had in flight (claimed, unfinished) at
  the moment of the kill: only those ran again.

The workers run on their own Redis database with a short visibility timeout (6 s), so that
Celery re-delivers the dead worker's unacknowledged tasks within the test's time bound.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from _helpers import metric_sum

from fi_evals import _constants as C

from .cluster import RedisServer, WorkerProcess, delete_prefix
from .conftest import inprocess_deployment

pytestmark = pytest.mark.slow

N = 10_000
BATCH = 500
DB = 1  # not the shared workers' database: their queue is another one
SIM_LATENCY_MS = 5  # 10,000 x 5 ms over 2 x 4 threads: a run of several seconds to kill into
CONCURRENCY = 4
VISIBILITY_TIMEOUT = 6
KILL_AT = 0.3  # share of results stored when the worker dies
DEADLINE = 80.0  # seconds for the whole run after submission


@pytest.fixture
def two_workers(redis_server: RedisServer, tmp_path: Path) -> Iterator[list[WorkerProcess]]:
    flags = ["--concurrency", str(CONCURRENCY), "--visibility-timeout", str(VISIBILITY_TIMEOUT),
             "--restore-interval", "1"]
    workers = [WorkerProcess(f"{redis_server.url}/{DB}", *flags,
                             log_path=tmp_path / f"worker{i}.log", wait=False) for i in range(2)]
    for worker in workers:
        worker.wait_ready()
    yield workers
    for worker in workers:
        worker.terminate()
    for worker in workers:
        worker.wait(15)
    redis_server.client(DB).flushdb()


def submit(url: str, headers: dict[str, str], start: int) -> list[str]:
    texts = [f'{{"n": {i}}}' if i % 5 else f"not json {i}" for i in range(start, start + BATCH)]
    r = requests.post(url + C.PATH_NEW_EVAL, json={"eval_name": "is_json",
                                                   "inputs": {"text": texts}, "is_async": True},
                      headers=headers, timeout=60)
    assert r.status_code == 200, r.text
    return [e["eval_id"] for e in r.json()["result"][0]["evaluations"]]


def test_kill_9_a_worker_mid_run_loses_nothing_and_reruns_only_its_in_flight(
        redis_server: RedisServer, two_workers: list[WorkerProcess]) -> None:
    deployment = inprocess_deployment(redis_server, db=DB, sim_latency_ms=SIM_LATENCY_MS,
                                      access_log=False)
    client = redis_server.client(DB)
    try:
        with ThreadPoolExecutor(4) as pool:
            batches = pool.map(lambda s: submit(deployment.url, deployment.headers, s),
                               range(0, N, BATCH))
            ids = [i for batch in batches for i in batch]
        assert len(set(ids)) == N
        started = time.monotonic()

        stored = lambda: metric_sum(deployment, "fi_evals_evaluations_total")  # noqa: E731
        while stored() < KILL_AT * N:
            assert time.monotonic() - started < DEADLINE, "workers made no progress"
            time.sleep(0.05)
        victim, survivor = two_workers
        victim.kill9()
        in_flight = count_in_flight(client, deployment.prefix, ids, victim.name)
        done_at_kill = stored()
        assert done_at_kill < N, "the run ended before the kill: make it longer"
        assert in_flight > 0, "the killed worker held no evaluation: the kill proves nothing"

        while metric_sum(deployment, "fi_evals_queue_depth") > 0:
            assert time.monotonic() - started < DEADLINE, (
                f"unfinished after {DEADLINE} s: depth "
                f"{metric_sum(deployment, 'fi_evals_queue_depth')}\n{survivor.log_text()}")
            time.sleep(0.2)

        statuses = read_statuses(client, deployment.prefix, ids)
        assert statuses == {"completed": N}
        assert stored() == N  # each evaluation stored once
        assert metric_sum(deployment, "fi_evals_duplicate_results_total") == 0
        runs = metric_sum(deployment, "fi_evals_evaluation_starts_total")
        print(f"\nkilled {victim.name} with {in_flight} evaluations in flight after "
              f"{done_at_kill:.0f} stored; runs {runs:.0f} = {N} + {runs - N:.0f} re-runs; "
              f"all done in {time.monotonic() - started:.1f} s")
        assert N <= runs <= N + in_flight
        outputs = verdicts(deployment, ids[:BATCH])
        assert outputs == ["Failed" if i % 5 == 0 else "Passed" for i in range(BATCH)]
    finally:
        deployment.stop()
        delete_prefix(client, deployment.prefix)


def count_in_flight(client: object, prefix: str, ids: list[str], worker_name: str) -> int:
    """Evaluations claimed by ``worker_name`` and not finished."""
    pipe = client.pipeline(transaction=False)  # type: ignore[attr-defined]
    for eval_id in ids:
        pipe.hmget(f"{prefix}e:{eval_id}", ["s", "w"])
    return sum(1 for status, owner in pipe.execute()
               if status == "processing" and (owner or "").startswith(worker_name + "/"))


def read_statuses(client: object, prefix: str, ids: list[str]) -> dict[str, int]:
    pipe = client.pipeline(transaction=False)  # type: ignore[attr-defined]
    for eval_id in ids:
        pipe.hget(f"{prefix}e:{eval_id}", "s")
    counts: dict[str, int] = {}
    for status in pipe.execute():
        counts[status] = counts.get(status, 0) + 1
    return counts


def verdicts(deployment: object, ids: list[str]) -> list[str]:
    """The outputs, read over HTTP with bulk status (through both nodes)."""
    r = requests.post(deployment.url + C.PATH_BULK_STATUS,  # type: ignore[attr-defined]
                      json={"eval_ids": ids}, headers=deployment.headers,  # type: ignore
                      timeout=30)
    assert r.status_code == 200
    return [e["result"]["output"] for e in r.json()["result"]]
