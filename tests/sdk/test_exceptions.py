"""The exception tree and the one mapping from HTTP answers to exceptions."""

from __future__ import annotations

import json

import pytest

import fi_evals
from fi_evals._exceptions import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    EvalFailedError,
    FiEvalsError,
    IdempotencyError,
    InvalidInputError,
    ItemError,
    NotFoundError,
    OverloadedError,
    PermissionDeniedError,
    RateLimitError,
    RequestTooLargeError,
    ServerError,
    UnknownTemplateError,
    WaitTimeoutError,
    error_from_response,
)

pytestmark = pytest.mark.unit  # no server, no model: `make unit` runs this file


def envelope(etype: str, code: str, message: str, **extra) -> str:
    return json.dumps({"status": False, "type": etype, "code": code, "message": message,
                       "detail": message, **extra})


@pytest.mark.parametrize("status, cls", [
    (400, BadRequestError), (401, AuthenticationError), (403, PermissionDeniedError),
    (404, NotFoundError), (409, ConflictError), (413, RequestTooLargeError),
    (422, ConflictError), (429, RateLimitError), (503, OverloadedError), (500, ServerError),
    (502, ServerError), (504, ServerError), (418, APIError),
])
def test_status_maps_to_one_class(status, cls):
    error = error_from_response(status, envelope("t", "c", "boom"), {"X-Request-Id": "req-1"})
    assert type(error) is cls
    assert error.status_code == status and error.request_id == "req-1"


def test_message_carries_status_type_code_message_and_request_id():
    error = error_from_response(
        400, envelope("validation_error", "invalid", "missing key", details={"text": ["required"]}),
        {"X-Request-Id": "abc123"})
    text = str(error)
    for part in ("400", "validation_error", "invalid", "missing key", "text: required",
                 "request_id=abc123"):
        assert part in text
    assert error.body["type"] == "validation_error"
    assert error.details == {"text": ["required"]}
    assert "BadRequestError(status_code=400" in repr(error)


def test_idempotency_error_is_a_conflict():
    error = error_from_response(422, envelope("idempotency_error", "conflict", "other body"))
    assert isinstance(error, IdempotencyError) and isinstance(error, ConflictError)


def test_retry_after_is_read_from_the_answer():
    error = error_from_response(429, envelope("rate_limited", "rate_limited", "slow down"),
                                {"Retry-After": "2"})
    assert isinstance(error, RateLimitError) and error.retry_after == 2.0


def test_non_json_bodies_still_give_a_message():
    error = error_from_response(502, "<html>Bad Gateway</html>")
    assert isinstance(error, ServerError) and "Bad Gateway" in error.message
    empty = error_from_response(500, "")
    assert "HTTP 500" in str(empty)


def test_the_tree():
    for cls in (APIError, APIConnectionError, EvalFailedError, WaitTimeoutError,
                UnknownTemplateError, InvalidInputError):
        assert issubclass(cls, FiEvalsError)
    assert issubclass(APITimeoutError, APIConnectionError)
    assert issubclass(UnknownTemplateError, ValueError)
    assert issubclass(InvalidInputError, ValueError)
    assert issubclass(WaitTimeoutError, TimeoutError)  # like the official Execution.wait
    doc = fi_evals._exceptions.__doc__
    for cls in (AuthenticationError, RateLimitError, APITimeoutError, WaitTimeoutError):
        assert cls.__name__ in doc  # the tree is drawn in the module docstring


def test_wait_timeout_names_unfinished_ids():
    ids = [f"id-{i}" for i in range(12)]
    error = WaitTimeoutError(ids, timeout=2.5, statuses={"id-0": "processing"})
    assert error.unfinished == tuple(ids)
    text = str(error)
    assert "12 evaluation(s)" in text and "2.5s" in text and "id-0 (processing)" in text
    assert "and 2 more" in text


def test_item_error_values():
    throttled = ItemError.from_exception(error_from_response(429, envelope("r", "r", "x")))
    assert throttled.retryable and throttled.status_code == 429
    assert throttled.type == "RateLimitError"
    bad = ItemError.from_exception(error_from_response(400, envelope("v", "i", "bad")))
    assert not bad.retryable and bad.status_code == 400
    assert ItemError.from_exception(APITimeoutError("slow")).retryable
    assert ItemError.from_exception(error_from_response(502, "")).retryable
    assert not ItemError.from_exception(error_from_response(500, "")).retryable
    bug = ItemError.from_exception(TypeError("oops"))
    assert bug.type == "TypeError" and not bug.retryable and bug.status_code is None
    with pytest.raises(AttributeError):
        bad.message = "changed"  # type: ignore[misc]
