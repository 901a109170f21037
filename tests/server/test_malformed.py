"""Acceptance 10: malformed requests get the right 4xx naming the problem, then the server still
works normally. Nothing malformed is ever stored (the queue and the evaluation counters stay
untouched)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from _helpers import metric_sum

from fi_evals import _constants as C

from .conftest import Api, assert_error

NEW = C.PATH_NEW_EVAL
STATUS = C.PATH_BULK_STATUS
OK_BODY = {"eval_name": "is_json", "inputs": {"text": "{}"}}


def body(**changes: Any) -> bytes:
    payload: dict[str, Any] = {**OK_BODY, **changes}
    for key in [k for k, v in changes.items() if v is _DROP]:
        del payload[key]
    return json.dumps(payload).encode()


_DROP = object()

# (case id, path, raw body, status, needles the message must contain, details key or None)
CASES: list[tuple[str, str, bytes, int, tuple[str, ...], str | None]] = [
    ("empty body", NEW, b"", 400, ("empty",), None),
    ("whitespace body", NEW, b"  \n ", 400, ("empty",), None),
    ("invalid json", NEW, b'{"eval_name": "is_json",', 400, ("not valid JSON",), None),
    ("trailing garbage", NEW, body() + b"xx", 400, ("not valid JSON",), None),
    ("bad utf-8", NEW, b'{"eval_name": "is_json", "inputs": {"text": "\xff\xfe"}}', 400,
     ("UTF-8",), None),
    ("NaN", NEW, b'{"eval_name": "is_json", "inputs": {"text": "x"}, "model": NaN}', 400,
     ("NaN",), None),
    ("Infinity", NEW, b'{"eval_name": "is_json", "inputs": {"text": "x"}, "x": -Infinity}', 400,
     ("Infinity",), None),
    ("huge number", NEW, b'{"eval_name": "is_json", "inputs": {"text": 1e999}}', 400,
     ("out of range",), None),
    ("array body", NEW, b'[1, 2]', 400, ("JSON object", "list"), None),
    ("string body", NEW, b'"is_json"', 400, ("JSON object", "string"), None),
    ("missing eval_name", NEW, body(eval_name=_DROP), 400, ("eval_name", "required"),
     "eval_name"),
    ("missing inputs", NEW, body(inputs=_DROP), 400, ("inputs", "required"), "inputs"),
    ("unknown top-level key", NEW, body(temperature=0.2), 400, ("temperature", "unknown key"),
     "temperature"),
    ("eval_name not a string", NEW, body(eval_name=7), 400, ("eval_name", "string"),
     "eval_name"),
    ("empty eval_name", NEW, body(eval_name=""), 400, ("eval_name",), "eval_name"),
    ("inputs a list", NEW, body(inputs=["{}"]), 400, ("inputs", "object"), "inputs"),
    ("is_async a string", NEW, body(is_async="yes"), 400, ("is_async",), "is_async"),
    ("model a number", NEW, body(model=4), 400, ("model",), "model"),
    ("config a string", NEW, body(config="x"), 400, ("config",), "config"),
    ("params a list", NEW, body(eval_name="regex", config={"params": ["x"]}), 400,
     ("config.params",), "config.params"),
    ("unknown template", NEW, body(eval_name="is_jsonn"), 400, ("unknown template", "is_json"),
     "eval_name"),
    ("missing input key", NEW, body(inputs={}), 400, ("inputs.text", "missing"), "inputs.text"),
    ("extra input key", NEW, body(inputs={"text": "{}", "output": "x"}), 400,
     ("inputs.output", "unexpected"), "inputs.output"),
    ("number input", NEW, body(inputs={"text": 5}), 400, ("inputs.text", "int"), "inputs.text"),
    ("null input", NEW, body(inputs={"text": None}), 400, ("inputs.text", "null"),
     "inputs.text"),
    ("wrong type inside batch", NEW, body(inputs={"text": ["a", "b", "c", 4]}), 400,
     ("inputs.text[3]", "string"), "inputs.text[3]"),
    ("unequal batch lists", NEW,
     body(eval_name="fuzzy_match", inputs={"output": ["a", "b"], "expected": ["a"]}), 400,
     ("unequal", "output has 2", "expected has 1"), "inputs.output"),
    ("string mixed with batch", NEW,
     body(eval_name="fuzzy_match", inputs={"output": ["a", "b"], "expected": "a"}), 400,
     ("mix",), "inputs.expected"),
    ("empty batch", NEW, body(inputs={"text": []}), 400, ("empty batch",), "inputs"),
    ("batch over max_batch_size", NEW, body(inputs={"text": ["{}"] * 501}), 400,
     ("501", "max_batch_size 500"), "inputs"),
    ("missing required param", NEW, body(eval_name="regex"), 400,
     ("config.params", "pattern"), "config.params"),
    ("param of wrong type", NEW, body(eval_name="length_less_than",
                                      config={"params": {"max_length": "ten"}}), 400,
     ("config.params.max_length",), "config.params.max_length"),
    ("unknown param", NEW, body(config={"params": {"strict": True}}), 400,
     ("strict",), None),
    ("invalid regex", NEW, body(eval_name="regex", config={"params": {"pattern": "("}}), 400,
     ("regex",), "config.params"),
    ("model-judged template", NEW, body(eval_name="is_polite", inputs={"output": "x"}), 400,
     ("cannot be evaluated",), "eval_name"),
    ("bulk: not an object", STATUS, b"[]", 400, ("JSON object",), None),
    ("bulk: missing eval_ids", STATUS, b"{}", 400, ("eval_ids", "required"), "eval_ids"),
    ("bulk: extra key", STATUS, json.dumps({"eval_ids": [], "x": 1}).encode(), 400,
     ("unknown key",), "x"),
    ("bulk: eval_ids a string", STATUS, json.dumps({"eval_ids": "abc"}).encode(), 400,
     ("eval_ids", "list"), "eval_ids"),
    ("bulk: non-uuid id", STATUS,
     json.dumps({"eval_ids": [str(uuid.uuid4()), "42"]}).encode(), 400,
     ("eval_ids[1]", "UUID"), "eval_ids[1]"),
    ("bulk: 2,000 ids", STATUS,
     json.dumps({"eval_ids": [str(uuid.uuid4()) for _ in range(2000)]}).encode(), 400,
     ("2000", "max_status_ids 1000"), "eval_ids"),
]


def test_there_are_at_least_thirty_cases() -> None:
    assert len(CASES) >= 30


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_malformed_request(api: Api, case: tuple[str, str, bytes, int, tuple[str, ...],
                                                 str | None]) -> None:
    _, path, raw, status, needles, field = case
    stored_before = metric_sum(api.server, "fi_evals_evaluations_total")
    r = api.post(path, data=raw)
    envelope = assert_error(r, status, "validation_error", "invalid", *needles)
    if field is not None:
        assert field in (envelope.get("details") or {}), envelope
    assert metric_sum(api.server, "fi_evals_evaluations_total") == stored_before
    # ...and a normal request still succeeds on the same connection.
    ok = api.post(NEW, OK_BODY)
    assert ok.status_code == 200 and ok.json()["result"][0]["evaluations"][0]["output"] == "Passed"


def test_twenty_megabyte_body_is_413(api: Api) -> None:
    blob = json.dumps({"eval_name": "is_json", "inputs": {"text": "x" * (20 * 1024 * 1024)}})
    r = api.post(NEW, data=blob.encode())
    assert_error(r, 413, "validation_error", "too_large", "10 MB")
    assert api.post(NEW, OK_BODY).status_code == 200


def test_streamed_body_over_the_limit_is_413(server_factory: Any) -> None:
    api = Api(server_factory(max_body_mb=1))

    def chunks() -> Any:  # chunked transfer: no Content-Length to check up front
        yield b'{"eval_name": "is_json", "inputs": {"text": "'
        for _ in range(3):
            yield b"x" * (512 * 1024)
        yield b'"}}'

    r = api.session.post(api.url + NEW, data=chunks(), headers=api.headers)
    assert_error(r, 413, "validation_error", "too_large", "1 MB")
    assert api.post(NEW, OK_BODY).status_code == 200


@pytest.mark.parametrize("key", ["", "x" * 300])
def test_bad_idempotency_key(api: Api, key: str) -> None:
    r = api.post(NEW, OK_BODY, headers={C.HEADER_IDEMPOTENCY_KEY: key})
    assert_error(r, 400, "validation_error", "invalid", C.HEADER_IDEMPOTENCY_KEY)
