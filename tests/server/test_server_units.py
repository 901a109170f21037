"""Pure unit tests of the server's small parts (no network)."""

from __future__ import annotations

import uuid
from collections import Counter

import pytest

from fi_evals.server.config import ServerConfig
from fi_evals.server.errors import ApiError
from fi_evals.server.faults import FaultPlan
from fi_evals.server.keys import KeyChecker
from fi_evals.server.ratelimit import TokenBucketLimiter
from fi_evals.server.service import new_eval_ids, value_string
from fi_evals.server.validation import canonical_eval_id, parse_json

pytestmark = pytest.mark.unit  # no server, no model: `make unit` runs this file


def test_fault_plan_parses_and_draws_in_proportion() -> None:
    plan = FaultPlan.parse("500:0.2, reset:0.1,slow:0", seed=1)
    assert plan.probabilities == (("500", 0.2), ("reset", 0.1), ("slow", 0.0))
    drawn = Counter(plan.draw() for _ in range(20_000))
    assert 0.18 < drawn["500"] / 20_000 < 0.22
    assert 0.08 < drawn["reset"] / 20_000 < 0.12
    assert drawn["slow"] == 0
    again = FaultPlan.parse("500:0.2,reset:0.1", seed=1)
    first = FaultPlan.parse("500:0.2,reset:0.1", seed=1)
    assert [again.draw() for _ in range(50)] == [first.draw() for _ in range(50)]


@pytest.mark.parametrize("spec,needle", [("boom:0.1", "boom"), ("500", "KIND:PROBABILITY"),
                                         ("500:x", "not a number"), ("429:1.5", "[0, 1]"),
                                         ("500:0.6,503:0.6", "more than 1")])
def test_fault_plan_rejects_bad_specs(spec: str, needle: str) -> None:
    with pytest.raises(ValueError) as info:
        FaultPlan.parse(spec)
    assert needle in str(info.value)


def test_token_bucket() -> None:
    bucket = TokenBucketLimiter(rate=2, burst=3)
    decisions = [bucket.acquire("k", now=100.0) for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert decisions[0].remaining == 2 and decisions[3].remaining == 0
    assert decisions[3].retry_after == 1 and decisions[3].reset == 2
    assert decisions[3].headers()["X-RateLimit-Limit"] == "3"
    assert bucket.acquire("k", now=100.5).allowed  # one token back after 1/rate s
    assert not bucket.acquire("k", now=100.5).allowed
    assert bucket.acquire("other", now=100.5).allowed  # buckets are per key


def test_key_checker() -> None:
    checker = KeyChecker("api", "secret")
    assert checker.check(b"api", b"secret")
    assert not checker.check(b"api", b"secreT")
    assert not checker.check(None, b"secret")
    assert "secret" not in repr(checker) and "api" not in repr(checker).split("key=")[1]


def test_config_validation_and_repr() -> None:
    with pytest.raises(ValueError, match="workers"):
        ServerConfig(workers=0)
    with pytest.raises(ValueError, match="both"):
        ServerConfig(api_key="only-one")
    config = ServerConfig(port=0, db_path="x.db").with_keys()
    assert config.api_key and config.secret_key and config.keys_generated is False
    assert config.secret_key not in repr(config) and "***" in repr(config)
    assert config.max_body_bytes == 10 * 1024 * 1024


@pytest.mark.parametrize("raw,needle", [(b"", "empty"), (b"\xc3(", "UTF-8"),
                                        (b'{"a": NaN}', "NaN"), (b"[1e400]", "out of range"),
                                        (b'{"a": 1', "not valid JSON")])
def test_parse_json_is_strict(raw: bytes, needle: str) -> None:
    with pytest.raises(ApiError) as info:
        parse_json(raw)
    assert info.value.status == 400 and needle in info.value.message


def test_eval_ids_are_time_ordered_uuid7() -> None:
    first, second = new_eval_ids(200), new_eval_ids(200)
    assert len(set(first + second)) == 400
    for eval_id in first:
        parsed = uuid.UUID(eval_id)
        assert parsed.version == 7 and parsed.variant == uuid.RFC_4122
        assert canonical_eval_id(eval_id.upper()) == eval_id
    assert first[0][:8] <= second[0][:8]


def test_value_string() -> None:
    assert value_string("Passed") == "Passed"
    assert value_string(0.8) == "0.8"
    assert value_string(["joy", "fear"]) == '["joy", "fear"]'
    assert value_string(None) is None


@pytest.mark.parametrize("compat", [False, True])
def test_sync_answer_is_what_json_bytes_makes_of_the_dicts(compat: bool) -> None:
    # The sync answer is written in one pass (issue 20); it must stay byte for byte the
    # dict-then-encode answer, for every kind of output, reason and failure.
    from fi_evals.protocol import EvalStatus
    from fi_evals.server.errors import json_bytes
    from fi_evals.server.executor import ItemResult
    from fi_evals.server.service import sync_answer

    done, failed = EvalStatus.COMPLETED, EvalStatus.FAILED
    results = [
        ItemResult(status=done, output="Passed", reason='is "JSON" \u00e9\n', runtime=1,
                   error_message=None),
        ItemResult(status=done, output=0.1 + 0.2, reason=None, runtime=0, error_message=None),
        ItemResult(status=done, output=["joy", "\u2028x"], reason="r", runtime=3,
                   error_message=None),
        ItemResult(status=done, output={"a": [1, True, None]}, reason="r", runtime=2,
                   error_message=None),
        ItemResult(status=done, output=True, reason="r", runtime=2, error_message=None),
        ItemResult(status=failed, output=None, reason=None, runtime=5,
                   error_message="evaluator error: ValueError: \\ bad"),
    ]
    ids = new_eval_ids(len(results))
    entries = []
    for eval_id, r in zip(ids, results):
        entry = {"name": "tone", "output": r.output,
                 "reason": r.reason if r.error_message is None else r.error_message,
                 "runtime": r.runtime, "output_type": "choices", "eval_id": eval_id}
        if not compat:
            entry["eval_status"] = r.status
            entry["error_message"] = r.error_message
        entries.append(entry)
    body, outputs, n_failed = sync_answer("tone", "choices", ids, results, compat)
    assert body == json_bytes({"status": True, "result": [{"evaluations": entries}]})
    assert n_failed == 1
    assert outputs[0] == '"Passed"' and outputs[4] == "true" and outputs[5] is None
    for bad in ("nan", "inf", "-inf"):  # strict JSON, as json_bytes: no NaN in an answer
        with pytest.raises(ValueError):
            sync_answer("tone", "score", ids[:1], [ItemResult(
                status=done, output=float(bad), reason=None, runtime=0, error_message=None)],
                compat)
