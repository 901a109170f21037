"""Error envelopes (PROTOCOL.md section A) and the exception handlers that produce them.

Every error the server answers is an :class:`ApiError`; the handlers below map FastAPI's and
Starlette's own errors (unknown route, wrong method, bad query string) and unexpected
exceptions to the same envelope, so a client never sees another error shape.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from fi_evals.server.jsonenc import compact_encoder

__all__ = ["ApiError", "error_body", "install_exception_handlers", "json_bytes", "printable"]

log = logging.getLogger("fi_evals.server")

# status -> (type, code) of the PROTOCOL.md table
_KINDS: dict[int, tuple[str, str]] = {
    400: ("validation_error", "invalid"),
    401: ("authentication_error", "not_authenticated"),
    404: ("not_found", "not_found"),
    405: ("method_not_allowed", "method_not_allowed"),
    408: ("timeout_error", "request_timeout"),
    413: ("validation_error", "too_large"),
    422: ("idempotency_error", "idempotency_key_reused"),
    429: ("rate_limited", "rate_limited"),
    503: ("overloaded", "overloaded"),
    500: ("server_error", "server_error"),
}


_ENCODE = compact_encoder(allow_nan=False)


def json_bytes(payload: object) -> bytes:
    """Compact JSON bytes, as every answer is serialised."""
    return _ENCODE(payload).encode("utf-8")


def error_body(status: int, message: str, details: Mapping[str, list[str]] | None = None,
               *, type_: str | None = None, code: str | None = None) -> bytes:
    """The error envelope's bytes; ``detail`` repeats ``message`` for older clients."""
    kind, default_code = _KINDS.get(status, ("server_error", "server_error"))
    body: dict[str, object] = {
        "status": False, "type": type_ or kind, "code": code or default_code,
        "message": message, "detail": message,
    }
    if details:
        body["details"] = {k: list(v) for k, v in details.items()}
    return json_bytes(body)


class ApiError(Exception):
    """An error answer: status code, message, optional per-field details and headers."""

    def __init__(self, status: int, message: str, *,
                 details: Mapping[str, list[str]] | None = None,
                 headers: Mapping[str, str] | None = None,
                 type_: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = dict(details) if details else None
        self.headers = dict(headers or {})
        self.type_ = type_
        self.code = code

    @classmethod
    def invalid(cls, message: str, field: str | None = None) -> ApiError:
        """A 400; ``field`` (e.g. ``inputs.text[3]``) goes into ``details``."""
        return cls(400, message, details={field: [message]} if field else None)

    def body(self) -> bytes:
        return error_body(self.status, self.message, self.details, type_=self.type_,
                          code=self.code)

    def response(self) -> Response:
        return Response(self.body(), status_code=self.status, headers=self.headers,
                        media_type="application/json")

    def __repr__(self) -> str:
        return f"ApiError({self.status}, {self.message!r})"


def install_exception_handlers(app: FastAPI) -> None:
    """Route every error of the app through the envelope."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> Response:
        return exc.response()

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            message = f"no such endpoint: {request.method} {request.url.path}"
        elif exc.status_code == 405:
            message = f"method {request.method} is not allowed on {request.url.path}"
        else:
            message = str(exc.detail)
        return ApiError(exc.status_code, message, headers=exc.headers).response()

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
        details: dict[str, list[str]] = {}
        for err in exc.errors():
            field = ".".join(str(p) for p in err.get("loc", ()) if p not in ("query", "body"))
            details.setdefault(field or "request", []).append(str(err.get("msg")))
        message = "; ".join(f"{k}: {', '.join(v)}" for k, v in details.items())
        return ApiError(400, message or "invalid request", details=details).response()

    @app.exception_handler(RecursionError)
    async def _too_deep(request: Request, exc: RecursionError) -> Response:
        # The door limits (fi_evals.server.limits) keep nesting far from the interpreter's
        # limit; if some input still got there, it is the input's shape: a 400, one log line.
        where = _innermost_frame(exc)
        log.warning("RecursionError on %s %s at %s: answered 400", request.method,
                    printable(request.url.path), where)
        return ApiError(400, "the request is nested too deeply to process (lower the nesting "
                             "of its JSON, schema or pattern)").response()

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        # Not logged here: Starlette re-raises after this answer and the gateway logs the
        # failure once, with its request id (fi_evals.server.middleware).
        return ApiError(500, f"internal server error ({type(exc).__name__})").response()


def _innermost_frame(exc: BaseException) -> str:
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return "?"
    return f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}"


_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff\\]")


def printable(text: str) -> str:
    """``text`` for a log line: control characters (CR, LF...), line separators, surrogates
    and backslashes escaped, so that a request path or a user string cannot forge or break a
    log line."""
    return _UNPRINTABLE.sub(_escape, text)


def _escape(found: re.Match[str]) -> str:
    char = found.group()
    return "\\\\" if char == "\\" else f"\\x{ord(char):02x}" if ord(char) < 256 \
        else f"\\u{ord(char):04x}"
