"""Issue 20, point 4: the batch engine's fast reading of new-eval answers is the checked one.

``read_new_eval_fast`` reads the raw body in one pydantic call and ``EvalResult.from_wire``
builds each result without an ``EvalItem``; for every answer it accepts, the results must equal,
field for field (values, types, fields set, dump order), what the checked path builds
(``json.loads``, ``flatten_evaluations``, ``EvalItem``, ``EvalResult.from_item``), and every
answer the checked path refuses must be left to it (None). No network.
"""

from __future__ import annotations

import json
import typing
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fi_evals._answers import SyncItemWire, flatten_evaluations, read_new_eval_fast
from fi_evals._transport import _EVAL_ITEMS
from fi_evals.protocol import EvalItem
from fi_evals.results import EvalResult

pytestmark = pytest.mark.unit

ID = "01a22c82-6e02-7a7e-a372-45a3b85ee8e1"


def checked(raw: bytes, pending: bool = False) -> list[EvalResult] | None:
    """What Transport._parse + new_eval + from_item make of ``raw``; None if they refuse it."""
    try:
        body = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(body, dict) or body.get("status") is False or "result" not in body:
        return None
    try:
        items = _EVAL_ITEMS.validate_python(flatten_evaluations(body["result"]))
    except (ValueError, TypeError):
        return None
    return [EvalResult.from_item(item, pending=pending) for item in items]


def fast(raw: bytes, pending: bool = False) -> list[EvalResult] | None:
    items = read_new_eval_fast(raw)
    if items is None:
        return None
    build = EvalResult.pending_from_wire if pending else EvalResult.from_wire
    return [build(item) for item in items]


def assert_same(got: list[EvalResult], want: list[EvalResult]) -> None:
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert a == b
        assert a.model_dump() == b.model_dump()
        assert list(a.model_dump()) == list(b.model_dump())  # same field order
        assert a.model_fields_set == b.model_fields_set
        assert type(a.output) is type(b.output) and type(a.runtime) is type(b.runtime)
        assert repr(a) == repr(b)


