"""Rate limit, queue limit, --faults, --sim-latency-ms and --compat against real servers."""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

import pytest
import requests
from _helpers import metric_sum

from fi_evals import _constants as C

from .conftest import Api, assert_error

OK_BODY = {"eval_name": "is_json", "inputs": {"text": "{}"}}
EVALS = "fi_evals_evaluations_total"


# ---------------------------------------------------------------- rate limit and queue limit

def test_rate_limit_answers_429_with_headers(server_factory: Any) -> None:
    api = Api(server_factory(rate_limit=2))
    answers = [api.get(C.PATH_CAPABILITIES) for _ in range(4)]
    codes = [a.status_code for a in answers]
    assert codes[:2] == [200, 200] and 429 in codes[2:], codes
    limited = next(a for a in answers if a.status_code == 429)
    assert_error(limited, 429, "rate_limited", "rate_limited", "rate limit")
    assert int(limited.headers[C.HEADER_RETRY_AFTER]) >= 1
    assert limited.headers[C.HEADER_RATELIMIT_LIMIT] == "2"
    assert limited.headers[C.HEADER_RATELIMIT_REMAINING] == "0"
    assert int(limited.headers[C.HEADER_RATELIMIT_RESET]) >= 1
    assert answers[0].headers[C.HEADER_RATELIMIT_REMAINING] == "1"
    # health and metrics are never limited; the bucket refills
    assert api.get(C.PATH_HEALTH).status_code == 200
    time.sleep(int(limited.headers[C.HEADER_RETRY_AFTER]))
    assert api.get(C.PATH_CAPABILITIES).status_code == 200


def test_rate_limit_is_off_by_default(api: Api) -> None:
    codes = {api.get(C.PATH_CAPABILITIES).status_code for _ in range(30)}
    assert codes == {200}
    assert C.HEADER_RATELIMIT_LIMIT not in api.get(C.PATH_CAPABILITIES).headers


def test_full_queue_answers_503_but_sync_work_goes_on(server_factory: Any) -> None:
    server = server_factory(max_queue=4, sim_latency_ms=500, workers=1)
    api = Api(server)
    async_body = {"eval_name": "is_json", "inputs": {"text": ["{}"] * 3}, "is_async": True}
    assert api.post(C.PATH_NEW_EVAL, async_body).status_code == 200
    r = api.post(C.PATH_NEW_EVAL, async_body)
    assert_error(r, 503, "overloaded", "overloaded", "queue is full", "limit 4")
    assert r.headers[C.HEADER_RETRY_AFTER] == str(C.DEFAULT_OVERLOAD_RETRY_AFTER)
    assert metric_sum(server, "fi_evals_queue_depth") <= 3
    sync = api.post(C.PATH_NEW_EVAL, OK_BODY)
    assert sync.status_code == 200


# ---------------------------------------------------------------- faults

@pytest.mark.parametrize("status,type_", [(500, "server_error"), (429, "rate_limited"),
                                          (503, "overloaded")])
def test_status_faults_answer_before_the_handler(server_factory: Any, status: int,
                                                 type_: str) -> None:
    server = server_factory(faults=f"{status}:1")
    api = Api(server)
    r = api.post(C.PATH_NEW_EVAL, OK_BODY)
    assert_error(r, status, type_, type_, "injected fault")
    if status in (429, 503):
        assert r.headers[C.HEADER_RETRY_AFTER] == "1"
    if status == 429:
        assert all(h in r.headers for h in (C.HEADER_RATELIMIT_LIMIT,
                                            C.HEADER_RATELIMIT_REMAINING,
                                            C.HEADER_RATELIMIT_RESET))
    assert metric_sum(server, EVALS) == 0
    assert metric_sum(server, "fi_evals_faults_injected_total", kind=str(status)) == 1
    # faults only touch /sdk/api/
    assert api.get(C.PATH_HEALTH).status_code == 200


def test_reset_fault_drops_the_connection_after_doing_the_work(server_factory: Any) -> None:
    server = server_factory(faults="reset:1")
    with pytest.raises(requests.ConnectionError):
        Api(server).post(C.PATH_NEW_EVAL, OK_BODY)
    assert metric_sum(server, EVALS) == 1
    assert metric_sum(server, "fi_evals_http_requests_total", status="reset") == 1
    assert Api(server).get(C.PATH_HEALTH).status_code == 200


