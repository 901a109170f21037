"""Errors against the real server: what raises at once, what is recorded per item, waits."""

from __future__ import annotations

import socket
import time

import pytest
from _helpers import metric_sum

from fi_evals import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    Evaluator,
    MissingCredentialsError,
    RequestTooLargeError,
    RetryPolicy,
    WaitTimeoutError,
)
from fi_evals._transport import ThrottleEvent

EVALS = "fi_evals_evaluations_total"
FAST_RETRY = RetryPolicy(max_attempts=3, backoff_base=0.01, backoff_max=0.05)


@pytest.fixture(params=["extended", "compat"])
def compat(request: pytest.FixtureRequest) -> bool:
    return request.param == "compat"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_bad_keys_raise_at_once(server_factory, compat):
    server = server_factory(compat=compat, access_log=False)
    with Evaluator("wrong-key", "wrong-secret", server.url) as ev:
        started = time.monotonic()
        with pytest.raises(AuthenticationError) as info:
            ev.evaluate("is_json", {"text": ["{}"] * 20})
        assert time.monotonic() - started < 10  # no backoff: 401 is never retried
        assert info.value.status_code == 401 and info.value.request_id
        assert ev.stats().retries == 0
    assert metric_sum(server, EVALS) == 0


def test_missing_credentials(monkeypatch):
    monkeypatch.delenv("FI_API_KEY", raising=False)
    monkeypatch.delenv("FI_SECRET_KEY", raising=False)
    with pytest.raises(MissingCredentialsError) as info:
        Evaluator(fi_base_url="http://127.0.0.1:9")
    assert "fi_api_key" in str(info.value) and "FI_SECRET_KEY" in str(info.value)
    monkeypatch.setenv("FI_API_KEY", "api-key-from-env")
    monkeypatch.setenv("FI_SECRET_KEY", "secret-from-env")
    with Evaluator(fi_base_url="http://127.0.0.1:9") as ev:  # keys from the environment
        assert ev._transport._session.headers["X-Api-Key"] == "api-key-from-env"
        shown = repr(ev) + repr(ev._transport)
        assert "secret-from-env" not in shown and "api-key-from-env" not in shown
    assert "_transport" not in vars(Evaluator)


def test_unreachable_server_raises_a_connection_error():
    with Evaluator("k", "s", f"http://127.0.0.1:{free_port()}", retry=FAST_RETRY) as ev:
        with pytest.raises(APIConnectionError) as info:
            ev.evaluate("is_json", {"text": "{}"})
        assert info.value.request_sent is False
        assert ev.stats().retries == FAST_RETRY.max_attempts - 1  # connect errors are retried


def test_a_failing_chunk_records_errors_and_spares_the_others(server_factory, compat):
    server = server_factory(compat=compat, max_body_mb=0.01, access_log=False)
    texts = [f'{{"i": {i}}}' for i in range(12)]
    texts[7] = '"' + "x" * 20_000 + '"'  # its chunk's body is over the server's 10 KB limit
    with Evaluator(server.api_key, server.secret_key, server.url) as ev:
        result = ev.evaluate("is_json", {"text": texts}, chunk_size=3)
        failed = [i for i, r in enumerate(result.eval_results) if r.status == "error"]
        assert failed == [6, 7, 8]  # exactly the chunk holding item 7
        for i in failed:
            error = result.eval_results[i].error
            assert error.type == "RequestTooLargeError" and error.status_code == 413
            assert not error.retryable
        assert all(r.output == "Passed" for i, r in enumerate(result.eval_results)
                   if i not in failed)
        assert ev.stats().retries == 0  # 413 is the caller's to fix
        # Every chunk failing raises instead of returning N errors.
        with pytest.raises(RequestTooLargeError):
            ev.evaluate("is_json", {"text": texts[7]})


def test_wait_timeout_names_the_unfinished_ids(server_factory, compat):
    server = server_factory(compat=compat, sim_latency_ms=4000, workers=1, access_log=False)
    with Evaluator(server.api_key, server.secret_key, server.url) as ev:
        submission = ev.submit("is_json", {"text": ["{}", "[]", "1"]})
        started = time.monotonic()
        with pytest.raises(WaitTimeoutError) as info:
            submission.wait(timeout=0.8)
        waited = time.monotonic() - started
        assert 0.7 <= waited < 4.0  # never waits past the deadline (plus one request)
        assert set(info.value.unfinished) == set(submission.ids)
        for eval_id in submission.ids:
            assert eval_id in str(info.value)
        assert isinstance(info.value, TimeoutError)
        assert len(info.value.results) == 3
        with pytest.raises(WaitTimeoutError):
            ev.wait_all(submission.ids, timeout=0.3)


def test_deadline_of_a_sync_call(server_factory):
    server = server_factory(sim_latency_ms=3000, workers=1, access_log=False)
    with Evaluator(server.api_key, server.secret_key, server.url) as ev:
        ev.max_batch_size()
        started = time.monotonic()
        with pytest.raises(APITimeoutError):
            ev.evaluate("is_json", {"text": "{}"}, timeout=0.7)
        assert time.monotonic() - started < 3.0


def test_throttling_is_retried_after_retry_after(server_factory):
    server = server_factory(rate_limit=20, rate_burst=2, access_log=False)
    events: list[ThrottleEvent] = []
    with Evaluator(server.api_key, server.secret_key, server.url, max_workers=8,
                   retry=RetryPolicy(max_attempts=10)) as ev:
        ev._transport.add_throttle_listener(events.append)
        result = ev.evaluate("is_json", {"text": ["{}"] * 20}, chunk_size=1)
        assert [r.output for r in result.eval_results] == ["Passed"] * 20
        stats = ev.stats()
    assert stats.throttled > 0 and stats.retries >= stats.throttled
    assert events and all(e.status_code == 429 and e.retry_after is not None for e in events)
    assert metric_sum(server, EVALS) == 20  # throttled requests ran nothing
