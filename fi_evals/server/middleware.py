"""The gateway: the ASGI layer every request crosses before the FastAPI routes.

In order: request id, draining (503), fault injection (``--faults``), authentication (401),
per-key rate limit (429), body size (413) and read timeout (408); then the app, then one access
log line and the HTTP metric. It is plain ASGI (no ``BaseHTTPMiddleware``) to keep the hot path
cheap, and it is the outermost app given to uvicorn, so ``send`` is uvicorn's own and a
``reset`` fault can reach the connection's transport.

Every answer it or the app gives is the JSON error envelope: an exception escaping the app is
logged here once (with the request id and at most ``_TRACEBACK_FRAMES`` frames) and answered
500 in the envelope, instead of uvicorn's plain-text 500 and a second traceback. A body that
does not arrive within ``read_timeout`` (from the request's first byte) is answered 408 and
the connection closed; when the server starts draining, bodies still arriving are answered
503 at once, so a stalled upload cannot hold the drain.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import struct
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any, Protocol

import anyio.to_thread

from fi_evals import _constants as C
from fi_evals import _otel
from fi_evals.server.config import ServerConfig
from fi_evals.server.errors import ApiError, error_body, printable
from fi_evals.server.faults import FaultPlan
from fi_evals.server.keys import KeyChecker
from fi_evals.server.metrics import ServerMetrics
from fi_evals.server.ratelimit import TokenBucketLimiter

__all__ = ["KEY_SCOPE", "READ_DEADLINE_SCOPE", "REQUEST_ID_SCOPE", "DirectHandler", "Gateway"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

access_log = logging.getLogger("fi_evals.server.access")
log = logging.getLogger("fi_evals.server")

KEY_SCOPE = "fi_evals.key"
"""ASGI scope entry holding the caller's key fingerprint (the idempotency scope)."""
READ_DEADLINE_SCOPE = "fi_evals.read_deadline"
"""ASGI scope entry: event-loop time by which the request's body must have arrived, or None when
it arrived with the headers. The server's protocol (``connection.py``) sets it from the
request's first byte; without it the gateway counts ``read_timeout`` from when it sees the
request."""
_UNKNOWN = object()
REQUEST_ID_SCOPE = "fi_evals.request_id"

_API_PREFIX = "/sdk/api/"
_ROUTES = frozenset({C.PATH_NEW_EVAL, C.PATH_BULK_STATUS, C.PATH_GET_EVALS, C.PATH_CAPABILITIES,
                     C.PATH_HEALTH, C.PATH_METRICS, "/docs", "/openapi.json", "/redoc"})
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
_DRAIN_CAP_FACTOR = 4  # a too-large body is read (and dropped) up to this many limits
_JSON = (b"content-type", b"application/json")
_CLOSE = (b"connection", b"close")
_TRACEBACK_FRAMES = 40  # innermost frames of a logged failure (a RecursionError has ~1,000)


class _DirectAnswer(Protocol):
    """What a direct handler returns (the service's answer: status, body, headers)."""

    @property
    def status(self) -> int: ...
    @property
    def body(self) -> bytes: ...
    @property
    def headers(self) -> Mapping[str, str]: ...


DirectHandler = Callable[[bytes, Mapping[bytes, bytes], str], _DirectAnswer]
"""A route the gateway serves itself, on the thread pool, without the app: (body, lower-case
request headers, the caller's key fingerprint) -> an answer with ``status``, ``body`` and
``headers``; it raises :class:`~fi_evals.server.errors.ApiError` for an error answer."""


class _TooLarge(Exception):
    pass


class _Disconnected(Exception):
    pass


