"""Issue 14, point 6: the keys never reach another origin through a redirect.

Two real loopback servers: ``origin`` (what the client was pointed at) answers every request
with a redirect to ``target``, another origin (another port), which records what reaches it.
API calls refuse redirects (``RedirectError`` naming the Location); the session underneath also
drops the key headers on any cross-origin redirect something does follow.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
from http_fakes import FakeServer, Reply, Seen, json_reply, redirect_to

from fi_evals import Evaluator, FiEvalsError, RedirectError, RetryPolicy
from fi_evals import _constants as C
from fi_evals._session import KeySafeSession

REDIRECTS = [301, 302, 303, 307, 308]
KEYS = {C.HEADER_API_KEY: "api-key-for-origin", C.HEADER_SECRET_KEY: "secret-for-origin"}
SOME_ID = "01a22c82-6e02-7a7e-a372-45a3b85ee8e1"
FAST_RETRY = RetryPolicy(max_attempts=3, backoff_base=0.01, backoff_max=0.05)


def _target_answer(seen: Seen) -> Reply:
    """What a section-B server would answer: enough for every call to succeed there."""
    if seen.path.startswith(C.PATH_CAPABILITIES):
        return json_reply({"status": True, "result": {
            "protocol": C.PROTOCOL_VERSION, "max_batch_size": 10, "max_status_ids": 10,
            "bulk_status": True, "idempotency": True}})
    if seen.path.startswith(C.PATH_GET_EVALS):
        return json_reply({"status": True, "result": []})
    return json_reply({"status": True, "result": {"eval_status": "completed",
                                                    "result": "done"}})


@pytest.fixture
def target() -> Iterator[FakeServer]:
    with FakeServer(_target_answer) as server:
        yield server


def _leaked(server: FakeServer) -> list[Seen]:
    return [s for s in server.seen
            if s.has_header(C.HEADER_API_KEY) or s.has_header(C.HEADER_SECRET_KEY)]


@pytest.mark.parametrize("status", REDIRECTS)
def test_api_calls_refuse_a_redirect_and_send_nothing_to_its_location(status, target):
    with FakeServer(redirect_to(target.url, status)) as origin, \
            Evaluator(KEYS[C.HEADER_API_KEY], KEYS[C.HEADER_SECRET_KEY], origin.url,
                      retry=FAST_RETRY) as ev:
        with pytest.raises(RedirectError) as info:
            ev.evaluate("is_json", {"text": "{}"})
        error = info.value
        assert error.status_code == status
        assert error.location == target.url + C.PATH_CAPABILITIES
        assert error.suggested_base_url == target.url
        assert f"set fi_base_url (FI_BASE_URL) to '{target.url}'" in str(error)
        for call in (lambda: ev.get_eval_result(SOME_ID), ev.list_evaluations,
                     lambda: ev.get_result(SOME_ID), lambda: ev.wait_all([SOME_ID], timeout=5)):
            with pytest.raises(RedirectError):
                call()
        assert ev.stats().retries == 0  # a redirect is never retried
        assert origin.seen and all(s.has_header(C.HEADER_API_KEY) for s in origin.seen)
    assert target.seen == []  # nothing, so no key, ever reached the other origin


@pytest.mark.parametrize("status", [307, 302])
def test_evaluate_batch_records_the_refusal_and_sends_nothing_away(status, target, tmp_path):
    with FakeServer(redirect_to(target.url, status)) as origin, \
            Evaluator("k", "s", origin.url, retry=FAST_RETRY) as ev:
        try:
            result = ev.evaluate_batch([{"text": "{}"}, {"text": "no"}], ["is_json"],
                                       progress=False)
        except FiEvalsError as exc:  # refused before anything was sent: fine as well
            assert isinstance(exc, RedirectError), exc
        else:
            errors = [item.results["is_json"].error for item in result]
            assert all(e is not None and e.type == "RedirectError" for e in errors), errors
    assert target.seen == []


def test_the_score_logger_follows_the_same_rule(target, tmp_path):
    errors = []
    with FakeServer(redirect_to(target.url, 307)) as origin, \
            Evaluator("k", "s", origin.url, retry=FAST_RETRY) as ev:
        logger = ev.score_logger(spool=str(tmp_path / "spool.db"), on_error=errors.append)
        assert logger.log("is_json", {"text": "{}"})
        logger.flush(timeout=15)
        logger.close(timeout=5)
        assert origin.seen  # it did ask, at the origin only
    assert target.seen == []
    assert [e.kind for e in errors] == ["rejected"], errors  # refused, with the reason
    assert "RedirectError" in errors[0].message and target.url in errors[0].message


def test_a_redirect_within_the_origin_is_refused_with_the_base_url_it_implies(target):
    def moved(seen: Seen) -> Reply:  # the API moved under a prefix, on the same host and port
        return Reply(308, b"", {"Location": "/v2" + seen.path})

    with FakeServer(moved) as origin, Evaluator("k", "s", origin.url) as ev, \
            pytest.raises(RedirectError) as info:
        ev.list_evaluations()
    assert info.value.suggested_base_url == origin.url + "/v2"
    assert f"'{origin.url}/v2'" in str(info.value)


# ------------------------------------------------------------------ the session underneath


def _key_session() -> KeySafeSession:
    session = KeySafeSession()
    session.headers.update(KEYS)
    return session


@pytest.mark.parametrize("status", REDIRECTS)
def test_a_followed_cross_origin_redirect_carries_no_key(status, target):
    with FakeServer(redirect_to(target.url, status)) as origin, _key_session() as session:
        answer = session.post(origin.url + C.PATH_NEW_EVAL, json={"eval_name": "is_json"},
                              allow_redirects=True, timeout=10)
    assert answer.status_code == 200
    [arrived] = target.seen
    assert _leaked(target) == []
    assert arrived.has_header("User-Agent")  # the request did arrive, only without the keys
    assert arrived.method == ("POST" if status in (307, 308) else "GET")


def test_a_followed_same_origin_redirect_keeps_the_keys():
    def answer(seen: Seen) -> Reply:
        if seen.path.startswith("/old"):
            return Reply(307, b"", {"Location": seen.path.replace("/old", "/new", 1)})
        return json_reply({"status": True, "result": "ok"})

    with FakeServer(answer) as origin, _key_session() as session:
        got = session.get(origin.url + "/old/x", allow_redirects=True, timeout=10)
    assert got.status_code == 200
    assert [s.path for s in origin.seen] == ["/old/x", "/new/x"]
    assert all(s.headers.get(C.HEADER_API_KEY) == KEYS[C.HEADER_API_KEY] for s in origin.seen)


def test_plain_requests_would_have_leaked_the_keys(target):
    # Why KeySafeSession exists: requests strips Authorization only, so the bug is real.
    with FakeServer(redirect_to(target.url, 307)) as origin, requests.Session() as session:
        session.headers.update(KEYS)
        session.get(origin.url + "/x", timeout=10)
    assert len(_leaked(target)) == 1


@pytest.mark.parametrize(("old", "new", "strip"), [
    ("https://api.example.com/a", "http://api.example.com/a", True),  # https to http
    ("http://api.example.com/a", "https://api.example.com/a", True),  # http to https
    ("http://127.0.0.1:8765/a", "http://127.0.0.1:8766/a", True),  # another port
    ("https://api.example.com/a", "https://evil.example.com/a", True),  # another host
    ("https://api.example.com/a", "https://api.example.com:443/b", False),  # default port
    ("http://api.example.com:80/a", "http://api.example.com/b", False),
    ("http://127.0.0.1:8765/a", "http://127.0.0.1:8765/b?x=1", False),
])
def test_origin_rule(old, new, strip):
    assert KeySafeSession().should_strip_auth(old, new) is strip


def test_every_transport_uses_the_key_safe_session(tmp_path):
    with Evaluator("k", "s", "http://127.0.0.1:9") as ev:
        assert isinstance(ev._transport._session, KeySafeSession)
        assert isinstance(ev._transport.clone()._session, KeySafeSession)  # the logger's
