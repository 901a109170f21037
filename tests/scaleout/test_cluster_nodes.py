"""What only a deployment of several nodes can show, node by node (no proxy in the way):
replays, polls and the rate limit across nodes, counters that survive every node, the outbox
sweep, first-result-wins in the store, and the backend URL."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from typing import Any

import pytest
import requests
from _helpers import metric_sum

from fi_evals import _constants as C
from fi_evals.catalogue import CATALOGUE
from fi_evals.server.evaluators import BaseEvaluator, Outcome, Registry
from fi_evals.server.redis_backend.celery_app import WorkerState, make_celery
from fi_evals.server.redis_backend.executor import CeleryExecutor
from fi_evals.server.redis_backend.settings import BackendURL
from fi_evals.server.redis_backend.store import RedisJobStore
from fi_evals.server.store import FinishedJob, NewJob

from .cluster import Deployment, RedisServer, WorkerProcess, delete_prefix
from .conftest import new_prefix

EVALS = "fi_evals_evaluations_total"
REPLAYS = "fi_evals_idempotent_replays_total"


class Node:
    """Raw HTTP to one node of a deployment."""

    def __init__(self, deployment: Deployment, index: int) -> None:
        self.url = deployment.node_urls[index]
        self.headers = deployment.headers

    def post(self, path: str, body: Any, **headers: str) -> requests.Response:
        return requests.post(self.url + path, json=body, headers={**self.headers, **headers},
                             timeout=30)

    def metric(self, name: str) -> float:
        return metric_sum(self, name)


def nodes(deployment: Deployment) -> tuple[Node, Node]:
    return Node(deployment, 0), Node(deployment, 1)


def test_the_proxy_alternates_requests_between_the_nodes(live_server: Deployment) -> None:
    before = list(live_server.proxy.requests_per_node)
    session = requests.Session()  # one keep-alive connection: still both nodes
    for _ in range(10):
        assert session.get(live_server.url + C.PATH_HEALTH, timeout=10).status_code == 200
    after = live_server.proxy.requests_per_node
    assert [a - b for a, b in zip(after, before, strict=True)] == [5, 5]


def test_a_replay_on_the_other_node_runs_nothing(live_server: Deployment) -> None:
    a, b = nodes(live_server)
    key = {C.HEADER_IDEMPOTENCY_KEY: str(uuid.uuid4())}
    body = {"eval_name": "is_json", "inputs": {"text": ["{}", "x", "[]"]}}
    evals, replays = a.metric(EVALS), b.metric(REPLAYS)
    first = a.post(C.PATH_NEW_EVAL, body, **key)
    assert first.status_code == 200 and C.HEADER_IDEMPOTENT_REPLAYED not in first.headers
    again = b.post(C.PATH_NEW_EVAL, body, **key)
    assert again.headers[C.HEADER_IDEMPOTENT_REPLAYED] == "true"
    assert again.json() == first.json()
    other = b.post(C.PATH_NEW_EVAL, {**body, "inputs": {"text": "{}"}}, **key)
    assert other.status_code == 422
    # Both nodes report the deployment's counters: 3 evaluations, 1 replay.
    for node in (a, b):
        assert node.metric(EVALS) == evals + 3
        assert node.metric(REPLAYS) == replays + 1


def test_async_work_submitted_on_one_node_is_read_on_the_other(live_server: Deployment) -> None:
    a, b = nodes(live_server)
    r = a.post(C.PATH_NEW_EVAL, {"eval_name": "is_json", "inputs": {"text": ["{}", "no"] * 30},
                                 "is_async": True})
    ids = [e["eval_id"] for e in r.json()["result"][0]["evaluations"]]
    deadline = time.monotonic() + 30
    while True:
        entries = b.post(C.PATH_BULK_STATUS, {"eval_ids": ids}).json()["result"]
        if all(e["eval_status"] == "completed" for e in entries):
            break
        assert time.monotonic() < deadline, entries
        time.sleep(0.05)
    assert [e["result"]["output"] for e in entries] == ["Passed", "Failed"] * 30
    single = requests.get(a.url + C.PATH_NEW_EVAL, params={"eval_id": ids[1]},
                          headers=a.headers, timeout=10).json()["result"]
    assert single["eval_status"] == "completed" and single["result"]["value"] == "Failed"


def test_records_and_counters_survive_restarting_every_node(server_factory: Any,
                                                            tmp_path: Any) -> None:
    db = str(tmp_path / "idem.db")  # same "db": same Redis prefix
    keys = {"api_key": "k-restart", "secret_key": "s-restart"}
    key = {C.HEADER_IDEMPOTENCY_KEY: str(uuid.uuid4())}
    body = {"eval_name": "is_json", "inputs": {"text": "{}"}}
    first_deployment = server_factory(db_path=db, **keys)
    first = nodes(first_deployment)[0].post(C.PATH_NEW_EVAL, body, **key)
    first_deployment.stop()
    second = server_factory(db_path=db, **keys)
    a, b = nodes(second)
    assert a.metric(EVALS) == 1  # the counters are the deployment's, not a process's
    again = b.post(C.PATH_NEW_EVAL, body, **key)
    assert again.headers[C.HEADER_IDEMPOTENT_REPLAYED] == "true"
    assert again.json() == first.json()
    assert a.metric(EVALS) == 1 and a.metric(REPLAYS) == 1


def test_the_rate_limit_holds_for_the_deployment(server_factory: Any) -> None:
    deployment = server_factory(rate_limit=0.1, rate_burst=2)  # 10 s per token: no refill
    a, b = nodes(deployment)
    codes = [node.post(C.PATH_NEW_EVAL, {"eval_name": "is_json", "inputs": {"text": "{}"}})
             for node in (a, b, a, b)]
    assert [r.status_code for r in codes] == [200, 200, 429, 429]
    assert codes[2].headers["X-RateLimit-Limit"] == "2"
    assert int(codes[3].headers[C.HEADER_RETRY_AFTER]) >= 1


def test_the_outbox_sweep_sends_what_a_dead_node_never_sent(
        redis_server: RedisServer, cluster_workers: list[WorkerProcess]) -> None:
    backend = BackendURL.parse(f"{redis_server.url}/0?prefix={new_prefix('outbox')}")
    store = RedisJobStore(backend, idempotency_ttl=60)  # no dispatch: "died after commit"
    ids = [str(uuid.uuid4()) for _ in range(40)]
    store.insert([NewJob(eval_id=i, template="is_json", inputs={"text": "{}"}, params={},
                         model=None) for i in ids])
    try:
        assert store.redis.zcard(store.k_outbox) == 40 and store.queue_depth() == 40
        executor = CeleryExecutor(store, make_celery(backend), grace_seconds=0)
        assert executor.sweep() == 40
        deadline = time.monotonic() + 30
        while store.queue_depth():
            assert time.monotonic() < deadline, store.queue_depth()
            time.sleep(0.05)
        assert {e.status for e in store.get_many(ids).values()} == {"completed"}
        assert store.redis.zcard(store.k_outbox) == 0
        assert executor.sweep() == 0
        executor.stop(5)
    finally:
        delete_prefix(store.redis, store.prefix)
        store.close()


def test_only_the_first_result_of_an_evaluation_is_stored(redis_server: RedisServer) -> None:
    backend = BackendURL.parse(f"{redis_server.url}/2?prefix={new_prefix('once')}")
    store = RedisJobStore(backend, idempotency_ttl=60)
    ids = [str(uuid.uuid4()) for _ in range(3)]
    store.insert([NewJob(eval_id=i, template="is_json", inputs={"text": str(n)}, params={"p": 1},
                         model="m") for n, i in enumerate(ids)])
    try:
        claimed = store.claim_ids(ids, "w1")
        assert [(j.eval_id, j.inputs, j.params, j.model) for j in claimed] == [
            (i, {"text": str(n)}, {"p": 1}, "m") for n, i in enumerate(ids)]
        first = FinishedJob(eval_id=ids[0], status="completed", output="Passed", reason="first",
                            runtime=3, error_message=None)
        assert store.finish_counted([first]) == (1, 0, 0)
        # A re-delivered chunk re-claims only the two unfinished ones...
        assert [j.eval_id for j in store.claim_ids(ids, "w2")] == ids[1:]
        # ...and a late result for the finished one is dropped and counted.
        late = FinishedJob(eval_id=ids[0], status="failed", output=None, reason=None, runtime=9,
                           error_message="late")
        gone = FinishedJob(eval_id=str(uuid.uuid4()), status="completed", output="Passed",
                           reason="x", runtime=1, error_message=None)
        assert store.finish_counted([late, gone]) == (0, 1, 1)
        stored = store.get_many(ids)[ids[0]]
        assert (stored.status, stored.output, stored.reason, stored.runtime) == (
            "completed", "Passed", "first", 3)
        counters = store.counters()
        assert counters["starts"] == 5 and counters["duplicates"] == 1
        assert counters["evaluations"] == {("is_json", "completed"): 1}
        assert store.queue_depth() == 2
    finally:
        delete_prefix(store.redis, store.prefix)
        store.close()


@pytest.mark.parametrize("text,problem", [
    ("http://localhost:6379/0", "redis://HOST:PORT/DB"),
    ("redis:///0", "redis://HOST:PORT/DB"),
    ("redis://h:6379/zero", "must be a number"),
    ("redis://h:6379/0?prefix=", "prefix"),
    ("redis://h:6379/0?result_ttl=-5", "result_ttl"),
])
def test_a_bad_backend_url_is_refused(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        BackendURL.parse(text)


def test_the_backend_url_keeps_redis_options_and_hides_the_password() -> None:
    url = BackendURL.parse("redis://:s3cret@h:6380/4?prefix=team-a:&socket_timeout=5&result_ttl=60")
    assert (url.prefix, url.result_ttl) == ("team-a:", 60)
    assert url.redis_url == "redis://:s3cret@h:6380/4?socket_timeout=5"
    assert "s3cret" not in str(url) and "s3cret" not in url.redacted()
    assert BackendURL.parse("redis://h").redis_url == "redis://h/0"
    assert BackendURL.parse("redis://h").prefix == C.REDIS_KEY_PREFIX


def test_worker_cli_refuses_a_bad_backend_and_documents_itself() -> None:
    run = [sys.executable, "-m", "fi_evals.cli"]
    bad = subprocess.run([*run, "worker", "--backend", "http://nope"], capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 2 and "redis://HOST:PORT/DB" in bad.stderr
    helped = subprocess.run([*run, "worker", "--help"], capture_output=True, text=True,
                            timeout=60)
    assert helped.returncode == 0
    for flag in ("--backend", "--concurrency", "--pool", "--evaluators", "--visibility-timeout"):
        assert flag in helped.stdout
    serve_help = subprocess.run([*run, "serve", "--help"], capture_output=True, text=True,
                                timeout=60).stdout
    assert "--backend" in serve_help


class BatchingOneLine(BaseEvaluator):
    """A judge-like evaluator that scores many items per call, and records its calls."""

    template = CATALOGUE["one_line"]

    def __init__(self) -> None:
        self.calls: list[int] = []

    def evaluate(self, inputs: Any, params: Any, model: Any = None) -> Outcome:
        self.calls.append(1)
        return Outcome("Passed", "alone")

    def evaluate_many(self, items: Any, params: Any, model: Any = None) -> list[Any]:
        self.calls.append(len(items))
        return [Outcome("Passed", f"batch of {len(items)}") for _ in items]


def test_a_worker_runs_a_chunk_claiming_once_and_batching(redis_server: RedisServer) -> None:
    backend = BackendURL.parse(f"{redis_server.url}/2?prefix={new_prefix('chunk')}")
    batching = BatchingOneLine()
    state = WorkerState(backend, Registry.default([batching]))
    store = state.store(backend.prefix)
    ids = [str(uuid.uuid4()) for _ in range(7)]
    params = [{}] * 5 + [{"x": 1}] + [{}]  # a run of 5, then two runs of 1
    store.insert([NewJob(eval_id=i, template="one_line", inputs={"text": "a"}, params=p,
                         model=None) for i, p in zip(ids, params, strict=True)])
    try:
        counts = state.run_chunk(backend.prefix, ids, 0, "w1")
        assert counts == {"claimed": 7, "stored": 7, "duplicates": 0, "missing": 0}
        assert batching.calls == [5, 1, 1]
        assert store.get_many(ids)[ids[0]].reason == "batch of 5"
        # The same chunk again (a re-delivery): nothing left to claim, nothing runs.
        assert state.run_chunk(backend.prefix, ids, 0, "w2")["claimed"] == 0
        assert batching.calls == [5, 1, 1]
        # A template this worker cannot run fails with the reason, not silently.
        unknown = str(uuid.uuid4())
        store.insert([NewJob(eval_id=unknown, template="is_polite", inputs={"output": "a"},
                         params={}, model=None)])  # judge only
        state.run_chunk(backend.prefix, [unknown], 0, "w1")
        failed = store.get_many([unknown])[unknown]
        assert failed.status == "failed" and "cannot be evaluated" in (failed.error_message or "")
    finally:
        delete_prefix(store.redis, store.prefix)
