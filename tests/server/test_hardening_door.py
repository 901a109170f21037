"""Issue 14, points 2, 3, 4, 5 and 7: the rows of the hardening table they cover, each against a
real server on loopback.

Every abusive request gets a 4xx in the JSON envelope whose message names the limit (or, for an
item that cannot run, a recorded ``failed`` item), nothing of it is stored or counted, and a
``/healthcheck/`` polled meanwhile answers within 1 s. Slow clients use raw sockets, bounded by
socket timeouts; servers started here use a 1 s read timeout so the slow-client cases take
about a second each.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Self

import pytest
import requests
from _helpers import ServeProcess, metric_sum

from fi_evals import _constants as C
from fi_evals.server.config import ServerConfig
from fi_evals.server.runner import RunningServer, start_server

from .conftest import Api, assert_error

NEW = C.PATH_NEW_EVAL
STATUS = C.PATH_BULK_STATUS
HEALTH_BUDGET = 1.0  # seconds /healthcheck/ may take while the abuse runs
READ_TIMEOUT = 1.0  # the test servers' read_timeout
EVALUATIONS = "fi_evals_evaluations_total"
SERVER_LOGGERS = frozenset({"fi_evals.server", "fi_evals.server.access", "uvicorn.error"})
PROBES = re.compile(f"GET ({C.PATH_HEALTH}|{C.PATH_METRICS}) 200 ")  # the tests' own lines


# ---------------------------------------------------------------------------- helpers


class HealthProbe:
    """Polls ``/healthcheck/`` (and optionally ``/metrics``) from a thread while the block runs;
    :attr:`worst` is the slowest answer in seconds (a failed probe counts as infinitely slow)."""

    def __init__(self, url: str, path: str = C.PATH_HEALTH, interval: float = 0.05) -> None:
        self.url = url + path
        self.interval = interval
        self.times: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        session = requests.Session()
        while not self._stop.is_set():
            start = time.perf_counter()
            try:
                ok = session.get(self.url, timeout=5).status_code == 200
            except requests.RequestException:
                ok = False
            self.times.append(time.perf_counter() - start if ok else float("inf"))
            self._stop.wait(self.interval)

    @property
    def worst(self) -> float:
        return max(self.times, default=float("inf"))

    def __enter__(self) -> Self:
        self._thread.start()
        time.sleep(self.interval)  # at least one probe runs before the abuse
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        assert self.times, "the health probe never ran"
        assert self.worst < HEALTH_BUDGET, f"{self.url} took {self.worst:.2f} s"


def wait_for_access(caplog: pytest.LogCaptureFixture, fragment: str,
                    count: int = 1) -> list[str]:
    """The access lines holding ``fragment``, once ``count`` of them were logged (a request's
    log lines follow its answer), plus a moment for any other line of the same request."""
    deadline = time.monotonic() + 5
    while True:
        lines = [rec.getMessage() for rec in caplog.records
                 if rec.name == "fi_evals.server.access" and fragment in rec.getMessage()]
        if len(lines) >= count:
            time.sleep(0.2)
            return lines
        assert time.monotonic() < deadline, f"{count} access lines with {fragment!r} expected"
        time.sleep(0.02)


def stored(server: RunningServer) -> int:
    """Evaluations in the server's SQLite file: rows of ``evals`` and items of ``batches``."""
    with sqlite3.connect(server.config.db_path) as conn:
        return int(conn.execute("SELECT (SELECT count(*) FROM evals)"
                                " + (SELECT coalesce(sum(size), 0) FROM batches)").fetchone()[0])


def nested(depth: int, leaf: Any = 0) -> Any:
    """``depth`` levels of lists around ``leaf``."""
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


def raw_exchange(server: RunningServer, data: bytes, wait: float = 10.0) -> tuple[bytes, float]:
    """Send ``data`` on a fresh connection and read until the server closes it (or ``wait``
    passes): the bytes answered and the seconds it took."""
    with socket.create_connection((server.host, server.port), timeout=wait) as sock:
        start = time.monotonic()
        sock.sendall(data)
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except TimeoutError:
            pass
        return answer, time.monotonic() - start


