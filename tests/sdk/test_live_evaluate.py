"""evaluate(), submit() and polling against the real reference server, in both modes.

Every test here runs twice (``sdk_server`` is parametrised): against a server with the
section B extensions, and against ``--compat`` (3-item chunks, per-id polling, ``value``
parsing).
"""

from __future__ import annotations

import json
import math

import pytest
from _helpers import metric_sum

from fi_evals import (
    BatchRunResult,
    EvalHandle,
    EvalResult,
    Evaluator,
    InvalidInputError,
    NotFoundError,
    Submission,
    UnknownTemplateError,
)

EVALS = "fi_evals_evaluations_total"


def json_texts(n: int) -> tuple[list[str], list[str]]:
    """n texts, every third one not JSON, with the expected verdicts."""
    texts = [json.dumps({"i": i}) if i % 3 else f"not json {i}" for i in range(n)]
    return texts, ["Passed" if i % 3 else "Failed" for i in range(n)]


class IsJson:  # what the official client's template classes look like
    eval_name = "is_json"


class Regex:
    eval_name = "regex"

    def __init__(self, config=None):
        self.config = config or {}


def test_one_dict_gives_one_result(evaluator: Evaluator):
    result = evaluator.evaluate("is_json", {"text": '{"a": 1}'})
    assert isinstance(result, BatchRunResult) and len(result) == 1
    item = result.eval_results[0]
    assert isinstance(item, EvalResult)
    assert (item.name, item.output, item.output_type, item.status) == (
        "is_json", "Passed", "Pass/Fail", "completed")
    assert item.eval_id and isinstance(item.runtime, int) and item.reason


def test_batches_come_back_in_input_order_in_chunks(evaluator: Evaluator, is_compat: bool):
    texts, expected = json_texts(40)
    assert evaluator.max_batch_size() == (3 if is_compat else 500)  # negotiated once
    before = evaluator.stats().requests
    result = evaluator.evaluate("is_json", {"text": texts})
    assert [r.output for r in result.eval_results] == expected
    assert len({r.eval_id for r in result.eval_results}) == 40
    sent = evaluator.stats().requests - before
    # 3 items per request without capabilities, one request for all 40 with them.
    assert sent == (math.ceil(40 / 3) if is_compat else 1)


def test_list_of_dicts_and_scores(evaluator: Evaluator):
    rows = [{"output": "kitten", "expected": "sitting"}, {"output": "same", "expected": "same"},
            {"output": 12, "expected": 12.0}]
    result = evaluator.evaluate("fuzzy_match", rows)
    scores = [r.score for r in result.eval_results]
    assert all(isinstance(s, float) and 0.0 <= s <= 1.0 for s in scores)
    assert scores[1] == 1.0 and scores[0] < 1.0
    assert all(r.output_type == "score" for r in result.eval_results)


def test_template_classes_instances_and_lists(evaluator: Evaluator):
    assert evaluator.evaluate(IsJson, {"text": "[]"}).eval_results[0].output == "Passed"
    found = evaluator.evaluate(Regex(config={"pattern": r"\d+"}), {"text": ["a1", "b"]})
    assert [r.output for r in found.eval_results] == ["Passed", "Failed"]
    via_config = evaluator.evaluate("regex", {"text": "zz"}, eval_config={"pattern": "z+"})
    assert via_config.eval_results[0].output == "Passed"
    both = evaluator.evaluate(["is_json", "one_line"], {"text": ["{}", "a\nb"]})
    assert [(r.name, r.output) for r in both.eval_results] == [
        ("is_json", "Passed"), ("is_json", "Failed"), ("one_line", "Passed"),
        ("one_line", "Failed")]


def test_dict_values_are_sent_as_json_strings(evaluator: Evaluator):
    result = evaluator.evaluate("is_json", [{"text": {"nested": [1, 2]}}, {"text": 7}])
    assert [r.output for r in result.eval_results] == ["Passed", "Passed"]
    record = evaluator.get_eval_result(result.eval_results[0].eval_id)["result"]["result"]
    assert json.loads(record["input_data"]["text"]) == {"nested": [1, 2]}
    assert evaluator.get_eval_result(result.eval_results[1].eval_id)[
        "result"]["result"]["input_data"]["text"] == "7"


