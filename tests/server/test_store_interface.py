"""Acceptance 11: the HTTP layer only needs the JobStore/JobExecutor interfaces.

A dict-backed store and a synchronous executor, written here against the interfaces alone,
serve the protocol as the SQLite store and the thread pool do.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence
from typing import Any

from fi_evals import _constants as C
from fi_evals.catalogue import CATALOGUE
from fi_evals.server.executor import JobExecutor, evaluate_items
from fi_evals.server.store import (
    ClaimedJob,
    FinishedJob,
    IdempotencyAnswer,
    IdempotencyReservation,
    JobStore,
    NewJob,
    StoredEval,
)

from .conftest import Api


class MemoryJobStore(JobStore):
    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}
        self.keys: dict[tuple[str, str], tuple[str, IdempotencyAnswer | None]] = {}
        self.lock = threading.Lock()

    def insert(self, jobs: Sequence[NewJob],
               idempotency: tuple[str, str, IdempotencyAnswer] | None = None) -> None:
        with self.lock:
            for j in jobs:
                self.rows[j.eval_id] = {"job": j, "status": j.status, "output": j.output,
                                        "reason": j.reason, "runtime": j.runtime,
                                        "error": j.error_message}
            if idempotency:
                scope, key, answer = idempotency
                self.keys[(scope, key)] = (self.keys[(scope, key)][0], answer)

    def claim(self, limit: int) -> list[ClaimedJob]:
        with self.lock:
            pending = [r for r in self.rows.values() if r["status"] == "pending"][:limit]
            for r in pending:
                r["status"] = "processing"
        return [ClaimedJob(eval_id=r["job"].eval_id, template=r["job"].template,
                           inputs=dict(r["job"].inputs), params=dict(r["job"].params),
                           model=r["job"].model) for r in pending]

    def finish(self, results: Sequence[FinishedJob]) -> None:
        with self.lock:
            for f in results:
                self.rows[f.eval_id].update(status=f.status, output=f.output, reason=f.reason,
                                            runtime=f.runtime, error=f.error_message)

    def release(self, eval_ids: Sequence[str]) -> None:
        with self.lock:
            for i in eval_ids:
                self.rows[i]["status"] = "pending"

    def get_many(self, eval_ids: Sequence[str]) -> dict[str, StoredEval]:
        with self.lock:
            return {i: StoredEval(eval_id=i, template=r["job"].template, status=r["status"],
                                  inputs=dict(r["job"].inputs), model=r["job"].model,
                                  output=r["output"], reason=r["reason"], runtime=r["runtime"],
                                  error_message=r["error"])
                    for i, r in ((i, self.rows.get(i)) for i in eval_ids) if r}

    def queue_depth(self) -> int:
        return sum(r["status"] in ("pending", "processing") for r in self.rows.values())

    def reserve_idempotency(self, scope: str, key: str, body_hash: str,
                            ttl_seconds: float) -> IdempotencyReservation:
        with self.lock:
            found = self.keys.get((scope, key))
            if found is None:
                self.keys[(scope, key)] = (body_hash, None)
                return IdempotencyReservation("reserved")
            if found[0] != body_hash:
                return IdempotencyReservation("mismatch")
            if found[1] is None:
                return IdempotencyReservation("in_progress")
            return IdempotencyReservation("replay", found[1])

    def store_answer(self, scope: str, key: str, answer: IdempotencyAnswer) -> None:
        self.keys[(scope, key)] = (self.keys[(scope, key)][0], answer)

    def release_idempotency(self, scope: str, key: str) -> None:
        self.keys.pop((scope, key), None)

    def recover(self) -> int:
        return 0

    def close(self) -> None:
        pass


class InlineExecutor(JobExecutor):
    """Runs pending work at once, on the thread that stored it."""

    def __init__(self, store: JobStore, registry: Any, config: Any, count: Any) -> None:
        self.store, self.registry = store, registry

    def start(self) -> None:
        pass

    def notify(self) -> None:
        for job in self.store.claim(1000):
            evaluator = self.registry.get(CATALOGUE[job.template])
            (r,) = evaluate_items(evaluator, [job.inputs], job.params, job.model)
            self.store.finish([FinishedJob(eval_id=job.eval_id,
                                           status=r.status,  # type: ignore[arg-type]
                                           output=r.output, reason=r.reason, runtime=r.runtime,
                                           error_message=r.error_message)])

    def begin_stop(self) -> None:
        pass

    def stop(self, timeout: float) -> bool:
        return True


def test_other_store_and_executor_serve_the_protocol(server_factory: Any) -> None:
    store = MemoryJobStore()
    api = Api(server_factory(store=store, executor_factory=InlineExecutor))
    sync = api.evaluate("is_json", {"text": ["{}", "x"]})
    assert [i["output"] for i in sync.json()["result"][0]["evaluations"]] == ["Passed", "Failed"]
    headers = {C.HEADER_IDEMPOTENCY_KEY: str(uuid.uuid4())}
    body = {"eval_name": "is_json", "inputs": {"text": ["[]", "nope"]}, "is_async": True}
    queued = api.post(C.PATH_NEW_EVAL, body, headers=headers)
    replay = api.post(C.PATH_NEW_EVAL, body, headers=headers)
    assert replay.headers[C.HEADER_IDEMPOTENT_REPLAYED] == "true"
    assert replay.json() == queued.json()
    ids = [i["eval_id"] for i in queued.json()["result"][0]["evaluations"]]
    entries = api.post(C.PATH_BULK_STATUS, {"eval_ids": ids}).json()["result"]
    assert [e["result"]["output"] for e in entries] == ["Passed", "Failed"]
    assert len(store.rows) == 4
