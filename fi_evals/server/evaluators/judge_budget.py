"""The judge's rate budget: one pace for every judge call of a process (issue 17, point 1).

Providers limit requests and tokens per minute and answer 429 past them. :class:`RateBudget`
keeps two token buckets (requests, tokens) that every thread of the process draws from before
sending a judge call, so that the calls leave at the provider's pace instead of bouncing off
its limits:

- the limits come from ``--judge-rpm`` / ``--judge-tpm`` (``FI_JUDGE_RPM``, ``FI_JUDGE_TPM``:
  paced evenly, a burst of one second's worth) or, when not given, from the provider's answers: OpenAI's ``x-ratelimit-limit-requests``,
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
from email.utils import parsedate_to_datetime
from typing import Any

from fi_evals import _constants as C

__all__ = ["NoBudget", "RateBudget", "TokenBucket", "estimate_tokens", "parse_duration"]

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
        from datetime import datetime, timezone

        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        return max(0.0, when.timestamp() - time.time())
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(text).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


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
