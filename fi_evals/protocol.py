"""Wire models of the fi-evals protocol (``../shared/PROTOCOL.md``, sections A and B).

One pydantic module, shared by the client SDK and the reference server: neither side defines
its own copy of a payload. The models are lenient where the protocol asks clients to be lenient
(``runtime`` may be a float or null, ``output`` falls back to a parsed ``value``) and strict where
the server must reject input (``NewEvalRequest`` forbids unknown top-level keys).
"""

from __future__ import annotations

import json
import math
from enum import Enum, StrEnum
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from fi_evals._constants import OUTPUT_FAILED, OUTPUT_PASSED

__all__ = [
    "FINISHED_STATUSES",
    "KNOWN_STATUSES",
    "STATUS_ALIAS",
    "STATUS_KEY",
    "UNFINISHED_STATUSES",
    "AsyncEvalItem",
    "BulkStatusEntry",
    "BulkStatusRequest",
    "Capabilities",
    "ErrorEnvelope",
    "EvalConfig",
    "EvalItem",
    "EvalRecord",
    "EvalResultPayload",
    "EvalStatus",
    "FinishedStatus",
    "InputValue",
    "NewEvalRequest",
    "OutputType",
    "SuccessEnvelope",
    "SyncEvalBlock",
    "TemplateConfig",
    "TemplateInfo",
    "parse_output_value",
    "score_of",
    "with_status_alias",
]

T = TypeVar("T")

InputValue = str | list[str] | list[list[str]]
"""An input value on the wire: a string, a list of strings, or (a batch of list keys) a list
of lists."""


class EvalStatus(StrEnum):
    """Life cycle of one evaluation: the one status vocabulary of client, batch, logger and
    server (PROTOCOL.md B). ``not_found`` only appears in bulk-status answers.

    Members are strings (``EvalStatus.COMPLETED == "completed"``, ``str()`` gives the word), so
    they go to JSON, SQL and Redis as they are and compare equal to what a server sent. The
    client's result statuses (:data:`fi_evals.results.ResultStatus`: these words and ``error``)
    and the score logger's (``completed``, ``failed``, ``rejected``) are drawn from them.
    """

    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    NOT_FOUND = "not_found"

    @property
    def finished(self) -> bool:
        return self in FINISHED_STATUSES


FINISHED_STATUSES: frozenset[str] = frozenset({EvalStatus.COMPLETED, EvalStatus.FAILED})
"""The statuses an evaluation never leaves (defined here only)."""
UNFINISHED_STATUSES: frozenset[str] = frozenset({EvalStatus.PENDING, EvalStatus.PROCESSING})
"""Stored and not finished yet: a poll answering these carries ``Retry-After``."""
KNOWN_STATUSES: frozenset[str] = frozenset(EvalStatus)
"""Every status of the protocol; clients count others as unfinished (PROTOCOL.md C)."""
FinishedStatus = Literal["completed", "failed"]
"""The type of a finished status (tests check that it spells :data:`FINISHED_STATUSES`)."""


class OutputType(str, Enum):  # noqa: UP042 - StrEnum would change str() of a member
    PASS_FAIL = "Pass/Fail"
    SCORE = "score"
    CHOICES = "choices"
    NUMERIC = "numeric"


class _Wire(BaseModel):
    """Base of answers read by clients: unknown fields from newer servers are ignored."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)


# --------------------------------------------------------------------------- requests


class EvalConfig(BaseModel):
    """``config`` of a new-eval request: template parameters under ``params``."""

    model_config = ConfigDict(extra="allow")

    params: dict[str, Any] = Field(default_factory=dict)


class NewEvalRequest(BaseModel):
    """Body of ``POST /sdk/api/v1/new-eval/``. Unknown top-level keys are rejected (400)."""

    model_config = ConfigDict(extra="forbid")

    eval_name: str = Field(min_length=1)
    inputs: dict[str, InputValue]
    model: str | None = None
    is_async: bool = False
    config: EvalConfig | None = None
    # Accepted for compatibility with the hosted API; the reference server ignores them.
    custom_eval_name: str | None = None
    span_id: str | None = None
    trace_eval: bool | None = None
    error_localizer: bool | None = None


class BulkStatusRequest(BaseModel):
    """Body of ``POST /sdk/api/v1/new-eval/status/`` (section B)."""

    model_config = ConfigDict(extra="forbid")

    eval_ids: list[str]


# --------------------------------------------------------------------------- answers


class EvalItem(_Wire):
    """One evaluation of a sync answer (``result[0].evaluations[i]``).

    ``eval_status`` (``completed`` or ``failed``) and ``error_message`` are sent by fi-evals
    servers outside ``--compat``: a sync item whose evaluator could not run is ``failed``, with
    ``output`` null and the error in ``error_message`` (and in ``reason``). Hosted servers leave
    them out.
    """

    name: str
    output: Any = None
    reason: str | None = None
    runtime: int | float | None = None
    output_type: str | None = None
    eval_id: str | None = None
    eval_status: str | None = None
    error_message: str | None = None
    cached: bool | None = None
    """fi-evals servers: true when a judge answered from its judge cache (no judge call);
    absent (false) otherwise and from other servers."""


class AsyncEvalItem(_Wire):
    """One item of an async answer: the evaluation was stored and is pending."""

    name: str
    output_type: str | None = None
    eval_id: str


class SyncEvalBlock(_Wire):
    evaluations: list[EvalItem]


def score_of(output: Any) -> float | None:
    """1.0 / 0.0 for "Passed" / "Failed", a number as a float, None otherwise (labels)."""
    if output == OUTPUT_PASSED:
        return 1.0
    if output == OUTPUT_FAILED:
        return 0.0
    if isinstance(output, (int, float)) and not isinstance(output, bool):
        return float(output)
    return None


def parse_output_value(value: Any, output_type: str | None) -> Any:
    """Turn a record's string ``value`` into the native output (section A clients' fallback).

    ``"0.8"`` becomes ``0.8`` for score and numeric templates, a JSON list stays a list for
    choice templates, and anything else is returned as it is.
    """
    if not isinstance(value, str):
        return value
    if output_type in (OutputType.SCORE.value, OutputType.NUMERIC.value):
        try:
            number = float(value)
        except ValueError:
            return value
        return number if math.isfinite(number) else value
    if output_type == OutputType.CHOICES.value and value.startswith("["):
        try:
            parsed = json.loads(value)
        except ValueError:
            return value
        return parsed
    return value


class EvalRecord(_Wire):
    """A finished evaluation as stored by the server (``GET new-eval/`` ``result``)."""

    eval_id: str
    name: str
    input_data: dict[str, Any] = Field(default_factory=dict)
    output_type: str | None = None
    value: str | None = None
    reason: str | None = None
    runtime: int | float | None = None
    model: str | None = None
    error_message: str | None = None
    output: Any = None
    cached: bool | None = None
    """As :attr:`EvalItem.cached`."""

    @model_validator(mode="after")
    def _output_from_value(self) -> EvalRecord:
        if self.output is None and self.value is not None:
            self.output = parse_output_value(self.value, self.output_type)
        return self


STATUS_KEY = "eval_status"
STATUS_ALIAS = "evalStatus"
"""The camel-case twin of ``eval_status`` (PROTOCOL.md B, "Status alias"): code written from the
hosted service's published cookbook reads ``result["evalStatus"]``."""


