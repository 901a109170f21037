"""A loopback OpenAI-compatible judge for the tests: ``POST /v1/chat/completions``.

It answers with recorded judgments (``RECORDED``: the answer a judge gave for a template) unless
a test scripted faults first: ``judge.script(Status(429), Hang(5), Malformed("..."), ...)``.
Scripted actions are consumed one per request, in order; then the recorded judgments resume.
Every request is kept (``judge.requests``) and the largest number served at once is counted
(``judge.max_in_flight``). Answers carry OpenAI's ``usage`` (:func:`fake_usage`).

Two options make it behave more like a real provider: ``known_models`` (the model names it
serves; any other is refused the way OpenAI refuses it, 404 ``model_not_found``) and
``judge_content`` (templates with an output and a context are judged from their words, see
:func:`support_judgment`, so that a "Failed" verdict is possible; others keep the recording).

    with FakeJudge() as judge:
        server = server_factory(judge_url=judge.url, judge_model="judge-small")
    with FakeJudge(known_models=["judge-small"], judge_content=True) as judge: ...
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from fi_evals.catalogue import CATALOGUE

RECORDED = {
    "groundedness": {"verdict": "Passed", "reason": "Every claim appears in the context."},
    "toxicity": {"verdict": "Failed", "reason": "The output insults the reader."},
    "is_polite": {"verdict": "Passed", "reason": "Courteous wording throughout."},
    "context_adherence": {"score": 0.75, "reason": "Three of four statements come from the "
                                                   "context."},
    "tone": {"choices": ["joy", "surprise"], "reason": "Excited, upbeat wording."},
    "customer_agent_conversation_quality": {"choices": ["4"], "reason": "Helpful, one slip."},
}
_DEFAULT = {"verdict": "Passed", "reason": "Recorded default judgment."}
_STOPWORDS = frozenset({"the", "and", "are", "was", "were", "has", "have", "had", "for", "with",
                        "that", "this", "from", "into", "its", "their", "there", "what", "which",
                        "who", "how", "also", "than", "then", "but", "not", "all", "any"})
SUPPORT_THRESHOLD = 0.6
"""``judge_content``: share of the output's key words found in the context for a pass."""


def model_not_found(model: str) -> bytes:
    """The body OpenAI answers (with a 404) for a model it does not serve."""
    return json.dumps({"error": {
        "message": f"The model `{model}` does not exist or you do not have access to it.",
        "type": "invalid_request_error", "param": None, "code": "model_not_found"}}).encode()


def fake_usage(chat: list[dict[str, str]], content: str) -> dict[str, int]:
    """The ``usage`` the fake judge reports: one token per 4 characters, as OpenAI's rule of
    thumb (the prompt: every message's content; the completion: the answer)."""
    prompt = sum(len(m.get("content") or "") for m in chat) // 4 + 1
    completion = len(content) // 4 + 1
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion}


def _key_words(text: str) -> list[str]:
    words = re.findall(r"[a-z0-9]+", text.lower())
    return list(dict.fromkeys(w for w in words if len(w) >= 3 and w not in _STOPWORDS))


def support_judgment(output_type: str, inputs: dict[str, Any]) -> dict[str, Any] | None:
    """A judgment from content: how much of the output the context supports.

    The output's key words (3+ letters, no stop words) are looked up in the context; a share
    of at least ``SUPPORT_THRESHOLD`` passes ("The Eiffel Tower is in Paris, France." against
    a context naming the tower and Paris: 3 of 4). Score templates get the share itself. None
    when the item has no output and context to compare.
    """
    output, context = inputs.get("output"), inputs.get("context")
    if not isinstance(output, str) or not context:
        return None
    known = set(_key_words(" ".join(context) if isinstance(context, list) else str(context)))
    words = _key_words(output)
    missing = [w for w in words if w not in known]
    share = 1.0 - len(missing) / len(words) if words else 1.0
    if not missing:
        reason = "The output is fully supported by the provided context."
    else:
        reason = (f"{len(words) - len(missing)} of {len(words)} key words of the output are in "
                  f"the context (not found: {', '.join(missing)}).")
    if output_type == "score":
        return {"score": round(share, 2), "reason": reason}
    return {"verdict": "Passed" if share >= SUPPORT_THRESHOLD else "Failed", "reason": reason}


