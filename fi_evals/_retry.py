"""Retry and poll policies as immutable values (PROTOCOL.md section C).

:class:`RetryPolicy` answers one question, "after this attempt failed like this, wait how
long, or stop?", through :meth:`RetryPolicy.decide`. Every part of the answer is a small named
predicate or formula, so it can be read and unit tested without a network:

- :meth:`RetryPolicy.is_retryable_status`: 408, 429, 502, 503, 504 (``RETRY_STATUS_CODES``);
  400, 401, 403, 404, 413 and 422 are the caller's to fix and never retried.
- :meth:`RetryPolicy.is_server_error`: any other 5xx (500 above all), retried only when the
  request cannot run twice (``retry_server_errors``).
- :meth:`RetryPolicy.is_retryable_error`: connection failures and timeouts.
- :meth:`RetryPolicy.is_ambiguous`: the request may have run on the server (read timeout,
  reset after sending, 408, any 5xx but 503). Retrying it is safe only when it cannot run
  twice: a GET, bulk status, or a POST whose ``Idempotency-Key`` the server honours (it
  announced ``idempotency``). 429 and 503 promise that nothing ran: always retried.
- :meth:`RetryPolicy.backoff`: exponential delay with full jitter,
  ``uniform(0, min(backoff_max, backoff_base * multiplier ** (attempt - 1)))``.
- ``Retry-After`` (seconds or an HTTP date) is honoured up to ``retry_after_cap``, as a floor
  with the jitter added on top (clients throttled in the same second must not return in the
  same millisecond); when the server asks for longer than the caller's remaining deadline,
  the policy gives up at once instead of sleeping into a certain failure.

The caller says which requests cannot run twice with ``decide(idempotent=...)``:

============================  =========================  ====================================
failure                       idempotent request         POST to a server without idempotency
============================  =========================  ====================================
429, 503                      retried                    retried
408, 502, 504, other 5xx      retried                    not retried (it may have run)
refused, connect timeout      retried                    retried (it never left)
reset, read timeout           retried                    not retried (it may have run)
400, 401, 403, 404, 413, 422  never                      never
============================  =========================  ====================================

:class:`PollBackoff` is the same idea for polling unfinished evaluations: from
``POLL_INITIAL_DELAY`` doubling up to ``POLL_MAX_DELAY``, full jitter, at least the server's
``Retry-After``, never past the deadline.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from typing import Protocol

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
from fi_evals._exceptions import APIConnectionError

__all__ = ["PollBackoff", "RetryDecision", "RetryPolicy"]

# Answers that promise the request did not run (PROTOCOL.md section C): safe to repeat always.
_NOTHING_RAN_STATUSES = frozenset({429, 503})


class _Uniform(Protocol):
    def uniform(self, a: float, b: float) -> float: ...


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
        return isinstance(error, APIConnectionError) and error.request_sent is False

    @staticmethod
    def is_read_error(error: BaseException) -> bool:
        """The request may have reached the server: read timeout, reset, truncated answer."""
        return isinstance(error, APIConnectionError) and error.request_sent is not False

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

    # ------------------------------------------------------------------ delays

    def backoff(self, attempt: int, rng: _Uniform = random) -> float:
        """Full-jitter delay after failed attempt number ``attempt`` (1-based)."""
        ceiling = min(self.backoff_max,
                      self.backoff_base * self.multiplier ** max(0, attempt - 1))
        return rng.uniform(0.0, ceiling)

    def decide(self, attempt: int, *, status: int | None = None,
               error: BaseException | None = None, retry_after: float | None = None,
               remaining: float | None = None, idempotent: bool = True,
               rng: _Uniform = random) -> RetryDecision:
        """Wait how long before the next attempt, or stop?

        Args:
            attempt: the attempt that just failed, 1-based.
            status: its HTTP status, when the server answered.
            error: the exception, when it did not (an :class:`APIConnectionError`).
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
        if status is None and error is None:
            return RetryDecision(False, reason="nothing failed")
        if error is not None and not self.is_retryable_error(error):
            return RetryDecision(False, reason=f"{type(error).__name__} is not retryable")
        if (status is not None and error is None and not self.is_retryable_status(status)
                and not (self.retry_server_errors and self.is_server_error(status))):
            return RetryDecision(False, reason=f"status {status} is not retryable")
        if not idempotent and self.is_ambiguous(status=status, error=error):
            return RetryDecision(False, reason="the request may have run and the server does "
                                               "not announce idempotency")
        if attempt >= self.max_attempts:
            return RetryDecision(False, reason=f"gave up after {attempt} attempts")
        if retry_after is not None and retry_after > self.retry_after_cap:
            return RetryDecision(False, reason=f"server asked to wait {retry_after:g}s, over "
                                               f"the {self.retry_after_cap:g}s cap")
        delay = self.backoff(attempt, rng)
        if retry_after is not None:
            # A floor, with the jitter on top: clients told "1 s" together must not all come
            # back in the same millisecond (they would be throttled together again).
            delay += retry_after
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
class PollBackoff:
    """How long to wait between polls of unfinished evaluations.

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

    def ceiling(self, poll: int) -> float:
        """The jitter ceiling before poll number ``poll`` (0-based)."""
        return min(self.maximum, self.initial * self.multiplier ** max(0, poll))

    def delay(self, poll: int, *, retry_after: float | None = None,
              remaining: float | None = None, rng: _Uniform = random) -> float | None:
        """Seconds to sleep before the next poll, or None when the deadline has passed.

        Full jitter on ``[initial/2, ceiling]`` keeps many pollers apart without ever
        degenerating into a busy loop; the server's ``Retry-After`` (capped) is a floor; the
        result never passes ``remaining``.

        Args:
            poll: how many polls were already made for this wait (0-based).
            retry_after: the last answer's ``Retry-After`` in seconds, or None.
            remaining: seconds left before the caller's deadline, or None for no deadline.
            rng: source of jitter.
        """
        if remaining is not None and remaining <= 0:
            return None
        ceiling = self.ceiling(poll)
        delay = rng.uniform(min(self.initial / 2, ceiling), ceiling)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.retry_after_cap))
        if remaining is not None:
            delay = min(delay, remaining)
        return delay
