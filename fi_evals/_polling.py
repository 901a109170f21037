"""Waiting for submitted evaluations: one poll round, or polling until done or the deadline.

:class:`Poller` asks for many ids at once with bulk status (section B) when the server's
capabilities offer it, in requests of at most ``max_status_ids``; otherwise it asks one id per
request (section A). Between rounds it sleeps as :class:`~fi_evals._retry.PollBackoff` says
(exponential, jittered, at least the server's ``Retry-After``, never past the deadline), and
at the deadline it raises :class:`WaitTimeoutError` naming the ids still unfinished.

Statuses the client does not know count as unfinished (PROTOCOL.md C) and are counted in
:attr:`Poller.unknown_statuses`; an id the server does not know ends as an ``error`` result.
A round that fails for a retryable reason (connection trouble, throttling, after the
transport's own retries) is skipped, not fatal: the wait goes on until its deadline.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NotRequired, TypeVar

from pydantic import TypeAdapter, ValidationError
from typing_extensions import TypedDict

from fi_evals._answers import a_list
from fi_evals._constants import COMPAT_MAX_STATUS_IDS
from fi_evals._exceptions import (
    BadRequestError,
    ItemError,
    NotFoundError,
    ServerError,
    WaitTimeoutError,
)
from fi_evals._retry import PollBackoff
from fi_evals._transport import Transport
from fi_evals.protocol import KNOWN_STATUSES, BulkStatusEntry, EvalStatus, parse_output_value
from fi_evals.results import (
    EvalResult,
    _new_result,
    _set_dict,
    _set_extra,
    _set_fields_set,
    _set_private,
    normalize_status,
)

__all__ = ["PollRound", "Poller"]

log = logging.getLogger("fi_evals.polling")

T = TypeVar("T")
R = TypeVar("R")
MapFn = Callable[[Callable[[T], R], Sequence[T]], list[R]]

class _LeanRecord(TypedDict):
    """A finished record's fields with :class:`~fi_evals.protocol.EvalRecord`'s types."""

    eval_id: str
    name: str
    input_data: NotRequired[dict[str, Any]]
    output_type: NotRequired[str | None]
    value: NotRequired[str | None]
    reason: NotRequired[str | None]
    runtime: NotRequired[int | float | None]
    model: NotRequired[str | None]
    error_message: NotRequired[str | None]
    output: NotRequired[Any]
    cached: NotRequired[bool | None]


class _LeanEntry(TypedDict):
    """A bulk-status entry with :class:`~fi_evals.protocol.BulkStatusEntry`'s types (spelled
    ``eval_status``; an answer using only ``evalStatus`` is read by the models)."""

    eval_id: str
    eval_status: str
    result: NotRequired[_LeanRecord | str | None]
    error_message: NotRequired[str | None]


class _LeanAnswer(TypedDict):
    """A bulk-status answer's envelope holding lean entries."""

    status: Literal[True]
    result: list[_LeanEntry]


_LEAN_ENTRIES: TypeAdapter[list[_LeanEntry]] = TypeAdapter(list[_LeanEntry])
_LEAN_ANSWER: TypeAdapter[_LeanAnswer] = TypeAdapter(_LeanAnswer)
_FULL_ENTRIES: TypeAdapter[list[BulkStatusEntry]] = TypeAdapter(list[BulkStatusEntry])
_COMPLETED = EvalStatus.COMPLETED.value
_RUNNING = frozenset({EvalStatus.PENDING.value, EvalStatus.PROCESSING.value})


def read_entries(result: Any) -> list[Any]:
    """A bulk-status ``result`` as plain dicts validated in one call with the wire models'
    types (no model per entry, several times cheaper on answers of 1,000 records); any
    other shape is read by the models, which accept what they accept and refuse the rest
    with the usual error (``ValidationError``, a ``ValueError``)."""
    entries = a_list(result)
    try:
        return _LEAN_ENTRIES.validate_python(entries)
    except ValidationError:
        return _FULL_ENTRIES.validate_python(entries)