def with_status_alias(payload: Any) -> Any:
    """``payload`` (a GET or bulk-status entry) carrying both ``eval_status`` and ``evalStatus``.

    Whichever of the two a server sent is copied to the other, in place; a payload with
    neither, or one that is not a dict, is returned unchanged. Used by the server for every
    answer it builds and by the client on every payload it hands out raw, so that code reading
    either spelling works against any server.
    """
    if isinstance(payload, dict):
        status = payload.get(STATUS_KEY, payload.get(STATUS_ALIAS))
        if status is not None:
            payload[STATUS_KEY] = status
            payload[STATUS_ALIAS] = status
    return payload


class EvalResultPayload(_Wire):
    """``result`` of ``GET new-eval/?eval_id=``: status plus the record or a message.

    A server that spells the status only ``evalStatus`` is read as well (see
    :func:`with_status_alias`).
    """

    eval_status: str
    result: EvalRecord | str | None = None
    error_message: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _status_from_alias(cls, data: Any) -> Any:
        if isinstance(data, dict) and STATUS_KEY not in data and STATUS_ALIAS in data:
            return {**data, STATUS_KEY: data[STATUS_ALIAS]}
        return data

    @property
    def finished(self) -> bool:
        return self.eval_status in FINISHED_STATUSES

    @property
    def record(self) -> EvalRecord | None:
        return self.result if isinstance(self.result, EvalRecord) else None


class BulkStatusEntry(EvalResultPayload):
    """One entry of a bulk-status answer, in the order the ids were asked."""

    eval_id: str


class TemplateConfig(_Wire):
    """``config`` of a listed template. ``required_keys`` lists every key the template reads.

    ``input_kinds`` (string or list, per key), ``params`` (JSON schema of ``config.params``),
    ``evaluable`` with ``unavailable_reason`` (PROTOCOL.md B, "Template availability") and
    ``approximation`` are fi-evals additions; hosted servers leave them out, and a client then
    assumes the template can run. ``approximation`` is set when this server computes a
    model-judged template with a local model instead of an LLM judge: it says which, so that a
    local score is never mistaken for a judge's.
    """

    required_keys: list[str]
    optional_keys: list[str] = Field(default_factory=list)
    output: str
    eval_type_id: str | None = None
    input_kinds: dict[str, Literal["string", "list"]] = Field(default_factory=dict)
    params: dict[str, Any] = Field(default_factory=dict)
    choices: list[str] | None = None
    evaluable: bool = True
    unavailable_reason: str | None = None
    approximation: str | None = None


class TemplateInfo(_Wire):
    name: str
    description: str = ""
    eval_tags: list[str] = Field(default_factory=list)
    config: TemplateConfig


class Capabilities(_Wire):
    protocol: str
    max_batch_size: int
    max_status_ids: int
    bulk_status: bool = False
    idempotency: bool = False
    native_output: bool = False


class SuccessEnvelope(_Wire, Generic[T]):
    status: Literal[True] = True
    result: T


class ErrorEnvelope(_Wire):
    """Every error answer. ``detail`` repeats ``message`` for older clients."""

    status: Literal[False] = False
    type: str
    code: str
    message: str
    detail: str | None = None
    details: dict[str, list[str]] | None = None

    @model_validator(mode="after")
    def _detail_repeats_message(self) -> ErrorEnvelope:
        if self.detail is None:
            self.detail = self.message
        return self
