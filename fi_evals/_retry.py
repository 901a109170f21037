"""Retry and backoff policies as immutable values, for every HTTP caller (PROTOCOL.md section C).

A neutral module, like :mod:`fi_evals.protocol` and :mod:`fi_evals.catalogue`: it imports nothing
from the client or the server and no HTTP library, so both sides use it. The SDK's transport
(and through it the batch engine and the score logger) retries with :class:`RetryPolicy`; waits
poll with :class:`PollBackoff`; the score logger's reconnect waits on a :class:`Backoff`; the
server's judge client retries with a :class:`RetryPolicy` of its own statuses and budget
(``fi_evals.server.evaluators.judge``). Every ``Retry-After`` header is read by
:func:`parse_retry_after`.

:class:`Backoff` is the one backoff: a ceiling growing from ``initial`` by ``multiplier`` per
step up to ``maximum``, and a delay drawn under it, from ``[0, ceiling]`` (full jitter, the
default: PROTOCOL.md C) or from ``[ceiling/2, ceiling]`` (equal jitter: the score logger's
reconnect probes).

:class:`RetryPolicy` answers one question, "after this attempt failed like this, wait how
long, or stop?", through :meth:`RetryPolicy.decide`. Every part of the answer is a small named
predicate or formula, so it can be read and unit tested without a network:

- :meth:`RetryPolicy.is_retryable_status`: ``status_forcelist``, by default 408, 429, 502, 503
  and 504 (``RETRY_STATUS_CODES``).
- :meth:`RetryPolicy.is_server_error`: any 5xx, retried when the request cannot run twice
  (``retry_server_errors``). Every other status (400, 401, 403, 404, 409, 413, 422...) is the
  caller's to fix and never retried.
- :meth:`RetryPolicy.is_retryable_error`: a request that got no HTTP answer (a
  :class:`ConnectionFailure`: refused, reset, timed out). Programming errors never are.
- :meth:`RetryPolicy.is_ambiguous`: the request may have run on the server (read timeout,
  reset after sending, 408, any 5xx but 503). Retrying it is safe only when it cannot run
  twice: a GET, bulk status, or a POST whose ``Idempotency-Key`` the server honours (it
  announced ``idempotency``). 429 and 503 promise that nothing ran: always retried.
- :meth:`RetryPolicy.backoff`: the policy's :class:`Backoff` with full jitter,
  ``uniform(0, min(backoff_max, backoff_base * multiplier ** (attempt - 1)))``.
- ``Retry-After`` (seconds or an HTTP date) is honoured up to ``retry_after_cap``, as a floor
  with the jitter added on top (clients throttled in the same second must not return in the
  same millisecond; ``retry_after_jitter=False`` waits exactly what the server asked); when the
  server asks for longer than the cap or the caller's remaining deadline, the policy gives up
  at once instead of sleeping into a certain failure.

The caller says which requests cannot run twice with ``decide(idempotent=...)``:

============================  =========================  ====================================
failure                       idempotent request         POST to a server without idempotency
============================  =========================  ====================================
429, 503                      retried                    retried
408, 502, 504, other 5xx      retried                    not retried (it may have run)
refused, connect timeout      retried                    retried (it never left)
reset, read timeout           retried                    not retried (it may have run)
any other status (400...)     never                      never
============================  =========================  ====================================

:class:`PollBackoff` is the backoff of polls for unfinished evaluations: from
``POLL_INITIAL_DELAY`` doubling up to ``POLL_MAX_DELAY``, full jitter, at least the server's
``Retry-After``, never past the deadline.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field, replace
from email.utils import parsedate_to_datetime
from typing import Literal, Protocol, runtime_checkable

from fi_evals._constants import (
    POLL_BACKOFF_MULTIPLIER,
    POLL_INITIAL_DELAY,
    POLL_MAX_DELAY,
    RETRY_AFTER_CAP,
    RETRY_BACKOFF_BASE,
    RETRY_BACKOFF_MAX,
    RETRY_BACKOFF_MULTIPLIER,
    RETRY_MAX_ATTEMPTS,
    RETRY_STATUS_CODES,
)

__all__ = ["Backoff", "ConnectionFailure", "Jitter", "PollBackoff", "RetryDecision",
           "RetryPolicy", "parse_retry_after"]

# Answers that promise the request did not run (PROTOCOL.md section C): safe to repeat always.
_NOTHING_RAN_STATUSES = frozenset({429, 503})

Jitter = Literal["full", "equal"]
"""How a :class:`Backoff` draws under its ceiling: ``full`` from ``[0, ceiling]``, ``equal``
from ``[ceiling/2, ceiling]``."""


class _Uniform(Protocol):
    def uniform(self, a: float, b: float) -> float: ...


@runtime_checkable
class ConnectionFailure(Protocol):
    """An exception that means "no HTTP answer", in whatever HTTP library's terms.

    Any exception with a ``request_sent`` attribute is one: ``False`` when the request surely
    never reached the server (refused, DNS, connect timeout), so that repeating it cannot run
    anything twice; ``True`` when it may have (read timeout, reset after sending, a truncated
    answer); ``None`` when unknown (treated like ``True``). The SDK's
    :class:`~fi_evals.APIConnectionError` is one; the judge client wraps ``requests``'
    exceptions in one.
    """

    request_sent: bool | None


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date.

    Args:
        value: the header value, or None.
        now: the current time as a POSIX timestamp (tests); defaults to ``time.time()``.

    Returns:
        A non-negative, finite number of seconds, or None when the header is absent or
        unreadable.
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter: the one schedule behind every wait between attempts.

    Attributes:
        initial: the first ceiling in seconds.
        maximum: the largest ceiling.
        multiplier: growth of the ceiling per step.
        jitter: ``full`` (default) draws the delay from ``[0, ceiling]``, ``equal`` from
            ``[ceiling/2, ceiling]``.
    """

    initial: float
    maximum: float
    multiplier: float = 2.0
    jitter: Jitter = field(default="full", kw_only=True)

    def __post_init__(self) -> None:
        if self.initial < 0 or self.maximum < 0:
            raise ValueError("delays must be non-negative")
        if self.jitter not in ("full", "equal"):
            raise ValueError(f"jitter must be 'full' or 'equal', not {self.jitter!r}")

    def ceiling(self, step: int) -> float:
        """The largest delay after ``step`` earlier steps (0-based)."""
        try:
            grown = self.initial * self.multiplier ** max(0, step)
        except OverflowError:  # thousands of steps: long past the maximum
            grown = math.inf
        return min(self.maximum, grown)

    def sample(self, step: int, rng: _Uniform = random) -> float:
        """A jittered delay for ``step`` (0-based); ``rng`` is the source of jitter."""
        ceiling = self.ceiling(step)
        low = ceiling / 2 if self.jitter == "equal" else 0.0
        return rng.uniform(low, ceiling)


