"""The judge's rate budget: one pace for every judge call of a process (issue 17, point 1).

Providers limit requests and tokens per minute and answer 429 past them. :class:`RateBudget`
keeps two token buckets (requests, tokens) that every thread of the process draws from before
sending a judge call, so that the calls leave at the provider's pace instead of bouncing off
its limits:

- the limits come from ``--judge-rpm`` / ``--judge-tpm`` (``FI_JUDGE_RPM``, ``FI_JUDGE_TPM``:
  paced evenly, a burst of one second's worth) or, when not given, from the provider's
  answers: OpenAI's ``x-ratelimit-limit-requests``,
  ``x-ratelimit-remaining-requests``, ``x-ratelimit-reset-requests`` (and ``-tokens``), or
  Anthropic's ``anthropic-ratelimit-requests-limit/-remaining/-reset`` (and ``-tokens``);
  every answer's ``remaining`` brings the bucket down to what the provider says is left;
- a call's tokens are estimated before sending (:func:`estimate_tokens`: the prompt's
  characters / 4, plus an allowance for the answer) and corrected with the answer's
  ``usage``;
- a 429 pauses the whole budget (every thread) for its ``Retry-After`` (else one second) and
  empties the request bucket: the next calls leave at the refill pace.
"""

from __future__ import annotations

import math
import random
import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from fi_evals import _constants as C
from fi_evals._retry import parse_retry_after

__all__ = ["NoBudget", "RateBudget", "RedisRateBudget", "TokenBucket", "estimate_tokens",
           "judge_budget_for", "parse_duration"]

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str | None) -> float | None:
    """Seconds in an OpenAI reset duration (``1s``, ``6m0s``, ``59.5ms``, ``0.5``) or an
    Anthropic RFC 3339 reset time; None when unreadable."""
    if not text:
        return None
    text = text.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    parts = _DURATION.findall(text)
    if parts and "".join(n + u for n, u in parts) == text:
        return sum(float(n) * _UNIT[u] for n, u in parts)
    try:
        from datetime import UTC, datetime

        when = datetime.fromisoformat(text)  # Python 3.11 reads a trailing Z
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return max(0.0, when.timestamp() - time.time())
    except ValueError:
        return parse_retry_after(text)  # an HTTP date, read by the one Retry-After parser


def estimate_tokens(chat: list[dict[str, str]],
                    answer_allowance: int = C.JUDGE_ANSWER_TOKENS) -> int:
    """Tokens a judge call will likely cost: 1 per 4 characters of the prompt (OpenAI's rule
    of thumb), plus ``answer_allowance`` for the answer."""
    chars = sum(len(m.get("content") or "") for m in chat)
    return chars // 4 + 4 * len(chat) + answer_allowance


class TokenBucket:
    """``capacity`` units, refilled at ``rate`` per second; the level may go negative (a call
    that cost more than its estimate), which then delays the next ones."""

    def __init__(self, capacity: float, rate: float, now: float) -> None:
        self.capacity = float(capacity)
        self.rate = float(rate)
        self.level = float(capacity)
        self.stamp = now

    @classmethod
    def per_minute(cls, limit: float, now: float) -> TokenBucket:
        return cls(limit, limit / 60.0, now)

    def refill(self, now: float) -> None:
        if now > self.stamp:
            self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
            self.stamp = now

    def wait(self, cost: float) -> float:
        """Seconds until ``cost`` units are there (0: now)."""
        cost = min(cost, self.capacity)
        return 0.0 if self.level >= cost else (cost - self.level) / self.rate

    def __repr__(self) -> str:
        return f"<TokenBucket {self.level:.1f}/{self.capacity:g} +{self.rate:g}/s>"


