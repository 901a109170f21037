"""The exceptions of fi_evals, named for what the caller can do about them.

::

    FiEvalsError                        root: ``except FiEvalsError`` catches everything we raise
    ├── MissingCredentialsError         (also ValueError) no API key / secret key given or in env
    ├── UnknownTemplateError            (also ValueError) client-side check, before any request
    ├── TemplateUnavailableError        (also ValueError) the server cannot run it (no judge...)
    ├── InvalidInputError               (also ValueError) client-side check, before any request
    │   └── KeyMappingError             a key's field is not in the first row (preflight)
    ├── APIError                        the server answered with an error status, or oddly
    │   ├── RedirectError               3xx  never followed: fix the base URL (names the Location)
    │   ├── ProtocolError               2xx  whose body is not the protocol's answer
    │   ├── BadRequestError             400  fix the request (validation_error)
    │   ├── AuthenticationError         401  fix the keys
    │   ├── PermissionDeniedError       403  the keys may not do this
    │   ├── NotFoundError               404  unknown eval_id
    │   ├── RequestTooLargeError        413  send smaller chunks
    │   ├── ConflictError               409/422
    │   │   └── IdempotencyError        422  an Idempotency-Key reused with another body
    │   ├── RateLimitError              429  retried; raised when retries ran out
    │   ├── OverloadedError             503  retried; raised when retries ran out
    │   └── ServerError                 5xx  (other than 503) a server bug or a bad gateway
    ├── APIConnectionError              no HTTP answer: refused, reset, DNS...
    │   └── APITimeoutError             no answer in time (connect or read timeout)
    ├── EvalFailedError                 the evaluation ended ``failed`` (never a "Failed" verdict)
    └── WaitTimeoutError                (a TimeoutError) evaluations unfinished at the deadline

Every ``APIError`` carries ``status_code``, the server's ``type`` and ``code``, its ``message``,
the ``request_id`` (``X-Request-Id``) and the decoded ``body``; ``str(exc)`` shows all of them.
:func:`error_from_response` is the ONE place where an HTTP answer becomes an exception.

Inside a batch, a failure is data, not an exception: :class:`ItemError` (a frozen value: type
name, message, status code, retryable) is recorded on each item it concerns.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fi_evals._constants import HEADER_REQUEST_ID, HEADER_RETRY_AFTER
from fi_evals._retry import parse_retry_after  # re-exported: it was defined here

__all__ = [
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "ConflictError",
    "EvalFailedError",
    "FiEvalsError",
    "IdempotencyError",
    "InvalidInputError",
    "ItemError",
    "KeyMappingError",
    "MissingCredentialsError",
    "NotFoundError",
    "OverloadedError",
    "PermissionDeniedError",
    "ProtocolError",
    "RateLimitError",
    "RedirectError",
    "RequestTooLargeError",
    "ServerError",
    "TemplateUnavailableError",
    "UnknownTemplateError",
    "WaitTimeoutError",
    "error_from_response",
    "parse_retry_after",
]


class FiEvalsError(Exception):
    """Root of every exception raised by fi_evals."""


# --------------------------------------------------------------------------- client-side


class MissingCredentialsError(FiEvalsError, ValueError):
    """No API key or secret key: pass them to ``Evaluator`` or set the environment variables."""


class UnknownTemplateError(FiEvalsError, ValueError):
    """The template name is neither in the local catalogue nor in the server's list.

    Attributes:
        name: the name asked for.
        suggestions: close names, best first (may be empty).
    """

    def __init__(self, name: str, suggestions: Iterable[str] = (), *,
                 known: int | None = None) -> None:
        self.name = name
        self.suggestions = tuple(suggestions)
        hint = (f" Did you mean: {', '.join(self.suggestions)}?" if self.suggestions
                else "")
        count = f" of the {known} known" if known else ""
        super().__init__(f"unknown template {name!r}: not one{count} template names.{hint} "
                         f"List them with `fi-evals templates` or Evaluator.list_evaluations().")


class InvalidInputError(FiEvalsError, ValueError):
    """The inputs do not fit the template (missing or unexpected keys, bad values, shapes).

    Attributes:
        template: the template name, when known.
        item: index of the offending item, when one item is to blame.
    """

    def __init__(self, message: str, *, template: str | None = None,
                 item: int | None = None) -> None:
        self.template = template
        self.item = item
        where = "".join([f" [template {template!r}]" if template else "",
                         f" [item {item}]" if item is not None else ""])
        super().__init__(f"{message}{where}")


class TemplateUnavailableError(FiEvalsError, ValueError):
    """The server lists the template but cannot run it (no judge configured, a missing extra).

    Raised before anything is sent, from the server's ``get-evals/`` entry (PROTOCOL.md B,
    "Template availability"); servers that do not say (the hosted API) are assumed able to run
    every template they list.

    Attributes:
        name: the template name.
        reason: the server's ``unavailable_reason``: what the operator must do.
    """

    def __init__(self, name: str, reason: str | None = None) -> None:
        self.name = name
        self.reason = reason or "the server gives no reason"
        super().__init__(f"the server cannot run template {name!r}: {self.reason}")


class KeyMappingError(InvalidInputError):
    """A template key is read from a field the first row does not have (a typo, or a missing
    ``key_mapping`` entry); raised before anything is sent, instead of failing every row.

    Attributes:
        label: the eval's label.
        key: the template key (``output``, ``text``...).
        field: the row field it is read from.
        fields: the first row's field names.
        suggestion: the closest field name, or None.
    """

    def __init__(self, *, label: str, template: str, key: str, field: str,
                 fields: Sequence[str], suggestion: str | None = None) -> None:
        self.label = label
        self.key = key
        self.field = field
        self.fields = tuple(fields)
        self.suggestion = suggestion
        target = suggestion or "<field>"
        hint = f" Did you mean {suggestion!r}?" if suggestion else ""
        message = (f"eval {label!r} reads key {key!r} from field {field!r}, which the first "
                   f"row does not have.{hint} The row's fields: "
                   f"{', '.join(self.fields) or '(none)'}. Map it with "
                   f"key_mapping={{{key!r}: {target!r}}}, or "
                   f"{{{label!r}: {{{key!r}: {target!r}}}}} for this eval only.")
        super().__init__(message, template=template)


# --------------------------------------------------------------------------- server answers


class APIError(FiEvalsError):
    """The server answered with an error status.

    Attributes:
        status_code: the HTTP status.
        type: the envelope's ``type`` (``validation_error``...), or None.
        code: the envelope's ``code`` (``invalid``, ``too_large``...), or None.
        message: the envelope's ``message`` (or the raw body when it was not JSON).
        request_id: the ``X-Request-Id`` header, for the server's logs.
        body: the decoded answer (dict) or its text.
        details: per-field messages from the envelope, when present.
        retry_after: seconds the server asked to wait (429/503), or None.
    """

    def __init__(self, message: str, *, status_code: int, type: str | None = None,
                 code: str | None = None, request_id: str | None = None, body: Any = None,
                 details: Mapping[str, list[str]] | None = None,
                 retry_after: float | None = None) -> None:
        self.message = message
        self.status_code = status_code
        self.type = type
        self.code = code
        self.request_id = request_id
        self.body = body
        self.details = dict(details or {})
        self.retry_after = retry_after
        super().__init__(message)

    def __str__(self) -> str:
        kind = "/".join(p for p in (self.type, self.code) if p)
        parts = [f"{self.status_code}{' ' + kind if kind else ''}: {self.message}"]
        extra = {k: [m for m in v if m != self.message] for k, v in self.details.items()}
        if any(extra.values()):  # servers often repeat the message per field
            parts.append("; ".join(f"{k}: {', '.join(v)}" for k, v in extra.items() if v))
        if self.request_id:
            parts.append(f"(request_id={self.request_id})")
        return " ".join(parts)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(status_code={self.status_code}, type={self.type!r}, "
                f"code={self.code!r}, message={self.message!r}, request_id={self.request_id!r})")


class RedirectError(APIError):
    """3xx: the server redirected an API call. Never followed, never retried.

    An API call has one right URL; a redirect means the base URL is wrong (``http`` for
    ``https``, a moved host, a missing path prefix). Following it would send the keys to the
    ``Location`` (another origin, maybe), turn a POST into a GET (301, 302, 303) and accept an
    answer from a host the caller never named. Fix ``fi_base_url`` (``FI_BASE_URL``) instead.

    Attributes:
        location: the absolute URL the server redirected to, or None when it named none.
        suggested_base_url: the base URL that the ``Location`` implies, when it ends with the
            path asked for (``https://host`` for ``https://host/sdk/api/v1/new-eval/``).
    """

    def __init__(self, message: str, *, location: str | None = None,
                 suggested_base_url: str | None = None, **kwargs: Any) -> None:
        self.location = location
        self.suggested_base_url = suggested_base_url
        super().__init__(message, **kwargs)


class ProtocolError(APIError):
    """A success status whose body is not the protocol's answer: not JSON, no ``result``,
    wrong types inside it (PROTOCOL.md A, "Envelopes").

    The server, or a proxy in front of it, is broken or not an evaluation server; ``body``
    holds what it sent and ``status_code`` its status. Never retried: a POST may have run.
    """


class BadRequestError(APIError):
    """400: the request is invalid; never retried."""


class AuthenticationError(APIError):
    """401: the API key or secret key is missing or wrong; never retried."""


class PermissionDeniedError(APIError):
    """403: the keys are valid but may not do this; never retried."""


class NotFoundError(APIError):
    """404: unknown eval id (hosted servers answer 400 here); never retried."""


class RequestTooLargeError(APIError):
    """413: the body is over the server's limit; send smaller chunks. Never retried."""


class ConflictError(APIError):
    """409/422: the request conflicts with the server's state; never retried."""


class IdempotencyError(ConflictError):
    """422 ``idempotency_error``: an Idempotency-Key was reused with a different body."""


class RateLimitError(APIError):
    """429: over the key's request rate. Retried; raised once the retries ran out."""


class OverloadedError(APIError):
    """503: the server's queue is full or it is draining. Retried; raised once retries ran out."""


class ServerError(APIError):
    """5xx other than 503 (a server bug, or a gateway that could not reach it)."""


# --------------------------------------------------------------------------- no answer


class APIConnectionError(FiEvalsError):
    """No HTTP answer: connection refused or reset, DNS failure...

    Attributes:
        request_sent: False when the request surely never reached the server (so retrying
            cannot run anything twice), True when it may have, None when unknown.
    """

    def __init__(self, message: str = "connection error", *,
                 request_sent: bool | None = None) -> None:
        self.message = message
        self.request_sent = request_sent
        super().__init__(message)


class APITimeoutError(APIConnectionError):
    """No answer in time: a connect timeout (``request_sent=False``) or read timeout (True)."""


# --------------------------------------------------------------------------- evaluation life


class EvalFailedError(FiEvalsError):
    """An evaluation finished ``failed``: it could not run (e.g. its judge was unreachable).

    A "Failed" verdict is a successful evaluation and never raises this.

    Attributes:
        eval_id: the evaluation.
        error_message: the server's explanation.
    """

    def __init__(self, eval_id: str, error_message: str | None) -> None:
        self.eval_id = eval_id
        self.error_message = error_message
        super().__init__(f"evaluation {eval_id} failed: {error_message or 'no reason given'}")


class WaitTimeoutError(FiEvalsError, TimeoutError):
    """The deadline passed while evaluations were still unfinished.

    Attributes:
        unfinished: the ids still unfinished, in the order they were asked.
        statuses: id -> last status seen (``pending``, ``processing``, or an unknown value).
        timeout: the wait's budget in seconds, when known.
        results: what was known at the deadline (finished and unfinished), in the order
            asked, when the waiter had it; nothing already fetched is lost.
    """

    SHOWN_IDS = 10

    def __init__(self, unfinished: Iterable[str], *, timeout: float | None = None,
                 statuses: Mapping[str, str] | None = None,
                 results: Sequence[Any] | None = None) -> None:
        self.unfinished = tuple(unfinished)
        self.statuses = dict(statuses or {})
        self.timeout = timeout
        self.results = list(results) if results is not None else None
        shown = ", ".join(f"{i} ({self.statuses.get(i, 'pending')})"
                          for i in self.unfinished[: self.SHOWN_IDS])
        more = len(self.unfinished) - self.SHOWN_IDS
        within = f" within {timeout:g}s" if timeout is not None else " before the deadline"
        super().__init__(f"{len(self.unfinished)} evaluation(s) did not finish{within}: {shown}"
                         + (f" and {more} more" if more > 0 else ""))


# --------------------------------------------------------------------------- mapping

_BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: RequestTooLargeError,
    422: ConflictError,
    429: RateLimitError,
    503: OverloadedError,
}


