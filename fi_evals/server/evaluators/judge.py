"""Model-judged templates on any OpenAI-compatible chat-completions endpoint (the "judge").

Configured by ``fi-evals serve --judge-url URL --judge-model NAME`` (or ``FI_JUDGE_BASE_URL``,
``FI_JUDGE_MODEL``, ``FI_JUDGE_API_KEY``): OpenAI, vLLM, Ollama, llama.cpp... anything that
answers ``POST {base_url}/chat/completions``. A request's ``model`` picks the judge model,
with two exceptions that keep requests written for the hosted service working
(:meth:`JudgeClient.model_for`):

- the hosted service's own model names (``turing_flash``, ``turing_small``, ``turing_large``,
  ``protect``...: ``C.HOSTED_MODEL_PREFIXES``, ``C.HOSTED_MODEL_NAMES``) mean "the service's
  judge", so they are served by the configured judge model (``--judge-model``) and never sent
  to the provider;
- any other name the provider refuses as unknown (a 400/404/422 whose error names the model
  and says it does not exist, as OpenAI, vLLM, Ollama or LiteLLM word it) is retried once with
  the configured model, and remembered, so that later requests naming it go straight there.

The evaluation's reason says which model judged it (``[judge M for turing_small, ...]``).

How one evaluation runs (:class:`JudgeEvaluator`):

1. the template's prompt (``prompts.py``) and the item's inputs become chat messages;
2. :class:`JudgeClient` sends them: one ``requests.Session`` (pool as large as the
   concurrency), at most ``concurrency`` calls in flight per process (a semaphore), retries
   on 408/409/429/5xx, timeouts and connection errors with exponential backoff and full
   jitter, honouring ``Retry-After``, all inside the evaluation's time budget (``timeout``):
   the SDK's own retry policy (``fi_evals._retry``) with the judge's statuses and budget
   (:data:`JUDGE_RETRY`);
3. the answer is parsed into a pydantic model of the template's output type; a malformed
   answer is asked for again once (the judge is shown its answer and the problem), then the
   evaluation fails with the raw answer in its message;
4. the answer's ``usage`` (prompt and completion tokens) is recorded on the outcome, with its
   cost when prices are given (``--judge-price-in/--judge-price-out``, per 1M tokens: no
   built-in price list); the reason's tag says it (``[judge M, prompt P, 412+31 tokens]``).

Identical calls (endpoint, model, prompt version, sampling settings, inputs, params) are
answered from the judge cache (``judge_cache.py``) when the server has one: such an outcome is
``cached`` (its tag says ``cached``) and costs no judge call. Failures are never cached.

Errors (all :class:`~fi_evals.server.evaluators.base.EvaluationError`, so the item is recorded
``failed`` with the message, never a 500)::

    EvaluationError
     ├── JudgeUnreachable   connection errors, timeouts, 429/5xx after every retry or budget
     ├── JudgeRefused       a 4xx the judge will answer the same way again (bad key, model)
     │    └── JudgeModelUnknown   the 4xx says the provider does not know the model asked for
     └── JudgeAnswerError   the answer is not the JSON asked for, twice
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import re
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

import requests
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from requests.adapters import HTTPAdapter

from fi_evals import _constants as C
from fi_evals._retry import RetryPolicy, parse_retry_after
from fi_evals.catalogue import CATALOGUE, Template
from fi_evals.server.evaluators.base import (
    CACHED_TAG,
    BaseEvaluator,
    EvaluationError,
    ItemInputs,
    Outcome,
)
from fi_evals.server.evaluators.judge_budget import RateBudget, estimate_tokens
from fi_evals.server.evaluators.judge_cache import JudgeCache, cache_key
from fi_evals.server.evaluators.prompts import PROMPTS, JudgePrompt, custom_prompt, messages

__all__ = [
    "JUDGE_RETRY",
    "JUDGE_SAMPLING",
    "Completion",
    "CustomJudgeEvaluator",
    "JudgeAnswerError",
    "JudgeClient",
    "JudgeEvaluator",
    "JudgeModelUnknown",
    "JudgeRefused",
    "JudgeSettings",
    "JudgeUnreachable",
    "is_hosted_model",
    "judge_evaluators",
    "refuses_model",
]


log = logging.getLogger("fi_evals.server")

JUDGE_SAMPLING: dict[str, Any] = {"temperature": 0}
"""The sampling settings of every judge call (part of the judge cache's key)."""


class JudgeUnreachable(EvaluationError):
    """The judge could not be reached or kept failing until the time budget ran out."""


class JudgeRefused(EvaluationError):
    """The judge answered a 4xx that a retry would not change (wrong key, unknown model)."""


class JudgeModelUnknown(JudgeRefused):
    """The judge refused the request because it does not know the model asked for.

    Attributes:
        model: the model name the judge refused.
    """

    def __init__(self, message: str, model: str) -> None:
        super().__init__(message)
        self.model = model


class JudgeAnswerError(EvaluationError):
    """The judge's answer was not the structured answer asked for (after one retry)."""


_MISSING_MODEL_WORDS = re.compile(r"not[ _]found|does not exist|not exist|unknown|invalid model|"
                                  r"not supported|unsupported|no such|not available",
                                  re.IGNORECASE)
_MODEL_REFUSAL_STATUSES = frozenset({400, 404, 422})
_MAX_REFUSED_MODELS = 256  # names remembered as unknown (requests choose them: keep it bounded)


def is_hosted_model(name: str | None) -> bool:
    """True for the hosted service's own model names (``turing_small``, ``protect_flash``...)."""
    if not name:
        return False
    lowered = name.strip().lower()
    return lowered.startswith(C.HOSTED_MODEL_PREFIXES) or lowered in C.HOSTED_MODEL_NAMES


def refuses_model(status: int, text: str, model: str) -> bool:
    """True when a judge's error answer says it does not know ``model``.

    A 400, 404 or 422 whose body names the model and says it is missing, in the words of
    OpenAI (``The model `x` does not exist``, code ``model_not_found``), vLLM, Ollama (``model
    "x" not found``) or LiteLLM (``Invalid model name passed in model=x``). Naming the model is
    required, so that other 400s (a context too long, a bad parameter) never count.
    """
    return (status in _MODEL_REFUSAL_STATUSES and bool(model) and model in text
            and _MISSING_MODEL_WORDS.search(text) is not None)


@dataclass(frozen=True, kw_only=True)
class JudgeSettings:
    """Where the judge is and how hard to try.

    Attributes:
        base_url: the OpenAI-compatible base URL (``http://host:11434/v1``); a URL that already
            ends in ``/chat/completions`` is accepted too.
        model: judge model used when a request gives none.
        api_key: sent as ``Authorization: Bearer ...`` (never logged or shown in reprs).
        concurrency: judge calls in flight per process (``C.JUDGE_CONCURRENCY``).
        timeout: seconds one evaluation may spend on the judge, retries included
            (``C.JUDGE_TIMEOUT``).
        price_in: price of 1M prompt tokens (any currency; None: no cost is computed).
        price_out: price of 1M completion tokens (None: no cost is computed).
        rpm: the provider's requests per minute (None: learned from its rate-limit headers).
        tpm: the provider's tokens per minute (None: learned from its rate-limit headers).
    """

    base_url: str
    model: str | None = None
    api_key: str | None = field(default=None, repr=False)
    concurrency: int = C.JUDGE_CONCURRENCY
    timeout: float = C.JUDGE_TIMEOUT
    price_in: float | None = None
    price_out: float | None = None
    rpm: float | None = None
    tpm: float | None = None

    def __post_init__(self) -> None:
        for name in ("rpm", "tpm"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ValueError(f"judge {name} must be positive, not {value}")
        for name in ("price_in", "price_out"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise ValueError(f"judge {name} must be 0 or more, not {value}")
        if not re.match(r"^https?://[^/\s]+", self.base_url or ""):
            raise ValueError(f"the judge URL must be an http(s) URL, not {self.base_url!r}")
        if self.concurrency < 1:
            raise ValueError(f"judge concurrency must be at least 1, not {self.concurrency}")
        if not self.timeout > 0:
            raise ValueError(f"judge timeout must be positive, not {self.timeout}")

    @property
    def endpoint(self) -> str:
        base = self.base_url.rstrip("/")
        return base if base.endswith("/chat/completions") else base + "/chat/completions"

    def cost(self, prompt_tokens: int | None, completion_tokens: int | None) -> float | None:
        """What the tokens cost at the given prices; None unless both prices and counts are
        known."""
        if self.price_in is None or self.price_out is None or prompt_tokens is None \
                or completion_tokens is None:
            return None
        return (prompt_tokens * self.price_in + completion_tokens * self.price_out) / 1e6


@dataclass(frozen=True)
class Completion:
    """One judge answer: its text and the ``usage`` it reported (None: not reported)."""

    text: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


JUDGE_RETRY = RetryPolicy(
    max_attempts=C.JUDGE_MAX_ATTEMPTS, backoff_base=C.JUDGE_BACKOFF_BASE,
    backoff_max=C.JUDGE_BACKOFF_MAX, status_forcelist=C.JUDGE_RETRY_STATUS_CODES,
    retry_after_cap=math.inf, retry_after_jitter=False)
"""The judge's retries: the shared :class:`~fi_evals._retry.RetryPolicy` with the judge's
statuses (408, 409, 429 and any 5xx), attempts and backoff (full jitter); connection errors and
timeouts are retried; a ``Retry-After`` is waited exactly, however long, when it leaves time for
another attempt within the evaluation's budget."""


class _NoAnswer(Exception):
    """A judge request that got no HTTP answer, in the retry policy's terms (a
    :class:`~fi_evals._retry.ConnectionFailure`)."""

    def __init__(self, message: str, request_sent: bool | None) -> None:
        super().__init__(message)
        self.request_sent = request_sent


def _no_answer(exc: requests.RequestException) -> _NoAnswer:
    if isinstance(exc, requests.ConnectTimeout):
        return _NoAnswer("timed out", request_sent=False)
    if isinstance(exc, requests.Timeout):
        return _NoAnswer("timed out", request_sent=True)
    return _NoAnswer(f"connection error: {type(exc).__name__}", request_sent=None)


class JudgeClient:
    """One connection pool, one bounded pool of threads and one semaphore for the judge.

    Shared by every :class:`JudgeEvaluator` of a server (and thread-safe). ``cache`` (None:
    none) answers identical calls; ``counters`` counts calls, cache hits and tokens.
    """

    def __init__(self, settings: JudgeSettings, policy: RetryPolicy | None = None, *,
                 cache: JudgeCache | None = None, budget: Any = None) -> None:
        self.settings = settings
        self.policy = policy or JUDGE_RETRY
        self.cache = cache
        self.budget = budget if budget is not None else RateBudget(settings.rpm, settings.tpm)
        self.counters = {"calls": 0, "cache_hits": 0, "prompt_tokens": 0,
                         "completion_tokens": 0}
        self._counters_lock = threading.Lock()
        self.session = requests.Session()
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=settings.concurrency,
                              max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers["Content-Type"] = "application/json"
        if settings.api_key:
            self.session.headers["Authorization"] = f"Bearer {settings.api_key}"
        self.slots = threading.BoundedSemaphore(settings.concurrency)
        self.pool = ThreadPoolExecutor(max_workers=settings.concurrency,
                                       thread_name_prefix="fi-evals-judge")
        # Some OpenAI-compatible servers reject response_format; drop it after the first such
        # 400 instead of failing every evaluation.
        self._json_mode = True
        self._refused_models: set[str] = set()
        self._refused_lock = threading.Lock()

    def model_for(self, requested: str | None) -> str | None:
        """The model to ask the judge for, given a request's ``model``.

        The configured model (``settings.model``) when the request names none, names one of
        the hosted service's models, or names one this judge already refused as unknown (see
        :meth:`remember_refused`); else the requested name. None when nothing is configured
        and the request names no usable model.
        """
        configured = self.settings.model
        if not requested:
            return configured
        if is_hosted_model(requested) or requested in self._refused_models:
            return configured
        return requested

    def remember_refused(self, model: str) -> None:
        """Note that the judge does not know ``model`` (later requests skip it; bounded)."""
        with self._refused_lock:
            if len(self._refused_models) < _MAX_REFUSED_MODELS:
                self._refused_models.add(model)

    def count(self, **deltas: int) -> None:
        """Add to :attr:`counters` (thread-safe)."""
        with self._counters_lock:
            for name, delta in deltas.items():
                self.counters[name] += delta

    def complete(self, chat: list[dict[str, str]], model: str, deadline: float) -> str:
        """The judge's answer text to ``chat`` (see :meth:`completion`)."""
        return self.completion(chat, model, deadline).text

    def completion(self, chat: list[dict[str, str]], model: str,
                   deadline: float) -> Completion:
        """The judge's answer to ``chat``, with its ``usage``.

        Raises:
            JudgeUnreachable: connection errors, timeouts or 429/5xx until attempts or the
                budget ran out.
            JudgeRefused: a 4xx that would not change on retry.
            JudgeAnswerError: a 200 whose body is not a chat completion.
        """
        attempt, last = 0, "no attempt"
        started = time.monotonic()
        estimate = estimate_tokens(chat)
        while True:
            attempt += 1
            if not self.budget.acquire(estimate, deadline):
                raise self._unreachable(attempt - 1, started, "the provider's rate budget "
                                        f"leaves no call in time ({self.budget.to_dict()})")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._unreachable(attempt - 1, started, last or "time budget spent")
            retry_after = None
            try:
                response = self._post(chat, model, remaining)
            except _SlotTimeout:
                raise self._unreachable(attempt - 1, started, "no free judge slot in time "
                                        f"(--judge-concurrency {self.settings.concurrency})"
                                        ) from None
            except (requests.Timeout, requests.ConnectionError) as exc:
                failure = _no_answer(exc)
                last = str(failure)
                if self.policy.refusal(error=failure) is not None:
                    raise self._unreachable(attempt, started, last) from exc
            else:
                self.budget.observe(response.headers)
                if response.status_code == 200:
                    answer = _completion(response)
                    if answer.prompt_tokens is not None:
                        self.budget.correct(estimate, answer.prompt_tokens
                                            + (answer.completion_tokens or 0))
                    return answer
                if response.status_code == 400 and self._json_mode \
                        and "response_format" in response.text:
                    self._json_mode = False
                    attempt -= 1  # a capability probe, not a failure
                    continue
                if self.policy.refusal(status=response.status_code) is not None:
                    message = (f"the judge at {self.settings.endpoint} refused the request: "
                               f"HTTP {response.status_code}: {response.text[:300]}")
                    if refuses_model(response.status_code, response.text, model):
                        raise JudgeModelUnknown(message, model)
                    raise JudgeRefused(message)
                last = f"HTTP {response.status_code}"
                retry_after = parse_retry_after(response.headers.get(C.HEADER_RETRY_AFTER))
                if response.status_code == 429:  # the whole process slows down, not a thread
                    self.budget.throttle(retry_after)
            wait = self.policy.delay(attempt, retry_after, deadline - time.monotonic())
            if wait is None:
                raise self._unreachable(attempt, started, last)
            time.sleep(wait)

    def _post(self, chat: list[dict[str, str]], model: str, remaining: float) -> Any:
        if not self.slots.acquire(timeout=remaining):
            raise _SlotTimeout
        try:
            body: dict[str, Any] = {"model": model, "messages": chat, **JUDGE_SAMPLING}
            if self._json_mode:
                body["response_format"] = {"type": "json_object"}
            read = max(0.05, min(deadline_share(self.settings.timeout), remaining))
            self.count(calls=1)
            return self.session.post(self.settings.endpoint, data=json.dumps(body),
                                     timeout=(min(C.JUDGE_CONNECT_TIMEOUT, read), read))
        finally:
            self.slots.release()

    def _unreachable(self, attempts: int, started: float, last: str) -> JudgeUnreachable:
        return JudgeUnreachable(
            f"the judge at {self.settings.endpoint} was unreachable: {attempts} attempt(s) in "
            f"{time.monotonic() - started:.1f} s (budget {self.settings.timeout:g} s), "
            f"last: {last}")

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.session.close()
        if self.cache is not None:
            self.cache.close()

    def __repr__(self) -> str:
        return (f"<JudgeClient {self.settings.endpoint} model={self.settings.model!r} "
                f"concurrency={self.settings.concurrency}>")


class _SlotTimeout(Exception):
    """No judge slot became free within the evaluation's budget."""


def deadline_share(timeout: float) -> float:
    """Longest single attempt: a share of the budget, so that a hung call leaves a retry."""
    return timeout * C.JUDGE_ATTEMPT_SHARE


def _completion(response: Any) -> Completion:
    try:
        answer = response.json()
        content = answer["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise JudgeAnswerError(f"the judge's HTTP answer is not a chat completion "
                               f"({type(exc).__name__}): {response.text[:300]!r}") from exc
    if not isinstance(content, str):
        raise JudgeAnswerError(f"the judge's message content is not text: {content!r:.300}")
    usage = answer.get("usage") if isinstance(answer, dict) else None
    usage = usage if isinstance(usage, dict) else {}
    return Completion(content, _tokens(usage.get("prompt_tokens", usage.get("input_tokens"))),
                      _tokens(usage.get("completion_tokens", usage.get("output_tokens"))))


def _tokens(value: Any) -> int | None:
    """A token count from ``usage`` (None unless a non-negative integer)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 \
        else None


def _add(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else a + b


# ------------------------------------------------------------------ structured answers

class _Answer(BaseModel):
    model_config = ConfigDict(extra="ignore")
    reason: str = Field(min_length=1)


class PassFailAnswer(_Answer):
    verdict: Literal["Passed", "Failed"]

    @field_validator("verdict", mode="before")
    @classmethod
    def _spelling(cls, value: Any) -> Any:
        spelled = {"pass": "Passed", "passed": "Passed", "fail": "Failed", "failed": "Failed"}
        return spelled.get(value.strip().lower(), value) if isinstance(value, str) else value


class ScoreAnswer(_Answer):
    score: float = Field(ge=0.0, le=1.0, allow_inf_nan=False)


class ChoicesAnswer(_Answer):
    choices: list[str] = Field(min_length=1)


def _json_object(text: str) -> str:
    """The JSON object inside a judge's answer (tolerates code fences and prose around it)."""
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        raise ValueError("no JSON object in the answer")
    return text[start:end + 1]


def parse_answer(template: Template, multiple: bool, text: str) -> Outcome:
    """The :class:`Outcome` in a judge's answer text.

    Raises:
        ValueError: the answer is not the structured answer the template asks for.
    """
    try:
        raw = _json_object(text)
        if template.output_type == "Pass/Fail":
            pf = PassFailAnswer.model_validate_json(raw)
            return Outcome(pf.verdict, pf.reason.strip())
        if template.output_type == "score":
            sc = ScoreAnswer.model_validate_json(raw)
            return Outcome(round(sc.score, 4), sc.reason.strip())
        ch = ChoicesAnswer.model_validate_json(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'answer'}: {e['msg']}"
                             for e in exc.errors())
        raise ValueError(problems) from exc
    allowed = {c.lower(): c for c in template.choices or ()}
    unknown = [c for c in ch.choices if c.strip().lower() not in allowed]
    if unknown:
        raise ValueError(f"choices {unknown} are not among {list(allowed.values())}")
    chosen = list(dict.fromkeys(allowed[c.strip().lower()] for c in ch.choices))
    if not multiple and len(chosen) != 1:
        raise ValueError(f"exactly one choice is expected, not {chosen}")
    return Outcome(chosen, ch.reason.strip())


class JudgeEvaluator(BaseEvaluator):
    """A model-judged text template, asked of the judge behind ``client``."""

    def __init__(self, template: Template, client: JudgeClient) -> None:
        self.template = template
        self.prompt = PROMPTS[template.name]
        self.client = client

    def evaluate(self, inputs: ItemInputs, params: Mapping[str, Any],
                 model: str | None = None) -> Outcome:
        """Ask the judge about one item.

        Raises:
            EvaluationError: no judge model, or the judge is unreachable, refuses, or answers
                malformed JSON twice (the message quotes the raw answer).
        """
        chosen = self.client.model_for(model)
        if not chosen:
            how = (f"the hosted model name {model!r} is served by this server's judge model, so"
                   if model else "give `model` in the request, or")
            raise EvaluationError(f"no judge model: {how} start the server with --judge-model "
                                  "(FI_JUDGE_MODEL)")
        key = self._cache_key(chosen, inputs, params)
        hit = self._cached(key)
        if hit is not None:
            return hit
        deadline = time.monotonic() + self.client.settings.timeout
        template, prompt = self._prompt_for(params)
        chat = messages(template, inputs, prompt)
        problem = ""
        prompt_tokens: int | None = None
        completion_tokens: int | None = None
        for _ in range(C.JUDGE_PARSE_ATTEMPTS):
            answer, chosen = self._complete(chat, chosen, deadline)
            text = answer.text
            prompt_tokens = _add(prompt_tokens, answer.prompt_tokens)
            completion_tokens = _add(completion_tokens, answer.completion_tokens)
            self.client.count(prompt_tokens=answer.prompt_tokens or 0,
                              completion_tokens=answer.completion_tokens or 0)
            try:
                outcome = parse_answer(template, prompt.multiple, text)
            except ValueError as exc:
                problem = str(exc)
                chat = [*chat, {"role": "assistant", "content": text},
                        {"role": "user", "content": f"That answer is not valid ({problem}). "
                                                    "Answer again with only the JSON object."}]
                continue
            served = f" for {model}" if model and model != chosen else ""
            judged = {"output": outcome.output, "reason": outcome.reason,
                      "judge": f"{chosen}{served}", "prompt_tokens": prompt_tokens,
                      "completion_tokens": completion_tokens}
            self._keep(key, judged)
            return self._outcome(judged, cached=False)
        raise JudgeAnswerError(
            f"the judge's answer was malformed {C.JUDGE_PARSE_ATTEMPTS} times ({problem}); "
            f"raw answer: {text[:C.JUDGE_RAW_ANSWER_CHARS]!r}")

    def _prompt_for(self, params: Mapping[str, Any]) -> tuple[Template, JudgePrompt]:
        """The template (output type, choices) and prompt this request is judged with."""
        return self.template, self.prompt

    def _cache_key(self, model: str, inputs: ItemInputs, params: Mapping[str, Any]) -> str:
        return cache_key(endpoint=self.client.settings.endpoint, model=model,
                         prompt=self.prompt.tag, sampling=JUDGE_SAMPLING, inputs=inputs,
                         params=params)

    def _cached(self, key: str) -> Outcome | None:
        """The cached outcome under ``key`` (None: no cache, a miss, or the cache failed)."""
        if self.client.cache is None:
            return None
        try:
            judged = self.client.cache.get(key)
        except Exception as exc:  # noqa: BLE001 - a failing cache costs a call, never the item
            log.warning("judge cache unreadable (%s: %s): asking the judge",
                        type(exc).__name__, exc)
            return None
        if judged is None:
            return None
        self.client.count(cache_hits=1)
        return self._outcome(judged, cached=True)

    def _keep(self, key: str, judged: Mapping[str, Any]) -> None:
        if self.client.cache is None:
            return
        try:
            self.client.cache.put(key, judged)
        except Exception as exc:  # noqa: BLE001 - the outcome stands; the next call pays
            log.warning("judge cache not written (%s: %s)", type(exc).__name__, exc)

    def _outcome(self, judged: Mapping[str, Any], *, cached: bool) -> Outcome:
        """The outcome of a judgment (fresh or cached), its reason tagged with who judged it
        and what it cost."""
        prompt_tokens, completion_tokens = judged.get("prompt_tokens"), \
            judged.get("completion_tokens")
        tag = [f"judge {judged['judge']}", f"prompt {self.prompt.tag}"]
        if cached:
            return Outcome(judged["output"], f"{judged['reason']} [{', '.join(tag)}{CACHED_TAG}",
                           cached=True, prompt_tokens=0, completion_tokens=0,
                           cost=self.client.settings.cost(0, 0))
        cost = self.client.settings.cost(prompt_tokens, completion_tokens)
        if prompt_tokens is not None or completion_tokens is not None:
            tag.append(f"{prompt_tokens or 0}+{completion_tokens or 0} tokens")
        if cost is not None:
            tag.append(f"cost {cost:.6g}")
        return Outcome(judged["output"], f"{judged['reason']} [{', '.join(tag)}]",
                       prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                       cost=cost)

    def _complete(self, chat: list[dict[str, str]], model: str,
                  deadline: float) -> tuple[Completion, str]:
        """The judge's answer and the model that gave it.

        A model the judge refuses as unknown is replaced by the configured one, once (and
        remembered); without a configured model, or when that one is refused, the refusal
        stands.
        """
        try:
            return self.client.completion(chat, model, deadline), model
        except JudgeModelUnknown:
            configured = self.client.settings.model
            if not configured or configured == model:
                raise
            self.client.remember_refused(model)
        return self.client.completion(chat, configured, deadline), configured

    def evaluate_many(self, items: Sequence[ItemInputs], params: Mapping[str, Any],
                      model: str | None = None) -> list[Outcome | BaseException]:
        """The items of a request, ``concurrency`` at a time on the client's threads."""
        futures = [self.client.pool.submit(self.evaluate, inputs, params, model)
                   for inputs in items]
        results: list[Outcome | BaseException] = []
        for future in futures:
            exc = future.exception()
            results.append(exc if exc is not None else future.result())
        return results

    def __repr__(self) -> str:
        return f"<JudgeEvaluator {self.template.name!r} prompt={self.prompt.tag} {self.client!r}>"


class CustomJudgeEvaluator(JudgeEvaluator):
    """``custom_judge``: the request's ``criteria`` judged with its ``output_type``.

    The parameters' types and sizes are checked by the template's schema (a 400 naming the
    parameter); :meth:`check_params` adds the rules between them. The prompt is the versioned
    ``CUSTOM_JUDGE_FRAME`` around the criteria (``prompts.custom_prompt``); the answer is
    validated like any judge template's (a Pass/Fail verdict, a score in [0, 1], or labels
    from ``choices``): one that is not is asked for again once, then the item fails
    (``JudgeAnswerError``), never a made-up verdict. Same client, budget and cache as the
    others (the criteria and output type are in the cache key, as parameters).
    """

    def check_params(self, params: Mapping[str, Any]) -> None:
        """Raises EvaluationError naming the parameter: blank ``criteria``, ``choices``
        missing for (or given without) ``output_type: choices``, labels equal but for case,
        ``multiple`` without choices."""
        kind = params.get("output_type") or "Pass/Fail"
        if not str(params.get("criteria") or "").strip():
            raise EvaluationError("criteria: must say what the judge checks (it is blank)")
        choices = params.get("choices")
        if kind == "choices":
            if not choices:
                raise EvaluationError("choices: required with output_type choices (the labels "
                                      "the judge picks from, at least 2)")
            lowered = [str(c).strip().lower() for c in choices]
            if len(set(lowered)) != len(lowered) or not all(lowered):
                raise EvaluationError(f"choices: labels must differ (ignoring case and spaces) "
                                      f"and not be blank, not {list(choices)}")
        elif choices is not None:
            raise EvaluationError(f"choices: only with output_type choices (output_type is "
                                  f"{kind}); drop it or set output_type to choices")
        elif params.get("multiple"):
            raise EvaluationError(f"multiple: only with output_type choices (output_type is "
                                  f"{kind})")

    def _prompt_for(self, params: Mapping[str, Any]) -> tuple[Template, JudgePrompt]:
        kind = params.get("output_type") or "Pass/Fail"
        choices = tuple(str(c).strip() for c in params.get("choices") or ()) or None
        template = dataclasses.replace(self.template, output_type=kind, choices=choices)
        return template, custom_prompt(params)


def judge_evaluators(settings: JudgeSettings, cache: JudgeCache | None = None,
                     budget: Any = None) -> list[JudgeEvaluator]:
    """A judge evaluator for every model-judged text template, sharing one client (and
    ``cache``, None: no judge cache; ``budget``, None: a :class:`RateBudget` of this
    process); ``custom_judge`` gets a :class:`CustomJudgeEvaluator`."""
    client = JudgeClient(settings, cache=cache, budget=budget)
    return [(CustomJudgeEvaluator if t.name == "custom_judge" else JudgeEvaluator)(t, client)
            for t in CATALOGUE.values() if t.family == "judge"]
