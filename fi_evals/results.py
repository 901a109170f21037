"""Results as users hold them: :class:`EvalResult` per item and :class:`BatchRunResult`.

Both are pydantic models with the fields of the official client's ``fi.evals.types`` models
(``name``, ``output``, ``reason``, ``runtime``, ``output_type``, ``eval_id``, ``model``...), so
code that reads those keeps working, plus ``status`` and ``error``: a failure is data on the
item (an :class:`~fi_evals._exceptions.ItemError`), never a missing entry.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any, Literal, cast

from pydantic import BaseModel, ConfigDict

from fi_evals._exceptions import ItemError
from fi_evals.protocol import (
    KNOWN_STATUSES,
    UNFINISHED_STATUSES,
    EvalItem,
    EvalResultPayload,
    EvalStatus,
)

__all__ = ["UNSCORED_STATUSES", "BatchRunResult", "EvalResult", "ResultStatus"]

ResultStatus = Literal["pending", "processing", "completed", "failed", "error"]
"""The protocol's statuses (:class:`~fi_evals.protocol.EvalStatus`) but ``not_found``, plus the
client's ``error``. ``pending``/``processing``: submitted, not finished. ``completed``: scored
(a "Failed" verdict included). ``failed``: the server could not evaluate it. ``error``: the
client could not get it evaluated (rejected request, connection trouble, an unknown id...);
see ``error``."""

UNSCORED_STATUSES: frozenset[str] = frozenset({EvalStatus.FAILED, "error"})
"""Finished without a verdict: ``failed`` on the server, or ``error`` on the client's side."""
_COMPLETED: str = EvalStatus.COMPLETED.value  # a plain str: compares faster than the member
_STATUS_ALIASES = {"running": EvalStatus.PROCESSING.value, "queued": EvalStatus.PENDING.value}


def normalize_status(raw: str | None) -> str:
    """A server's ``eval_status`` in our words: lower case, ``running`` -> ``processing``."""
    if not raw:
        return EvalStatus.PENDING.value
    lowered = raw.strip().lower()
    return _STATUS_ALIASES.get(lowered, lowered)


