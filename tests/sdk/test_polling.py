"""The Poller with a scripted transport: unknown statuses, Retry-After, deadlines (no network)."""

from __future__ import annotations

import time

import pytest

from fi_evals._exceptions import APIConnectionError, AuthenticationError, WaitTimeoutError
from fi_evals._polling import Poller
from fi_evals._retry import PollBackoff
from fi_evals._transport import Answer
from fi_evals.protocol import BulkStatusEntry, Capabilities, EvalResultPayload

pytestmark = pytest.mark.unit  # no server, no model: `make unit` runs this file


BULK = Capabilities(protocol="fi-evals/1", max_batch_size=500, max_status_ids=2,
                    bulk_status=True, idempotency=True, native_output=True)
DONE = {"eval_id": "x", "name": "is_json", "output_type": "Pass/Fail", "value": "Passed",
        "runtime": 1}


class ScriptedTransport:
    """Answers status questions from a script: id -> list of statuses, one per ask."""

    base_url = "http://scripted"

    def __init__(self, script, caps=BULK, retry_after=None, fail_first=None):
        self.script = {k: list(v) for k, v in script.items()}
        self.caps = caps
        self.retry_after = retry_after
        self.fail_first = fail_first
        self.calls: list[tuple[str, list[str]]] = []

    def capabilities(self, *, deadline=None):
        return self.caps

    capabilities_or_none = capabilities

    def _payload(self, eval_id):
        steps = self.script[eval_id]
        status = steps.pop(0) if len(steps) > 1 else steps[0]
        result = dict(DONE, eval_id=eval_id) if status in ("completed", "failed") else "..."
        return {"eval_status": status, "result": result, "error_message": None}

    def _maybe_fail(self):
        if self.fail_first is not None:
            error, self.fail_first = self.fail_first, None
            raise error

    def bulk_status(self, ids, *, deadline=None):
        self.calls.append(("bulk", list(ids)))
        self._maybe_fail()
        entries = [BulkStatusEntry.model_validate({"eval_id": i, **self._payload(i)})
                   for i in ids]
        return Answer(value=entries, body=None, retry_after=self.retry_after)

    def get_eval(self, eval_id, *, deadline=None):
        self.calls.append(("get", [eval_id]))
        self._maybe_fail()
        return Answer(value=EvalResultPayload.model_validate(self._payload(eval_id)),
                      body=None, retry_after=self.retry_after)


FAST = PollBackoff(initial=0.001, maximum=0.002, retry_after_cap=0.002)


def test_bulk_polls_in_groups_of_max_status_ids():
    transport = ScriptedTransport({"a": ["pending", "completed"], "b": ["completed"],
                                   "c": ["processing", "processing", "completed"]})
    results = Poller(transport, FAST).wait(["a", "b", "c"], timeout=5)
    assert [r.status for r in results] == ["completed"] * 3
    assert transport.calls[0] == ("bulk", ["a", "b"]) and transport.calls[1] == ("bulk", ["c"])
    assert all(len(ids) <= 2 for _, ids in transport.calls)
    assert ("bulk", ["b"]) not in transport.calls  # finished ids are not asked again


def test_per_id_polling_without_bulk_status():
    transport = ScriptedTransport({"a": ["pending", "completed"], "b": ["completed"]},
                                  caps=None)
    results = Poller(transport, FAST).wait(["a", "b"], timeout=5)
    assert [r.output for r in results] == ["Passed", "Passed"]
    assert {kind for kind, _ in transport.calls} == {"get"}


def test_unknown_statuses_count_as_unfinished_until_the_deadline():
    transport = ScriptedTransport({"a": ["completed"], "b": ["QUEUED_ON_GPU"]})
    poller = Poller(transport, FAST)
    with pytest.raises(WaitTimeoutError) as info:
        poller.wait(["a", "b"], timeout=0.2)
    assert info.value.unfinished == ("b",)
    assert info.value.statuses == {"b": "QUEUED_ON_GPU"}
    assert poller.unknown_statuses["QUEUED_ON_GPU"] >= 2
    assert [r.status for r in info.value.results] == ["completed", "pending"]


def test_retry_after_spaces_the_polls_but_never_past_the_deadline():
    transport = ScriptedTransport({"a": ["pending"]}, retry_after=0.3)
    started = time.monotonic()
    with pytest.raises(WaitTimeoutError):
        Poller(transport, PollBackoff(initial=0.001, maximum=1.0)).wait(["a"], timeout=0.5)
    elapsed = time.monotonic() - started
    assert 0.45 <= elapsed < 1.0
    assert 2 <= len(transport.calls) <= 3  # about 0.3 s apart, not a busy loop


def test_a_round_with_connection_trouble_is_skipped_but_bad_keys_raise():
    flaky = ScriptedTransport({"a": ["completed"]},
                              fail_first=APIConnectionError("reset", request_sent=True))
    assert Poller(flaky, FAST).wait(["a"], timeout=5)[0].status == "completed"
    assert len(flaky.calls) == 2
    denied = ScriptedTransport({"a": ["completed"]},
                               fail_first=AuthenticationError("bad keys", status_code=401))
    with pytest.raises(AuthenticationError):
        Poller(denied, FAST).wait(["a"], timeout=5)


def test_on_update_sees_each_result_once():
    transport = ScriptedTransport({"a": ["pending", "completed"], "b": ["failed"]})
    seen = []
    Poller(transport, FAST).wait(["a", "b"], timeout=5, on_update=seen.append)
    assert sorted(r.eval_id for r in seen) == ["a", "b"]
    assert {r.eval_id: r.status for r in seen} == {"a": "completed", "b": "failed"}