def test_client_side_checks_send_nothing(evaluator: Evaluator, sdk_server):
    evaluator.evaluate("is_json", {"text": "{}"})  # capabilities fetched already
    before_requests = evaluator.stats().requests
    before_evals = metric_sum(sdk_server, EVALS)
    with pytest.raises(UnknownTemplateError) as unknown:
        evaluator.evaluate("is_jsn", {"text": "{}"})
    assert "is_json" in str(unknown.value)
    with pytest.raises(InvalidInputError) as missing:
        evaluator.evaluate("fuzzy_match", {"output": "a"})
    assert "'expected'" in str(missing.value)
    with pytest.raises(InvalidInputError, match="'response'"):
        evaluator.evaluate("is_json", {"response": "{}"})
    with pytest.raises(InvalidInputError, match="pattern"):
        evaluator.evaluate("regex", {"text": "a"})
    # The unknown name was looked up in the server's list (one GET, no evaluation).
    assert evaluator.stats().requests - before_requests <= 1
    assert metric_sum(sdk_server, EVALS) == before_evals


def test_async_results_are_pending_then_waited(evaluator: Evaluator, is_compat: bool):
    texts, expected = json_texts(10)
    pending = evaluator.evaluate("is_json", {"text": texts}, is_async=True)
    assert all(r.status == "pending" and r.eval_id and r.output is None
               for r in pending.eval_results)
    before = evaluator.stats().requests
    done = evaluator.wait_all(pending.eval_results, timeout=30)
    assert [r.output for r in done] == expected
    assert all(r.status == "completed" and r.runtime is not None for r in done)
    polls = evaluator.stats().requests - before
    # One id per GET without bulk status: at least one request per id.
    assert polls >= 10 if is_compat else polls < 10


def test_submit_returns_a_handle_per_item(evaluator: Evaluator):
    submission = evaluator.submit("is_json", {"text": ["{}", "nope", "[1]"]})
    assert isinstance(submission, Submission) and len(submission) == 3
    assert all(isinstance(h, EvalHandle) and h.id for h in submission)
    submission.wait(timeout=30, raise_on_failure=False)
    assert [h.result.output for h in submission] == ["Passed", "Failed", "Passed"]
    assert submission.is_done() and submission[1].is_done()
    # Rebuilt from the id alone, as another process would.
    handle = evaluator.get_execution(submission.ids[1])
    assert handle.status == "completed" and handle.result.output == "Failed"
    assert handle.wait(timeout=5) is handle
    raw = evaluator.get_eval_result(submission.ids[0])
    assert raw["status"] is True and raw["result"]["eval_status"] == "completed"
    assert raw["result"]["result"]["value"] == "Passed"
    typed = evaluator.get_result(submission.ids[2])
    assert typed.output == "Passed" and typed.eval_id == submission.ids[2]


def test_single_submission_behaves_like_one_handle(evaluator: Evaluator):
    handle = evaluator.submit("fuzzy_match", {"output": "abc", "expected": "abc"})
    handle.wait(timeout=30)
    assert handle.status == "completed" and handle.result.output == 1.0
    assert handle.id == handle[0].id
    with pytest.raises(AttributeError, match="index it"):
        evaluator.submit("is_json", {"text": ["{}", "{}"]}).id  # noqa: B018


def test_refresh_and_unknown_ids(evaluator: Evaluator):
    submission = evaluator.submit("is_json", {"text": ["{}", "x"]})
    submission.wait(timeout=30, raise_on_failure=False)
    assert submission.refresh().is_done()
    unknown = "00000000-0000-4000-8000-000000000000"
    with pytest.raises(NotFoundError):
        evaluator.get_eval_result(unknown)
    [missing, found] = evaluator.wait_all([unknown, submission.ids[0]], timeout=10)
    assert missing.status == "error" and missing.error.status_code == 404
    assert found.output == "Passed"