@dataclass(frozen=True)
class RetryDecision:
    """The policy's answer: retry after ``delay`` seconds, or stop (``reason`` says why)."""

    retry: bool
    delay: float = 0.0
    reason: str = ""

    def __bool__(self) -> bool:
        return self.retry


@dataclass(frozen=True)
class RetryPolicy:
    """When and how long to wait before retrying one HTTP request.

    Attributes:
        max_attempts: attempts in all, the first included (``RETRY_MAX_ATTEMPTS``); 1 disables
            retries.
        backoff_base: the first backoff ceiling in seconds (``RETRY_BACKOFF_BASE``).
        backoff_max: the largest backoff ceiling (``RETRY_BACKOFF_MAX``).
        multiplier: growth of the ceiling per attempt (``RETRY_BACKOFF_MULTIPLIER``).
        retry_after_cap: the longest ``Retry-After`` honoured (``RETRY_AFTER_CAP``); a longer
            ask stops the retries.
        status_forcelist: statuses worth retrying (``RETRY_STATUS_CODES``); those that may
            have run (:meth:`is_ambiguous`) only when the request cannot run twice.
        retry_server_errors: also retry any other 5xx (500 above all) when the request
            cannot run twice (``decide(idempotent=True)``).
        retry_connect: retry failures to connect (the request never left).
        retry_read: retry read timeouts and resets (ambiguous: see :meth:`is_ambiguous`).
        retry_after_jitter: add the backoff's jitter on top of a ``Retry-After`` (True), or
            wait exactly what the server asked (False).
    """

    max_attempts: int = RETRY_MAX_ATTEMPTS
    backoff_base: float = RETRY_BACKOFF_BASE
    backoff_max: float = RETRY_BACKOFF_MAX
    multiplier: float = RETRY_BACKOFF_MULTIPLIER
    retry_after_cap: float = RETRY_AFTER_CAP
    status_forcelist: frozenset[int] = field(default=RETRY_STATUS_CODES)
    retry_server_errors: bool = True
    retry_connect: bool = True
    retry_read: bool = True
    retry_after_jitter: bool = True

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.backoff_base < 0 or self.backoff_max < 0 or self.retry_after_cap < 0:
            raise ValueError("delays must be non-negative")

    @classmethod
    def none(cls) -> RetryPolicy:
        """A policy that never retries."""
        return cls(max_attempts=1)

    def with_(self, **changes: object) -> RetryPolicy:
        """A copy with some fields changed (the policy itself never changes)."""
        return replace(self, **changes)  # type: ignore[arg-type]

    # ------------------------------------------------------------------ predicates

    def is_retryable_status(self, status: int) -> bool:
        """A status worth retrying whatever its kind (``status_forcelist``)."""
        return status in self.status_forcelist

    @staticmethod
    def is_server_error(status: int) -> bool:
        """A 5xx: transient as far as the client knows, retried when the request cannot run
        twice (a bug that answers 500 every time only costs the attempts)."""
        return 500 <= status < 600

    @staticmethod
    def is_connection_error(error: BaseException) -> bool:
        """The request surely never reached the server (refused, DNS, connect timeout)."""
        return isinstance(error, ConnectionFailure) and error.request_sent is False

    @staticmethod
    def is_read_error(error: BaseException) -> bool:
        """The request may have reached the server: read timeout, reset, truncated answer."""
        return isinstance(error, ConnectionFailure) and error.request_sent is not False

    def is_retryable_error(self, error: BaseException) -> bool:
        """Connection trouble worth retrying. Programming errors never are."""
        if self.is_connection_error(error):
            return self.retry_connect
        if self.is_read_error(error):
            return self.retry_read
        return False

    @classmethod
    def is_ambiguous(cls, *, status: int | None = None,
                     error: BaseException | None = None) -> bool:
        """True when the failed request may have run on the server all the same.

        A read error, a 408, or any 5xx but 503: a 500 may come from a handler that ran and
        stored its work before failing (or from a proxy after it did).
        """
        if error is not None:
            return cls.is_read_error(error)
        if status is None or status in _NOTHING_RAN_STATUSES:
            return False
        return status == 408 or cls.is_server_error(status)

    def refusal(self, *, status: int | None = None, error: BaseException | None = None,
                idempotent: bool = True) -> str | None:
        """Why this failure is never retried, whatever the attempts and time left; None when
        it is worth another attempt (see :meth:`decide` for the arguments)."""
        if status is None and error is None:
            return "nothing failed"
        if error is not None and not self.is_retryable_error(error):
            return f"{type(error).__name__} is not retryable"
        if (status is not None and error is None and not self.is_retryable_status(status)
                and not (self.retry_server_errors and self.is_server_error(status))):
            return f"status {status} is not retryable"
        if not idempotent and self.is_ambiguous(status=status, error=error):
            return "the request may have run and the server does not announce idempotency"
        return None

    # ------------------------------------------------------------------ delays

    @property
    def schedule(self) -> Backoff:
        """The policy's backoff (full jitter; step 0 follows the first attempt)."""
        return Backoff(self.backoff_base, self.backoff_max, self.multiplier)

    def backoff(self, attempt: int, rng: _Uniform = random) -> float:
        """Full-jitter delay after failed attempt number ``attempt`` (1-based)."""
        return self.schedule.sample(attempt - 1, rng)

    def delay(self, attempt: int, retry_after: float | None = None,
              remaining: float | None = None, rng: _Uniform = random) -> float | None:
        """Seconds to wait after retryable failed attempt ``attempt`` (1-based), or None to
        stop: attempts spent, a ``Retry-After`` over the cap, or a wait past ``remaining``."""
        decision = self._wait(attempt, retry_after, remaining, rng)
        return decision.delay if decision.retry else None

    def decide(self, attempt: int, *, status: int | None = None,
               error: BaseException | None = None, retry_after: float | None = None,
               remaining: float | None = None, idempotent: bool = True,
               rng: _Uniform = random) -> RetryDecision:
        """Wait how long before the next attempt, or stop?

        Args:
            attempt: the attempt that just failed, 1-based.
            status: its HTTP status, when the server answered.
            error: the exception, when it did not (a :class:`ConnectionFailure`).
            retry_after: seconds from the answer's ``Retry-After`` header, already parsed.
            remaining: seconds left before the caller's deadline, or None for no deadline.
            idempotent: True when repeating the request cannot run it twice: a GET, bulk
                status, or a POST carrying its ``Idempotency-Key`` to a server that announced
                ``idempotency``. False for a POST to a server without it: then nothing that
                may have run (:meth:`is_ambiguous`) is retried, a 500 included.
            rng: source of jitter (tests pass a seeded ``random.Random``).

        Returns:
            A :class:`RetryDecision`; its ``delay`` never exceeds ``remaining``.
        """
        why = self.refusal(status=status, error=error, idempotent=idempotent)
        if why is not None:
            return RetryDecision(False, reason=why)
        return self._wait(attempt, retry_after, remaining, rng)

    def _wait(self, attempt: int, retry_after: float | None, remaining: float | None,
              rng: _Uniform) -> RetryDecision:
        if attempt >= self.max_attempts:
            return RetryDecision(False, reason=f"gave up after {attempt} attempts")
        if retry_after is not None and retry_after > self.retry_after_cap:
            return RetryDecision(False, reason=f"server asked to wait {retry_after:g}s, over "
                                               f"the {self.retry_after_cap:g}s cap")
        if retry_after is None:
            delay = self.backoff(attempt, rng)
        elif self.retry_after_jitter:
            # A floor, with the jitter on top: clients told "1 s" together must not all come
            # back in the same millisecond (they would be throttled together again).
            delay = retry_after + self.backoff(attempt, rng)
        else:
            delay = retry_after
        if remaining is not None and delay >= remaining:
            return RetryDecision(False, reason=f"waiting {delay:.2f}s would pass the deadline "
                                               f"({max(0.0, remaining):.2f}s left)")
        return RetryDecision(True, delay, reason="retrying")

    def __repr__(self) -> str:
        return (f"RetryPolicy(max_attempts={self.max_attempts}, backoff={self.backoff_base:g}"
                f"..{self.backoff_max:g}s x{self.multiplier:g}, "
                f"retry_after_cap={self.retry_after_cap:g}s, "
                f"statuses={sorted(self.status_forcelist)}, "
                f"server_errors={self.retry_server_errors})")


