"""PROTOCOL.md sections A and B, checked with raw HTTP against a real server on loopback."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
import requests

from fi_evals import _constants as C
from fi_evals.catalogue import CATALOGUE

from .conftest import Api, assert_error

SDK_ROUTES = [("GET", C.PATH_GET_EVALS), ("GET", C.PATH_CAPABILITIES),
              ("POST", C.PATH_NEW_EVAL), ("GET", C.PATH_NEW_EVAL), ("POST", C.PATH_BULK_STATUS)]


def wait_finished(api: Api, eval_ids: list[str], timeout: float = 20) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        r = api.post(C.PATH_BULK_STATUS, {"eval_ids": eval_ids})
        assert r.status_code == 200, r.text
        entries = r.json()["result"]
        if all(e["eval_status"] in ("completed", "failed") for e in entries):
            assert C.HEADER_RETRY_AFTER not in r.headers
            return entries
        assert r.headers[C.HEADER_RETRY_AFTER] == str(C.DEFAULT_POLL_RETRY_AFTER)
        assert time.monotonic() < deadline, entries
        time.sleep(0.05)


# ---------------------------------------------------------------- health, auth, envelopes

def test_healthcheck_needs_no_keys(api: Api) -> None:
    r = api.get(C.PATH_HEALTH, auth=False)
    assert r.status_code == 200
    assert r.json() == {"status": True, "result": "ok"}


@pytest.mark.parametrize("method,path", SDK_ROUTES)
@pytest.mark.parametrize("keys", ["none", "wrong-secret", "wrong-api", "swapped"])
def test_every_sdk_route_needs_both_keys(api: Api, method: str, path: str, keys: str) -> None:
    real_api, real_secret = api.server.api_key, api.server.secret_key
    headers = {
        "none": {},
        "wrong-secret": {C.HEADER_API_KEY: real_api, C.HEADER_SECRET_KEY: "nope"},
        "wrong-api": {C.HEADER_API_KEY: "nope", C.HEADER_SECRET_KEY: real_secret},
        "swapped": {C.HEADER_API_KEY: real_secret, C.HEADER_SECRET_KEY: real_api},
    }[keys]
    r = api.session.request(method, api.url + path, headers=headers, json={})
    assert_error(r, 401, "authentication_error", "not_authenticated", "X-Api-Key")
    assert r.headers["WWW-Authenticate"] == "ApiKey"
    assert real_api not in r.text and real_secret not in r.text


def test_request_id_is_echoed_or_generated(api: Api) -> None:
    r = api.get(C.PATH_HEALTH, headers={C.HEADER_REQUEST_ID: "trace-42.abc"})
    assert r.headers[C.HEADER_REQUEST_ID] == "trace-42.abc"
    generated = api.get(C.PATH_HEALTH).headers[C.HEADER_REQUEST_ID]
    assert len(generated) >= 16
    # a header that could forge log lines is replaced, not echoed
    r = api.get(C.PATH_HEALTH, headers={C.HEADER_REQUEST_ID: "x y\tz"})
    assert r.headers[C.HEADER_REQUEST_ID] != "x y\tz"
    # error answers carry it too
    r = api.get(C.PATH_CAPABILITIES, auth=False, headers={C.HEADER_REQUEST_ID: "err-1"})
    assert r.status_code == 401 and r.headers[C.HEADER_REQUEST_ID] == "err-1"


def test_unknown_route_and_wrong_method_use_the_envelope(api: Api) -> None:
    assert_error(api.get("/sdk/api/v1/nope/"), 404, "not_found", "not_found", "/sdk/api/v1/nope/")
    r = api.session.delete(api.url + C.PATH_NEW_EVAL, headers=api.headers)
    assert_error(r, 405, "method_not_allowed", "method_not_allowed", "DELETE")


def test_openapi_docs_document_the_endpoints(api: Api) -> None:
    docs = api.get("/docs", auth=False)
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    spec = api.get("/openapi.json", auth=False).json()
    for path in (C.PATH_NEW_EVAL, C.PATH_BULK_STATUS, C.PATH_GET_EVALS, C.PATH_CAPABILITIES,
                 C.PATH_HEALTH):
        assert path in spec["paths"], path
    post = spec["paths"][C.PATH_NEW_EVAL]["post"]
    ref = post["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = spec["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert {"eval_name", "inputs", "is_async", "config"} <= set(schema["properties"])
    assert post["security"] == [{"ApiKey": [], "SecretKey": []}]


# ---------------------------------------------------------------- listing, capabilities

def test_get_evals_lists_the_whole_catalogue(api: Api) -> None:
    r = api.get(C.PATH_GET_EVALS)
    assert r.status_code == 200
    listed = {t["name"]: t for t in r.json()["result"]}
    assert list(listed) == list(CATALOGUE)
    ground = listed["groundedness"]["config"]
    assert ground["required_keys"] == ["output", "input", "context"]
    assert ground["optional_keys"] == ["input"]
    assert ground["output"] == "Pass/Fail" and ground["input_kinds"]["context"] == "list"
    assert listed["is_polite"]["config"]["evaluable"] is False  # a judge template, no judge here
    assert listed["is_json"]["config"]["evaluable"] is True
    assert listed["regex"]["config"]["params"]["required"] == ["pattern"]
    assert listed["tone"]["config"]["choices"][0] == "neutral"
    for t in listed.values():
        assert set(t) >= {"name", "description", "eval_tags", "config"}
        assert set(t["config"]) >= {"required_keys", "optional_keys", "output", "eval_type_id"}


def test_get_accepts_the_published_clients_empty_json_body(api: Api) -> None:
    r = api.session.get(api.url + C.PATH_GET_EVALS, headers=api.headers, json={})
    assert r.status_code == 200 and r.json()["status"] is True


def test_capabilities(api: Api) -> None:
    r = api.get(C.PATH_CAPABILITIES)
    assert r.status_code == 200
    assert r.json() == {"status": True, "result": {
        "protocol": "fi-evals/1", "max_batch_size": C.DEFAULT_MAX_BATCH_SIZE,
        "max_status_ids": C.DEFAULT_MAX_STATUS_IDS, "bulk_status": True, "idempotency": True,
        "native_output": True}}


# ---------------------------------------------------------------- sync evaluations

def test_sync_single_item(api: Api) -> None:
    r = api.evaluate("is_json", {"text": '{"a": 1}'}, model=None, span_id=None,
                     custom_eval_name=None, trace_eval=False, error_localizer=False)
    assert r.status_code == 200
    body = r.json()
    assert body["status"] is True and len(body["result"]) == 1
    (item,) = body["result"][0]["evaluations"]
    assert item["name"] == "is_json" and item["output"] == "Passed"
    assert item["output_type"] == "Pass/Fail" and isinstance(item["reason"], str)
    assert type(item["runtime"]) is int and item["runtime"] >= 0
    assert uuid.UUID(item["eval_id"]) and item["eval_status"] == "completed"


def test_sync_batch_answers_in_input_order_and_failed_verdict_is_200(api: Api) -> None:
    texts = ['{"a": 1}', "not json", "[1, 2, 3]", "{", "null"]
    r = api.evaluate("is_json", {"text": texts})
    assert r.status_code == 200
    items = r.json()["result"][0]["evaluations"]
    assert [i["output"] for i in items] == ["Passed", "Failed", "Passed", "Failed", "Passed"]
    assert len({i["eval_id"] for i in items}) == 5


def test_score_template_gives_a_float_and_the_record_a_string_value(api: Api) -> None:
    r = api.evaluate("fuzzy_match", {"output": "hello world", "expected": "Hello World!"})
    (item,) = r.json()["result"][0]["evaluations"]
    assert item["output_type"] == "score" and isinstance(item["output"], float)
    assert 0.0 <= item["output"] <= 1.0
    got = api.result(item["eval_id"])
    assert got.status_code == 200 and C.HEADER_RETRY_AFTER not in got.headers
    payload = got.json()["result"]
    assert payload["eval_status"] == "completed" and payload["error_message"] is None
    record = payload["result"]
    assert set(record) == {"eval_id", "name", "input_data", "output_type", "value", "reason",
                           "runtime", "model", "error_message", "output"}
    assert record["value"] == str(item["output"]) and float(record["value"]) == record["output"]
    assert record["input_data"] == {"output": "hello world", "expected": "Hello World!"}
    assert record["eval_id"] == item["eval_id"] and type(record["runtime"]) is int


def test_params_are_applied(api: Api) -> None:
    r = api.evaluate("regex", {"text": ["order 42", "no digits"]},
                     config={"params": {"pattern": r"\d+"}})
    assert [i["output"] for i in r.json()["result"][0]["evaluations"]] == ["Passed", "Failed"]


def test_a_raising_item_fails_alone(stub_server: Any) -> None:
    api = Api(stub_server)
    r = api.evaluate("one_line", {"text": ["fine", "boom", "two\nlines", "down"]})
    assert r.status_code == 200
    items = r.json()["result"][0]["evaluations"]
    assert [i["eval_status"] for i in items] == ["completed", "failed", "completed", "failed"]
    assert [i["output"] for i in items] == ["Passed", None, "Failed", None]
    assert "RuntimeError: kaboom" in items[1]["error_message"]
    assert items[3]["error_message"] == "judge unreachable after 3 attempts"
    assert all(type(i["runtime"]) is int for i in items)
    payload = api.result(items[1]["eval_id"]).json()["result"]
    assert payload["eval_status"] == "failed" and "kaboom" in payload["error_message"]
    assert payload["result"]["error_message"] == payload["error_message"]
    assert payload["result"]["value"] is None


def test_list_kind_keys_follow_the_declared_kinds(stub_server: Any) -> None:
    api = Api(stub_server)
    # One item: context is one item's list of chunks (not a batch of 2).
    r = api.evaluate("groundedness", {"output": "sky", "context": ["the sky is blue", "x"]},
                     model="judge-1")
    (item,) = r.json()["result"][0]["evaluations"]
    assert item["output"] == "Passed" and item["reason"] == "2 chunks; model=judge-1"
    # A batch of 2: output is a list, so context holds one entry per item.
    r = api.evaluate("groundedness", {"output": ["sky", "sea"],
                                      "context": [["the sky"], "no match here"]})
    items = r.json()["result"][0]["evaluations"]
    assert [i["output"] for i in items] == ["Passed", "Failed"]
    assert items[1]["reason"].startswith("1 chunks")
    # Key order and the first value's type decide nothing.
    r = api.evaluate("groundedness", {"context": [["a sky"], ["b"], ["c sea"]],
                                      "input": ["q1", "q2", "q3"],
                                      "output": ["sky", "sky", "sea"]})
    assert [i["output"] for i in r.json()["result"][0]["evaluations"]] == [
        "Passed", "Failed", "Passed"]


def test_judge_template_without_evaluator_says_what_is_missing(api: Api) -> None:
    r = api.evaluate("is_polite", {"output": "a"})  # no offline model computes it
    assert_error(r, 400, "validation_error", "invalid", "is listed but cannot be evaluated",
                 "judge")
    r = api.evaluate("audio_quality", {"input_audio": "x"})
    assert_error(r, 400, "validation_error", "invalid", "cannot be evaluated", "multimodal")


# ---------------------------------------------------------------- async and polling

def test_async_submission_poll_and_bulk_status(server_factory: Any) -> None:
    api = Api(server_factory(sim_latency_ms=40, workers=1))
    r = api.evaluate("is_json", {"text": ["{}", "nope", "[]"]}, is_async=True)
    assert r.status_code == 200
    items = r.json()["result"][0]["evaluations"]
    assert [set(i) for i in items] == [{"name", "output_type", "eval_id"}] * 3
    ids = [i["eval_id"] for i in items]
    first = api.result(ids[2])  # the last one cannot be done after 0 ms
    payload = first.json()["result"]
    assert payload["eval_status"] in ("pending", "processing")
    assert payload["result"] == C.PROCESSING_MESSAGE and payload["error_message"] is None
    assert first.headers[C.HEADER_RETRY_AFTER] == str(C.DEFAULT_POLL_RETRY_AFTER)
    unknown = str(uuid.uuid4())
    entries = wait_finished(api, ids)
    assert [e["eval_id"] for e in entries] == ids
    assert [e["result"]["output"] for e in entries] == ["Passed", "Failed", "Passed"]
    assert [e["result"]["value"] for e in entries] == ["Passed", "Failed", "Passed"]
    assert all(e["result"]["runtime"] >= 40 for e in entries)
    r = api.post(C.PATH_BULK_STATUS, {"eval_ids": [ids[1], unknown, ids[1].upper()]})
    got = r.json()["result"]
    assert [e["eval_status"] for e in got] == ["completed", "not_found", "completed"]
    assert got[1]["eval_id"] == unknown and got[2]["eval_id"] == ids[1]
    assert C.HEADER_RETRY_AFTER not in r.headers


def test_async_item_failure_is_recorded(stub_server: Any) -> None:
    api = Api(stub_server)
    r = api.evaluate("one_line", {"text": ["ok", "down"]}, is_async=True)
    ids = [i["eval_id"] for i in r.json()["result"][0]["evaluations"]]
    entries = wait_finished(api, ids)
    assert [e["eval_status"] for e in entries] == ["completed", "failed"]
    assert entries[1]["error_message"] == "judge unreachable after 3 attempts"
    assert type(entries[1]["result"]["runtime"]) is int
    assert entries[1]["result"]["output"] is None and entries[1]["result"]["value"] is None


def test_bulk_status_reads_a_thousand_ids(api: Api) -> None:
    texts = [f'{{"n": {i}}}' for i in range(C.DEFAULT_MAX_BATCH_SIZE)]
    ids: list[str] = []
    for _ in range(2):
        r = api.evaluate("is_json", {"text": texts})
        ids += [i["eval_id"] for i in r.json()["result"][0]["evaluations"]]
    r = api.post(C.PATH_BULK_STATUS, {"eval_ids": ids})
    assert r.status_code == 200
    entries = r.json()["result"]
    assert len(entries) == 1000 and [e["eval_id"] for e in entries] == ids
    assert {e["eval_status"] for e in entries} == {"completed"}


def test_unknown_and_malformed_eval_ids(api: Api) -> None:
    assert_error(api.result(str(uuid.uuid4())), 404, "not_found", "not_found", "no evaluation")
    assert_error(api.result("not-a-uuid"), 400, "validation_error", "invalid", "eval_id", "UUID")
    assert_error(api.get(C.PATH_NEW_EVAL), 400, "validation_error", "invalid", "eval_id")


def test_metrics_expose_the_documented_names(api: Api) -> None:
    api.evaluate("is_json", {"text": "{}"})
    text = requests.get(api.url + C.PATH_METRICS, timeout=10).text
    for name in ("fi_evals_evaluations_total", "fi_evals_http_requests_total",
                 "fi_evals_queue_depth", "fi_evals_idempotent_replays_total"):
        assert f"\n{name}" in text, name
    assert 'fi_evals_http_requests_total{route="/sdk/api/v1/new-eval/",status="200"}' in text