class EvalResult(BaseModel):
    """One item's evaluation.

    Attributes:
        name: the template name.
        output: ``"Passed"``/``"Failed"``, a float score, or the chosen labels; None when
            there is no verdict (yet).
        reason: the evaluator's explanation, or why there is no verdict.
        runtime: the evaluator's time in milliseconds (an integer on the wire; None or a
            float are accepted from lenient servers).
        output_type: ``Pass/Fail``, ``score``, ``choices`` or ``numeric``.
        eval_id: the server's id for this evaluation.
        status: see :data:`ResultStatus`.
        error: why the item has no verdict (``status`` ``failed`` or ``error``).
        cached: the server's judge answered from its judge cache (no judge call was made;
            the reason's tag also ends ``cached``); False otherwise.
    """

    model_config = ConfigDict(protected_namespaces=())

    name: str
    output: Any = None
    reason: str | None = None
    runtime: int | float | None = 0
    output_type: str | None = None
    eval_id: str | None = None
    model: str | None = None
    error_localizer_enabled: bool | None = None
    error_localizer: dict[str, Any] | None = None
    status: ResultStatus = EvalStatus.COMPLETED.value
    error: ItemError | None = None
    cached: bool = False

    # ------------------------------------------------------------------ views

    @property
    def ok(self) -> bool:
        """True when the item was scored (whatever the verdict)."""
        return self.status == _COMPLETED

    @property
    def finished(self) -> bool:
        """True unless the evaluation is still pending or processing."""
        return self.status not in UNFINISHED_STATUSES

    @property
    def passed(self) -> bool | None:
        """For Pass/Fail templates: the verdict as a bool; None otherwise or when unscored."""
        if not self.ok or self.output not in ("Passed", "Failed"):
            return None
        return self.output == "Passed"

    @property
    def score(self) -> float | None:
        """For score and numeric templates: the output as a float; None otherwise."""
        if not self.ok or isinstance(self.output, bool):
            return None
        if isinstance(self.output, (int, float)):
            return float(self.output)
        return None

    def __repr__(self) -> str:
        if self.status == EvalStatus.COMPLETED:
            what = f"{self.output!r}"
            if self.runtime is not None:
                what += f", {self.runtime:g} ms"
        elif self.error is not None:
            what = f"{self.status}: {self.error}"
        else:
            what = self.status
        ident = f", eval_id={self.eval_id}" if self.eval_id else ""
        return f"EvalResult({self.name}: {what}{ident})"

    __str__ = __repr__

    # ------------------------------------------------------------------ builders

    @classmethod
    def _trusted(cls, **values: Any) -> EvalResult:
        """``model_construct`` for already-validated values, without its per-field Python
        loop: the defaults of this model are all immutable, so one shared dict of them is
        copied (``test_results`` checks the result equals the validated construction)."""
        result = cls.__new__(cls)
        fields = {**_RESULT_DEFAULTS, **values}
        object.__setattr__(result, "__dict__", fields)
        object.__setattr__(result, "__pydantic_fields_set__", set(values))
        object.__setattr__(result, "__pydantic_extra__", None)
        object.__setattr__(result, "__pydantic_private__", None)
        return result

    @classmethod
    def from_item(cls, item: EvalItem, *, pending: bool = False) -> EvalResult:
        """From one evaluation of a new-eval answer (sync, or async with ``pending``).

        A sync item that could not run is ``failed``: fi-evals servers say so with
        ``eval_status``; from others, a sync item without any output reads the same way.
        """
        # _trusted: the fields come from an EvalItem, validated when the answer was read (a
        # batch builds one result per evaluation: validating them again doubled its cost).
        if pending:
            return cls._trusted(name=item.name, output=None, reason=None, runtime=None,
                                output_type=item.output_type, eval_id=item.eval_id,
                                status=EvalStatus.PENDING.value)
        values: dict[str, Any] = {
            "name": item.name, "output": item.output, "reason": item.reason,
            "runtime": item.runtime, "output_type": item.output_type, "eval_id": item.eval_id}
        if item.cached:  # set only when the server said so, as a validated construction would
            values["cached"] = True
        result = cls._trusted(**values)
        if (normalize_status(item.eval_status or EvalStatus.COMPLETED) == EvalStatus.FAILED
                or item.output is None):
            message = item.error_message or item.reason or "the evaluation could not run"
            result.status = EvalStatus.FAILED.value
            result.reason = item.reason or message
            result.error = ItemError("EvalFailedError", message)
        return result

    @classmethod
    def from_wire(cls, item: Mapping[str, Any]) -> EvalResult:
        """:meth:`from_item` on an evaluation read by
        :func:`~fi_evals._answers.read_new_eval_fast` (a dict of ``EvalItem``'s fields,
        validated, absent ones left out): the same result, built without an ``EvalItem``.

        A completed evaluation's result is built in one step (its ``__dict__`` written at
        once, in field order): the batch engine makes one per evaluation.
        """
        output = item.get("output")
        status = item.get("eval_status")
        if output is None or (status and status != _COMPLETED
                              and normalize_status(status) == EvalStatus.FAILED):
            return cls.from_item(EvalItem.model_validate(item))
        result = _new_result(cls)
        cached = item.get("cached")
        _set_dict(result, {
            "name": item["name"], "output": output, "reason": item.get("reason"),
            "runtime": item.get("runtime"), "output_type": item.get("output_type"),
            "eval_id": item.get("eval_id"), "model": None, "error_localizer_enabled": None,
            "error_localizer": None, "status": _COMPLETED, "error": None,
            "cached": bool(cached)})
        _set_fields_set(result, set(_WIRE_FIELDS_CACHED if cached else _WIRE_FIELDS))
        _set_extra(result, None)
        _set_private(result, None)
        return result

    @classmethod
    def pending_from_wire(cls, item: Mapping[str, Any]) -> EvalResult:
        """``from_item(item, pending=True)`` on a fast-read evaluation (see :meth:`from_wire`)."""
        return cls._trusted(name=item["name"], output=None, reason=None, runtime=None,
                            output_type=item.get("output_type"), eval_id=item.get("eval_id"),
                            status=EvalStatus.PENDING.value)

    @classmethod
    def from_payload(cls, eval_id: str, payload: EvalResultPayload,
                     name: str = "") -> EvalResult:
        """From a get-eval (or bulk status) payload: finished, failed or still running.

        ``output`` is the record's native ``output`` when the server sends it, else its
        parsed ``value`` (the wire model does that fallback).
        """
        record = payload.record
        status = normalize_status(payload.eval_status)
        if status == EvalStatus.NOT_FOUND:
            message = payload.error_message or f"no evaluation with id {eval_id}"
            return cls(name=name, eval_id=eval_id, status="error", reason=message,
                       error=ItemError("NotFoundError", message, 404))
        if status not in KNOWN_STATUSES:
            # PROTOCOL C: an unknown status is unfinished (the poller counts it).
            return cls(name=name, eval_id=eval_id, status=EvalStatus.PENDING.value, runtime=None,
                       reason=f"the server reports status {payload.eval_status!r}")
        if record is None:
            if status == EvalStatus.FAILED:  # failed without a record: keep the message
                message = payload.error_message or "the evaluation failed"
                return cls(name=name, eval_id=eval_id, status=EvalStatus.FAILED.value,
                           reason=message,
                           error=ItemError("EvalFailedError", message))
            return cls(name=name, eval_id=eval_id, status=_known(status),
                       reason=payload.result if isinstance(payload.result, str) else None,
                       runtime=None)
        result = cls(name=record.name or name, output=record.output, reason=record.reason,
                     runtime=record.runtime, output_type=record.output_type,
                     eval_id=record.eval_id or eval_id, model=record.model,
                     status=_known(status), cached=bool(record.cached))
        if status == EvalStatus.FAILED:
            message = record.error_message or payload.error_message or "the evaluation failed"
            result.output = None
            result.reason = record.reason or message
            result.error = ItemError("EvalFailedError", message)
        return result

    @classmethod
    def from_error(cls, name: str, error: ItemError | BaseException, *,
                   eval_id: str | None = None) -> EvalResult:
        """An item the client could not get evaluated; ``reason`` repeats the error."""
        err = error if isinstance(error, ItemError) else ItemError.from_exception(error)
        return cls(name=name, output=None, reason=err.message, runtime=None, eval_id=eval_id,
                   status="error", error=err)