@dataclass(frozen=True)
class PollBackoff(Backoff):
    """How long to wait between polls of unfinished evaluations: a :class:`Backoff` with the
    poll defaults, the server's ``Retry-After`` as a floor, and a deadline.

    Attributes:
        initial: the first ceiling in seconds (``POLL_INITIAL_DELAY``).
        maximum: the largest ceiling (``POLL_MAX_DELAY``).
        multiplier: growth per poll (``POLL_BACKOFF_MULTIPLIER``).
        retry_after_cap: the server's ``Retry-After`` is honoured up to this many seconds.
    """

    initial: float = POLL_INITIAL_DELAY
    maximum: float = POLL_MAX_DELAY
    multiplier: float = POLL_BACKOFF_MULTIPLIER
    retry_after_cap: float = POLL_MAX_DELAY

    def __post_init__(self) -> None:
        if self.initial <= 0 or self.maximum < self.initial:
            raise ValueError("need 0 < initial <= maximum")
        super().__post_init__()

    def delay(self, poll: int, *, retry_after: float | None = None,
              remaining: float | None = None, rng: _Uniform = random) -> float | None:
        """Seconds to sleep before the next poll, or None when the deadline has passed.

        Full jitter on ``[0, ceiling]`` keeps many pollers apart. There is no floor: the
        ceiling doubles per poll, so a wait of T seconds makes about ``log2(T / initial)`` plus
        ``2 T / maximum`` polls on average, never a busy loop; the server's ``Retry-After``
        (capped at ``retry_after_cap``) is the floor when it sends one, as fi-evals servers do
        for every unfinished answer. The result never passes ``remaining``.

        Args:
            poll: how many polls were already made for this wait (0-based).
            retry_after: the last answer's ``Retry-After`` in seconds, or None.
            remaining: seconds left before the caller's deadline, or None for no deadline.
            rng: source of jitter.
        """
        if remaining is not None and remaining <= 0:
            return None
        delay = self.sample(poll, rng)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.retry_after_cap))
        if remaining is not None:
            delay = min(delay, remaining)
        return delay