def read_answer(sock: socket.socket) -> bytes:
    """One HTTP/1.1 answer with a Content-Length, read from ``sock`` (bounded by its timeout)."""
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {answer!r}"
        answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    length = int(envelope_headers(head)["content-length"])
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed mid-body"
        body += chunk
    return head + b"\r\n\r\n" + body


def envelope_headers(head: bytes) -> dict[str, str]:
    lines = head.decode("latin-1").split("\r\n")
    return {k.lower(): v for k, v in (line.split(": ", 1) for line in lines[1:])}


def envelope(raw: bytes) -> tuple[int, dict[str, str], dict[str, Any]]:
    """Status code, lower-case headers and JSON body of a raw HTTP/1.1 answer."""
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b"\r\n", 1)[0].split()[1])
    return status, envelope_headers(head), json.loads(body)


def post_head(server: RunningServer, length: int) -> bytes:
    """Headers of an authenticated new-eval POST promising ``length`` body bytes."""
    return (f"POST {NEW} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            f"{C.HEADER_API_KEY}: {server.api_key}\r\n{C.HEADER_SECRET_KEY}: {server.secret_key}"
            f"\r\nContent-Length: {length}\r\n\r\n").encode()


@pytest.fixture(scope="module")
def door(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One server with the default limits and a 1 s read timeout, shared by the door cases
    (each compares counts before and after)."""
    db = tmp_path_factory.mktemp("door") / "door.db"
    server = start_server(ServerConfig(port=0, db_path=str(db), read_timeout=READ_TIMEOUT))
    yield server
    server.stop(10)


# ---------------------------------------------------------------------------- point 2/3: rows


def _new(eval_name: str, inputs: Any, **params: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"eval_name": eval_name, "inputs": inputs}
    if params:
        body["config"] = {"params": params}
    return body


def _schema(depth: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(depth):
        schema = {"items": schema}
    return schema


GROUPS_326 = "(" * 326 + "a" + ")" * 326
BOMB = "(?:(?:a{1000}){1000}){1000}"
LONE = '"\\ud800"'

# (case id, path, raw body, needles of the message, field named in details or None)
ROWS: list[tuple[str, str, bytes, tuple[str, ...], str | None]] = [
    ("JSON nested 987 levels", NEW, b'{"eval_name": "is_json", "inputs": {"text": "x"}, '
     b'"config": {"x": ' + b"[" * 987 + b"]" * 987 + b"}}", ("max_json_depth", "64"), None),
    ("JSON nested 100,000 levels", NEW,
     b'{"eval_name": "is_json", "inputs": {"text": "x"}, "config": ' + b"[" * 100_000
     + b"]" * 100_000 + b"}", ("max_json_depth",), None),
    ("JSON one level past the limit", NEW,
     json.dumps(_new("is_json", {"text": "{}"}) | {"config": {"x": nested(63)}}).encode(),
     ("max_json_depth", "64"), None),
    ("bulk status nested 987 levels", STATUS,
     b'{"eval_ids": ' + b"[" * 987 + b"]" * 987 + b"}", ("max_json_depth",), None),
    ("schema nested 97 levels", NEW,
     json.dumps(_new("json_schema", {"text": "[]"}, schema=_schema(97))).encode(),
     ("max_json_depth",), None),
    ("schema nested 40 levels", NEW,
     json.dumps(_new("json_schema", {"text": "[]"}, schema=_schema(40))).encode(),
     ("max_schema_depth", "32"), "config.params.schema"),
    ("regex with 326 nested groups", NEW,
     json.dumps(_new("regex", {"text": "a"}, pattern=GROUPS_326)).encode(),
     ("max_pattern_nesting", "32"), "config.params.pattern"),
    ("regex compile bomb", NEW, json.dumps(_new("regex", {"text": "a"}, pattern=BOMB)).encode(),
     ("max_pattern_expansion", "100000"), "config.params.pattern"),
    ("regex 600 bombs in a row", NEW,
     json.dumps(_new("regex", {"text": "a"}, pattern="(?:a{1000}){100}" * 600)).encode(),
     ("max_pattern_expansion",), "config.params.pattern"),
    ("regex over max_pattern_length", NEW,
     json.dumps(_new("regex", {"text": "a"}, pattern="a" * 10_001)).encode(),
     ("max_pattern_length", "10001", "10000"), "config.params.pattern"),
    ("schema pattern with 326 nested groups", NEW,
     json.dumps(_new("json_schema", {"text": '"a"'},
                     schema={"type": "string", "pattern": GROUPS_326})).encode(),
     ("max_pattern_nesting",), "config.params.schema.pattern"),
    ("schema patternProperties bomb", NEW,
     json.dumps(_new("json_schema", {"text": "{}"},
                     schema={"properties": {"a": {"patternProperties": {BOMB: {}}}}})).encode(),
     ("max_pattern_expansion",), None),
    ("lone surrogate, sync", NEW, b'{"eval_name": "is_json", "inputs": {"text": ' + LONE.encode()
     + b"}}", ("lone surrogate",), "inputs.text"),
    ("lone surrogate, async", NEW, b'{"eval_name": "is_json", "is_async": true, "inputs": '
     + b'{"text": ' + LONE.encode() + b"}}", ("lone surrogate",), "inputs.text"),
    ("lone surrogate in a batch item", NEW, (b'{"eval_name": "is_json", "inputs": {"text": '
                                             b'["{}", "a\\udc00b"]}}'),
     ("inputs.text[1]", "lone surrogate"), "inputs.text[1]"),
    ("lone surrogate in a key", NEW, (b'{"eval_name": "is_json", "inputs": {"text": "{}"}, '
                                      b'"config": {"\\ud800": 1}}'), ("lone surrogate",), None),
    ("lone surrogate in bulk status", STATUS, b'{"eval_ids": [' + LONE.encode() + b"]}",
     ("eval_ids[0]", "lone surrogate"), "eval_ids[0]"),
    ("integer of 5,000 digits", NEW,
     b'{"eval_name": "length_less_than", "inputs": {"text": "x"}, "config": {"params": '
     b'{"max_length": ' + b"9" * 5000 + b"}}}", ("digits",), None),
    ("number out of range", NEW,
     (b'{"eval_name": "length_less_than", "inputs": {"text": "x"}, "config": {"params": '
      b'{"max_length": 1e400}}}'), ("out of range",), None),
    ("fuzzy_match on inputs over max_quadratic_input_chars", NEW,
     json.dumps(_new("fuzzy_match", {"output": "a" * 100_001, "expected": "b"})).encode(),
     ("max_quadratic_input_chars", "100000", "inputs.output"), "inputs.output"),
    ("levenshtein batch item over max_quadratic_input_chars", NEW,
     json.dumps(_new("levenshtein_similarity", {"output": ["a", "b"],
                                                "expected": ["a", "b" * 100_001]})).encode(),
     ("max_quadratic_input_chars", "inputs.expected[1]"), "inputs.expected[1]"),
]


def test_rows_cover_the_table() -> None:
    assert len(ROWS) >= 20


@pytest.mark.parametrize("case", ROWS, ids=[c[0] for c in ROWS])
def test_abusive_body_is_a_4xx_naming_the_limit(
        door: RunningServer, caplog: pytest.LogCaptureFixture,
        case: tuple[str, str, bytes, tuple[str, ...], str | None]) -> None:
    _, path, raw, needles, field = case
    api = Api(door)
    before_rows, before_count = stored(door), metric_sum(door, EVALUATIONS)
    caplog.set_level(logging.INFO)
    with HealthProbe(door.url):
        r = api.post(path, data=raw)
        wait_for_access(caplog, f"POST {path} ")
    body = assert_error(r, 400, "validation_error", "invalid", *needles)
    if field is not None:
        assert field in body["details"], body
    assert stored(door) == before_rows  # nothing half-stored
    assert metric_sum(door, EVALUATIONS) == before_count  # nothing counted
    # Bad input is one access line, never a traceback.
    server_records = [rec for rec in caplog.records if rec.name in SERVER_LOGGERS
                      and not PROBES.search(rec.getMessage())]
    assert not [rec for rec in server_records if rec.levelno >= logging.WARNING or rec.exc_info]
    assert not [rec for rec in server_records if "Traceback" in rec.getMessage()]
    assert [" 400 " in rec.getMessage() for rec in server_records] == [True]


def test_limits_let_the_legitimate_shapes_through(door: RunningServer) -> None:
    api = Api(door)
    before = stored(door)
    at_limit = _new("is_json", {"text": "{}"}) | {"config": {"x": nested(62)}}  # 64 levels
    schema = {"type": "object", "properties": {"id": {"type": "string",
                                                      "pattern": r"^[a-f0-9]{8}(-[a-f0-9]{4}){3}$"},
                                               "tags": _schema(20)}}
    cases = [
        at_limit,
        _new("regex", {"text": "call 555-123-4567"}, pattern=r"\b\d{3}-\d{3}-\d{4}\b"),
        _new("regex", {"text": "x" * 50}, pattern=r"(?:x{10}){5}"),
        _new("json_schema", {"text": '{"id": "0a1b2c3d-aaaa-bbbb-cccc"}'}, schema=schema),
        _new("fuzzy_match", {"output": "a" * 20_000, "expected": "a" * 19_999 + "b"}),
    ]
    for body in cases:
        r = api.post(NEW, body)
        assert r.status_code == 200, (body["eval_name"], r.text[:300])
        assert r.json()["result"][0]["evaluations"][0]["eval_status"] == "completed", r.text
    # A paired surrogate escape is one character (an emoji): stored and read back as such.
    r = api.post(NEW, data=b'{"eval_name": "is_json", "inputs": {"text": "\\ud83d\\ude00"}}')
    assert r.status_code == 200, r.text
    eval_id = r.json()["result"][0]["evaluations"][0]["eval_id"]
    record = api.result(eval_id).json()["result"]["result"]
    assert record["input_data"]["text"] == "\N{GRINNING FACE}"
    assert stored(door) == before + len(cases) + 1


def test_limits_are_configurable(server_factory: Any) -> None:
    api = Api(server_factory(max_json_depth=8, max_schema_depth=3, max_pattern_length=20,
                             max_pattern_nesting=2, max_pattern_expansion=50,
                             max_quadratic_input_chars=10))
    cases = [
        (_new("is_json", {"text": "{}"}) | {"config": {"x": nested(7)}}, "more than 8 levels"),
        (_new("json_schema", {"text": "[]"}, schema=_schema(3)), "max_schema_depth"),
        (_new("regex", {"text": "a"}, pattern="a" * 21), "max_pattern_length 20"),
        (_new("regex", {"text": "a"}, pattern="(((a)))"), "more than 2 deep"),
        (_new("regex", {"text": "a"}, pattern="(?:a{10}){6}"), "max_pattern_expansion 50"),
        (_new("rouge_score", {"reference": "a" * 11, "hypothesis": "a"}),
         "max_quadratic_input_chars 10"),
    ]
    for body, needle in cases:
        assert_error(api.post(NEW, body), 400, "validation_error", "invalid", needle)
    ok = _new("json_schema", {"text": "[]"}, schema=_schema(2))
    assert api.post(NEW, ok).status_code == 200
    with pytest.raises(ValueError, match="max_json_depth"):
        ServerConfig(max_json_depth=0)
    with pytest.raises(ValueError, match="read_timeout"):
        ServerConfig(read_timeout=0)


def test_deep_json_inside_an_input_string_is_a_failed_or_scored_item(door: RunningServer) -> None:
    """The nesting limit is on the body; JSON *text* inside an input is the evaluator's: a
    verdict or a recorded ``failed`` item, never a 500."""
    api = Api(door)
    deep = "[" * 100_000 + "]" * 100_000
    for body in (_new("is_json", {"text": deep}),
                 _new("json_schema", {"text": deep}, schema={"type": "array"})):
        with HealthProbe(door.url):
            r = api.post(NEW, body)
        assert r.status_code == 200, r.text[:300]
        item = r.json()["result"][0]["evaluations"][0]
        assert item["eval_status"] in ("completed", "failed")
        assert item["output"] == "Failed" or item["error_message"], item


# ---------------------------------------------------------------------------- bulk status


def test_bulk_status_with_one_id_repeated_300_times_is_bounded(server_factory: Any) -> None:
    server = server_factory(max_status_answer_mb=1, read_timeout=READ_TIMEOUT)
    api = Api(server)
    big = json.dumps({"k": "v" * (256 * 1024)})  # a 256 KiB input, echoed in every record
    r = api.post(NEW, _new("is_json", {"text": big}))
    eval_id = r.json()["result"][0]["evaluations"][0]["eval_id"]
    with HealthProbe(server.url):
        r = api.post(STATUS, {"eval_ids": [eval_id] * 300})
    assert r.status_code == 200
    entries = r.json()["result"]
    record_size = len(json.dumps(entries[0]))
    assert record_size > 256 * 1024
    # Unbounded, this answer was 300 records (77 MB here, 315 MB with a 1 MiB input).
    assert len(r.content) <= 1024 * 1024 + record_size + 100
    assert 1 <= len(entries) < 300
    assert {e["eval_id"] for e in entries} == {eval_id}
    assert r.headers[C.HEADER_RETRY_AFTER]  # ids were left out: ask again
    # One entry is always answered, however large.
    small = server_factory(max_status_answer_mb=0.01)
    small_api = Api(small)
    r = small_api.post(NEW, _new("is_json", {"text": big}))
    eval_id = r.json()["result"][0]["evaluations"][0]["eval_id"]
    r = small_api.post(STATUS, {"eval_ids": [eval_id, eval_id]})
    assert [e["eval_id"] for e in r.json()["result"]] == [eval_id]


def test_bulk_status_still_reads_ids_in_the_order_asked(door: RunningServer) -> None:
    api = Api(door)
    r = api.post(NEW, _new("is_json", {"text": ["{}", "x", "[]"] * 100}))
    ids = [i["eval_id"] for i in r.json()["result"][0]["evaluations"]]
    asked = ids[::-1] + ids[:5]
    r = api.post(STATUS, {"eval_ids": asked})
    assert [e["eval_id"] for e in r.json()["result"]] == asked
    assert C.HEADER_RETRY_AFTER not in r.headers


# ---------------------------------------------------------------------------- point 4


def test_half_a_body_then_silence_is_a_408_envelope(door: RunningServer) -> None:
    body = json.dumps(_new("is_json", {"text": "{}"})).encode()
    before = stored(door)
    with HealthProbe(door.url):
        raw, took = raw_exchange(door, post_head(door, len(body)) + body[:10])
    status, headers, answer = envelope(raw)
    assert status == 408 and headers["connection"] == "close"
    assert answer["status"] is False and answer["code"] == "request_timeout"
    assert "read_timeout of 1 s" in answer["message"]
    assert READ_TIMEOUT * 0.9 <= took < READ_TIMEOUT + 3
    assert stored(door) == before


def test_half_the_headers_then_silence_is_a_408_envelope(door: RunningServer) -> None:
    with HealthProbe(door.url):
        raw, took = raw_exchange(door, f"GET {C.PATH_HEALTH} HTTP/1.1\r\nHost: x\r\n".encode())
    status, headers, answer = envelope(raw)
    assert status == 408 and headers["connection"] == "close"
    assert "headers did not arrive" in answer["message"] and "read_timeout" in answer["message"]
    assert took < READ_TIMEOUT + 3


def test_a_silent_connection_is_closed(door: RunningServer) -> None:
    raw, took = raw_exchange(door, b"")
    assert raw == b"" and took < READ_TIMEOUT + 3


def test_bytes_that_are_not_http_get_the_envelope(door: RunningServer) -> None:
    raw, _ = raw_exchange(door, b"HELLO THERE\r\n\r\n")
    status, headers, answer = envelope(raw)
    assert status == 400 and headers["content-type"] == "application/json"
    assert answer["type"] == "validation_error" and "invalid HTTP request" in answer["message"]


def test_a_slow_but_steady_client_within_the_timeout_is_served(door: RunningServer) -> None:
    body = json.dumps(_new("is_json", {"text": "{}"})).encode()
    with socket.create_connection((door.host, door.port), timeout=10) as sock:
        sock.sendall(post_head(door, len(body)))
        for start in range(0, len(body), 10):
            sock.sendall(body[start:start + 10])
            time.sleep(READ_TIMEOUT / 20)
        answer = read_answer(sock)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:300]


def test_drain_is_not_held_by_a_stalled_upload(server_factory: Any) -> None:
    server = server_factory()  # the default 30 s read timeout: the drain must not wait for it
    assert server.config.read_timeout == C.DEFAULT_REQUEST_READ_TIMEOUT
    body = json.dumps(_new("is_json", {"text": "{}"})).encode()
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(post_head(server, len(body)) + body[:10])
        time.sleep(0.3)  # the gateway is waiting for the rest
        start = time.monotonic()
        assert server.stop(10) is True
        took = time.monotonic() - start
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert took < 3, f"stop() took {took:.1f} s"
    status, headers, envelope_ = envelope(answer)
    assert status == 503 and headers["connection"] == "close"
    assert envelope_["type"] == "overloaded" and "shutting down" in envelope_["message"]
    assert int(headers["retry-after"]) >= 1


@pytest.mark.slow
def test_sigterm_with_a_stalled_upload_and_a_forged_log_line(tmp_path: Path) -> None:
    """``fi-evals serve`` as a process: SIGTERM drains at once despite a stalled upload (whose
    client gets a 503 envelope), and a %0a in a path stays inside its access line."""
    with ServeProcess(tmp_path / "stall.db") as proc:
        requests.get(proc.url + C.PATH_HEALTH + "%0aFORGED 200 0.1ms rid=x%0d%0a", timeout=5)
        host, port = proc.url.removeprefix("http://").rsplit(":", 1)
        body = json.dumps(_new("is_json", {"text": "{}"})).encode()
        head = (f"POST {NEW} HTTP/1.1\r\nHost: x\r\n{C.HEADER_API_KEY}: {proc.api_key}\r\n"
                f"{C.HEADER_SECRET_KEY}: {proc.secret_key}\r\nContent-Length: {len(body)}"
                f"\r\n\r\n").encode()
        with socket.create_connection((host, int(port)), timeout=15) as sock:
            sock.sendall(head + body[:10])
            time.sleep(0.5)
            start = time.monotonic()
            proc.terminate()
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
            assert proc.wait(15) == 0
            took = time.monotonic() - start
        log = proc.log_text()
    assert took < 5, f"the drain took {took:.1f} s"
    status, _, envelope_ = envelope(answer)
    assert status == 503 and envelope_["type"] == "overloaded"
    assert not [line for line in log.splitlines() if line.startswith("FORGED")]
    assert "\\x0aFORGED 200 0.1ms rid=x\\x0d\\x0a 404" in log


# ---------------------------------------------------------------------------- point 5


def test_health_and_metrics_answer_while_45_slow_sync_requests_run(server_factory: Any) -> None:
    server = server_factory(sim_latency_ms=2000, read_timeout=READ_TIMEOUT)
    api = Api(server)
    answers: list[int] = []

    def slow() -> None:
        answers.append(api.post(NEW, _new("one_line", {"text": "x"}), timeout=30).status_code)

    threads = [threading.Thread(target=slow) for _ in range(45)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)  # all 40 pool threads are busy, 5 requests wait for one
    timings = {}
    for path in (C.PATH_HEALTH, C.PATH_METRICS, C.PATH_HEALTH, C.PATH_METRICS):
        start = time.perf_counter()
        r = requests.get(server.url + path, timeout=10)
        timings[path] = max(timings.get(path, 0.0), time.perf_counter() - start)
        assert r.status_code == 200
    in_flight = server.app.gateway.inflight
    for thread in threads:
        thread.join(30)
    assert in_flight >= 40, in_flight  # the probes really ran behind a full pool
    assert answers == [200] * 45
    assert all(t < HEALTH_BUDGET for t in timings.values()), timings


# ---------------------------------------------------------------------------- point 7 and 3


def test_control_characters_in_a_path_cannot_forge_a_log_line(
        door: RunningServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="fi_evals.server.access")
    for suffix in ("%0aFORGED 200", "%0d%0aFORGED 200", "%E2%80%A8FORGED", "%1b[31mred"):
        r = requests.get(door.url + C.PATH_HEALTH + suffix, timeout=5)
        assert r.status_code == 404 and r.json()["type"] == "not_found"
    lines = wait_for_access(caplog, " 404 ", 4)
    assert len(lines) == 4
    for line in lines:
        assert line.isprintable(), repr(line)
    assert "/healthcheck/\\x0aFORGED 200 404" in lines[0]
    assert "\\x0d\\x0a" in lines[1] and "\\u2028" in lines[2] and "\\x1b" in lines[3]


def test_one_failing_request_logs_one_short_traceback(
        door: RunningServer, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:

    def broken() -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(door.app.service, "templates", broken)
    caplog.set_level(logging.INFO)
    r = Api(door).get(C.PATH_GET_EVALS, headers={C.HEADER_REQUEST_ID: "req-42"})
    body = assert_error(r, 500, "server_error", "server_error", "RuntimeError")
    assert body["status"] is False and r.headers[C.HEADER_REQUEST_ID] == "req-42"
    wait_for_access(caplog, C.PATH_GET_EVALS)
    tracebacks = [rec for rec in caplog.records
                  if rec.exc_info or "Traceback" in rec.getMessage()]
    assert len(tracebacks) == 1, [rec.getMessage()[:200] for rec in tracebacks]
    (record,) = tracebacks
    assert "rid=req-42" in record.getMessage() and "RuntimeError: a bug" in record.getMessage()
    assert len(record.getMessage()) < 20_000


def test_a_recursion_error_is_a_400_in_one_line(
        door: RunningServer, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A safety net behind the door limits: a RecursionError is the input's shape."""

    def recurse(depth: int = 0) -> Any:
        return recurse(depth + 1)

    monkeypatch.setattr(door.app.service, "templates", recurse)
    caplog.set_level(logging.INFO)
    r = Api(door).get(C.PATH_GET_EVALS)
    assert_error(r, 400, "validation_error", "invalid", "nested too deeply")
    wait_for_access(caplog, C.PATH_GET_EVALS)
    assert "Traceback" not in caplog.text
    assert len(caplog.text) < 2_000


def test_sync_results_are_counted_only_once_stored(
        door: RunningServer, monkeypatch: pytest.MonkeyPatch) -> None:

    def full_disk(*args: Any, **kwargs: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(door.app.store, "insert", full_disk)
    before_rows, before_count = stored(door), metric_sum(door, EVALUATIONS)
    r = Api(door).post(NEW, _new("is_json", {"text": ["{}", "[]"]}))
    assert_error(r, 500, "server_error", "server_error", "OSError")
    assert stored(door) == before_rows
    assert metric_sum(door, EVALUATIONS) == before_count


# ---------------------------------------------------------------------------- units


@pytest.mark.parametrize("pattern,problem", [
    (r"\b\d{3}-\d{3}-\d{4}\b", None),
    (r"^[a-f0-9]{8}(-[a-f0-9]{4}){3}-[a-f0-9]{12}$", None),
    (r"(?:x{10}){5}", None),
    (r".{0,100000}", None),  # a maximum costs nothing; only minimums are unrolled
    (r"(?:a{0,1000}){1000}", None),
    (r"[(]{1000}", None),  # a parenthesis in a class is no group...
    (r"\({1000}", None),  # ...nor an escaped one
    (r"(?#(((((((((((((((((((((((((((((((((((((((((())a", None),  # nor a comment
    ("a{1000}" * 100, None),  # 100,000: at the budget
    ("a{1000}" * 101, "max_pattern_expansion"),
    (BOMB, "max_pattern_expansion"),
    (r"(?:a{99999999999999}){2}", "max_pattern_expansion"),
    (r"(?:[ab]{1000}){300}", "max_pattern_expansion"),
    (r"(?:(?:a{10}){10}){1001}", "max_pattern_expansion"),
    ("(" * 33 + ")" * 33, "max_pattern_nesting"),
    ("(" * 32 + ")" * 32, None),
    ("a" * 10_001, "max_pattern_length"),
])
def test_pattern_problem(pattern: str, problem: str | None) -> None:
    from fi_evals.server.limits import DoorLimits, pattern_problem

    found = pattern_problem(pattern, DoorLimits())
    if problem is None:
        assert found is None, found
    else:
        assert found is not None and problem in found


def test_json_depth_is_exact_up_to_the_limit() -> None:
    from fi_evals.server.limits import json_depth

    assert json_depth("x", 5) == 0 and json_depth([], 5) == 1 and json_depth({}, 5) == 1
    assert json_depth({"a": ["x", {"b": [1, 2]}]}, 10) == 4
    assert json_depth(nested(50), 64) == 50
    assert json_depth(nested(500), 64) == 65  # stops one past the limit
    assert json_depth([["x"] * 1000, [[["deep"]]]], 10) == 4


def test_find_lone_surrogate_names_the_field() -> None:
    from fi_evals.server.limits import find_lone_surrogate

    assert find_lone_surrogate({"inputs": {"text": ["ok", "\N{GRINNING FACE}"]}}) is None
    assert find_lone_surrogate({"inputs": {"text": ["ok", "a\ud800"]}}) == "inputs.text[1]"
    assert find_lone_surrogate({"a": {"\udfff": 1}}) == "a.\\udfff (the key)"
    assert find_lone_surrogate("\ud800") == "body"


def test_printable_escapes_what_could_break_a_log_line() -> None:
    from fi_evals.server.errors import printable

    assert printable("/sdk/api/v1/new-eval/") == "/sdk/api/v1/new-eval/"
    assert printable("a\nb\rc\x1bd\u2028e\\f\ud800") == "a\\x0ab\\x0dc\\x1bd\\u2028e\\\\f\\ud800"
    accented = "caf\N{LATIN SMALL LETTER E WITH ACUTE}"
    assert printable(accented) == accented


def test_gateway_alone_answers_a_late_body_408() -> None:
    """Under another ASGI server (no deadline in the scope) the gateway times the body itself."""
    import asyncio

    from fi_evals.server.metrics import ServerMetrics
    from fi_evals.server.middleware import Gateway

    config = ServerConfig(read_timeout=0.2).with_keys()
    assert config.api_key is not None and config.secret_key is not None
    sent: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("the app must not run")

    async def receive() -> dict[str, Any]:
        await asyncio.sleep(30)
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    gateway = Gateway(app, config, ServerMetrics(lambda: 0))
    scope = {"type": "http", "method": "POST", "path": NEW, "headers": [
        (b"x-api-key", config.api_key.encode()), (b"x-secret-key", config.secret_key.encode())]}
    start = time.monotonic()
    asyncio.run(asyncio.wait_for(gateway(scope, receive, send), 5))
    assert time.monotonic() - start < 2
    assert sent[0]["status"] == 408 and (b"connection", b"close") in sent[0]["headers"]
    assert json.loads(sent[1]["body"])["code"] == "request_timeout"


def test_serve_flags_set_the_limits() -> None:
    from fi_evals.cli import build_parser
    from fi_evals.cli.serve import _config

    args = build_parser().parse_args([
        "serve", "--read-timeout", "5", "--max-json-depth", "10", "--max-schema-depth", "6",
        "--max-pattern-length", "100", "--max-pattern-nesting", "4",
        "--max-pattern-expansion", "1000", "--max-quadratic-input-chars", "5000",
        "--max-status-answer-mb", "2"])
    config = _config(args)
    assert (config.read_timeout, config.max_json_depth, config.max_schema_depth,
            config.max_pattern_length, config.max_pattern_nesting, config.max_pattern_expansion,
            config.max_quadratic_input_chars, config.max_status_answer_mb) == (
        5.0, 10, 6, 100, 4, 1000, 5000, 2.0)
    defaults = _config(build_parser().parse_args(["serve"]))
    assert defaults.max_json_depth == C.DEFAULT_MAX_JSON_DEPTH
    assert defaults.read_timeout == C.DEFAULT_REQUEST_READ_TIMEOUT
