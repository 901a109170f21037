"""PROTOCOL.md B, "Status alias": every GET and bulk-status entry carries evalStatus too.

Raw HTTP against real servers on loopback, the default one and a ``--compat`` one (the hosted
service sends evalStatus, so the hosted-shaped server does as well).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from fi_evals import _constants as C

from .conftest import Api, assert_error


def _poll_until_finished(api: Api, eval_id: str, timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        payload = api.result(eval_id).json()["result"]
        assert payload["evalStatus"] == payload["eval_status"], payload
        if payload["eval_status"] in ("completed", "failed"):
            return payload
        assert time.monotonic() < deadline, payload
        time.sleep(0.05)


def test_get_and_bulk_status_carry_eval_status_and_its_alias(server_factory: Any) -> None:
    api = Api(server_factory(sim_latency_ms=100, workers=1))
    items = api.evaluate("is_json", {"text": ["{}", "nope"]}, is_async=True).json()
    ids = [i["eval_id"] for i in items["result"][0]["evaluations"]]

    pending = api.result(ids[1]).json()["result"]  # the second cannot be done after 0 ms
    assert pending["eval_status"] in ("pending", "processing")
    assert pending["evalStatus"] == pending["eval_status"]
    assert pending["result"] == C.PROCESSING_MESSAGE

    unknown = str(uuid.uuid4())
    r = api.post(C.PATH_BULK_STATUS, {"eval_ids": [ids[0], unknown, ids[1]]})
    assert all(e["evalStatus"] == e["eval_status"] for e in r.json()["result"])
    assert r.json()["result"][1]["evalStatus"] == "not_found"

    done = _poll_until_finished(api, ids[1])
    assert done["evalStatus"] == "completed" and done["result"]["value"] == "Failed"
    entries = api.post(C.PATH_BULK_STATUS, {"eval_ids": ids}).json()["result"]
    assert [(e["eval_status"], e["evalStatus"]) for e in entries] == [("completed",) * 2] * 2


def test_a_failed_evaluation_has_the_alias_too(server_factory: Any) -> None:
    from .conftest import STAND_INS

    api = Api(server_factory(evaluators=STAND_INS))
    items = api.evaluate("one_line", {"text": ["down"]}, is_async=True).json()
    payload = _poll_until_finished(api, items["result"][0]["evaluations"][0]["eval_id"])
    assert payload["evalStatus"] == "failed" and "unreachable" in payload["error_message"]


def test_compat_server_sends_the_alias_like_the_hosted_service(server_factory: Any) -> None:
    api = Api(server_factory(compat=True))
    items = api.evaluate("is_json", {"text": "{}"}, is_async=True).json()
    payload = _poll_until_finished(api, items["result"][0]["evaluations"][0]["eval_id"])
    assert payload["evalStatus"] == "completed"
    assert "output" not in payload["result"]  # still no other section B field
    assert_error(api.post(C.PATH_BULK_STATUS, {"eval_ids": [str(uuid.uuid4())]}), 404,
                 "not_found", "not_found")