def test_retrying_through_resets_with_one_key_runs_once(server_factory: Any) -> None:
    server = server_factory(faults="reset:0.5,500:0.2", fault_seed=7)
    headers = {C.HEADER_IDEMPOTENCY_KEY: str(uuid.uuid4())}
    body = {"eval_name": "is_json", "inputs": {"text": ["{}", "x", "[]", "1"]}}
    outcomes = []
    for _ in range(40):
        try:
            r = Api(server).post(C.PATH_NEW_EVAL, body, headers=headers)
        except requests.ConnectionError:
            outcomes.append("reset")
            continue
        outcomes.append(r.status_code)
        if r.status_code == 200:
            break
    assert outcomes[-1] == 200 and "reset" in outcomes, outcomes
    assert metric_sum(server, EVALS) == 4  # the batch ran once, whatever the retries
    if outcomes.index("reset") < len(outcomes) - 1:
        assert r.headers[C.HEADER_IDEMPOTENT_REPLAYED] == "true"


def test_slow_fault_outlasts_the_read_timeout_and_the_retry_replays(server_factory: Any) -> None:
    server = server_factory(faults="slow:1", fault_slow_seconds=1.0)
    headers = {C.HEADER_IDEMPOTENCY_KEY: str(uuid.uuid4())}
    with pytest.raises(requests.ReadTimeout):
        Api(server).post(C.PATH_NEW_EVAL, OK_BODY, headers=headers, timeout=0.3)
    r = Api(server).post(C.PATH_NEW_EVAL, OK_BODY, headers=headers, timeout=10)
    assert r.status_code == 200 and r.headers[C.HEADER_IDEMPOTENT_REPLAYED] == "true"
    assert metric_sum(server, EVALS) == 1


def test_knobs_are_announced_loudly(server_factory: Any, caplog: Any) -> None:
    with caplog.at_level(logging.WARNING, logger="fi_evals.server"):
        server_factory(faults="500:0.01", sim_latency_ms=1, compat=True)
    announced = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("--faults 500:0.01" in m for m in announced), announced
    assert any("--sim-latency-ms 1" in m for m in announced)
    assert any("--compat" in m for m in announced)


def test_bad_fault_spec_is_refused() -> None:
    from fi_evals.server.config import ServerConfig

    with pytest.raises(ValueError, match="explode"):
        ServerConfig(faults="explode:0.1")


# ---------------------------------------------------------------- sim latency

def test_sim_latency_makes_each_evaluation_at_least_that_long(server_factory: Any) -> None:
    api = Api(server_factory(sim_latency_ms=50))
    started = time.monotonic()
    r = api.evaluate("is_json", {"text": ["{}", "[]", "x"]})
    assert time.monotonic() - started >= 0.15
    assert all(i["runtime"] >= 50 for i in r.json()["result"][0]["evaluations"])


# ---------------------------------------------------------------- compat mode

def test_compat_mode_turns_section_b_off(server_factory: Any) -> None:
    server = server_factory(compat=True, sim_latency_ms=300, workers=1)
    api = Api(server)
    assert_error(api.get(C.PATH_CAPABILITIES), 404, "not_found", "not_found")
    assert_error(api.post(C.PATH_BULK_STATUS, {"eval_ids": []}), 404, "not_found", "not_found")
    headers = {C.HEADER_IDEMPOTENCY_KEY: str(uuid.uuid4())}
    first = api.post(C.PATH_NEW_EVAL, OK_BODY, headers=headers)
    again = api.post(C.PATH_NEW_EVAL, OK_BODY, headers=headers)
    assert C.HEADER_IDEMPOTENT_REPLAYED not in again.headers
    assert first.json() != again.json() and metric_sum(server, EVALS) == 2
    (item,) = first.json()["result"][0]["evaluations"]
    assert set(item) == {"name", "output", "reason", "runtime", "output_type", "eval_id"}
    record = api.result(item["eval_id"]).json()["result"]["result"]
    assert "output" not in record and record["value"] == "Passed"
    pending = api.evaluate("is_json", {"text": "{}"}, is_async=True)
    eval_id = pending.json()["result"][0]["evaluations"][0]["eval_id"]
    poll = api.result(eval_id)
    assert poll.json()["result"]["eval_status"] in ("pending", "processing")
    assert C.HEADER_RETRY_AFTER not in poll.headers
    listed = api.get(C.PATH_GET_EVALS).json()["result"]
    assert set(listed[0]["config"]) == {"required_keys", "optional_keys", "output",
                                        "eval_type_id"}
