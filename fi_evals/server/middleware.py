"""The gateway: the ASGI layer every request crosses before the FastAPI routes.

In order: request id, draining (503), fault injection (``--faults``), authentication (401),
per-key rate limit (429), body size (413); then the app, then one access log line and the
HTTP metric. It is plain ASGI (no ``BaseHTTPMiddleware``) to keep the hot path cheap, and it is
the outermost app given to uvicorn, so ``send`` is uvicorn's own and a ``reset`` fault can reach
the connection's transport.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import struct
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fi_evals import _constants as C
from fi_evals.server.config import ServerConfig
from fi_evals.server.errors import error_body
from fi_evals.server.faults import FaultPlan
from fi_evals.server.keys import KeyChecker
from fi_evals.server.metrics import ServerMetrics
from fi_evals.server.ratelimit import TokenBucketLimiter

__all__ = ["KEY_SCOPE", "Gateway"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

access_log = logging.getLogger("fi_evals.server.access")
log = logging.getLogger("fi_evals.server")

KEY_SCOPE = "fi_evals.key"
"""ASGI scope entry holding the caller's key fingerprint (the idempotency scope)."""

_API_PREFIX = "/sdk/api/"
_ROUTES = frozenset({C.PATH_NEW_EVAL, C.PATH_BULK_STATUS, C.PATH_GET_EVALS, C.PATH_CAPABILITIES,
                     C.PATH_HEALTH, C.PATH_METRICS, "/docs", "/openapi.json", "/redoc"})
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
_DRAIN_CAP_FACTOR = 4  # a too-large body is read (and dropped) up to this many limits
_JSON = (b"content-type", b"application/json")


class _TooLarge(Exception):
    pass


class Gateway:
    """Wraps the FastAPI app; see the module docstring. ``draining``/``inflight`` drive shutdown."""

    def __init__(self, app: ASGIApp, config: ServerConfig, metrics: ServerMetrics) -> None:
        assert config.api_key is not None and config.secret_key is not None
        self.app = app
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

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        self.inflight += 1
        path: str = scope["path"]
        headers = dict(scope["headers"])  # lower-case names; a repeated header keeps its last
        rid = headers.get(b"x-request-id", b"").decode("latin-1")
        if not _REQUEST_ID_RE.match(rid):
            rid = uuid.uuid4().hex
        status: list[int | str] = [500]  # "reset" when a fault dropped the connection
        extra = [(b"x-request-id", rid.encode())]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), *extra]}
            await send(message)

        try:
            await self._handle(scope, receive, send, send_with_headers, headers, extra, status)
        finally:
            self.inflight -= 1
            route = path if path in _ROUTES else "other"
            self.metrics.http_requests.labels(route, str(status[0])).inc()
            if self.config.access_log:
                access_log.info("%s %s %s %.1fms rid=%s", scope["method"], path, status[0],
                                (time.perf_counter() - start) * 1000, rid)

    async def _handle(self, scope: Scope, receive: Receive, raw_send: Send, send: Send,
                      headers: dict[bytes, bytes], extra: list[tuple[bytes, bytes]],
                      status: list[int | str]) -> None:
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
            body = await self._read_body(receive, headers)
        except _TooLarge:
            limit = self.config.max_body_mb
            await _answer(send, 413, error_body(413, f"request body is larger than this "
                                                     f"server's limit of {limit:g} MB"))
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
        else:
            await self.app(scope, replay, send)

    async def _read_body(self, receive: Receive, headers: dict[bytes, bytes]) -> bytes:
        """The whole body, or _TooLarge once over the limit (after draining what was sent, so
        the client reads the 413 instead of a broken pipe)."""
        declared = headers.get(b"content-length")
        too_large = declared is not None and declared.isdigit() and int(declared) > self._max_body
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
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


async def _answer(send: Send, status: int, body: bytes,
                  headers: list[tuple[bytes, bytes]] = ()) -> None:  # type: ignore[assignment]
    await send({"type": "http.response.start", "status": status,
                "headers": [_JSON, (b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})


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