def _decode_body(text: str) -> Any:
    try:
        return json.loads(text) if text else None
    except ValueError:
        return text


def error_from_response(status_code: int, text: str,
                        headers: Mapping[str, str] | None = None) -> APIError:
    """Map an HTTP error answer to the matching :class:`APIError` subclass.

    The one place where status codes become exceptions: the transport calls it for every
    answer with a status >= 400. Accepts the pieces rather than a ``requests.Response`` so
    that it stays testable without a network.

    Args:
        status_code: the HTTP status.
        text: the body as text (an error envelope, or anything a proxy answered).
        headers: the answer's headers (case-insensitive mapping preferred).

    Returns:
        The exception to raise (not raised here).
    """
    headers = headers or {}
    body = _decode_body(text)
    env: Mapping[str, Any] = body if isinstance(body, Mapping) else {}
    message = env.get("message") or env.get("detail")
    if not isinstance(message, str) or not message:
        message = (text.strip()[:500] if isinstance(text, str) and text.strip()
                   else f"HTTP {status_code} with no error message")
    etype = env.get("type") if isinstance(env.get("type"), str) else None
    code = env.get("code") if isinstance(env.get("code"), str) else None
    details = env.get("details") if isinstance(env.get("details"), Mapping) else None
    if etype == "idempotency_error":
        cls: type[APIError] = IdempotencyError
    elif status_code in _BY_STATUS:
        cls = _BY_STATUS[status_code]
    elif status_code >= 500:
        cls = ServerError
    else:
        cls = APIError
    return cls(message, status_code=status_code, type=etype, code=code,
               request_id=headers.get(HEADER_REQUEST_ID), body=body, details=details,
               retry_after=parse_retry_after(headers.get(HEADER_RETRY_AFTER)))


# --------------------------------------------------------------------------- per-item errors

_RETRYABLE = (RateLimitError, OverloadedError, APIConnectionError)


@dataclass(frozen=True)
class ItemError:
    """Why one item has no result: recorded on the item instead of raising.

    Attributes:
        type: the exception class name (``"BadRequestError"``, ``"APITimeoutError"``...).
        message: what happened, as ``str(exception)``.
        status_code: the HTTP status, when the server answered.
        retryable: True when trying the same item again later may succeed (throttling,
            overload, 502/504, connection trouble), False when the item itself must change.
    """

    type: str
    message: str
    status_code: int | None = None
    retryable: bool = False

    @classmethod
    def from_exception(cls, exc: BaseException) -> ItemError:
        """The error value for an exception (ours or any other)."""
        status = getattr(exc, "status_code", None)
        retryable = isinstance(exc, _RETRYABLE) or (
            isinstance(exc, ServerError) and status in (502, 504))
        return cls(type(exc).__name__, str(exc) or type(exc).__name__, status, retryable)

    def __str__(self) -> str:
        return f"{self.type}: {self.message}"