def answer(*items: dict[str, Any], blocks: int = 1, **envelope: Any) -> bytes:
    size = -(-len(items) // blocks) or 1  # contiguous parts: the order of the items is kept
    per = [list(items[i:i + size]) for i in range(0, max(len(items), 1), size)]
    return json.dumps({"status": True, **envelope,
                       "result": [{"evaluations": part} for part in per]}).encode()


def test_the_wire_dict_has_the_fields_and_types_of_eval_item() -> None:
    hints = typing.get_type_hints(SyncItemWire, include_extras=True)
    assert list(hints) == list(EvalItem.model_fields)
    for name, info in EvalItem.model_fields.items():
        hint = hints[name]
        base = typing.get_args(hint)[0] if typing.get_origin(hint) is typing.Annotated else hint
        assert base == info.annotation, name
        if name == "name":
            assert info.is_required()
        else:  # the wire dict's default (None) is EvalItem's
            assert not info.is_required() and info.default is None, name


USUAL = [
    {"name": "fuzzy_match", "output": 0.83, "reason": "similarity 0.83", "runtime": 0,
     "output_type": "score", "eval_id": ID, "eval_status": "completed"},
    {"name": "is_json", "output": "Failed", "reason": "not JSON", "runtime": 2.5,
     "output_type": "Pass/Fail", "eval_id": ID},
    {"name": "is_polite", "output": "Passed", "reason": "[judge m, prompt p, cached] ok",
     "runtime": 1, "output_type": "Pass/Fail", "eval_id": ID, "cached": True},
    {"name": "tone", "output": ["joy", "calm"], "output_type": "choices"},
    {"name": "fuzzy_match", "output": 1, "runtime": "3", "eval_status": " Completed "},
    {"name": "one_line", "output": None, "reason": "boom", "eval_status": "failed",
     "error_message": "the evaluator crashed", "eval_id": ID},
    {"name": "one_line", "output": "x", "eval_status": "FAILED", "error_message": "no"},
    {"name": "is_json", "output": None, "reason": "no output at all"},
    {"name": "is_json", "output": "Passed", "cached": False, "model": "m", "status": "error",
     "error": {"type": "X"}, "future_field": [1, 2]},  # unknown to EvalItem: ignored
    {"name": "fuzzy_match", "output": {"nested": [1, 2.5, None]}, "runtime": None},
]


@pytest.mark.parametrize("pending", [False, True])
@pytest.mark.parametrize("blocks", [1, 3])
def test_usual_answers_are_read_fast_and_give_the_checked_results(blocks: int,
                                                                   pending: bool) -> None:
    raw = answer(*USUAL, blocks=blocks)
    got = fast(raw, pending)
    want = checked(raw, pending)
    assert got is not None and want is not None
    assert_same(got, want)
    assert [r.status for r in got][:3] == (["pending"] * 3 if pending else ["completed"] * 3)


def test_special_numbers_and_big_integers_read_the_same() -> None:
    raw = (b'{"status":true,"result":[{"evaluations":[{"name":"a","output":NaN,"runtime":1e400},'
           b'{"name":"a","name":"b","output":123456789012345678901234567890,"runtime":-0.0}]}]}')
    got, want = fast(raw), checked(raw)
    assert got is not None and want is not None
    assert str(got[0].output) == "nan" and got[0].runtime == float("inf")
    assert got[1].name == "b" and got[1].output == want[1].output
    assert_same(got[1:], want[1:])


@pytest.mark.parametrize("raw", [
    b"<html>gateway</html>",
    b'{"status": true}',
    b"[1, 2, 3]",
    b'{"status": false, "result": [{"evaluations": []}]}',
    b'{"status": true, "result": [{"evaluations": "Passed"}]}',
    b'{"status": true, "result": [{"evaluations": [{"name": ["is_json"]}]}]}',
    b'{"status": true, "result": [{"evaluations": [{"output": "Passed"}]}]}',
    b'{"status": true, "result": [{"evaluations": [{"name": "a", "runtime": "fast"}]}]}',
    b'{"status": true, "result": [{"evaluations": [{"name": "a", "reason": 5}]}]}',
    "{\"status\": true, \"result\": [{\"evaluations\": []}]}".encode("utf-16"),
    b'{"status": true, "result": [{"evaluations": [{"name": "\\ud800"}]}]}',
])
def test_answers_the_fast_reader_leaves_to_the_checked_path(raw: bytes) -> None:
    assert read_new_eval_fast(raw) is None


@pytest.mark.parametrize("raw", [
    # Shapes the checked path accepts and the fast reader leaves to it: same results either way.
    b'{"status": true, "result": {"evaluations": [{"name": "a", "output": "Passed"}]}}',
    b'{"status": true, "result": [{"name": "a", "output": "Passed"}]}',
    b'{"status": true, "result": [{"evaluations": null}, {"evaluations": [{"name": "a"}]}]}',
    b'{"result": [{"evaluations": [{"name": "a", "output": 0.5}]}]}',
    b'{"status": true, "result": []}',
])
def test_other_shapes_go_the_checked_way(raw: bytes) -> None:
    want = checked(raw)
    assert want is not None
    got = fast(raw)
    if got is not None:  # read fast only when it gives the same thing
        assert_same(got, want)


_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20),
                     st.floats(allow_nan=False), st.text(max_size=8))
_VALUES = st.one_of(_SCALARS, st.lists(_SCALARS, max_size=3),
                    st.dictionaries(st.text(max_size=3), _SCALARS, max_size=2))
_STATUSES = st.sampled_from(["completed", "failed", "Failed ", "running", "", "pending"])
_ITEMS = st.fixed_dictionaries({"name": st.one_of(st.text(max_size=6), _VALUES)}, optional={
    "output": _VALUES, "reason": st.one_of(st.text(max_size=12), _VALUES),
    "runtime": st.one_of(st.integers(0, 10**6), st.floats(allow_nan=False), _VALUES),
    "output_type": st.one_of(st.sampled_from(["score", "Pass/Fail", "choices"]), _VALUES),
    "eval_id": st.one_of(st.just(ID), _VALUES),
    "eval_status": st.one_of(_STATUSES, _VALUES), "error_message": _VALUES,
    "cached": _VALUES, "model": _VALUES, "status": _VALUES})


@settings(max_examples=300, deadline=None)
@given(items=st.lists(_ITEMS, max_size=6), blocks=st.integers(1, 3), pending=st.booleans())
def test_any_answer_reads_the_same_or_goes_the_checked_way(items: list[dict[str, Any]],
                                                           blocks: int, pending: bool) -> None:
    raw = answer(*items, blocks=blocks)
    got, want = fast(raw, pending), checked(raw, pending)
    if got is None:
        return  # the checked path reads it (and raises the precise error if it must)
    assert want is not None, "read fast, but the checked path refuses it"
    assert_same(got, want)


def test_from_wire_results_are_independent_and_mutable() -> None:
    [item] = read_new_eval_fast(answer(USUAL[0])) or []
    first, second = EvalResult.from_wire(item), EvalResult.from_wire(item)
    first.status = "failed"
    assert second.status == "completed" and "status" not in second.model_fields_set
    assert "status" in first.model_fields_set