class RateBudget:
    """Requests and tokens per minute shared by every thread of a process (thread-safe).

    Args:
        rpm: requests per minute (None: learned from the provider's headers).
        tpm: tokens per minute (None: learned from the provider's headers).
        clock, sleep: for tests.
    """

    def __init__(self, rpm: float | None = None, tpm: float | None = None, *,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.clock, self.sleep = clock, sleep
        now = clock()
        self.rpm, self.tpm = rpm, tpm
        # A limit given by the user bursts one second's worth at most: without the provider's
        # headers nothing says how much of the minute's quota may leave at once.
        self.requests = _configured(rpm, now) if rpm else None
        self.tokens = _configured(tpm, now) if tpm else None
        self.paused_until = 0.0
        self.throttled = 0
        self.waited = 0.0
        self._lock = threading.Lock()
        self._rng = random.Random()

    def acquire(self, tokens: int, deadline: float) -> bool:
        """Wait until one request and ``tokens`` tokens are in the budget, then take them.

        Returns False (taking nothing) when that would be after ``deadline`` (monotonic).
        """
        started = self.clock()
        while True:
            with self._lock:
                now = self.clock()
                wait = self._wait(now, tokens)
                if wait <= 0:
                    if self.requests is not None:
                        self.requests.level -= 1
                    if self.tokens is not None:
                        self.tokens.level -= tokens
                    self.waited += now - started
                    return True
            if now + wait > deadline:
                return False
            # a little jitter, so that the waiting threads do not all wake at once
            self.sleep(min(wait, 1.0) * (1.0 + 0.1 * self._rng.random()))

    def _wait(self, now: float, tokens: int) -> float:
        wait = self.paused_until - now
        for bucket, cost in ((self.requests, 1), (self.tokens, tokens)):
            if bucket is not None:
                bucket.refill(now)
                wait = max(wait, bucket.wait(cost))
        return wait

    def correct(self, estimated: int, actual: int | None) -> None:
        """Take the difference between a call's estimated and actual tokens (``usage``)."""
        if actual is None or self.tokens is None:
            return
        with self._lock:
            self.tokens.level += estimated - actual

    def observe(self, headers: Mapping[str, str]) -> None:
        """Learn limits and what is left from a provider's ``x-ratelimit-*`` (OpenAI) or
        ``anthropic-ratelimit-*`` headers."""
        lowered = {k.lower(): v for k, v in headers.items()}
        with self._lock:
            now = self.clock()
            for kind in ("requests", "tokens"):
                limit = _number(lowered.get(f"x-ratelimit-limit-{kind}")
                                or lowered.get(f"anthropic-ratelimit-{kind}-limit"))
                remaining = _number(lowered.get(f"x-ratelimit-remaining-{kind}")
                                    or lowered.get(f"anthropic-ratelimit-{kind}-remaining"))
                self._learn(kind, limit, remaining, now)

    def _learn(self, kind: str, limit: float | None, remaining: float | None,
               now: float) -> None:
        bucket: TokenBucket | None = getattr(self, kind)
        configured = self.rpm if kind == "requests" else self.tpm
        if bucket is None and limit:
            bucket = TokenBucket.per_minute(limit, now)
            setattr(self, kind, bucket)
        elif bucket is not None and limit and not configured and limit != bucket.capacity:
            bucket.capacity, bucket.rate = limit, limit / 60.0
        if bucket is not None and remaining is not None:
            bucket.refill(now)
            bucket.level = min(bucket.level, remaining)

    def throttle(self, retry_after: float | None) -> None:
        """A 429: pause every thread for ``retry_after`` seconds (else one) and empty the
        request bucket."""
        with self._lock:
            now = self.clock()
            pause = retry_after if retry_after is not None and math.isfinite(retry_after) \
                else C.JUDGE_THROTTLE_PAUSE
            self.paused_until = max(self.paused_until, now + pause)
            self.throttled += 1
            if self.requests is not None:
                self.requests.refill(now)
                self.requests.level = min(self.requests.level, 0.0)

    def to_dict(self) -> dict[str, Any]:
        """What the budget knows (for logs and the benchmark)."""
        with self._lock:
            return {"rpm": self.requests.capacity if self.requests else None,
                    "tpm": self.tokens.capacity if self.tokens else None,
                    "throttled": self.throttled, "waited_seconds": round(self.waited, 3)}

    def __repr__(self) -> str:
        return f"<RateBudget requests={self.requests!r} tokens={self.tokens!r}>"


def _configured(per_minute: float, now: float) -> TokenBucket:
    rate = per_minute / 60.0
    return TokenBucket(max(1.0, rate * C.JUDGE_BUDGET_BURST_SECONDS), rate, now)


def _number(text: str | None) -> float | None:
    try:
        value = float(text) if text is not None else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) and value >= 0 else None


