"""The SQLite backend's worker threads (ThreadWorkerPool) against a real server.

Not part of test_http_protocol.py: the cluster suite adopts that module, and a cluster's
workers are Celery tasks, not these threads.
"""

from __future__ import annotations

from typing import Any

import pytest

from fi_evals import _constants as C
from fi_evals.server.executor import ThreadWorkerPool

from .conftest import Api
from .test_http_protocol import wait_finished


def test_a_bug_in_the_worker_fails_the_claimed_items_and_the_worker_goes_on(
        server_factory: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    api = Api(server_factory(workers=1, inline_cheap_async=False))  # the workers run it
    real = ThreadWorkerPool._group_at

    def broken(self: Any, jobs: Any, index: int) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(ThreadWorkerPool, "_group_at", broken)
    r = api.post(C.PATH_NEW_EVAL, {"eval_name": "is_json", "inputs": {"text": ["{}", "["]},
                                   "is_async": True})
    ids = [e["eval_id"] for e in r.json()["result"][0]["evaluations"]]
    entries = wait_finished(api, ids)
    assert [e["eval_status"] for e in entries] == ["failed", "failed"]
    detail = api.get(C.PATH_NEW_EVAL, params={"eval_id": ids[0]}).json()["result"]
    assert "server error while evaluating: RuntimeError: boom" in str(detail)
    monkeypatch.setattr(ThreadWorkerPool, "_group_at", real)  # the same worker thread again
    r = api.post(C.PATH_NEW_EVAL, {"eval_name": "is_json", "inputs": {"text": ["{}"]},
                                   "is_async": True})
    (entry,) = wait_finished(api, [r.json()["result"][0]["evaluations"][0]["eval_id"]])
    assert entry["eval_status"] == "completed"
