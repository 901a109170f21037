"""A fake OpenAI-compatible judge that enforces a provider's rate limits (issue 17, point 5).

``POST /v1/chat/completions`` answers a valid judgment for the template named in the prompt
(Pass/Fail: ``Passed``; score: 0.5; choices: the first one) with OpenAI's ``usage``, after
``latency`` seconds, unless a limit is exceeded: requests per minute and tokens per minute are
token buckets (``rpm`` refilled at ``rpm/60`` per second up to ``burst``; ``tpm`` likewise up
to ``token_burst``), and a call past either is answered ``429`` with ``Retry-After`` and
``x-ratelimit-*`` headers, as OpenAI does. Every answer carries ``x-ratelimit-limit-requests``,
``x-ratelimit-remaining-requests``, ``x-ratelimit-reset-requests`` and the ``-tokens`` ones.

One implementation for the benchmark (``benchmarks/bench_judge.py``) and the tests
(``tests/models/test_judge_budget.py``): not a mock, a server on 127.0.0.1.

    with FakeProvider(rpm=1200, burst=200, latency=0.1) as provider:
        ...  # judge_url=provider.url
        provider.calls, provider.throttled
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from fi_evals.catalogue import CATALOGUE

__all__ = ["FakeProvider"]


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


class FakeProvider:
    """The rate-limited loopback provider (threads, port 0); a context manager.

    Args:
        rpm: requests per minute; burst: requests at once (the bucket's capacity).
        tpm: tokens per minute (None: no token limit); token_burst: its capacity (default
            ``tpm / 6``, ten seconds' worth).
        latency: seconds each answered call takes (a 429 is immediate).
        limit_headers: send the ``x-ratelimit-*`` headers (False: only ``Retry-After``).
    """

    def __init__(self, rpm: float = 1200, burst: float = 200, *, tpm: float | None = None,
                 token_burst: float | None = None, latency: float = 0.1,
                 limit_headers: bool = True) -> None:
        self.requests = _Bucket(rpm, burst)
        self.tokens = _Bucket(tpm, token_burst or tpm / 6) if tpm else None
        self.rpm, self.tpm = rpm, tpm
        self.latency = latency
        self.limit_headers = limit_headers
        self.calls = 0
        self.throttled = 0
        self.answered = 0
        self.prompt_tokens = 0
        self._lock = threading.Lock()
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

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        body = json.loads(handler.rfile.read(int(handler.headers.get("Content-Length", 0))))
        chat = body.get("messages") or []
        prompt = sum(len(m.get("content") or "") for m in chat) // 4 + 4 * len(chat)
        content = json.dumps(_judgment(chat))
        completion = len(content) // 4 + 1
        with self._lock:
            self.calls += 1
            now = time.monotonic()
            self.requests.refill(now)
            if self.tokens is not None:
                self.tokens.refill(now)
            wait = 0.0
            if self.requests.level < 1:
                wait = (1 - self.requests.level) / self.requests.rate
            if self.tokens is not None and self.tokens.level < prompt + completion:
                need = min(prompt + completion, self.tokens.capacity) - self.tokens.level
                wait = max(wait, need / self.tokens.rate)
            if wait > 0:
                self.throttled += 1
            else:
                self.requests.level -= 1
                if self.tokens is not None:
                    self.tokens.level -= prompt + completion
                self.answered += 1
                self.prompt_tokens += prompt
            headers = self._headers()
        if wait > 0:
            headers["Retry-After"] = str(max(1, math.ceil(wait)))
            self._send(handler, 429, json.dumps({"error": {
                "message": "Rate limit reached for requests", "type": "requests",
                "code": "rate_limit_exceeded"}}).encode(), headers)
            return
        time.sleep(self.latency)
        answer = {"id": "chatcmpl-fake", "object": "chat.completion", "model": body.get("model"),
                  "choices": [{"index": 0, "finish_reason": "stop",
                               "message": {"role": "assistant", "content": content}}],
                  "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                            "total_tokens": prompt + completion}}
        self._send(handler, 200, json.dumps(answer).encode(), headers)

    def _headers(self) -> dict[str, str]:
        if not self.limit_headers:
            return {}
        headers = {"x-ratelimit-limit-requests": f"{self.rpm:g}",
                   "x-ratelimit-remaining-requests": str(max(0, int(self.requests.level))),
                   "x-ratelimit-reset-requests": f"{self.requests.reset_seconds():.3f}s"}
        if self.tokens is not None:
            headers.update({"x-ratelimit-limit-tokens": f"{self.tpm:g}",
                            "x-ratelimit-remaining-tokens": str(max(0, int(self.tokens.level))),
                            "x-ratelimit-reset-tokens": f"{self.tokens.reset_seconds():.3f}s"})
        return headers

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, code: int, data: bytes,
              headers: dict[str, str]) -> None:
        try:
            handler.send_response(code)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                handler.send_header(name, value)
            handler.end_headers()
            handler.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"<FakeProvider {self.url} rpm={self.rpm:g} tpm={self.tpm} calls={self.calls} "
                f"throttled={self.throttled}>")


def _judgment(chat: list[dict[str, Any]]) -> dict[str, Any]:
    match = re.search(r"running the check '([^']+)'", (chat[0].get("content") or "")
                      if chat else "")
    template = CATALOGUE.get(match.group(1)) if match else None
    reason = "Judged by the fake provider."
    if template is not None and template.output_type == "score":
        return {"score": 0.5, "reason": reason}
    if template is not None and template.output_type == "choices":
        return {"choices": [template.choices[0]] if template.choices else ["A"],
                "reason": reason}
    return {"verdict": "Passed", "reason": reason}