class NoBudget:
    """No pacing at all: every thread sends when it likes (the behaviour before the budget;
    for the benchmark's comparison). Same interface as :class:`RateBudget`."""

    throttled = 0

    def acquire(self, tokens: int, deadline: float) -> bool:
        return True

    def correct(self, estimated: int, actual: int | None) -> None:
        pass

    def observe(self, headers: Mapping[str, str]) -> None:
        pass

    def throttle(self, retry_after: float | None) -> None:
        pass

    def to_dict(self) -> dict[str, Any]:
        return {"budget": "none"}


_REDIS_SCRIPT = """
local h = KEYS[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local function num(f)
  local v = redis.call('HGET', h, f); if v then return tonumber(v) end; return nil
end
local function refill(kind)
  local cap = num(kind .. '_cap')
  if not cap then return end
  local rate = num(kind .. '_rate')
  local level = num(kind .. '_level') or cap
  local stamp = num(kind .. '_stamp') or now
  if now > stamp then level = math.min(cap, level + (now - stamp) * rate) end
  redis.call('HSET', h, kind .. '_level', tostring(level), kind .. '_stamp', tostring(now))
end
refill('requests')
refill('tokens')
redis.call('EXPIRE', h, 3600)
local op = ARGV[1]
if op == 'acquire' then
  local costs = {requests = 1, tokens = tonumber(ARGV[2])}
  local wait = (num('paused') or 0) - now
  for kind, cost in pairs(costs) do
    local cap = num(kind .. '_cap')
    if cap then
      local c = math.min(cost, cap)
      local level = num(kind .. '_level')
      if level < c then wait = math.max(wait, (c - level) / num(kind .. '_rate')) end
    end
  end
  if wait <= 0 then
    for kind, cost in pairs(costs) do
      if num(kind .. '_cap') then redis.call('HINCRBYFLOAT', h, kind .. '_level', -cost) end
    end
    return '0'
  end
  return tostring(wait)
elseif op == 'configure' then
  redis.call('HSET', h, ARGV[2] .. '_cap', ARGV[3], ARGV[2] .. '_rate', ARGV[4],
             ARGV[2] .. '_configured', '1')
  if not num(ARGV[2] .. '_level') then
    redis.call('HSET', h, ARGV[2] .. '_level', ARGV[3], ARGV[2] .. '_stamp', tostring(now))
  end
elseif op == 'learn' then
  local kind, limit, remaining = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
  if limit and limit > 0 and not num(kind .. '_configured') and num(kind .. '_cap') ~= limit then
    redis.call('HSET', h, kind .. '_cap', tostring(limit), kind .. '_rate', tostring(limit / 60))
    if not num(kind .. '_level') then
      redis.call('HSET', h, kind .. '_level', tostring(limit), kind .. '_stamp', tostring(now))
    end
  end
  if remaining and num(kind .. '_cap') then
    redis.call('HSET', h, kind .. '_level', tostring(math.min(num(kind .. '_level'), remaining)))
  end
elseif op == 'throttle' then
  redis.call('HSET', h, 'paused', tostring(math.max(num('paused') or 0, now + tonumber(ARGV[2]))))
  if num('requests_cap') then
    redis.call('HSET', h, 'requests_level', tostring(math.min(num('requests_level'), 0)))
  end
elseif op == 'correct' then
  if num('tokens_cap') then redis.call('HINCRBYFLOAT', h, 'tokens_level', ARGV[2]) end
end
return '0'
"""


