"""Async submissions of cheap templates are evaluated in the request (issue 20, point 3).

A built-in deterministic template's async items are stored finished at submit: the answer is
still the async one (``{name, output_type, eval_id}`` per item) and the first poll reads them
``completed``. Judge-like, custom, isolated or large items, and servers that simulate latency
or hand async work to other processes, keep the queue. The executor here is parked (it never
claims), so an item that went to the queue stays ``pending``: which path an item took shows.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from _helpers import metric_sum

from fi_evals import _constants as C
from fi_evals.server.executor import JobExecutor
from fi_evals.server.runner import RunningServer

from .conftest import Api, FakeGroundedness

EVALS = "fi_evals_evaluations_total"


class Parked(JobExecutor):
    """An in-process executor that never runs anything: queued items stay pending."""

    runs_here = True

    def start(self) -> None:
        """Nothing to start."""

    def notify(self) -> None:
        """Ignored: nothing is ever claimed."""

    def begin_stop(self) -> None:
        """Nothing to stop."""

    def stop(self, timeout: float) -> bool:
        return True


class ParkedElsewhere(Parked):
    """As :class:`Parked`, standing for workers in other processes (Celery)."""

    runs_here = False


def _parked(server_factory: Any, executor: type[Parked] = Parked,
            **overrides: Any) -> RunningServer:
    return server_factory(evaluators=[FakeGroundedness()],
                          executor_factory=lambda store, registry, config, count: executor(),
                          **overrides)


def _submit(api: Api, name: str, inputs: Mapping[str, Any],
            headers: Mapping[str, str] | None = None) -> tuple[list[dict[str, Any]], Any]:
    r = api.post(C.PATH_NEW_EVAL, {"eval_name": name, "inputs": inputs, "is_async": True},
                 headers=headers)
    assert r.status_code == 200, r.text
    return r.json()["result"][0]["evaluations"], r


def _statuses(api: Api, items: list[dict[str, Any]]) -> tuple[list[str], Any]:
    r = api.post(C.PATH_BULK_STATUS, {"eval_ids": [e["eval_id"] for e in items]})
    assert r.status_code == 200, r.text
    return [e["eval_status"] for e in r.json()["result"]], r


def test_cheap_async_items_are_finished_at_submit_with_the_async_answer(
        server_factory: Any) -> None:
    server = _parked(server_factory)
    api = Api(server)
    items, _ = _submit(api, "is_json", {"text": ["{}", "[", '{"a": 1}']})
    assert [sorted(e) for e in items] == [["eval_id", "name", "output_type"]] * 3
    assert {(e["name"], e["output_type"]) for e in items} == {("is_json", "Pass/Fail")}
    statuses, r = _statuses(api, items)
    assert statuses == ["completed"] * 3
    assert C.HEADER_RETRY_AFTER not in r.headers
    outputs = [e["result"]["output"] for e in r.json()["result"]]
    assert outputs == ["Passed", "Failed", "Passed"]
    record = r.json()["result"][1]["result"]
    assert record["input_data"] == {"text": "["}
    assert record["value"] == "Failed"
    one = api.result(items[0]["eval_id"]).json()["result"]
    assert (one["eval_status"], one["evalStatus"]) == ("completed", "completed")
    assert metric_sum(server, EVALS) == 3


def test_judge_like_async_items_go_through_the_queue(server_factory: Any) -> None:
    api = Api(_parked(server_factory))
    items, _ = _submit(api, "groundedness", {"output": ["a", "b"], "context": [["a"], ["c"]]})
    statuses, r = _statuses(api, items)
    assert statuses == ["pending", "pending"]  # the (parked) workers own them
    assert r.headers[C.HEADER_RETRY_AFTER] == str(C.DEFAULT_POLL_RETRY_AFTER)


def test_the_real_workers_still_finish_judge_like_async_items(server_factory: Any) -> None:
    from .test_http_protocol import wait_finished

    api = Api(server_factory(evaluators=[FakeGroundedness()]))
    items, _ = _submit(api, "groundedness", {"output": ["a", "b"], "context": [["a"], ["c"]]})
    entries = wait_finished(api, [e["eval_id"] for e in items])
    assert [e["result"]["output"] for e in entries] == ["Passed", "Failed"]


def test_large_items_of_a_size_routed_template_go_through_the_queue(
        server_factory: Any) -> None:
    api = Api(_parked(server_factory, isolation_inline_chars=50))
    small, _ = _submit(api, "fuzzy_match", {"output": ["abc"], "expected": ["abd"]})
    large, _ = _submit(api, "fuzzy_match", {"output": ["abc", "x" * 51], "expected": ["a", "b"]})
    assert _statuses(api, small)[0] == ["completed"]
    assert _statuses(api, large)[0] == ["pending", "pending"]


def test_no_inline_evaluation_when_turned_off_simulating_latency_or_workers_elsewhere(
        server_factory: Any) -> None:
    for server in (_parked(server_factory, inline_cheap_async=False),
                   _parked(server_factory, sim_latency_ms=1),
                   _parked(server_factory, ParkedElsewhere)):
        api = Api(server)
        items, _ = _submit(api, "is_json", {"text": ["{}", "["]})
        assert _statuses(api, items)[0] == ["pending", "pending"], server.config


def test_an_inline_async_request_replays_without_running_again(server_factory: Any) -> None:
    server = _parked(server_factory)
    api = Api(server)
    headers = {C.HEADER_IDEMPOTENCY_KEY: str(uuid.uuid4())}
    first, r1 = _submit(api, "is_json", {"text": ["{}", "["]}, headers)
    again, r2 = _submit(api, "is_json", {"text": ["{}", "["]}, headers)
    assert again == first and r2.content == r1.content
    assert r2.headers[C.HEADER_IDEMPOTENT_REPLAYED] == "true"
    assert metric_sum(server, EVALS) == 2


PREFER = {C.HEADER_PREFER: C.PREFER_RESULTS}


def test_prefer_representation_answers_cheap_async_items_with_their_results(
        server_factory: Any) -> None:
    """``Prefer: return=representation`` (RFC 7240): items finished at submit come back as a
    sync answer's items (their ids are the stored ones), with ``Preference-Applied``."""
    server = _parked(server_factory)
    api = Api(server)
    items, r = _submit(api, "is_json", {"text": ["{}", "["]}, PREFER)
    assert r.headers[C.HEADER_PREFERENCE_APPLIED] == C.PREFER_RESULTS
    assert [(e["output"], e["eval_status"], e["output_type"]) for e in items] == \
        [("Passed", "completed", "Pass/Fail"), ("Failed", "completed", "Pass/Fail")]
    stored, _ = _statuses(api, items)
    assert stored == ["completed", "completed"]
    assert metric_sum(server, EVALS) == 2
    # Preference lists and parameters are read as RFC 7240 writes them.
    for header in ("respond-async, return=representation", "return = representation;x=1"):
        got, r = _submit(api, "is_json", {"text": ["{}"]}, {C.HEADER_PREFER: header})
        assert got[0]["eval_status"] == "completed", header
    got, r = _submit(api, "is_json", {"text": ["{}"]}, {C.HEADER_PREFER: "return=minimal"})
    assert sorted(got[0]) == ["eval_id", "name", "output_type"]
    assert C.HEADER_PREFERENCE_APPLIED not in r.headers


