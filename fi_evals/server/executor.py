"""Running evaluations: the shared item loop, and the async executor behind a small interface.

:func:`evaluate_items` runs a list of items through an evaluator and turns every outcome or
exception into a per-item result; both the sync path and the async workers use it.

:class:`JobExecutor` is what the HTTP layer knows of async work (``start``, ``notify``, ``stop``);
:class:`ThreadWorkerPool` implements it with threads that claim pending evaluations from the
:class:`~fi_evals.server.store.JobStore` atomically, so that a Celery implementation can
replace it later without touching the HTTP layer.
"""

from __future__ import annotations

import abc
import logging
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fi_evals import _otel
from fi_evals.catalogue import CATALOGUE
from fi_evals.protocol import EvalStatus
from fi_evals.server.evaluators import (
    BaseEvaluator,
    EvaluationError,
    NotEvaluable,
    Outcome,
    Registry,
)
from fi_evals.server.store import ClaimedJob, FinishedJob, JobStore

__all__ = ["ItemResult", "JobExecutor", "ThreadWorkerPool", "evaluate_items"]

log = logging.getLogger("fi_evals.server.executor")

_IDLE_WAIT = 0.5  # seconds an idle worker sleeps before looking at the store again
_ERROR_BACKOFF = 1.0  # seconds a worker waits after a store error
# A worker's claim size adapts to the evaluator's speed: cheap evaluations are claimed in
# bigger chunks (two transactions per chunk dominate otherwise), slow ones in small chunks (so
# that work spreads over the workers and a stop releases little).
_MAX_CLAIM = 256
_MAX_BATCHED_CLAIM = 1024  # cap of a claim grown to an evaluator's preferred_batch
_FAST_CHUNK = 0.05  # seconds: a full chunk done faster than this doubles the claim size
_SLOW_CHUNK = 0.5  # seconds: a chunk slower than this halves it


@dataclass(slots=True)
class ItemResult:
    """One item's result: a verdict (completed) or the reason it could not run (failed).

    Read-only by convention (not ``frozen``: a frozen dataclass costs twice as much to build,
    and the sync path builds one per evaluation; positional arguments are accepted for the
    same reason, in the order of the fields)."""

    status: str
    output: Any
    reason: str | None
    runtime: int
    error_message: str | None


def _failed(exc: BaseException, runtime: int) -> ItemResult:
    if isinstance(exc, EvaluationError):
        message = str(exc) or type(exc).__name__
    else:  # a bug in the evaluator: say what blew up, keep the other items going
        message = f"evaluator error: {type(exc).__name__}: {exc}"
    return ItemResult(status=EvalStatus.FAILED, output=None, reason=None, runtime=runtime,
                      error_message=message)


def _overrides_many(evaluator: BaseEvaluator) -> bool:
    return type(evaluator).evaluate_many is not BaseEvaluator.evaluate_many


def evaluate_items(evaluator: BaseEvaluator, items: Sequence[Mapping[str, Any]],
                   params: Mapping[str, Any], model: str | None,
                   sim_latency_ms: int = 0, *, eval_ids: Sequence[str] = (),
                   is_async: bool | None = None) -> list[ItemResult]:
    """Evaluate items in order; never raises for an item's failure.

    With OpenTelemetry, inside a ``fi_evals.server.evaluate`` span (template, items, model,
    eval ids, failed; never params or keys, inputs only when ``FI_OTEL_INPUTS=1``).

    Args:
        evaluator: the template's evaluator.
        items: one inputs mapping per item.
        params: validated template parameters.
        model: judge model, if any.
        sim_latency_ms: every evaluation takes at least this long (``--sim-latency-ms``).
        eval_ids: the items' eval ids, for the span only.
        is_async: whether the items came from an async submission, for the span only.

    Returns:
        One :class:`ItemResult` per item, in input order.
    """
    attributes: dict[str, Any] = {
        "fi_evals.template": evaluator.template.name, "fi_evals.items": len(items),
        "fi_evals.model": model, "fi_evals.is_async": is_async}
    with _otel.span("fi_evals.server.evaluate", **attributes) as current:
        results = _evaluate_items(evaluator, items, params, model, sim_latency_ms)
        if current is not None and current.is_recording():  # no work for a no-op tracer
            failed = sum(1 for r in results if r.status != EvalStatus.COMPLETED)
            _otel.set_attributes(current, **{"fi_evals.failed": failed,
                                             "fi_evals.eval_ids": _otel.eval_ids(eval_ids),
                                             "fi_evals.inputs": _otel.inputs_text(items)})
            if failed:
                _otel.set_error(current, f"{failed} of {len(results)} evaluations failed")
        return results