def read_entries_fast(raw: bytes) -> list[Any] | None:
    """The entries of a raw bulk-status answer, parsed and validated in one pydantic call,
    when it is the usual answer (:class:`_LeanAnswer`); None for anything else, which the
    transport then reads the usual way (:func:`read_entries`, the precise errors)."""
    try:
        return list(_LEAN_ANSWER.validate_json(raw)["result"])
    except ValueError:  # pydantic's ValidationError is one
        return None


# The fields from_payload passes (its results' model_fields_set), finished and running.
_FINISHED_FIELDS = frozenset({"name", "output", "reason", "runtime", "output_type", "eval_id",
                              "model", "status", "cached"})
_RUNNING_FIELDS = frozenset({"name", "eval_id", "status", "reason", "runtime"})


def _built(fields: dict[str, Any], fields_set: frozenset[str]) -> EvalResult:
    """An EvalResult of validated ``fields`` (every field, in the model's order), written in
    one step as ``EvalResult.from_wire`` writes them (``results.py`` checks the order)."""
    built = _new_result(EvalResult)
    _set_dict(built, fields)
    _set_fields_set(built, set(fields_set))
    _set_extra(built, None)
    _set_private(built, None)
    return built


def _lean_result(eval_id: str, entry: Any, name: str) -> EvalResult | None:
    """``EvalResult.from_payload`` of a lean entry in the usual cases (completed with its
    record, pending or processing with the message), built without models; None otherwise."""
    status = entry["eval_status"]
    result = entry.get("result")
    if status == _COMPLETED and result.__class__ is dict:
        output = result.get("output")
        output_type = result.get("output_type")
        if output is None and result.get("value") is not None:
            output = parse_output_value(result["value"], output_type)
        return _built({
            "name": result["name"] or name, "output": output, "reason": result.get("reason"),
            "runtime": result.get("runtime"), "output_type": output_type,
            "eval_id": result["eval_id"] or eval_id, "model": result.get("model"),
            "error_localizer_enabled": None, "error_localizer": None, "status": status,
            "error": None, "cached": bool(result.get("cached"))}, _FINISHED_FIELDS)
    if status in _RUNNING and (result is None or result.__class__ is str):
        return _built({
            "name": name, "output": None, "reason": result, "runtime": None,
            "output_type": None, "eval_id": eval_id, "model": None,
            "error_localizer_enabled": None, "error_localizer": None, "status": status,
            "error": None, "cached": False}, _RUNNING_FIELDS)
    return None


def _serial_map(fn: Callable[[T], R], values: Sequence[T]) -> list[R]:
    return [fn(v) for v in values]


@dataclass
class PollRound:
    """What one round learned.

    Attributes:
        results: id -> its current :class:`EvalResult` (ids whose fetch failed are absent).
        raw_status: id -> the ``eval_status`` as the server wrote it.
        retry_after: the largest ``Retry-After`` hint of the round's answers, or None.
        errors: id -> why it could not be fetched this round (retryable trouble).
    """

    results: dict[str, EvalResult] = field(default_factory=dict)
    raw_status: dict[str, str] = field(default_factory=dict)
    retry_after: float | None = None
    errors: dict[str, ItemError] = field(default_factory=dict)

    def hint(self, seconds: float | None) -> None:
        if seconds is not None:
            self.retry_after = max(self.retry_after or 0.0, seconds)


