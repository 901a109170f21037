"""RetryPolicy and PollBackoff: pure maths, no network (PROTOCOL.md section C)."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import pytest

import fi_evals
from fi_evals._constants import RETRY_STATUS_CODES
from fi_evals._exceptions import APIConnectionError, APITimeoutError
from fi_evals._retry import Backoff, ConnectionFailure, PollBackoff, RetryPolicy, parse_retry_after

pytestmark = pytest.mark.unit  # no server, no model: `make unit` runs this file


class MaxJitter:
    """An rng whose uniform() returns the upper bound: shows the ceilings."""

    def uniform(self, a: float, b: float) -> float:
        return b


class MinJitter:
    def uniform(self, a: float, b: float) -> float:
        return a


def test_policy_is_frozen_and_copied_with_changes():
    policy = RetryPolicy()
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.max_attempts = 9  # type: ignore[misc]
    other = policy.with_(max_attempts=2)
    assert other.max_attempts == 2 and policy.max_attempts != 2
    assert RetryPolicy.none().max_attempts == 1
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)


@pytest.mark.parametrize("status", sorted(RETRY_STATUS_CODES))
def test_retryable_statuses_are_retried(status):
    decision = RetryPolicy().decide(1, status=status, rng=MinJitter())
    assert decision.retry and decision.delay == 0.0


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 413, 422])
@pytest.mark.parametrize("idempotent", [True, False])
def test_caller_errors_are_never_retried(status, idempotent):
    decision = RetryPolicy().decide(1, status=status, idempotent=idempotent)
    assert not decision.retry
    assert "not retryable" in decision.reason


def test_programming_errors_are_never_retried():
    assert not RetryPolicy().decide(1, error=TypeError("bug")).retry
    assert not RetryPolicy().decide(1, error=KeyError("bug")).retry


def test_exponential_ceiling_with_full_jitter():
    policy = RetryPolicy(max_attempts=10, backoff_base=0.5, backoff_max=8.0, multiplier=2.0)
    ceilings = [policy.backoff(a, MaxJitter()) for a in range(1, 8)]
    assert ceilings == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert all(policy.backoff(a, MinJitter()) == 0.0 for a in range(1, 8))
    rng = random.Random(7)
    samples = [policy.backoff(3, rng) for _ in range(2000)]
    assert 0.0 <= min(samples) < 0.1 and 1.9 < max(samples) <= 2.0  # spread over [0, 2]


def test_gives_up_after_max_attempts():
    policy = RetryPolicy(max_attempts=3)
    assert policy.decide(2, status=503).retry
    decision = policy.decide(3, status=503)
    assert not decision.retry and "3 attempts" in decision.reason


def test_retry_after_is_a_floor_up_to_the_cap():
    policy = RetryPolicy(retry_after_cap=30.0, backoff_base=0.5)
    decision = policy.decide(1, status=429, retry_after=5.0, rng=MinJitter())
    assert decision.retry and decision.delay == 5.0
    jittered = policy.decide(1, status=429, retry_after=5.0, rng=MaxJitter())
    assert jittered.delay == 5.5  # jitter on top of the floor: throttled clients spread out
    refused = policy.decide(1, status=429, retry_after=31.0)
    assert not refused.retry and "cap" in refused.reason


def test_gives_up_when_the_server_asks_past_the_deadline():
    policy = RetryPolicy()
    decision = policy.decide(1, status=503, retry_after=10.0, remaining=3.0)
    assert not decision.retry and "deadline" in decision.reason
    ok = policy.decide(1, status=503, retry_after=1.0, remaining=3.0, rng=MinJitter())
    assert ok.retry and ok.delay == 1.0


def test_no_wait_ever_passes_the_deadline():
    policy = RetryPolicy(max_attempts=50, backoff_max=100.0)
    rng = random.Random(3)
    for attempt in range(1, 40):
        decision = policy.decide(attempt, status=502, remaining=0.7, rng=rng)
        assert not decision.retry or decision.delay < 0.7


def test_connection_errors_and_read_timeouts():
    policy = RetryPolicy()
    refused = APIConnectionError("refused", request_sent=False)
    reset = APIConnectionError("reset", request_sent=True)
    read_timeout = APITimeoutError("slow", request_sent=True)
    assert policy.is_connection_error(refused) and not policy.is_connection_error(reset)
    for error in (refused, reset, read_timeout):
        assert policy.decide(1, error=error).retry
    assert not policy.with_(retry_read=False).decide(1, error=reset).retry
    assert not policy.with_(retry_connect=False).decide(1, error=refused).retry


def test_ambiguous_failures_of_non_idempotent_requests_are_not_retried():
    policy = RetryPolicy()
    # The request may have run: retrying without idempotency could run it twice.
    for kwargs in ({"error": APITimeoutError("x", request_sent=True)},
                   {"error": APIConnectionError("reset", request_sent=True)},
                   {"status": 502}, {"status": 504}):
        assert policy.decide(1, idempotent=True, **kwargs).retry
        assert not policy.decide(1, idempotent=False, **kwargs).retry
    # It surely did not run: safe either way.
    for kwargs in ({"error": APIConnectionError("refused", request_sent=False)},
                   {"status": 429}, {"status": 503}):
        assert policy.decide(1, idempotent=False, **kwargs).retry


def test_retry_after_parsing():
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("-4") == 0.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    now = 1445412470.0  # 2015-10-21 07:27:50 UTC
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=now) == 10.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now=now) == 0.0


def test_poll_backoff_doubles_from_a_quarter_second_to_ten():
    backoff = PollBackoff()
    assert [backoff.ceiling(p) for p in range(8)] == [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert backoff.delay(0, rng=MaxJitter()) == 0.25
    assert backoff.delay(20, rng=MaxJitter()) == 10.0
    rng = random.Random(1)
    delays = [backoff.delay(4, rng=rng) for _ in range(500)]
    assert min(delays) < 1.0 and max(delays) > 3.5  # jittered, not fixed


def test_poll_backoff_honours_retry_after_and_the_deadline():
    backoff = PollBackoff()
    assert backoff.delay(0, retry_after=1.0, rng=MinJitter()) == 1.0
    assert backoff.delay(0, retry_after=60.0, rng=MinJitter()) == 10.0  # capped
    assert backoff.delay(5, retry_after=3.0, remaining=0.4, rng=MaxJitter()) == 0.4
    assert backoff.delay(0, remaining=0.0) is None
    assert backoff.delay(0, remaining=-1.0) is None
    with pytest.raises(ValueError):
        PollBackoff(initial=0)


# The decision table of PROTOCOL.md section C: "idempotent" is a GET, bulk status, or a POST
# carrying its Idempotency-Key to a server whose capabilities say idempotency: true; the other
# column is a POST to a server without it (hosted API, --compat).
ALWAYS = {429, 503}  # the server promises nothing ran
MAY_HAVE_RUN = {408, 500, 501, 502, 504, 507, 599}


@pytest.mark.parametrize("status", sorted(ALWAYS | MAY_HAVE_RUN))
def test_5xx_and_retryable_statuses_are_retried_when_the_request_cannot_run_twice(status):
    decision = RetryPolicy().decide(1, status=status, idempotent=True, rng=MinJitter())
    assert decision.retry and decision.reason == "retrying"


@pytest.mark.parametrize("status", sorted(MAY_HAVE_RUN))
def test_a_post_that_may_have_run_is_not_retried_without_idempotency(status):
    decision = RetryPolicy().decide(1, status=status, idempotent=False)
    assert not decision.retry
    assert "may have run" in decision.reason
    assert RetryPolicy.is_ambiguous(status=status)


@pytest.mark.parametrize("status", sorted(ALWAYS))
def test_429_and_503_are_retried_for_every_request(status):
    for idempotent in (True, False):
        assert RetryPolicy().decide(1, status=status, idempotent=idempotent).retry
    assert not RetryPolicy.is_ambiguous(status=status)


def test_500_retries_follow_the_backoff_attempts_and_deadline():
    policy = RetryPolicy(max_attempts=3, backoff_base=0.5)
    assert policy.decide(1, status=500, rng=MaxJitter()).delay == 0.5
    assert policy.decide(2, status=500, rng=MaxJitter()).delay == 1.0
    assert not policy.decide(3, status=500).retry  # max_attempts counts 500s too
    assert not policy.decide(1, status=500, remaining=0.1, rng=MaxJitter()).retry


def test_server_error_retries_can_be_turned_off():
    policy = RetryPolicy(retry_server_errors=False)
    assert not policy.decide(1, status=500).retry
    assert policy.decide(1, status=502).retry and policy.decide(1, status=503).retry
    assert "server_errors=False" in repr(policy)


def test_errors_without_answers_follow_the_same_table():
    policy = RetryPolicy()
    refused = APIConnectionError("refused", request_sent=False)
    reset = APIConnectionError("reset", request_sent=True)
    for error in (refused, reset, APITimeoutError("slow", request_sent=True)):
        assert policy.decide(1, error=error, idempotent=True).retry
    assert policy.decide(1, error=refused, idempotent=False).retry  # it never left
    assert not policy.decide(1, error=reset, idempotent=False).retry


# One backoff and one Retry-After parser for every caller (issue 15, point 1).


def test_backoff_full_and_equal_jitter():
    full = Backoff(0.5, 8.0)
    assert [full.ceiling(s) for s in range(6)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    rng = random.Random(5)
    samples = [full.sample(2, rng) for _ in range(2000)]
    assert 0.0 <= min(samples) < 0.05 and 1.9 < max(samples) <= 2.0
    equal = Backoff(0.25, 5.0, jitter="equal")
    samples = [equal.sample(3, rng) for _ in range(2000)]
    assert 1.0 <= min(samples) < 1.05 and 1.95 < max(samples) <= 2.0
    assert full.ceiling(100_000) == 8.0  # no overflow, however many steps
    with pytest.raises(ValueError):
        Backoff(-1.0, 1.0)
    with pytest.raises(ValueError):
        Backoff(1.0, 2.0, jitter="half")


def test_poll_backoff_is_full_jitter_down_to_zero():
    # PROTOCOL.md C and the README promise full jitter: [0, ceiling], not [initial/2, ceiling].
    backoff = PollBackoff()
    assert isinstance(backoff, Backoff)
    assert backoff.delay(0, rng=MinJitter()) == 0.0
    assert backoff.delay(3, rng=MinJitter()) == 0.0
    rng = random.Random(2)
    delays = [backoff.delay(0, rng=rng) for _ in range(2000)]
    assert min(delays) < 0.01 and max(delays) > 0.24
    assert backoff.delay(0, retry_after=0.5, rng=MinJitter()) == 0.5  # the server's floor


def test_retry_policy_backoff_is_the_shared_backoff():
    policy = RetryPolicy(backoff_base=0.5, backoff_max=8.0, multiplier=3.0)
    assert policy.schedule == Backoff(0.5, 8.0, 3.0)
    for attempt in range(1, 6):
        assert policy.backoff(attempt, MaxJitter()) == policy.schedule.ceiling(attempt - 1)


def test_delay_is_the_budget_part_of_decide():
    policy = RetryPolicy(max_attempts=3, retry_after_cap=10.0)
    assert policy.delay(1, rng=MaxJitter()) == policy.decide(1, status=503, rng=MaxJitter()).delay
    assert policy.delay(3) is None  # attempts spent
    assert policy.delay(1, 11.0) is None  # over the cap
    assert policy.delay(1, 1.0, remaining=0.5) is None  # past the deadline
    exact = policy.with_(retry_after_jitter=False)
    assert exact.delay(1, 2.0, rng=MaxJitter()) == 2.0
    assert policy.delay(1, 2.0, rng=MaxJitter()) == 2.5


def test_refusal_names_what_is_never_retried():
    policy = RetryPolicy()
    assert policy.refusal(status=503) is None
    assert "not retryable" in (policy.refusal(status=400) or "")
    assert "idempotency" in (policy.refusal(status=500, idempotent=False) or "")
    assert "not retryable" in (policy.refusal(error=ValueError("bug")) or "")


class ForeignTimeout(Exception):
    """Another HTTP library's 'no answer', carrying request_sent: the policy needs no more."""

    def __init__(self, request_sent: bool | None) -> None:
        super().__init__("timed out")
        self.request_sent = request_sent