class RedisRateBudget:
    """The :class:`RateBudget` of a whole deployment: its buckets live in the Redis of
    ``--backend redis://`` (one hash, updated by a Lua script with Redis's clock), so every API
    node and Celery worker draws from one budget. Same interface as :class:`RateBudget`.

    Args:
        backend: the ``--backend`` URL; the hash is ``<prefix>judge-budget:<endpoint>``.
        endpoint: the judge endpoint (one budget per provider endpoint).
        rpm, tpm: configured limits (None: learned from the provider's headers).
    """

    def __init__(self, backend: str, endpoint: str, rpm: float | None = None,
                 tpm: float | None = None, *, sleep: Callable[[float], None] = time.sleep
                 ) -> None:
        import redis

        from fi_evals.server.redis_backend.settings import BackendURL

        parsed = BackendURL.parse(backend)
        self.redis = redis.Redis.from_url(parsed.redis_url, decode_responses=True,
                                          socket_timeout=30)
        self.key = f"{parsed.prefix}judge-budget:{endpoint}"
        self._script = self.redis.register_script(_REDIS_SCRIPT)
        self.sleep = sleep
        self.throttled = 0
        self._rng = random.Random()
        for kind, limit in (("requests", rpm), ("tokens", tpm)):
            if limit:
                rate = limit / 60.0
                self._call("configure", kind, repr(max(1.0, rate * C.JUDGE_BUDGET_BURST_SECONDS)),
                           repr(rate))

    def _call(self, *args: str) -> float:
        return float(self._script(keys=[self.key], args=list(args)))

    def acquire(self, tokens: int, deadline: float) -> bool:
        while True:
            wait = self._call("acquire", str(int(tokens)))
            if wait <= 0:
                return True
            if time.monotonic() + wait > deadline:
                return False
            self.sleep(min(wait, 1.0) * (1.0 + 0.1 * self._rng.random()))

    def correct(self, estimated: int, actual: int | None) -> None:
        if actual is not None:
            self._call("correct", str(estimated - actual))

    def observe(self, headers: Mapping[str, str]) -> None:
        lowered = {k.lower(): v for k, v in headers.items()}
        for kind in ("requests", "tokens"):
            limit = _number(lowered.get(f"x-ratelimit-limit-{kind}")
                            or lowered.get(f"anthropic-ratelimit-{kind}-limit"))
            remaining = _number(lowered.get(f"x-ratelimit-remaining-{kind}")
                                or lowered.get(f"anthropic-ratelimit-{kind}-remaining"))
            if limit is not None or remaining is not None:
                self._call("learn", kind, "" if limit is None else repr(limit),
                           "" if remaining is None else repr(remaining))

    def throttle(self, retry_after: float | None) -> None:
        pause = retry_after if retry_after is not None and math.isfinite(retry_after) \
            else C.JUDGE_THROTTLE_PAUSE
        self.throttled += 1
        self._call("throttle", repr(pause))

    def to_dict(self) -> dict[str, Any]:
        state = self.redis.hgetall(self.key)
        fields = {(k.decode() if isinstance(k, bytes) else k): v for k, v in state.items()}
        return {"key": self.key, "throttled": self.throttled,
                **{k: v for k, v in fields.items() if k.endswith(("_cap", "_level"))}}

    def __repr__(self) -> str:
        return f"<RedisRateBudget {self.key}>"


def judge_budget_for(config: Any, endpoint: str) -> Any:
    """The rate budget of a :class:`~fi_evals.server.config.ServerConfig`: in the Redis of
    ``--backend redis://`` (shared by every node and worker), else in this process."""
    rpm, tpm = getattr(config, "judge_rpm", None), getattr(config, "judge_tpm", None)
    backend = getattr(config, "backend", None)
    if backend and str(backend).startswith(("redis://", "rediss://")):
        return RedisRateBudget(backend, endpoint, rpm, tpm)
    return RateBudget(rpm, tpm)
