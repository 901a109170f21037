"""uvicorn's h11 protocol plus what it lacks: a read timeout on request headers, and error
answers in the JSON envelope.

uvicorn arms no timer while a request's headers arrive, so a client that connects and sends
nothing, or half a request line, holds its connection (and a draining server) for as long as it
likes. Here a timer runs from the connection's start, or from a request's first byte, until the
request's headers are complete; past ``read_timeout`` the client gets a 408 in the envelope and
the connection is closed (a connection that sent nothing is just closed). Once the headers are
in, the body's deadline (the same ``read_timeout`` from the first byte) goes into the request's
scope for the gateway (``READ_DEADLINE_SCOPE``; None when the body came with the headers),
which answers a late body 408 itself.

uvicorn's answer to bytes that are not HTTP is a plain-text 400; here it is the envelope too.
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from fi_evals.server.errors import error_body
from fi_evals.server.middleware import READ_DEADLINE_SCOPE, Gateway

__all__ = ["protocol_class"]


def protocol_class(gateway: Gateway, read_timeout: float) -> type[H11Protocol]:
    """The protocol class to give ``uvicorn.Config(http=...)`` for this gateway."""
    return type("FiEvalsH11Protocol", (ReadTimeoutH11Protocol,),
                {"gateway": gateway, "read_timeout": read_timeout})


class ReadTimeoutH11Protocol(H11Protocol):
    """See the module docstring; ``gateway`` and ``read_timeout`` are set by
    :func:`protocol_class`."""

    gateway: Gateway
    read_timeout: float

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._timer: asyncio.TimerHandle | None = None
        self._first_byte: float | None = None  # loop time of the awaited request's first byte

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.loop.time())

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._first_byte is None and (self.cycle is None or self.cycle.response_complete):
            self._first_byte = self.loop.time()  # a new request starts arriving
            self._arm(self._first_byte)
        before = self.cycle
        super().data_received(data)
        if self.cycle is not before and self.cycle is not None:  # its headers are complete
            start = self.loop.time() if self._first_byte is None else self._first_byte
            # None: the body came with the headers (most requests), nothing left to wait for.
            deadline = start + self.read_timeout if self.cycle.more_body else None
            self.cycle.scope[READ_DEADLINE_SCOPE] = deadline  # type: ignore[literal-required]
            self._first_byte = None
            self._disarm()

    def send_400_response(self, msg: str) -> None:
        body = error_body(400, f"invalid HTTP request: {msg}")
        headers = [(b"content-type", b"application/json"),
                   (b"content-length", str(len(body)).encode()), (b"connection", b"close")]
        output = self.conn.send(h11.Response(status_code=400, headers=headers,
                                             reason=b"Bad Request"))
        output = (output or b"") + (self.conn.send(h11.Data(data=body)) or b"")
        output += self.conn.send(h11.EndOfMessage()) or b""
        self.transport.write(output)
        self.transport.close()

    def _arm(self, start: float) -> None:
        self._disarm()
        self._timer = self.loop.call_at(start + self.read_timeout, self._timed_out)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _timed_out(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a request is running: its body's deadline is the gateway's
        if self._first_byte is not None:  # half a request: say why before closing
            body = error_body(408, f"the request headers did not arrive within this server's "
                                   f"read_timeout of {self.read_timeout:g} s")
            self.transport.write(b"HTTP/1.1 408 Request Timeout\r\ncontent-type: "
                                 b"application/json\r\ncontent-length: %d\r\nconnection: "
                                 b"close\r\n\r\n%s" % (len(body), body))
            self.gateway.headers_timed_out(self.loop.time() - self._first_byte)
        self.transport.close()