def test_prefer_representation_leaves_queued_items_and_compat_servers_alone(
        server_factory: Any) -> None:
    api = Api(_parked(server_factory))
    items, r = _submit(api, "groundedness", {"output": ["a"], "context": [["a"]]}, PREFER)
    assert sorted(items[0]) == ["eval_id", "name", "output_type"]  # queued: its id only
    assert C.HEADER_PREFERENCE_APPLIED not in r.headers
    assert _statuses(api, items)[0] == ["pending"]
    compat = Api(server_factory(compat=True))
    items, r = _submit(compat, "is_json", {"text": ["{}"]}, PREFER)
    assert sorted(items[0]) == ["eval_id", "name", "output_type"]
    assert C.HEADER_PREFERENCE_APPLIED not in r.headers


def test_prefer_representation_replays_the_same_results(server_factory: Any) -> None:
    server = _parked(server_factory)
    api = Api(server)
    headers = {C.HEADER_IDEMPOTENCY_KEY: str(uuid.uuid4()), **PREFER}
    first, r1 = _submit(api, "is_json", {"text": ["{}", "["]}, headers)
    again, r2 = _submit(api, "is_json", {"text": ["{}", "["]}, headers)
    assert again == first and r2.content == r1.content
    assert first[0]["eval_status"] == "completed"
    assert r2.headers[C.HEADER_IDEMPOTENT_REPLAYED] == "true"
    assert metric_sum(server, EVALS) == 2
