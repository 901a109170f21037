"""The job store interface: where evaluations and idempotency records live.

The HTTP layer and the executor only talk to :class:`JobStore`; the SQLite implementation is in
``store_sqlite.py`` and a Redis one can be added beside it without touching either.

Evaluation life cycle: ``pending`` -> ``processing`` (claimed by a worker) -> ``completed`` |
``failed``. Sync evaluations are inserted already finished, as one :class:`ResultBatch` per
request (its docstring shows how to store finished evaluations): the SQLite store keeps such a
batch as one row, found again from any of its eval ids (``evalids.split_batch_id``).

An idempotency record is reserved before a request runs and its answer is written *in the
same transaction* as the evaluations the request created, so a crash never leaves evaluations
without their answer or an answer without its evaluations.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, overload

from fi_evals.protocol import EvalStatus, FinishedStatus
from fi_evals.server.evalids import split_batch_id

__all__ = [
    "ClaimedJob",
    "FinishedJob",
    "IdempotencyAnswer",
    "IdempotencyRecord",
    "IdempotencyReservation",
    "IdempotencyState",
    "JobStore",
    "NewJob",
    "ResultBatch",
    "StoredEval",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class NewJob:
    """One evaluation to insert. Finished ones (sync) carry their result fields."""

    eval_id: str
    template: str
    inputs: Mapping[str, Any]
    params: Mapping[str, Any]
    model: str | None
    status: str = EvalStatus.PENDING
    output: Any = None
    reason: str | None = None
    runtime: int = 0
    error_message: str | None = None


class ResultBatch(Sequence[NewJob]):
    """Finished evaluations of one template, params and model (a sync request's results), held
    column by column: a sequence of :class:`NewJob` made on access, so a store that knows this
    type (SQLite) writes them without building one object per evaluation, and any other store
    reads plain NewJobs.

    This is how to store finished evaluations (``store.insert(batch, idempotency)``, one
    transaction with the request's idempotency record)::

        key, ids = new_batch_ids(len(items))      # fi_evals.server.evalids; ids go in the answer
        results = evaluate_items(evaluator, items, params, model)
        store.insert(ResultBatch(name, params, model, ids, items, results, batch_key=key))

    ``results[i]`` has ``status``, ``output``, ``reason``, ``runtime`` and ``error_message``
    (an :class:`~fi_evals.server.executor.ItemResult`); ``outputs[i]``, when given, is
    ``results[i].output`` as compact JSON text (None for null), already made for the answer: a
    store writing JSON text can reuse it. ``batch_key``, when given, is the key the ``eval_ids``
    were made from (:func:`~fi_evals.server.evalids.new_batch_ids`): a store may then keep the
    batch as one record and find item ``i`` from its id alone (SQLite does); without it (or
    for any other ids) each evaluation is stored on its own.
    """

    __slots__ = ("batch_key", "eval_ids", "items", "model", "outputs", "params", "results",
                 "template")

    def __init__(self, template: str, params: Mapping[str, Any], model: str | None,
                 eval_ids: Sequence[str], items: Sequence[Mapping[str, Any]],
                 results: Sequence[Any], outputs: Sequence[str | None] | None = None, *,
                 batch_key: str | None = None) -> None:
        if not len(eval_ids) == len(items) == len(results):
            raise ValueError("eval_ids, items and results must have one entry per evaluation")
        if outputs is not None and len(outputs) != len(results):
            raise ValueError("outputs must have one entry per evaluation")
        if batch_key is not None and eval_ids and (
                split_batch_id(eval_ids[0]) != (batch_key, 0)
                or split_batch_id(eval_ids[-1]) != (batch_key, len(eval_ids) - 1)):
            raise ValueError("eval_ids must be batch_eval_ids(batch_key, n)")
        self.batch_key = batch_key
        self.outputs = outputs
        self.template = template
        self.params = params
        self.model = model
        self.eval_ids = eval_ids
        self.items = items
        self.results = results

    def __len__(self) -> int:
        return len(self.eval_ids)

    def _job(self, i: int) -> NewJob:
        r = self.results[i]
        return NewJob(eval_id=self.eval_ids[i], template=self.template, inputs=self.items[i],
                      params=self.params, model=self.model, status=r.status, output=r.output,
                      reason=r.reason, runtime=r.runtime, error_message=r.error_message)

    @overload
    def __getitem__(self, index: int) -> NewJob: ...

    @overload
    def __getitem__(self, index: slice) -> list[NewJob]: ...

    def __getitem__(self, index: int | slice) -> NewJob | list[NewJob]:
        if isinstance(index, slice):
            return [self._job(i) for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError("ResultBatch index out of range")
        return self._job(index)

    def __repr__(self) -> str:
        return f"<ResultBatch {self.template} x{len(self)}>"


@dataclass(frozen=True, slots=True, kw_only=True)
class ClaimedJob:
    """A pending evaluation a worker took."""

    eval_id: str
    template: str
    inputs: dict[str, Any]
    params: dict[str, Any]
    model: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class FinishedJob:
    """A worker's result for one claimed job."""

    eval_id: str
    status: FinishedStatus
    output: Any
    reason: str | None
    runtime: int
    error_message: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredEval:
    """An evaluation as read back (any status)."""

    eval_id: str
    template: str
    status: str
    inputs: dict[str, Any]
    model: str | None
    output: Any
    reason: str | None
    runtime: int
    error_message: str | None


@dataclass(frozen=True, slots=True)
class IdempotencyAnswer:
    """The stored answer of a finished request."""

    status: int
    body: bytes


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    """A stored idempotency record, as :meth:`JobStore.find_idempotency` reads it.

    ``answer`` is None while the first request with the key has not answered.
    """

    body_hash: str
    answer: IdempotencyAnswer | None


IdempotencyState = Literal["reserved", "replay", "mismatch", "in_progress"]


@dataclass(frozen=True, slots=True)
class IdempotencyReservation:
    """What :meth:`JobStore.reserve_idempotency` found."""

    state: IdempotencyState
    answer: IdempotencyAnswer | None = None


class JobStore(abc.ABC):
    """Durable storage of evaluations and idempotency records. Thread-safe."""

    local_idempotency: bool = False
    """True when this process is the store's only writer (the SQLite file). The service then
    keeps the idempotency keys of requests in flight in memory (a duplicate waits for the
    first), reads a key's record with :meth:`find_idempotency` (no write transaction), and
    writes the record with the request's evaluations in one transaction
    (``insert(..., body_hash=...)``): one transaction per request instead of two. A store
    shared by several processes (Redis) keeps False: its reservation must be shared too."""

    def find_idempotency(self, scope: str, key: str,
                         ttl_seconds: float) -> IdempotencyRecord | None:
        """The unexpired record of (scope, key), or None; only for ``local_idempotency``."""
        raise NotImplementedError(f"{type(self).__name__} keeps no local idempotency records")

    @abc.abstractmethod
    def insert(self, jobs: Sequence[NewJob],
               idempotency: tuple[str, str, IdempotencyAnswer] | None = None) -> None:
        """Insert evaluations (one transaction), and the request's answer if it had a key.

        Args:
            jobs: the evaluations, pending (async) or finished (sync). Finished ones of one
                template come as a :class:`ResultBatch` (with ``batch_key``: ids from
                ``evalids.new_batch_ids``), which a store may keep as one record; any other
                sequence of :class:`NewJob` is stored evaluation by evaluation.
            idempotency: (scope, key, answer) to store with them.
        """

    @abc.abstractmethod
    def claim(self, limit: int) -> list[ClaimedJob]:
        """Atomically move up to ``limit`` oldest pending evaluations to processing."""

    @abc.abstractmethod
    def finish(self, results: Sequence[FinishedJob]) -> None:
        """Record results of claimed evaluations (one transaction)."""

    @abc.abstractmethod
    def release(self, eval_ids: Sequence[str]) -> None:
        """Put claimed but unstarted evaluations back to pending (worker shutdown)."""

    @abc.abstractmethod
    def get_many(self, eval_ids: Sequence[str]) -> dict[str, StoredEval]:
        """The stored evaluations among ``eval_ids`` (unknown ids are simply absent)."""

    def get_many_text(self, eval_ids: Sequence[str]) -> dict[str, tuple[Any, ...]] | None:
        """The stored evaluations among ``eval_ids`` as their columns, JSON left as text:
        ``(eval_id, template, status, inputs_json, model, output_json_or_None, reason,
        runtime, error_message)``, the JSON text compact with non-ASCII kept (as the server's
        answers write it), so that an answer can embed it without decoding it.

        None when this store does not keep such text (the caller then uses :meth:`get_many`).
        """
        return None

    @abc.abstractmethod
    def queue_depth(self) -> int:
        """Evaluations pending or processing."""

    @abc.abstractmethod
    def reserve_idempotency(self, scope: str, key: str, body_hash: str,
                            ttl_seconds: float) -> IdempotencyReservation:
        """Reserve (scope, key) for a request whose body hashes to ``body_hash``.

        Returns:
            ``reserved`` when this request owns the key now; ``replay`` with the stored answer
            for the same body; ``mismatch`` when the key was used with another body;
            ``in_progress`` when the first request with the key has not answered yet.
        """

    @abc.abstractmethod
    def store_answer(self, scope: str, key: str, answer: IdempotencyAnswer) -> None:
        """Store the answer of a reserved key that created no evaluations."""

    @abc.abstractmethod
    def release_idempotency(self, scope: str, key: str) -> None:
        """Drop a reservation whose request failed without an answer worth replaying."""

    @abc.abstractmethod
    def recover(self) -> int:
        """At start: requeue evaluations left processing and drop orphan reservations.

        Returns:
            How many evaluations went back to pending.
        """

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections; the store is unusable afterwards."""