def test_connection_failures_are_recognised_whatever_the_http_library():
    policy = RetryPolicy()
    assert isinstance(APIConnectionError("x", request_sent=False), ConnectionFailure)
    assert not isinstance(TypeError("bug"), ConnectionFailure)
    assert policy.is_connection_error(ForeignTimeout(False))
    assert policy.is_read_error(ForeignTimeout(True)) and policy.is_read_error(ForeignTimeout(None))
    assert policy.decide(1, error=ForeignTimeout(False), idempotent=False).retry
    assert not policy.decide(1, error=ForeignTimeout(True), idempotent=False).retry


def test_one_retry_after_parser():
    import fi_evals._exceptions as exceptions

    assert exceptions.parse_retry_after is parse_retry_after  # re-exported where it was
    assert parse_retry_after("inf") is None and parse_retry_after("nan") is None
    assert parse_retry_after("") is None and parse_retry_after("   ") is None


def test_jitter_and_retry_after_parsing_live_only_in_the_retry_module():
    """No second backoff or Retry-After parser creeps back in (issue 15, point 1)."""
    package = Path(fi_evals.__file__).parent
    offenders = []
    for path in package.rglob("*.py"):
        if path.name == "_retry.py" and path.parent == package:
            continue
        text = path.read_text(encoding="utf-8")
        for needle in (".uniform(", "parsedate_to_datetime", "class RetryPolicy",
                       "class PollBackoff", "def parse_retry_after"):
            if needle in text:
                offenders.append(f"{path.relative_to(package)}: {needle}")
    assert offenders == []
