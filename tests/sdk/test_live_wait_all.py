"""``wait_all`` takes whatever ``evaluate(is_async=True)`` and ``submit()`` return, against a real
server whose evaluations take 200 ms: each result must come back finished with a verdict (a
call that returned at once would hand back ``pending`` results without output)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from fi_evals import BatchRunResult, EvalHandle, EvalResult, Evaluator, Submission
from fi_evals.server.runner import RunningServer

TEXTS = ['{"a": 1}', "not json", "[1, 2]"]
VERDICTS = ["Passed", "Failed", "Passed"]


@pytest.fixture
def slow_server(server_factory: Callable[..., RunningServer]) -> RunningServer:
    return server_factory(sim_latency_ms=200, access_log=False)


@pytest.fixture
def ev(slow_server: RunningServer) -> Iterator[Evaluator]:
    with Evaluator(slow_server.api_key, slow_server.secret_key, slow_server.url,
                   timeout=60) as client:
        yield client


def finished(results: list[EvalResult]) -> list[Any]:
    """The verdicts, after checking every result is finished and scored."""
    assert all(isinstance(r, EvalResult) for r in results)
    assert all(r.status == "completed" and r.eval_id for r in results), results
    return [r.output for r in results]


def test_a_batch_run_result_from_async_evaluate_is_waited_for(ev: Evaluator) -> None:
    submitted = ev.evaluate("is_json", {"text": TEXTS}, is_async=True)
    assert isinstance(submitted, BatchRunResult)
    assert [r.status for r in submitted.eval_results] == ["pending"] * 3  # type: ignore[union-attr]
    assert finished(ev.wait_all(submitted, timeout=30)) == VERDICTS


def test_a_submission_and_its_handles_are_waited_for_and_updated(ev: Evaluator) -> None:
    submission = ev.submit("is_json", {"text": TEXTS})
    assert isinstance(submission, Submission)
    assert finished(ev.wait_all(submission, timeout=30)) == VERDICTS
    assert [h.result.output for h in submission] == VERDICTS  # handles updated in place

    one = ev.submit("is_json", {"text": TEXTS[1]})[0]
    assert isinstance(one, EvalHandle)
    assert finished(ev.wait_all(one, timeout=30)) == ["Failed"]
    assert one.is_done() and one.result.output == "Failed"


def test_one_eval_result_or_one_id(ev: Evaluator) -> None:
    submitted = ev.evaluate("is_json", {"text": TEXTS[:2]}, is_async=True)
    first, second = submitted.eval_results
    assert first is not None and second is not None and second.eval_id
    assert finished(ev.wait_all(first, timeout=30)) == ["Passed"]
    assert finished(ev.wait_all(second.eval_id, timeout=30)) == ["Failed"]


def test_lists_tuples_and_generators_mixing_everything_keep_the_order_given(
        ev: Evaluator) -> None:
    batch = ev.evaluate("is_json", {"text": TEXTS}, is_async=True)
    submission = ev.submit("is_json", {"text": TEXTS[::-1]})
    handle = ev.submit("is_json", {"text": "not json either"})[0]
    lone = ev.evaluate("is_json", {"text": "{}"}, is_async=True).eval_results[0]
    by_id = ev.evaluate("is_json", {"text": "nope"}, is_async=True).eval_ids[0]
    assert lone is not None and by_id is not None

    mixed = [batch, submission, handle, lone, by_id]
    expected = VERDICTS + VERDICTS[::-1] + ["Failed", "Passed", "Failed"]
    assert finished(ev.wait_all(mixed, timeout=30)) == expected
    # Finished results are not asked again; the same inputs in other containers agree.
    assert finished(ev.wait_all(tuple(mixed), timeout=30)) == expected
    assert finished(ev.wait_all((x for x in mixed), timeout=30)) == expected
    ids = [r.eval_id for r in ev.wait_all(mixed, timeout=30)]
    assert ids[:3] == batch.eval_ids and ids[3:6] == submission.ids


def test_an_empty_list_waits_for_nothing(ev: Evaluator) -> None:
    assert ev.wait_all([]) == []


@pytest.mark.parametrize(("value", "named"), [
    (5, "int 5"),
    ({"eval_id": "x"}, "dict"),
    (None, "None"),
    (b"an-id", "bytes"),
    (object(), "object"),
    ([1], "int 1 at position 0"),
    (["an-id", None], "None at position 1"),
    ([["an-id"]], "list ['an-id'] at position 0"),
    ((x for x in [3.5]), "float 3.5 at position 0"),
    (BatchRunResult(eval_results=[None]), "no result at position(s) [0]"),
])
def test_anything_else_is_a_type_error_before_any_request(ev: Evaluator, value: Any,
                                                          named: str) -> None:
    before = ev.stats().requests
    with pytest.raises(TypeError) as caught:
        ev.wait_all(value)
    message = str(caught.value)
    assert named in message
    if "no result" not in message:
        assert "BatchRunResult" in message and "Submission" in message and "str" in message
    assert ev.stats().requests == before
