"""Section B idempotent submission: replays run nothing again (proved with /metrics)."""

from __future__ import annotations

import json
import threading
import uuid
from typing import Any

import requests
from _helpers import metric_sum

from fi_evals import _constants as C

from .conftest import Api, assert_error

EVALS = "fi_evals_evaluations_total"
REPLAYS = "fi_evals_idempotent_replays_total"


def key_header() -> dict[str, str]:
    return {C.HEADER_IDEMPOTENCY_KEY: str(uuid.uuid4())}


def test_same_key_same_body_replays_without_running(api: Api) -> None:
    headers = key_header()
    body = {"eval_name": "is_json", "inputs": {"text": ["{}", "x", "[]"]}}
    before_evals, before_replays = metric_sum(api.server, EVALS), metric_sum(api.server, REPLAYS)
    first = api.post(C.PATH_NEW_EVAL, body, headers=headers)
    assert first.status_code == 200 and C.HEADER_IDEMPOTENT_REPLAYED not in first.headers
    assert metric_sum(api.server, EVALS) == before_evals + 3
    # same body, other key order and spacing: still the same request
    same = json.dumps({"inputs": {"text": ["{}", "x", "[]"]}, "eval_name": "is_json"},
                      indent=2).encode()
    again = api.post(C.PATH_NEW_EVAL, data=same, headers=headers)
    assert again.status_code == 200
    assert again.headers[C.HEADER_IDEMPOTENT_REPLAYED] == "true"
    assert again.json() == first.json()
    assert metric_sum(api.server, EVALS) == before_evals + 3
    assert metric_sum(api.server, REPLAYS) == before_replays + 1


def test_same_key_other_body_is_422(api: Api) -> None:
    headers = key_header()
    assert api.evaluate("is_json", {"text": "{}"}).status_code == 200
    assert api.post(C.PATH_NEW_EVAL, {"eval_name": "is_json", "inputs": {"text": "{}"}},
                    headers=headers).status_code == 200
    r = api.post(C.PATH_NEW_EVAL, {"eval_name": "is_json", "inputs": {"text": "[]"}},
                 headers=headers)
    assert_error(r, 422, "idempotency_error", "idempotency_key_reused",
                 headers[C.HEADER_IDEMPOTENCY_KEY], "another request body")


def test_async_replay_returns_the_same_eval_ids_and_queues_nothing(server_factory: Any) -> None:
    server = server_factory(sim_latency_ms=200, workers=1)
    api = Api(server)
    headers = key_header()
    body = {"eval_name": "is_json", "inputs": {"text": ["{}", "x"]}, "is_async": True}
    first = api.post(C.PATH_NEW_EVAL, body, headers=headers).json()
    depth = metric_sum(server, "fi_evals_queue_depth")
    again = api.post(C.PATH_NEW_EVAL, body, headers=headers)
    assert again.headers[C.HEADER_IDEMPOTENT_REPLAYED] == "true"
    assert again.json() == first
    assert metric_sum(server, "fi_evals_queue_depth") <= depth <= 2


def test_concurrent_duplicates_run_once(server_factory: Any) -> None:
    server = server_factory(sim_latency_ms=300)
    api = Api(server)
    headers = key_header()
    body = {"eval_name": "is_json", "inputs": {"text": ["{}", "[]"]}}
    answers: list[requests.Response] = []

    def send() -> None:
        answers.append(Api(server).post(C.PATH_NEW_EVAL, body, headers=headers))

    threads = [threading.Thread(target=send) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert len({a.text for a in answers}) == 1  # same eval ids everywhere
    replayed = [a.headers.get(C.HEADER_IDEMPOTENT_REPLAYED) for a in answers]
    assert replayed.count("true") == 2
    assert metric_sum(server, EVALS) == 2
    assert metric_sum(server, REPLAYS) == 2
    assert api.post(C.PATH_NEW_EVAL, body, headers=headers).json() == answers[0].json()


def test_a_refused_request_releases_its_key(server_factory: Any) -> None:
    server = server_factory(max_queue=1, inline_cheap_async=False)  # queued, not inline
    api = Api(server)
    headers = key_header()
    body = {"eval_name": "is_json", "inputs": {"text": ["{}", "x"]}, "is_async": True}
    r = api.post(C.PATH_NEW_EVAL, body, headers=headers)
    assert_error(r, 503, "overloaded", "overloaded", "queue is full")
    # the same key can be used again once the server accepts the work
    small = {"eval_name": "is_json", "inputs": {"text": "{}"}}
    assert api.post(C.PATH_NEW_EVAL, small, headers=headers).status_code == 200


def test_records_survive_a_restart(server_factory: Any, tmp_path: Any) -> None:
    db = str(tmp_path / "idem.db")
    headers = key_header()
    body = {"eval_name": "is_json", "inputs": {"text": "{}"}}
    keys = {"api_key": "k-restart", "secret_key": "s-restart"}
    first_server = server_factory(db_path=db, **keys)
    first = Api(first_server).post(C.PATH_NEW_EVAL, body, headers=headers)
    first_server.stop()
    second = server_factory(db_path=db, **keys)
    again = Api(second).post(C.PATH_NEW_EVAL, body, headers=headers)
    assert again.headers[C.HEADER_IDEMPOTENT_REPLAYED] == "true"
    assert again.json() == first.json()
    assert metric_sum(second, EVALS) == 0
