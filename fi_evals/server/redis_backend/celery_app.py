"""The Celery side: one app configuration shared by API nodes (producers) and workers, and the
task that runs a chunk of evaluations.

Nothing is lost when a worker dies: tasks are acknowledged *late* (after the chunk's results are
stored), ``task_reject_on_worker_lost`` sends a task back when its process is killed, and the
Redis transport re-delivers a task that stayed unacknowledged longer than the visibility
timeout (a worker killed with ``kill -9``). Each worker takes one task per slot at a time
(prefetch multiplier 1), so that a dead worker holds as little as possible.

A re-delivered chunk claims only its unfinished evaluations, and the store keeps only the first
result of each, so the work of a dead worker's in-flight tasks is redone and nothing else.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

from celery import Celery

from fi_evals import _constants as C
from fi_evals.catalogue import CATALOGUE
from fi_evals.protocol import EvalStatus
from fi_evals.server.evaluators import BaseEvaluator, NotEvaluable, Registry
from fi_evals.server.executor import ItemResult, evaluate_items
from fi_evals.server.redis_backend.settings import BackendURL
from fi_evals.server.redis_backend.store import RedisJobStore
from fi_evals.server.store import ClaimedJob, FinishedJob

__all__ = ["TASK_NAME", "WorkerState", "make_celery"]

log = logging.getLogger("fi_evals.server.worker")

TASK_NAME = "fi_evals.run_chunk"
_FLUSH_SECONDS = 0.25  # a chunk of slow evaluations stores its results at least this often


def make_celery(backend: BackendURL, *,
                visibility_timeout: float = C.CELERY_VISIBILITY_TIMEOUT,
                restore_interval: float = C.CELERY_RESTORE_INTERVAL) -> Celery:
    """The Celery app of a deployment (broker = the backend's Redis database, no results)."""
    app = Celery("fi_evals", broker=backend.redis_url, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_default_queue=C.CELERY_QUEUE,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        worker_send_task_events=False,
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            "visibility_timeout": visibility_timeout,
            # Look for expired tasks every restore_interval seconds (kombu scans only every
            # 10th look by default).
            "unacked_restore_interval": restore_interval,
            "unacked_restore_throttle": 1,
        },
    )
    return app


class WorkerState:
    """What one worker process needs to run chunks: the registry and a store per key prefix.

    Tasks carry the key prefix of the deployment that sent them, so one worker pool can serve
    several deployments sharing a Redis database (tests do this).
    """

    def __init__(self, backend: BackendURL, registry: Registry) -> None:
        self.backend = backend
        self.registry = registry
        self._stores: dict[str, RedisJobStore] = {}
        self._lock = threading.Lock()

    def store(self, prefix: str) -> RedisJobStore:
        with self._lock:
            store = self._stores.get(prefix)
            if store is None:
                first = next(iter(self._stores.values()), None)
                store = RedisJobStore(self.backend.with_prefix(prefix),
                                      idempotency_ttl=C.IDEMPOTENCY_TTL_SECONDS,
                                      client=first.redis if first else None)
                self._stores[prefix] = store
            return store

    def run_chunk(self, prefix: str, eval_ids: Sequence[str], sim_latency_ms: int,
                  owner: str) -> dict[str, int]:
        """Claim the unfinished evaluations among ``eval_ids``, run them, store the results.

        Returns:
            Counts of claimed, stored and duplicate results (for the task's log line).
        """
        store = self.store(prefix)
        jobs = store.claim_ids(eval_ids, owner)
        counts = {"claimed": len(jobs), "stored": 0, "duplicates": 0, "missing": 0}
        pending: list[FinishedJob] = []
        last_flush = time.monotonic()
        for job, result in self._evaluate(jobs, sim_latency_ms):
            pending.append(FinishedJob(eval_id=job.eval_id,
                                       status=result.status,  # type: ignore[arg-type]
                                       output=result.output, reason=result.reason,
                                       runtime=result.runtime,
                                       error_message=result.error_message))
            if time.monotonic() - last_flush >= _FLUSH_SECONDS:
                if not self._flush(store, pending, counts):
                    log.warning("evaluations of a chunk were deleted meanwhile: dropping the "
                                "rest of it")
                    return counts
                pending = []
                last_flush = time.monotonic()
        self._flush(store, pending, counts)
        return counts

    @staticmethod
    def _flush(store: RedisJobStore, results: list[FinishedJob], counts: dict[str, int]) -> bool:
        """Store results; False when every one of them had vanished (expired or deleted)."""
        stored, duplicates, missing = store.finish_counted(results)
        counts["stored"] += stored
        counts["duplicates"] += duplicates
        counts["missing"] += missing
        return not results or missing < len(results)

    def _evaluate(self, jobs: list[ClaimedJob],
                  sim_latency_ms: int) -> Iterable[tuple[ClaimedJob, ItemResult]]:
        """Results in order. Evaluators that batch (``evaluate_many``, e.g. judge models) get
        each run of consecutive jobs with the same template, params and model at once."""
        for group in _runs(jobs):
            first = group[0]
            template = CATALOGUE.get(first.template)
            try:
                if template is None:
                    raise NotEvaluable(f"template {first.template!r} is no longer in the "
                                       "catalogue")
                evaluator = self.registry.get(template)
            except NotEvaluable as exc:
                for job in group:
                    yield job, ItemResult(status=EvalStatus.FAILED, output=None, reason=None,
                                          runtime=0, error_message=str(exc))
                continue
            batches = ([group] if type(evaluator).evaluate_many is not
                       BaseEvaluator.evaluate_many else [[job] for job in group])
            for batch in batches:
                results = evaluate_items(evaluator, [j.inputs for j in batch], first.params,
                                         first.model, sim_latency_ms,
                                         eval_ids=[j.eval_id for j in batch], is_async=True)
                yield from zip(batch, results, strict=True)

    def __repr__(self) -> str:
        return f"<WorkerState {self.backend} {self.registry!r} prefixes={list(self._stores)}>"


def _runs(jobs: list[ClaimedJob]) -> list[list[ClaimedJob]]:
    """Consecutive jobs with the same template, params and model (a request's chunk is one)."""
    runs: list[list[ClaimedJob]] = []
    for job in jobs:
        last = runs[-1][0] if runs else None
        if last is not None and (last.template, last.params, last.model) == (
                job.template, job.params, job.model):
            runs[-1].append(job)
        else:
            runs.append([job])
    return runs


def register_task(app: Celery, backend: BackendURL, registry: Registry) -> Any:
    """Register the chunk task on a worker's app; returns the task."""
    state = WorkerState(backend, registry)

    @app.task(name=TASK_NAME, bind=True)
    def run_chunk(task: Any, prefix: str, eval_ids: list[str], sim_latency_ms: int = 0) -> None:
        owner = f"{task.request.hostname or 'worker'}/{os.getpid()}"
        counts = state.run_chunk(prefix, eval_ids, sim_latency_ms, owner)
        if counts["duplicates"] or counts["claimed"] < len(eval_ids):
            log.info("chunk of %d: %s (re-delivered)", len(eval_ids), counts)

    return run_chunk