def _evaluate_items(evaluator: BaseEvaluator, items: Sequence[Mapping[str, Any]],
                    params: Mapping[str, Any], model: str | None,
                    sim_latency_ms: int) -> list[ItemResult]:
    if _overrides_many(evaluator) and len(items) > 1:
        return _evaluate_together(evaluator, items, params, model, sim_latency_ms)
    results: list[ItemResult] = []
    append = results.append
    evaluate = evaluator.evaluate
    min_seconds = sim_latency_ms / 1000.0
    clock = time.perf_counter
    completed = EvalStatus.COMPLETED
    start = clock()
    for inputs in items:
        failure: Exception | None = None
        try:
            outcome = evaluate(inputs, params, model)
            if outcome.__class__ is not Outcome and not isinstance(outcome, Outcome):
                raise TypeError(f"evaluate() returned {type(outcome).__name__}, not Outcome")
        except Exception as exc:  # noqa: BLE001 - recorded on the item, see _failed
            failure = exc
        if min_seconds:
            left = min_seconds - (clock() - start)
            if left > 0:
                time.sleep(left)
        end = clock()  # one clock read per item: an item starts when the one before ends
        runtime = int((end - start) * 1000)
        start = end
        if failure is None:
            append(ItemResult(completed, outcome.output, outcome.reason, runtime, None))
        else:
            append(_failed(failure, runtime))
    return results


def _evaluate_together(evaluator: BaseEvaluator, items: Sequence[Mapping[str, Any]],
                       params: Mapping[str, Any], model: str | None,
                       sim_latency_ms: int) -> list[ItemResult]:
    start = time.perf_counter()
    try:
        outcomes: list[Any] = list(evaluator.evaluate_many(items, params, model))
        if len(outcomes) != len(items):
            raise RuntimeError(f"evaluate_many() returned {len(outcomes)} results for "
                               f"{len(items)} items")
    except Exception as exc:  # noqa: BLE001 - the whole call failed: every item records it
        outcomes = [exc] * len(items)
    left = sim_latency_ms * len(items) / 1000.0 - (time.perf_counter() - start)
    if left > 0:
        time.sleep(left)
    runtime = int((time.perf_counter() - start) * 1000 / len(items))
    return [ItemResult(status=EvalStatus.COMPLETED, output=o.output, reason=o.reason,
                       runtime=runtime, error_message=None)
            if isinstance(o, Outcome)
            else _failed(o if isinstance(o, BaseException) else TypeError(repr(o)), runtime)
            for o in outcomes]


class JobExecutor(abc.ABC):
    """Runs stored pending evaluations in the background."""

    runs_here: bool = False
    """True when the executor evaluates in this process (the thread pool): an async submission
    of cheap items (see ``EvalService``) is then evaluated at once by the request, on the same
    CPU a worker would use, instead of being written pending, claimed and finished. Executors
    that spread work over other processes (Celery) keep False: all their async work queues."""

    @abc.abstractmethod
    def start(self) -> None:
        """Start taking pending work."""

    @abc.abstractmethod
    def notify(self) -> None:
        """New pending work was stored (a hint: executors must also find it on their own)."""

    @abc.abstractmethod
    def begin_stop(self) -> None:
        """Stop claiming new work (returns at once)."""

    @abc.abstractmethod
    def stop(self, timeout: float) -> bool:
        """Stop, letting evaluations in hand finish; unstarted ones go back to pending.

        Returns:
            True when every worker stopped within ``timeout``.
        """


def __getattr__(name: str) -> Any:
    if name == "Executor":  # its name until 0.x: it shadowed concurrent.futures.Executor
        warnings.warn("fi_evals.server.executor.Executor is now JobExecutor", DeprecationWarning,
                      stacklevel=2)
        return JobExecutor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


CountFn = Callable[[str, int, int], None]


