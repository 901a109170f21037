"""Bulk-status entries read as plain dicts (issue 20): the same results as the wire models and
``EvalResult.from_payload`` give, the same errors for answers the models refuse."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from fi_evals._polling import _lean_result, read_entries
from fi_evals.protocol import BulkStatusEntry
from fi_evals.results import EvalResult

pytestmark = pytest.mark.unit

RECORD = {"eval_id": "e1", "name": "is_json", "input_data": {"text": "{}"},
          "output_type": "Pass/Fail", "value": "Passed", "reason": "ok", "runtime": 2,
          "model": None, "error_message": None, "output": "Passed"}

ENTRIES: list[dict[str, Any]] = [
    {"eval_id": "e1", "eval_status": "completed", "evalStatus": "completed", "result": RECORD,
     "error_message": None},
    {"eval_id": "e2", "eval_status": "completed", "result": {
        **RECORD, "eval_id": "e2", "output": None, "value": "0.75", "output_type": "score",
        "runtime": 1.5, "cached": True, "model": "m", "extra_field": 1}},
    {"eval_id": "e3", "eval_status": "completed", "result": {
        **RECORD, "eval_id": "e3", "output": None, "value": '["a", "b"]',
        "output_type": "choices"}},
    {"eval_id": "e4", "eval_status": "completed", "result": {**RECORD, "eval_id": "", "name": ""}},
    {"eval_id": "e5", "eval_status": "pending", "result": "Evaluation is being processed.",
     "error_message": None},
    {"eval_id": "e6", "eval_status": "processing", "result": None},
    {"eval_id": "e7", "eval_status": "failed", "result": {
        **RECORD, "eval_id": "e7", "output": None, "value": None,
        "error_message": "judge down"}, "error_message": "judge down"},
    {"eval_id": "e8", "eval_status": "not_found", "result": None, "error_message": "no such id"},
    {"eval_id": "e9", "eval_status": "weird", "result": None},
    {"eval_id": "e10", "eval_status": "Completed", "result": {**RECORD, "eval_id": "e10"}},
]


def _by_models(entry: dict[str, Any], name: str) -> EvalResult:
    payload = BulkStatusEntry.model_validate(entry)
    return EvalResult.from_payload(entry["eval_id"], payload, name)


def test_lean_results_equal_the_models_results() -> None:
    lean = read_entries(ENTRIES)
    assert all(e.__class__ is dict for e in lean)
    fast = 0
    for raw, entry in zip(ENTRIES, lean, strict=True):
        built = _lean_result(raw["eval_id"], entry, "given-name")
        expected = _by_models(raw, "given-name")
        if built is None:  # the rare shapes go through the models, as before
            assert _by_models(entry, "given-name") == expected
            continue
        fast += 1
        assert built == expected
        assert built.model_fields_set == expected.model_fields_set
    assert fast == 6  # completed (4) and pending/processing (2)


def test_an_alias_only_answer_is_read_by_the_models() -> None:
    entries = read_entries([{"eval_id": "a", "evalStatus": "completed", "result": RECORD}])
    assert isinstance(entries[0], BulkStatusEntry) and entries[0].eval_status == "completed"


@pytest.mark.parametrize("bad", [
    [{"eval_id": "a", "eval_status": "completed", "result": {"name": "x"}}],
    [{"eval_id": "a", "eval_status": "completed", "result": {**RECORD, "input_data": "x"}}],
    [{"eval_id": "a", "eval_status": "completed", "result": {**RECORD, "runtime": "slow"}}],
    [{"eval_status": "completed"}],
    ["not an entry"],
])
def test_what_the_models_refuse_is_refused(bad: list[Any]) -> None:
    with pytest.raises(ValidationError):
        BulkStatusEntry.model_validate(bad[0])
    with pytest.raises(ValidationError):
        read_entries(bad)


def test_a_result_that_is_not_a_list_is_refused() -> None:
    with pytest.raises(TypeError):
        read_entries({"eval_id": "a"})