_RESULT_DEFAULTS: dict[str, Any] = {
    name: info.get_default(call_default_factory=True)
    for name, info in EvalResult.model_fields.items() if not info.is_required()}
assert all(v is None or isinstance(v, (str, int, float)) for v in _RESULT_DEFAULTS.values()), \
    "EvalResult._trusted shares its defaults: they must be immutable"
assert list(EvalResult.model_fields) == [
    "name", "output", "reason", "runtime", "output_type", "eval_id", "model",
    "error_localizer_enabled", "error_localizer", "status", "error", "cached"], \
    "EvalResult.from_wire writes every field: update it with the model"
_WIRE_FIELDS = frozenset({"name", "output", "reason", "runtime", "output_type", "eval_id"})
"""The fields ``from_item`` sets on a completed result (``cached`` too when the server said so)."""
_WIRE_FIELDS_CACHED = _WIRE_FIELDS | {"cached"}


def _slot_setter(name: str) -> Any:
    """The setter of one of ``BaseModel``'s slots (``__dict__`` and the pydantic ones): what
    ``model_construct`` writes, written directly (``object.__setattr__`` looks it up each time;
    ``BaseModel.__setattr__`` would validate the name)."""
    return BaseModel.__dict__[name].__set__


_new_result = BaseModel.__new__
_set_dict = _slot_setter("__dict__")
_set_fields_set = _slot_setter("__pydantic_fields_set__")
_set_extra = _slot_setter("__pydantic_extra__")
_set_private = _slot_setter("__pydantic_private__")


def _known(status: str) -> ResultStatus:
    """A protocol status other than ``not_found`` (checked by the caller), as a result status."""
    return cast(ResultStatus, status)


class BatchRunResult(BaseModel):
    """Results of one ``evaluate()`` call: one entry per item, in input order.

    Attributes:
        eval_results: the items' results (``None`` never appears in results built by this
            client; the type allows it for compatibility).
    """

    eval_results: list[EvalResult | None]

    def __len__(self) -> int:
        return len(self.eval_results)

    def __getitem__(self, index: int) -> EvalResult | None:
        return self.eval_results[index]

    @property
    def ok(self) -> bool:
        """True when every item was scored."""
        return all(r is not None and r.ok for r in self.eval_results)

    @property
    def errors(self) -> list[tuple[int, ItemError]]:
        """(position, error) of every item without a verdict."""
        return [(i, r.error) for i, r in enumerate(self.eval_results)
                if r is not None and r.error is not None]

    @property
    def eval_ids(self) -> list[str | None]:
        return [r.eval_id if r is not None else None for r in self.eval_results]

    def counts(self) -> dict[str, int]:
        """Items per status."""
        return dict(Counter(r.status if r is not None else "missing"
                            for r in self.eval_results))

    def __repr__(self) -> str:
        counts = ", ".join(f"{n} {s}" for s, n in sorted(self.counts().items()))
        return f"BatchRunResult({len(self)} results: {counts or 'none'})"

    __str__ = __repr__

