"""Loopback HTTP servers for SDK tests that need answers the reference server never gives.

Redirects to another origin, and 200 answers that are not the protocol's: real sockets
(``ThreadingHTTPServer`` on 127.0.0.1, port 0), a handler function that picks each answer, and
a record of every request received (method, path, headers, body).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

__all__ = ["FakeServer", "Reply", "Seen", "json_reply", "redirect_to"]


@dataclass(frozen=True)
class Seen:
    """One request as the server received it (header names as sent)."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes

    def has_header(self, name: str) -> bool:
        return any(key.lower() == name.lower() for key in self.headers)


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes = b""
    headers: Mapping[str, str] | None = None


def json_reply(body: Any, status: int = 200) -> Reply:
    return Reply(status, json.dumps(body).encode(), {"Content-Type": "application/json"})


def redirect_to(base_url: str, status: int) -> Callable[[Seen], Reply]:
    """A handler answering every request with ``status`` to the same path on ``base_url``."""
    return lambda seen: Reply(status, b"", {"Location": base_url + seen.path})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64  # bursts of batch requests


class FakeServer:
    """A threaded HTTP server on 127.0.0.1 (port 0) answering with ``handler(seen)``."""

    def __init__(self, handler: Callable[[Seen], Reply]) -> None:
        self.seen: list[Seen] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                seen = Seen(self.command, self.path, dict(self.headers.items()),
                            self.rfile.read(length) if length else b"")
                owner.seen.append(seen)
                reply = handler(seen)
                self.send_response(reply.status)
                for name, value in (reply.headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                # One request per connection: no client ever reuses one this server closed.
                self.send_header("Connection", "close")
                self.close_connection = True
                self.end_headers()
                self.wfile.write(reply.body)

            do_GET = do_POST = do_PUT = do_DELETE = _answer

        self._httpd = _Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,),
                                        daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