class Poller:
    """Polls evaluation statuses through one transport.

    Args:
        transport: the client's transport.
        backoff: the poll schedule (``PollBackoff()`` by default).
        map_fn: runs per-request fetches, e.g. in parallel on the client's pool; serial by
            default. Used for the requests of one round.
    """

    def __init__(self, transport: Transport, backoff: PollBackoff | None = None,
                 map_fn: MapFn[Any, Any] | None = None) -> None:
        self.transport = transport
        self.backoff = backoff or PollBackoff()
        self._map = map_fn or _serial_map
        self._lock = threading.Lock()
        self.unknown_statuses: Counter[str] = Counter()

    def __repr__(self) -> str:
        return f"<Poller {self.transport.base_url} backoff={self.backoff}>"

    def status_batch_size(self) -> int:
        """Ids per status request: ``max_status_ids`` with bulk status, else 1."""
        caps = self.transport.capabilities_or_none()
        if caps is not None and caps.bulk_status:
            return max(1, caps.max_status_ids)
        return COMPAT_MAX_STATUS_IDS

    def fetch(self, eval_ids: Sequence[str], *, deadline: float | None = None,
              names: Mapping[str, str] | None = None) -> PollRound:
        """One round: the current state of every id (bulk status when offered).

        Args:
            eval_ids: ids to ask about (duplicates are asked once).
            deadline: absolute ``time.monotonic()`` time for the round's requests.
            names: id -> template name, to fill ``name`` on unfinished results.

        Raises:
            APIError: a non-retryable answer that concerns every id (e.g. 401).
        """
        ids = list(dict.fromkeys(eval_ids))
        names = names or {}
        caps = self.transport.capabilities_or_none(deadline=deadline)
        round_ = PollRound()
        if caps is not None and caps.bulk_status:
            size = max(1, caps.max_status_ids)
            groups = [ids[i:i + size] for i in range(0, len(ids), size)]
            outcomes = self._map(lambda g: self._bulk(g, deadline), groups)
            for group, outcome in zip(groups, outcomes):
                self._absorb_bulk(round_, group, outcome, names)
        else:
            outcomes = self._map(lambda i: self._single(i, deadline), ids)
            for eval_id, outcome in zip(ids, outcomes):
                self._absorb_single(round_, eval_id, outcome, names)
        return round_

    def wait(self, eval_ids: Sequence[str], *, timeout: float | None = None,
             deadline: float | None = None, names: Mapping[str, str] | None = None,
             known: Mapping[str, EvalResult] | None = None,
             on_update: Callable[[EvalResult], None] | None = None) -> list[EvalResult]:
        """Poll until every id is finished; results in the order of ``eval_ids``.

        Args:
            eval_ids: the ids to wait for.
            timeout: seconds to wait at most (ignored when ``deadline`` is given).
            deadline: absolute ``time.monotonic()`` time to give up at.
            names: id -> template name, for results of ids that never answered.
            known: results already in hand; finished ones are not asked again.
            on_update: called (in this thread) with each result as it finishes.

        Raises:
            WaitTimeoutError: at the deadline; names the unfinished ids, carries all results.
            APIError: a non-retryable error concerning every id (bad keys...).
        """
        if deadline is None and timeout is not None:
            deadline = time.monotonic() + timeout
        budget = None if deadline is None else max(0.0, deadline - time.monotonic())
        names = names or {}
        current: dict[str, EvalResult] = dict(known or {})
        raw: dict[str, str] = {}
        poll = 0
        while True:
            todo = [i for i in dict.fromkeys(eval_ids)
                    if i not in current or not current[i].finished]
            if not todo:
                break
            round_ = self.fetch(todo, deadline=deadline, names=names)
            raw.update(round_.raw_status)
            for eval_id, result in round_.results.items():
                before = current.get(eval_id)
                current[eval_id] = result
                if on_update and result.finished and (before is None or not before.finished):
                    on_update(result)
            if all(i in current and current[i].finished for i in todo):
                break
            remaining = None if deadline is None else deadline - time.monotonic()
            delay = self.backoff.delay(poll, retry_after=round_.retry_after,
                                       remaining=remaining)
            if delay is None:
                unfinished = [i for i in todo if i not in current or not current[i].finished]
                results = [current.get(i) or _unknown(i, names) for i in eval_ids]
                raise WaitTimeoutError(unfinished, timeout=budget, results=results,
                                       statuses={i: raw.get(i, current[i].status
                                                         if i in current
                                                         else EvalStatus.PENDING.value)
                                                 for i in unfinished})
            time.sleep(delay)
            poll += 1
        return [current[i] for i in eval_ids]

    # ------------------------------------------------------------------ one request

    def _bulk(self, ids: Sequence[str], deadline: float | None) -> Any:
        try:
            if isinstance(self.transport, Transport):  # entries read as plain dicts
                return self.transport.bulk_status_read(ids, read_entries, deadline=deadline,
                                                       fast=read_entries_fast)
            return self.transport.bulk_status(ids, deadline=deadline)
        except Exception as exc:  # noqa: BLE001 - recorded per id by _absorb_bulk, or re-raised there
            return exc

    def _single(self, eval_id: str, deadline: float | None) -> Any:
        try:
            return self.transport.get_eval(eval_id, deadline=deadline)
        except Exception as exc:  # noqa: BLE001 - recorded per id by _absorb_single, or re-raised there
            return exc

    def _absorb_bulk(self, round_: PollRound, ids: Sequence[str], outcome: Any,
                     names: Mapping[str, str]) -> None:
        if isinstance(outcome, BaseException):
            for eval_id in ids:
                self._absorb_error(round_, eval_id, outcome, names, per_id=False)
            return
        round_.hint(outcome.retry_after)
        by_id = {e["eval_id"] if e.__class__ is dict else e.eval_id: e for e in outcome.value}
        for eval_id in ids:
            entry = by_id.get(eval_id)
            if entry is None:  # a server that left an id out: ask again next round
                round_.errors[eval_id] = ItemError("ProtocolError",
                                                   "missing from the bulk status answer",
                                                   retryable=True)
                continue
            if entry.__class__ is dict:  # read by read_entries
                status = entry["eval_status"]
                result = _lean_result(eval_id, entry, names.get(eval_id, ""))
                if result is not None:
                    round_.raw_status[eval_id] = status
                    round_.results[eval_id] = result
                    continue
                entry = BulkStatusEntry.model_validate(entry)
            self._absorb_payload(round_, eval_id, entry, names)

    def _absorb_single(self, round_: PollRound, eval_id: str, outcome: Any,
                       names: Mapping[str, str]) -> None:
        if isinstance(outcome, BaseException):
            self._absorb_error(round_, eval_id, outcome, names, per_id=True)
            return
        round_.hint(outcome.retry_after)
        self._absorb_payload(round_, eval_id, outcome.value, names)

    def _absorb_payload(self, round_: PollRound, eval_id: str, payload: Any,
                        names: Mapping[str, str]) -> None:
        status = normalize_status(payload.eval_status)
        round_.raw_status[eval_id] = payload.eval_status
        if status not in KNOWN_STATUSES:
            with self._lock:
                self.unknown_statuses[payload.eval_status] += 1
            log.warning("evaluation %s has unknown status %r; treated as unfinished",
                        eval_id, payload.eval_status)
        round_.results[eval_id] = EvalResult.from_payload(eval_id, payload,
                                                          names.get(eval_id, ""))

    def _absorb_error(self, round_: PollRound, eval_id: str, exc: BaseException,
                      names: Mapping[str, str], *, per_id: bool) -> None:
        error = ItemError.from_exception(exc)
        if per_id and isinstance(exc, (NotFoundError, BadRequestError)):
            # An unknown id (hosted servers answer 400): that item is finished, in error.
            round_.results[eval_id] = EvalResult.from_error(names.get(eval_id, ""), error,
                                                            eval_id=eval_id)
            return
        if error.retryable or isinstance(exc, ServerError):
            # Trouble with this round only (a 500 on a read is worth another look later).
            round_.errors[eval_id] = error
            return
        raise exc  # bad keys and the like concern every id; bugs are never swallowed


def _unknown(eval_id: str, names: Mapping[str, str]) -> EvalResult:
    return EvalResult(name=names.get(eval_id, ""), eval_id=eval_id,
                      status=EvalStatus.PENDING.value,
                      runtime=None)

