"""A fake OpenAI-compatible judge that enforces a provider's rate limits (issue 17, point 5).

``POST /v1/chat/completions`` answers a valid judgment in the shape the prompt asks for
(Pass/Fail: ``Passed``; score: 0.5; choices: the first label offered) with OpenAI's ``usage``,
after ``latency`` seconds, unless a limit is exceeded: requests per minute and tokens per minute
are token buckets (``rpm`` refilled at ``rpm/60`` per second up to ``burst``; ``tpm`` likewise up
to ``token_burst``), and a call past either is answered ``429`` with ``Retry-After`` and
``x-ratelimit-*`` headers, as OpenAI does. Every answer carries ``x-ratelimit-limit-requests``,
``x-ratelimit-remaining-requests``, ``x-ratelimit-reset-requests`` and the ``-tokens`` ones.
``rpm=None``: no request limit (and no headers).

The one loopback provider of the benchmark (``benchmarks/bench_judge.py``) and of the tests:
``tests/models/fake_judge.py``'s ``FakeJudge`` is this class with the tests' extras (scripted
faults, recorded judgments, known models) over :meth:`FakeProvider.answer` and
:meth:`FakeProvider.judgment`. Not a mock: a server on 127.0.0.1, port 0.

    with FakeProvider(rpm=1200, burst=200, latency=0.1) as provider:
        ...  # judge_url=provider.url
        provider.calls, provider.throttled, provider.requests
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

__all__ = ["FakeProvider", "Reply", "fake_usage", "shape_judgment"]

Reply = tuple[int, bytes, dict[str, str]]
"""An HTTP answer: status, body, headers."""


class _Bucket:
    def __init__(self, per_minute: float, burst: float) -> None:
        self.rate = per_minute / 60.0
        self.capacity = float(burst)
        self.level = float(burst)
        self.stamp = time.monotonic()

    def refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now

    def reset_seconds(self) -> float:
        return max(0.0, (self.capacity - self.level) / self.rate)


def fake_usage(chat: list[dict[str, Any]], content: str) -> dict[str, int]:
    """The ``usage`` the provider reports: a token per 4 characters (OpenAI's rule of thumb)
    plus 4 per message for the prompt; a token per 4 characters of the answer, plus one."""
    prompt = sum(len(m.get("content") or "") for m in chat) // 4 + 4 * len(chat)
    completion = len(content) // 4 + 1
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion}


_SHAPE = re.compile(r"Answer with only this JSON object[^\n]*\n(.*)", re.DOTALL)


def shape_judgment(chat: list[dict[str, Any]],
                   reason: str = "Judged by the fake provider.") -> dict[str, Any]:
    """A valid answer to the JSON shape the system prompt asks for (``prompts.messages``):
    ``{"score": 0.5}``, the first label of ``{"choices": [...]}``, else a ``Passed`` verdict."""
    system = str(chat[0].get("content") or "") if chat else ""
    found = _SHAPE.search(system)
    shape = found.group(1) if found else ""
    if '"score"' in shape:
        return {"score": 0.5, "reason": reason}
    if '"choices"' in shape:
        labels = re.findall(r'"((?:[^"\\]|\\.)*)"', shape.split("from:", 1)[-1])
        return {"choices": [json.loads(f'"{labels[0]}"')] if labels else ["A"],
                "reason": reason}
    return {"verdict": "Passed", "reason": reason}


class FakeProvider:
    """The rate-limited loopback provider (threads, port 0); a context manager.

    Args:
        rpm: requests per minute (None: unlimited); burst: requests at once (the bucket's
            capacity).
        tpm: tokens per minute (None: no token limit); token_burst: its capacity (default
            ``tpm / 6``, ten seconds' worth).
        latency: seconds each answered call takes (a 429 is immediate).
        limit_headers: send the ``x-ratelimit-*`` headers (False: only ``Retry-After``).

    Attributes:
        calls, throttled, answered, prompt_tokens: counts (429s are ``throttled``).
        answered_at: ``time.monotonic()`` of every call let through (the rate it served).
        requests, headers: every request body and its headers, in arrival order.
        max_in_flight: the most requests served at once.
    """

    def __init__(self, rpm: float | None = 1200, burst: float = 200, *,
                 tpm: float | None = None, token_burst: float | None = None,
                 latency: float = 0.1, limit_headers: bool = True) -> None:
        self.requests_bucket = _Bucket(rpm, burst) if rpm else None
        self.tokens = _Bucket(tpm, token_burst or tpm / 6) if tpm else None
        self.rpm, self.tpm = rpm, tpm
        self.latency = latency
        self.limit_headers = limit_headers
        self.calls = 0
        self.throttled = 0
        self.answered = 0
        self.prompt_tokens = 0
        self.answered_at: list[float] = []
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.max_in_flight = 0
        self._in_flight = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        provider = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                provider._serve(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ what it answers

    def answer(self, body: dict[str, Any]) -> Reply:
        """The reply to one chat-completions body: a 429 past a limit, else a judgment."""
        chat = body.get("messages") or []
        content = json.dumps(self.judgment(chat))
        usage = fake_usage(chat, content)
        cost = usage["total_tokens"]
        with self._lock:
            now = time.monotonic()
            wait = 0.0
            if self.requests_bucket is not None:
                self.requests_bucket.refill(now)
                if self.requests_bucket.level < 1:
                    wait = (1 - self.requests_bucket.level) / self.requests_bucket.rate
            if self.tokens is not None:
                self.tokens.refill(now)
                if self.tokens.level < cost:
                    need = min(cost, self.tokens.capacity) - self.tokens.level
                    wait = max(wait, need / self.tokens.rate)
            if wait > 0:
                self.throttled += 1
            else:
                if self.requests_bucket is not None:
                    self.requests_bucket.level -= 1
                if self.tokens is not None:
                    self.tokens.level -= cost
                self.answered += 1
                self.answered_at.append(now)
                self.prompt_tokens += usage["prompt_tokens"]
            headers = self._limit_headers()
        if wait > 0:
            headers["Retry-After"] = str(max(1, math.ceil(wait)))
            return 429, json.dumps({"error": {
                "message": "Rate limit reached for requests", "type": "requests",
                "code": "rate_limit_exceeded"}}).encode(), headers
        if self.latency:
            self._stop.wait(self.latency)
        return 200, self.completion(body, content), headers

    def judgment(self, chat: list[dict[str, Any]]) -> dict[str, Any]:
        """The judgment to give (subclasses answer otherwise): see :func:`shape_judgment`."""
        return shape_judgment(chat)

    @staticmethod
    def completion(body: dict[str, Any], content: str) -> bytes:
        """A chat-completion body answering ``content``, with its ``usage``."""
        return json.dumps({
            "id": "chatcmpl-fake", "object": "chat.completion", "model": body.get("model"),
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": content}}],
            "usage": fake_usage(body.get("messages") or [], content)}).encode()

    # ------------------------------------------------------------------ HTTP plumbing

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        body = json.loads(handler.rfile.read(int(handler.headers.get("Content-Length", 0))))
        with self._lock:
            self.calls += 1
            self.requests.append(body)
            self.headers.append(dict(handler.headers))
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
        try:
            code, data, headers = self.answer(body)
            handler.send_response(code)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                handler.send_header(name, value)
            handler.end_headers()
            handler.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (its timeout): nothing to answer
        finally:
            with self._lock:
                self._in_flight -= 1

    def _limit_headers(self) -> dict[str, str]:
        if not self.limit_headers or self.requests_bucket is None:
            return {}
        bucket = self.requests_bucket
        headers = {"x-ratelimit-limit-requests": f"{self.rpm:g}",
                   "x-ratelimit-remaining-requests": str(max(0, int(bucket.level))),
                   "x-ratelimit-reset-requests": f"{bucket.reset_seconds():.3f}s"}
        if self.tokens is not None:
            headers.update({"x-ratelimit-limit-tokens": f"{self.tpm:g}",
                            "x-ratelimit-remaining-tokens": str(max(0, int(self.tokens.level))),
                            "x-ratelimit-reset-tokens": f"{self.tokens.reset_seconds():.3f}s"})
        return headers

    def close(self) -> None:
        self._stop.set()  # release waiting handlers
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} {self.url} rpm={self.rpm} tpm={self.tpm} "
                f"calls={self.calls} throttled={self.throttled}>")