class ThreadWorkerPool(JobExecutor):
    """``workers`` threads that claim up to ``claim_batch`` pending evaluations at a time."""

    runs_here = True

    def __init__(self, store: JobStore, registry: Registry, *, workers: int, claim_batch: int,
                 sim_latency_ms: int = 0, count: CountFn | None = None) -> None:
        self.store = store
        self.registry = registry
        self.workers = workers
        self.claim_batch = claim_batch
        self.sim_latency_ms = sim_latency_ms
        self._count = count or (lambda template, ok, failed: None)
        self._wake = threading.Condition()
        self._local = threading.local()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for n in range(self.workers):
            thread = threading.Thread(target=self._run, name=f"fi-evals-worker-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def notify(self) -> None:
        with self._wake:
            self._wake.notify_all()

    def begin_stop(self) -> None:
        self._stopping.set()
        self.notify()

    def stop(self, timeout: float) -> bool:
        self.begin_stop()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._threads)

    def _run(self) -> None:
        size = self.claim_batch
        while not self._stopping.is_set():
            try:
                jobs = self.store.claim(size)
            except Exception:  # a worker never dies; the rows stay pending
                log.exception("claiming pending evaluations failed; retrying")
                self._stopping.wait(_ERROR_BACKOFF)
                continue
            if not jobs:
                with self._wake:
                    if not self._stopping.is_set():
                        self._wake.wait(_IDLE_WAIT)
                continue
            started = time.monotonic()
            self._local.preferred = 0
            try:
                self._process(jobs)
            except Exception as exc:  # a bug must not silently kill the worker
                log.exception("processing %d claimed evaluations failed", len(jobs))
                # Rows already stored keep their results (finish() only updates unfinished
                # rows); the rest fail with the reason instead of staying 'processing'.
                message = f"server error while evaluating: {type(exc).__name__}: {exc}"
                self._save([FinishedJob(eval_id=j.eval_id, status=EvalStatus.FAILED.value,
                                        output=None, reason=None, runtime=0,
                                        error_message=message) for j in jobs])
            elapsed = time.monotonic() - started
            # An evaluator that batches (a model) gets claims of its preferred size: a claim
            # of 8 would make 8-text encoder passes where a sync request makes one of 500.
            floor = max(self.claim_batch, min(self._local.preferred, _MAX_BATCHED_CLAIM))
            if elapsed < _FAST_CHUNK and len(jobs) == size:
                size = min(size * 2, max(_MAX_CLAIM, floor))
            elif elapsed > _SLOW_CHUNK:
                size = max(floor, size // 2)
            size = max(size, floor)

    def _process(self, jobs: list[ClaimedJob]) -> None:
        finished: list[FinishedJob] = []
        counts: dict[str, list[int]] = {}
        index = 0
        while index < len(jobs):
            if self._stopping.is_set():
                self._save(finished)
                self._release([j.eval_id for j in jobs[index:]])
                return
            group, evaluator = self._group_at(jobs, index)
            if not isinstance(evaluator, NotEvaluable) and evaluator.preferred_batch:
                self._local.preferred = max(getattr(self._local, "preferred", 0),
                                            evaluator.preferred_batch)
            for job, result in zip(group, self._evaluate(group, evaluator), strict=True):
                finished.append(FinishedJob(eval_id=job.eval_id,
                                            status=result.status,  # type: ignore[arg-type]
                                            output=result.output, reason=result.reason,
                                            runtime=result.runtime,
                                            error_message=result.error_message))
                tally = counts.setdefault(job.template, [0, 0])
                tally[result.status != EvalStatus.COMPLETED] += 1
            index += len(group)
        self._save(finished)
        for template, (ok, failed) in counts.items():
            self._count(template, ok, failed)

    def _group_at(self, jobs: list[ClaimedJob], index: int
                  ) -> tuple[list[ClaimedJob], BaseEvaluator | NotEvaluable]:
        """``jobs[index]`` and the jobs right after it that one ``evaluate_many`` call can take
        along (same template, params and model: the items of one async request, whose texts an
        offline model then embeds in one go); one job when the evaluator works item by item."""
        first = jobs[index]
        template = CATALOGUE.get(first.template)
        try:
            if template is None:
                raise NotEvaluable(f"template {first.template!r} is no longer in the catalogue")
            evaluator = self.registry.get(template)
        except NotEvaluable as exc:
            return [first], exc
        end = index + 1
        if _overrides_many(evaluator):
            while end < len(jobs) and (jobs[end].template, jobs[end].params, jobs[end].model) \
                    == (first.template, first.params, first.model):
                end += 1
        return jobs[index:end], evaluator

    def _evaluate(self, group: list[ClaimedJob],
                  evaluator: BaseEvaluator | NotEvaluable) -> list[ItemResult]:
        if isinstance(evaluator, NotEvaluable):
            return [ItemResult(status=EvalStatus.FAILED, output=None, reason=None, runtime=0,
                               error_message=str(evaluator))] * len(group)
        return evaluate_items(evaluator, [job.inputs for job in group], group[0].params,
                              group[0].model, self.sim_latency_ms,
                              eval_ids=[job.eval_id for job in group], is_async=True)

    def _save(self, finished: list[FinishedJob]) -> None:
        if not finished:
            return
        try:
            self.store.finish(finished)
        except Exception:  # rows stay processing; recover() requeues them
            log.exception("storing %d results failed; they will run again after restart",
                          len(finished))

    def _release(self, eval_ids: list[str]) -> None:
        try:
            self.store.release(eval_ids)
        except Exception:  # rows stay processing; recover() requeues them
            log.exception("releasing %d unstarted evaluations failed", len(eval_ids))

    def __repr__(self) -> str:
        alive = sum(t.is_alive() for t in self._threads)
        return f"<ThreadWorkerPool workers={alive}/{self.workers} claim_batch={self.claim_batch}>"
