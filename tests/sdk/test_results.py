"""EvalResult / BatchRunResult built from wire payloads (no network)."""

from __future__ import annotations

import pytest

from fi_evals._exceptions import ItemError
from fi_evals.protocol import EvalItem, EvalResultPayload
from fi_evals.results import BatchRunResult, EvalResult, normalize_status

pytestmark = pytest.mark.unit  # no server, no model: `make unit` runs this file


def payload(status: str, result=None, error=None) -> EvalResultPayload:
    return EvalResultPayload.model_validate(
        {"eval_status": status, "result": result, "error_message": error})


def record(**fields):
    return {"eval_id": "e1", "name": "fuzzy_match", "output_type": "score", **fields}


def test_sync_item():
    item = EvalItem(name="is_json", output="Failed", reason="not JSON", runtime=2,
                    output_type="Pass/Fail", eval_id="e1")
    result = EvalResult.from_item(item)
    assert result.ok and result.passed is False and result.status == "completed"
    assert "Failed" in repr(result) and "e1" in repr(result)


@pytest.mark.parametrize("fields", [
    {"name": "fuzzy_match", "output": 0.75, "reason": "close", "runtime": 3,
     "output_type": "score", "eval_id": "e1"},
    {"name": "is_json", "output": "Passed", "runtime": 2.5, "eval_id": "e2"},
    {"name": "tone", "output": ["joy"], "reason": None, "runtime": None, "output_type": "choices"},
])
def test_from_item_equals_the_validated_construction(fields):
    # from_item skips re-validation (issue 20): what it builds must be what validation builds.
    item = EvalItem(**fields)
    built = EvalResult.from_item(item)
    validated = EvalResult(name=item.name, output=item.output, reason=item.reason,
                           runtime=item.runtime, output_type=item.output_type,
                           eval_id=item.eval_id)
    assert built == validated
    assert built.model_dump() == validated.model_dump()
    assert list(built.model_dump()) == list(validated.model_dump())  # same order (issue 20)
    assert built.model_fields_set == validated.model_fields_set
    assert type(built.output) is type(validated.output)
    built.status = "failed"  # results stay mutable, and defaults are not shared
    assert EvalResult.from_item(EvalItem(**fields)).status == "completed"


def test_from_item_keeps_a_judge_cache_answer() -> None:
    item = EvalItem(name="is_polite", output="Passed", reason="[judge m, prompt p, cached] ok",
                    runtime=0, output_type="Pass/Fail", eval_id="e1", cached=True)
    built = EvalResult.from_item(item)
    validated = EvalResult(name=item.name, output=item.output, reason=item.reason,
                           runtime=item.runtime, output_type=item.output_type,
                           eval_id=item.eval_id, cached=True)
    assert built.cached is True
    assert built == validated and built.model_fields_set == validated.model_fields_set


def test_async_item_is_pending():
    result = EvalResult.from_item(EvalItem(name="is_json", eval_id="e2", output_type="Pass/Fail"),
                                  pending=True)
    assert result.status == "pending" and result.output is None and not result.finished


def test_value_fallback_and_lenient_runtime():
    done = EvalResult.from_payload("e1", payload("completed", record(value="0.8", runtime=None)))
    assert done.output == 0.8 and done.score == 0.8 and done.runtime is None
    native = EvalResult.from_payload("e1", payload("completed", record(
        value="0.8", output=0.75, runtime=3.5)))
    assert native.output == 0.75 and native.runtime == 3.5


def test_unfinished_failed_and_unknown_statuses():
    pending = EvalResult.from_payload("e1", payload("processing",
                                                    "Evaluation is being processed."))
    assert pending.status == "processing" and not pending.finished
    failed = EvalResult.from_payload("e1", payload("failed", record(
        value="", runtime=0, error_message="judge unreachable")))
    assert failed.status == "failed" and failed.output is None
    assert failed.error == ItemError("EvalFailedError", "judge unreachable")
    odd = EvalResult.from_payload("e1", payload("QUEUED_FOR_GPU"))
    assert odd.status == "pending" and "QUEUED_FOR_GPU" in odd.reason
    missing = EvalResult.from_payload("e1", payload("not_found"))
    assert missing.status == "error" and missing.error.status_code == 404
    assert normalize_status("RUNNING") == "processing" and normalize_status(None) == "pending"


def test_batch_result_views():
    ok = EvalResult(name="is_json", output="Passed", status="completed")
    bad = EvalResult.from_error("is_json", ItemError("BadRequestError", "bad", 400))
    batch = BatchRunResult(eval_results=[ok, bad])
    assert len(batch) == 2 and batch[1] is bad and not batch.ok
    assert batch.errors == [(1, bad.error)]
    assert batch.counts() == {"completed": 1, "error": 1}
    assert repr(batch) == "BatchRunResult(2 results: 1 completed, 1 error)"
    dumped = batch.model_dump()  # pydantic, like the official model
    assert dumped["eval_results"][1]["error"]["status_code"] == 400
    assert bad.reason == "bad"  # the official client's callers read reason


def test_a_sync_item_that_could_not_run_is_failed():
    item = EvalItem(name="is_json", output=None, reason="judge unreachable", runtime=0,
                    output_type="Pass/Fail", eval_id="e3", eval_status="failed",
                    error_message="judge unreachable")
    result = EvalResult.from_item(item)
    assert result.status == "failed" and not result.ok and result.passed is None
    assert result.error == ItemError("EvalFailedError", "judge unreachable")
    # From a server without eval_status: no output at all reads as failed too.
    bare = EvalResult.from_item(EvalItem(name="is_json", output=None, reason="boom"))
    assert bare.status == "failed" and bare.error.message == "boom"