class Gateway:
    """Wraps the FastAPI app; see the module docstring. ``draining``/``inflight`` drive shutdown."""

    def __init__(self, app: ASGIApp, config: ServerConfig, metrics: ServerMetrics,
                 direct: Mapping[tuple[str, str], DirectHandler] | None = None) -> None:
        assert config.api_key is not None and config.secret_key is not None
        self.app = app
        # (method, path) -> handler: the hot routes skip the app's routing, dependency and
        # response machinery (issue 20); every check above the app still applies to them.
        self.direct = dict(direct or {})
        self.config = config
        self.metrics = metrics
        self.keys = KeyChecker(config.api_key, config.secret_key)
        self.limiter = (TokenBucketLimiter(config.rate_limit, config.rate_burst)
                        if config.rate_limit else None)
        self.faults = FaultPlan.parse(config.faults, config.fault_seed) if config.faults else None
        self.draining = False
        self.inflight = 0
        self._max_body = config.max_body_bytes
        self._retry_overloaded = str(config.overload_retry_after).encode()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._readers: set[asyncio.Timeout] = set()  # deadlines of bodies being received

    def begin_drain(self) -> None:
        """Start draining (from any thread): new requests get 503, and so do requests whose
        body is still arriving, at once, so that a stalled upload cannot hold the drain."""
        self.draining = True
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self._cut_readers)
            except RuntimeError:  # the loop closed meanwhile: nothing is reading
                pass

    def _cut_readers(self) -> None:
        now = asyncio.get_running_loop().time()
        for timer in list(self._readers):
            try:
                timer.reschedule(now)
            except RuntimeError:  # already expiring
                pass

    def headers_timed_out(self, seconds: float) -> None:
        """Called by the server's protocol when a request's headers did not arrive in time
        (it answers 408 and closes the connection itself): the access line and the metric."""
        self.metrics.http_requests.labels("other", "408").inc()
        if self.config.access_log:
            access_log.info("- - 408 %.1fms (request headers did not arrive within %g s)",
                            seconds * 1000, self.config.read_timeout)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        self.inflight += 1
        path: str = scope["path"]
        headers = dict(scope["headers"])  # lower-case names; a repeated header keeps its last
        rid = headers.get(b"x-request-id", b"").decode("latin-1")
        if not _REQUEST_ID_RE.match(rid):
            rid = uuid.uuid4().hex
        scope[REQUEST_ID_SCOPE] = rid
        # status[0]: the answer's code, "reset" when a fault dropped the connection,
        # "disconnected" when the client left before its body arrived; None until answered.
        status: list[int | str | None] = [None]
        extra = [(b"x-request-id", rid.encode())]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), *extra]}
            await send(message)

        route = path if path in _ROUTES else "other"
        try:
            with _otel.server_span("fi_evals.server.request", headers, **{
                    "http.request.method": scope["method"], "http.route": route,
                    "fi_evals.request_id": rid}) as current:
                try:
                    await self._handle(scope, receive, send, send_with_headers, headers, extra,
                                       status)
                finally:
                    _request_span_end(current, status[0])
        except Exception as exc:  # noqa: BLE001 - logged once here, answered in the envelope
            self._log_failure(scope, rid, exc)
            if status[0] is None:
                await _answer(send_with_headers, 500, error_body(
                    500, f"internal server error ({type(exc).__name__})"))
        except asyncio.CancelledError:
            # uvicorn cancels requests still running when its graceful shutdown times out:
            # answer in the envelope (not its plain-text 500) and end quietly.
            log.warning("%s %s rid=%s cancelled by the server's shutdown", scope["method"],
                        printable(path), rid)
            if status[0] is None:
                await _answer(send_with_headers, 503, error_body(
                    503, "the server stopped before this request finished; retry"),
                    [(b"retry-after", self._retry_overloaded), _CLOSE])
        finally:
            self.inflight -= 1
            code = str(500 if status[0] is None else status[0])
            self.metrics.http_requests.labels(route, code).inc()
            if self.config.access_log:
                access_log.info("%s %s %s %.1fms rid=%s", scope["method"], printable(path), code,
                                (time.perf_counter() - start) * 1000, rid)

    @staticmethod
    def _log_failure(scope: Scope, rid: str, exc: BaseException) -> None:
        lines = traceback.format_exception(exc, limit=-_TRACEBACK_FRAMES)
        log.error("unexpected error on %s %s rid=%s\n%s", scope["method"],
                  printable(scope["path"]), rid, "".join(lines).rstrip())

    async def _handle(self, scope: Scope, receive: Receive, raw_send: Send, send: Send,
                      headers: dict[bytes, bytes], extra: list[tuple[bytes, bytes]],
                      status: list[int | str | None]) -> None:
        path: str = scope["path"]
        api = path.startswith(_API_PREFIX)
        if self.draining and path != C.PATH_METRICS:
            await _answer(send, 503, error_body(503, "the server is shutting down; retry on "
                                                     "another instance or later"),
                          [(b"retry-after", self._retry_overloaded)])
            return
        fault = self.faults.draw() if (api and self.faults) else None
        if fault is not None:
            self.metrics.faults.labels(fault).inc()
            if fault in ("500", "429", "503"):
                await self._injected(send, int(fault))
                return
        if api:
            if not self.keys.check(headers.get(b"x-api-key"), headers.get(b"x-secret-key")):
                await _answer(send, 401, error_body(401, "missing or wrong X-Api-Key / "
                                                         "X-Secret-Key"),
                              [(b"www-authenticate", b"ApiKey")])
                return
            scope[KEY_SCOPE] = self.keys.fingerprint
            if self.limiter is not None:
                decision = self.limiter.acquire(self.keys.fingerprint)
                extra.extend((k.lower().encode(), v.encode())
                             for k, v in decision.headers().items())
                if not decision.allowed:
                    await _answer(send, 429, error_body(
                        429, f"rate limit of {self.limiter.rate:g} requests/s exceeded; retry "
                             f"in {decision.retry_after} s"),
                        [(b"retry-after", str(decision.retry_after).encode())])
                    return
        # The body is read only for authenticated callers, so strangers cannot make the
        # server buffer megabytes.
        try:
            body = await self._read_body_in_time(scope, receive, headers)
        except _TooLarge:
            limit = self.config.max_body_mb
            await _answer(send, 413, error_body(413, f"request body is larger than this "
                                                     f"server's limit of {limit:g} MB"))
            return
        except _Disconnected:
            status[0] = "disconnected"
            return
        except TimeoutError:
            await self._read_timed_out(send)
            return
        replay = _replay_receive(body, receive)
        if fault == "reset":
            await self.app(scope, replay, _discard)
            status[0] = "reset"
            await _reset(raw_send)
        elif fault == "500-after":
            await self.app(scope, replay, _discard)
            await _answer(send, 500, error_body(500, "injected fault 500-after (--faults): the "
                                                     "request ran, then its answer was lost"))
        elif fault == "slow":
            held: list[Message] = []

            async def hold(message: Message) -> None:
                held.append(message)

            await self.app(scope, replay, hold)
            await asyncio.sleep(self.config.fault_slow_seconds)
            for message in held:
                await send(message)
        elif (handler := self.direct.get((scope["method"], path))) is not None:
            await self._direct(handler, body, headers, scope, send)
        else:
            await self.app(scope, replay, send)

    async def _direct(self, handler: DirectHandler, body: bytes, headers: dict[bytes, bytes],
                      scope: Scope, send: Send) -> None:
        """Answer with ``handler`` on the thread pool (the one the app's sync routes use)."""
        try:
            answer = await anyio.to_thread.run_sync(handler, body, headers,
                                                    scope.get(KEY_SCOPE, ""))
        except ApiError as exc:
            await _answer(send, exc.status, exc.body(), _encoded(exc.headers))
            return
        except RecursionError as exc:  # as the app's handler does: the input's shape, a 400
            log.warning("RecursionError on %s %s: answered 400 (%s)", scope["method"],
                        printable(scope["path"]), type(exc).__name__)
            await _answer(send, 400, error_body(400, "the request is nested too deeply to "
                                                     "process (lower the nesting of its JSON, "
                                                     "schema or pattern)"))
            return
        await _answer(send, answer.status, answer.body, _encoded(answer.headers))

    async def _read_body_in_time(self, scope: Scope, receive: Receive,
                                 headers: dict[bytes, bytes]) -> bytes:
        """:meth:`_read_body` within the request's read deadline (TimeoutError past it, or as
        soon as the server starts draining)."""
        deadline = scope.get(READ_DEADLINE_SCOPE, _UNKNOWN)
        if deadline is None:  # the whole body came with the headers: no timer needed
            return await self._read_body(receive, headers)
        if deadline is _UNKNOWN:  # another server runs us: count from now
            deadline = asyncio.get_running_loop().time() + self.config.read_timeout
        async with asyncio.timeout_at(deadline) as timer:
            self._readers.add(timer)
            try:
                return await self._read_body(receive, headers)
            finally:
                self._readers.discard(timer)

    async def _read_timed_out(self, send: Send) -> None:
        if self.draining:
            await _answer(send, 503, error_body(503, "the server is shutting down and the "
                                                     "request body had not arrived; retry on "
                                                     "another instance or later"),
                          [(b"retry-after", self._retry_overloaded), _CLOSE])
        else:
            timeout = self.config.read_timeout
            await _answer(send, 408, error_body(408, f"the request did not arrive within this "
                                                     f"server's read_timeout of {timeout:g} s"),
                          [_CLOSE])

    async def _read_body(self, receive: Receive, headers: dict[bytes, bytes]) -> bytes:
        """The whole body, or _TooLarge once over the limit (after draining what was sent, so
        the client reads the 413 instead of a broken pipe), or _Disconnected."""
        declared = headers.get(b"content-length")
        too_large = declared is not None and declared.isdigit() and int(declared) > self._max_body
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                if not too_large:
                    raise _Disconnected
                break
            chunk = message.get("body", b"")
            more = message.get("more_body", False)
            size += len(chunk)
            if size > self._max_body:
                too_large = True
            if too_large:
                if size > self._max_body * _DRAIN_CAP_FACTOR:
                    break
                continue
            chunks.append(chunk)
        if too_large:
            raise _TooLarge
        return b"".join(chunks)

    async def _injected(self, send: Send, status: int) -> None:
        extra = [(b"retry-after", b"1")] if status in (429, 503) else []
        if status == 429 and self.limiter is not None:
            extra += [(b"x-ratelimit-limit", str(self.limiter.burst).encode()),
                      (b"x-ratelimit-remaining", b"0"), (b"x-ratelimit-reset", b"1")]
        elif status == 429:
            extra += [(b"x-ratelimit-limit", b"0"), (b"x-ratelimit-remaining", b"0"),
                      (b"x-ratelimit-reset", b"1")]
        await _answer(send, status, error_body(status, f"injected fault {status} (--faults)"),
                      extra)

    def __repr__(self) -> str:
        return (f"<Gateway inflight={self.inflight} draining={self.draining} "
                f"faults={self.faults!r} limiter={self.limiter!r}>")