@dataclass(frozen=True)
class Answer:
    """Answer with this message content (any text, e.g. a judgment in a code fence)."""

    content: str


@dataclass(frozen=True)
class Status:
    """Answer an HTTP error status (with optional headers, e.g. Retry-After)."""

    code: int
    headers: dict[str, str] = field(default_factory=dict)
    body: str = '{"error": {"message": "injected"}}'


@dataclass(frozen=True)
class Hang:
    """Hold the request this many seconds before answering normally (a timeout, usually)."""

    seconds: float


@dataclass(frozen=True)
class Malformed:
    """Answer 200 with this content, which is not the JSON judgment asked for."""

    content: str


class FakeJudge:
    """The loopback judge server (threads, port 0)."""

    def __init__(self, delay: float = 0.0, *, known_models: Iterable[str] | None = None,
                 judge_content: bool = False) -> None:
        self.delay = delay
        self.known_models = frozenset(known_models) if known_models is not None else None
        self.judge_content = judge_content
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.max_in_flight = 0
        self._in_flight = 0
        self._actions: deque[Any] = deque()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        judge = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet test output
                pass

            def do_POST(self) -> None:
                judge._serve(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def script(self, *actions: Any) -> None:
        with self._lock:
            self._actions.extend(actions)

    @property
    def models(self) -> list[str]:
        return [r["model"] for r in self.requests]

    def _next_action(self) -> Any:
        with self._lock:
            return self._actions.popleft() if self._actions else None

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length", 0))
        body = json.loads(handler.rfile.read(length))
        with self._lock:
            self.requests.append(body)
            self.headers.append(dict(handler.headers))
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
        try:
            self._answer(handler, body, self._next_action())
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (its timeout): nothing to answer
        finally:
            with self._lock:
                self._in_flight -= 1

    def _answer(self, handler: BaseHTTPRequestHandler, body: dict[str, Any], action: Any) -> None:
        if isinstance(action, Hang):
            self._stop.wait(action.seconds)
        elif self.delay:
            time.sleep(self.delay)
        if isinstance(action, Status):
            self._send(handler, action.code, action.body.encode(), action.headers)
            return
        if self.known_models is not None and body.get("model") not in self.known_models:
            self._send(handler, 404, model_not_found(str(body.get("model"))), {})
            return
        if isinstance(action, (Answer, Malformed)):
            content = action.content
        else:
            content = json.dumps(self._judgment(body["messages"]))
        completion = {"id": "chatcmpl-fake", "object": "chat.completion",
                      "model": body.get("model"),
                      "choices": [{"index": 0, "finish_reason": "stop",
                                   "message": {"role": "assistant", "content": content}}],
                      "usage": fake_usage(body["messages"], content)}
        self._send(handler, 200, json.dumps(completion).encode(), {})

    def _judgment(self, chat: list[dict[str, str]]) -> dict[str, Any]:
        match = re.search(r"running the check '([^']+)'", chat[0]["content"])
        name = match.group(1) if match else ""
        template = CATALOGUE.get(name)
        if self.judge_content and template is not None and template.output_type != "choices":
            inputs = json.loads(chat[1]["content"].split("\n", 1)[1])  # after "Inputs:"
            judged = support_judgment(template.output_type, inputs)
            if judged is not None:
                return judged
        return RECORDED.get(name, _DEFAULT)

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, code: int, data: bytes,
              headers: dict[str, str]) -> None:
        handler.send_response(code)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(data)

    def close(self) -> None:
        self._stop.set()  # release hanging handlers
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<FakeJudge {self.url} requests={len(self.requests)}>"
