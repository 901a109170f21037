"""The tests' loopback judge: the benchmark's provider (``benchmarks/fake_provider.py``, one
implementation) without rate limits, plus what the tests script.

It answers with recorded judgments (``RECORDED``: the answer a judge gave for a template) unless
a test scripted faults first: ``judge.script(Status(429), Hang(5), Malformed("..."), ...)``.
Scripted actions are consumed one per request, in order; then the recorded judgments resume.
Every request is kept (``judge.requests``) and the largest number served at once is counted
(``judge.max_in_flight``). Answers carry OpenAI's ``usage`` (:func:`fake_usage`, the
provider's). Templates without a recording (``custom_judge`` among them) get a valid answer in
the shape their prompt asks for (``shape_judgment``).

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
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from benchmarks.fake_provider import FakeProvider, Reply, fake_usage, shape_judgment
from fi_evals.catalogue import CATALOGUE

__all__ = ["RECORDED", "Answer", "FakeJudge", "Hang", "Malformed", "Status", "fake_usage",
           "model_not_found", "support_judgment"]

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


class FakeJudge(FakeProvider):
    """The loopback judge server (threads, port 0): a :class:`FakeProvider` with no rate
    limit, answering after ``delay`` seconds."""

    def __init__(self, delay: float = 0.0, *, known_models: Iterable[str] | None = None,
                 judge_content: bool = False) -> None:
        self.known_models = frozenset(known_models) if known_models is not None else None
        self.judge_content = judge_content
        self._actions: deque[Any] = deque()
        super().__init__(rpm=None, latency=delay)

    @property
    def delay(self) -> float:
        return self.latency

    def script(self, *actions: Any) -> None:
        with self._lock:
            self._actions.extend(actions)

    @property
    def models(self) -> list[str]:
        return [r["model"] for r in self.requests]

    def _next_action(self) -> Any:
        with self._lock:
            return self._actions.popleft() if self._actions else None

    def answer(self, body: dict[str, Any]) -> Reply:
        action = self._next_action()
        if isinstance(action, Hang):
            self._stop.wait(action.seconds)
        elif self.latency:
            self._stop.wait(self.latency)
        if isinstance(action, Status):
            return action.code, action.body.encode(), dict(action.headers)
        if self.known_models is not None and body.get("model") not in self.known_models:
            return 404, model_not_found(str(body.get("model"))), {}
        if isinstance(action, (Answer, Malformed)):
            content = action.content
        else:
            content = json.dumps(self.judgment(body["messages"]))
        return 200, self.completion(body, content), {}

    def judgment(self, chat: list[dict[str, Any]]) -> dict[str, Any]:
        match = re.search(r"running the check '([^']+)'", chat[0]["content"])
        name = match.group(1) if match else ""
        template = CATALOGUE.get(name)
        if (self.judge_content and template is not None and template.output_type != "choices"
                and name != "custom_judge"):  # its output type is the request's, not listed
            inputs = json.loads(chat[1]["content"].split("\n", 1)[1])  # after "Inputs:"
            judged = support_judgment(template.output_type, inputs)
            if judged is not None:
                return judged
        if name in RECORDED:
            return RECORDED[name]
        return _DEFAULT if template is not None and name != "custom_judge" \
            else shape_judgment(chat, _DEFAULT["reason"])

    def __repr__(self) -> str:
        return f"<FakeJudge {self.url} requests={len(self.requests)}>"