def _request_span_end(current: Any, status: int | str | None) -> None:
    """The answer's status code on the request's span (None: no OpenTelemetry); a 5xx, or no
    answer at all, marks it failed (4xx are the caller's errors, not the server's)."""
    if current is None:
        return
    if isinstance(status, int):
        current.set_attribute("http.response.status_code", status)
        if status >= 500:
            _otel.set_error(current, f"answered {status}")
    elif status is not None:
        current.set_attribute("error.type", str(status))


async def _answer(send: Send, status: int, body: bytes,
                  headers: list[tuple[bytes, bytes]] = ()) -> None:  # type: ignore[assignment]
    await send({"type": "http.response.start", "status": status,
                "headers": [_JSON, (b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})


def _encoded(headers: Mapping[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]


def _replay_receive(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the app the already-read body, then defers to the real one."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _discard(message: Message) -> None:
    return None


async def _reset(send: Send) -> None:
    """Drop the connection without an answer: abort with SO_LINGER 0, so the peer gets a RST.

    uvicorn's ``send`` is a bound method of its request cycle, which holds the transport. If
    another server runs us (no transport found), fall back to a truncated answer: headers that
    promise a body, then an exception, which makes the server close the connection.
    """
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [_JSON, (b"content-length", b"1000")]})
        raise ConnectionAbortedError("injected reset fault (--faults)")
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:  # already gone: the abort below still closes it
            pass
    transport.abort()
    # connection_lost() runs on the next loop turns; once it has, uvicorn knows the client is
    # gone and does not try to answer "500: returned without a response" on a dead socket.
    for _ in range(3):
        await asyncio.sleep(0)
