"""Issue 20, point 4: the sync path's per-row shortcuts give what the general code gives.

Each shortcut of the batch engine's hot path is checked against the code it stands in for:
requests cut column by column against rows built one by one, one request's outcomes counted in
one loop against one by one, the emitted items' verdicts and failure sample against
``item_verdict`` and ``FailureSample.offer`` on every row, and the collector's threshold is
raised only while a batch runs.
"""

from __future__ import annotations

import gc
import math
import threading
from typing import Any

import pytest

from fi_evals import Evaluator
from fi_evals._exceptions import ItemError
from fi_evals.batch import plan
from fi_evals.batch.collector import BATCH_GC_THRESHOLD, fewer_collections
from fi_evals.batch.mapping import resolve_mapping
from fi_evals.batch.plan import ChunkState, cut_requests, item_verdict
from fi_evals.batch.readers import BadRow
from fi_evals.batch.specs import resolve_specs
from fi_evals.batch.stats import FailureSample, LatencyReservoir, TemplateStats
from fi_evals.results import EvalResult

# --------------------------------------------------------------------------- cutting requests


def _cut(rows: list[Any], evals: list[Any], key_mapping: dict[str, str] | None = None, *,
         max_batch_size: int = 500, columns: bool = True, monkeypatch: pytest.MonkeyPatch
         ) -> tuple[list[tuple[Any, ...]], list[tuple[int, int, ItemError]]]:
    specs = resolve_specs(evals)
    mappings = [resolve_mapping({}, key_mapping or {}, template) for _, template in specs]
    chunk = ChunkState(3, 1500, rows, len(specs))
    for pos, row in enumerate(rows):  # what the coordinator does with unreadable rows first
        if isinstance(row, BadRow):
            for e, (spec, _) in enumerate(specs):
                chunk.settle(pos, e, EvalResult.from_error(spec.name, ItemError("Bad", "x")))
    with monkeypatch.context() as patch:
        if not columns:
            patch.setattr(plan, "_columns", lambda *args: None)
        requests, errors = cut_requests(chunk, specs, mappings, is_async=False,
                                        max_batch_size=max_batch_size)
    return ([(r.spec, r.part, r.positions, r.body, r.hash, r.is_async) for r in requests],
            [(pos, e, (err.type, err.message)) for pos, e, err in errors])  # type: ignore[misc]


def _rows(n: int, **extra: Any) -> list[dict[str, Any]]:
    return [{"text": '{"a": %d}' % i if i % 3 else "no", "output": f"out {i}",
             "expected": f"exp {i}", **extra} for i in range(n)]


CASES: dict[str, tuple[list[Any], list[Any], dict[str, str] | None, int]] = {
    "plain": (_rows(7), ["is_json", "fuzzy_match", "contains:keyword=out"], None, 500),
    "parts": (_rows(7), ["fuzzy_match"], None, 3),
    "one row": (_rows(1), ["is_json", "fuzzy_match"], None, 500),
    "mapped": ([{"t": "{}", "o": "a", "e": "b"}] * 4, ["is_json", "fuzzy_match"],
               {"text": "t", "output": "o", "expected": "e"}, 500),
    "optional key in no row": (_rows(4), ["prompt_adherence"], None, 500),
    "optional key in every row": (_rows(4, input="q"), ["prompt_adherence"], None, 500),
    "optional key in some rows": (_rows(2) + _rows(2, input="q"), ["prompt_adherence"], None,
                                  500),
    "not strings": ([{"text": 5, "output": "a", "expected": 1.5}, *_rows(2)],
                    ["is_json", "fuzzy_match"], None, 500),
    "empty and missing": ([{"text": "", "output": "a"}, *_rows(2), {"expected": "b"}],
                          ["is_json", "fuzzy_match"], None, 500),
    "unreadable row": ([*_rows(2), BadRow("line 3: not JSON", index=2), *_rows(2)],
                       ["is_json", "fuzzy_match"], None, 500),
    "dotted field": ([{"meta": {"t": "{}"}}] * 3, ["is_json"], {"text": "meta.t"}, 500),
    "list key": ([{"output": "a", "context": ["c1", "c2"]}] * 3, ["chunk_utilization"], None,
                 500),
}


@pytest.mark.unit
@pytest.mark.parametrize("case", CASES)
def test_requests_cut_by_columns_are_the_rows_requests(case: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    rows, evals, mapping, max_batch = CASES[case]
    fast = _cut(rows, evals, mapping, max_batch_size=max_batch, monkeypatch=monkeypatch)
    slow = _cut(rows, evals, mapping, max_batch_size=max_batch, columns=False,
                monkeypatch=monkeypatch)
    assert fast == slow
    assert fast[0] or fast[1]  # something was cut (or refused)


@pytest.mark.unit
def test_the_usual_rows_take_the_column_path(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Any] = []
    original = plan._columns
    monkeypatch.setattr(plan, "_columns", lambda *a: seen.append(original(*a)) or seen[-1])
    _cut(_rows(5), ["is_json", "fuzzy_match"], monkeypatch=monkeypatch)
    assert len(seen) == 2 and all(s is not None for s in seen)


# --------------------------------------------------------------------------- counting


def _outcomes(name: str) -> list[EvalResult]:
    def ok(output: Any, reason: str | None = None) -> EvalResult:
        return EvalResult(name=name, output=output, reason=reason)

    return [ok(0.9), ok(0.2), ok(1), ok(0), ok(True), ok(False), ok(math.nan), ok(math.inf),
            ok(-math.inf), ok("Passed"), ok("Failed"), ok(["a"]), ok(None), ok("text"),
            ok("Passed", "fine [judge m, prompt p, 412+31 tokens, cost 0.0012]"),
            ok(0.7, "[judge m, prompt p, cached]"), ok(0.7, "no [judge tag here"),
            EvalResult.from_error(name, ItemError("APITimeoutError", "slow")),
            EvalResult(name=name, status="failed", error=None),
            EvalResult(name=name, status="failed", error=ItemError("EvalFailedError", "x"))]


@pytest.mark.unit
@pytest.mark.parametrize("output_type", ["score", "numeric", "Pass/Fail", "choices"])
def test_outcomes_counted_in_one_loop_as_one_by_one(output_type: str) -> None:
    outcomes = _outcomes("t")
    one_by_one = TemplateStats("t", "t", output_type, 0.5)
    for r in outcomes:  # what the coordinator's _settle does per outcome
        if r.ok:
            one_by_one.record_result(r.output, r.reason)
        else:
            one_by_one.record_error(r.error.type if r.error else r.status)
    together = TemplateStats("t", "t", output_type, 0.5)
    scored = together.record_outcomes(outcomes)
    assert scored == sum(r.ok for r in outcomes)
    assert together.to_dict() == one_by_one.to_dict()
    assert together.judge == one_by_one.judge and together.judge.judged == 1


@pytest.mark.unit
def test_a_requests_latencies_fill_the_reservoir_like_one_by_one() -> None:
    r = LatencyReservoir(size=100)
    r.add_many(0.25, 0)
    assert r.count == 0 and r.quantile(0.5) is None
    r.add_many(0.5, 60)
    r.add_many(1.5, 40)
    assert r.exact and r.count == 100 and sorted(r._sample) == [0.5] * 60 + [1.5] * 40
    r.add_many(9.0, 100_000)
    assert not r.exact and r.count == 100_100 and len(r._sample) == 100
    assert r.quantile(0.5) == 9.0 and r.quantile(0.0001) in (0.5, 1.5, 9.0)
    one = LatencyReservoir(size=100)
    one.add_many(2.0, 30)
    assert one._sample == [2.0] * 30  # while there is room, every latency is kept


# --------------------------------------------------------------------------- emitting


def test_emitted_verdicts_and_failure_sample_are_the_general_ones(evaluator: Evaluator) -> None:
    # Passing, failing and errored outcomes of score and Pass/Fail specs, mixed in rows.
    rows = [{"text": '{"s": "shipped"}' if i % 4 else "no", "output": f"order {i} shipped",
             "expected": f"order {i} shipped" if i % 3 else f"nothing like {i * 7}"}
            for i in range(60)]
    rows[5] = {"output": "x"}  # is_json has no text: an error; fuzzy_match has no expected
    rows[17] = {"text": "{}", "output": "a", "expected": ""}
    evals = ["is_json", "fuzzy_match:pass_threshold=0.8", "contains:keyword=shipped"]
    result = evaluator.evaluate_batch(rows, evals, progress=False, show=1000, chunk_size=7)
    specs = resolve_specs(evals)
    items = list(result)
    assert [item.index for item in items] == list(range(60))
    sample = FailureSample(limit=1000)
    for item in items:
        outcomes = list(item.results.values())
        assert item.passed == item_verdict(specs, outcomes), item
        sample.offer(item.index, item.results, result.stats.templates)
    kept = result.stats.failures
    assert (kept.errored_rows, kept.failing_rows) == (sample.errored_rows, sample.failing_rows)
    assert [(o.index, o.label, o.outcome, o.reason) for o in kept.outcomes] == \
        [(o.index, o.label, o.outcome, o.reason) for o in sample.outcomes]
    passed = [item.passed for item in items]
    assert passed.count(True) and passed.count(False) and passed.count(None)  # all three seen
    assert result.stats.items == 60


# --------------------------------------------------------------------------- the collector


@pytest.mark.unit
def test_the_collector_threshold_is_raised_only_inside() -> None:
    before = gc.get_threshold()
    assert before[0] < BATCH_GC_THRESHOLD
    with fewer_collections():
        assert gc.get_threshold() == (BATCH_GC_THRESHOLD, *before[1:])
        with fewer_collections():  # a second batch at the same time shares the raise
            assert gc.get_threshold()[0] == BATCH_GC_THRESHOLD
        assert gc.get_threshold()[0] == BATCH_GC_THRESHOLD
    assert gc.get_threshold() == before


@pytest.mark.unit
def test_the_collector_threshold_over_threads_and_the_programs_own_setting() -> None:
    before = gc.get_threshold()
    inside, leave = threading.Event(), threading.Event()

    def batch() -> None:
        with fewer_collections():
            inside.set()
            leave.wait(10)

    other = threading.Thread(target=batch)
    other.start()
    assert inside.wait(10)
    with fewer_collections():
        pass  # ends first: the other batch still runs
    assert gc.get_threshold()[0] == BATCH_GC_THRESHOLD
    leave.set()
    other.join(10)
    assert gc.get_threshold() == before
    try:
        with fewer_collections():
            gc.set_threshold(5000, *before[1:])  # the program sets its own meanwhile: kept
        assert gc.get_threshold()[0] == 5000
    finally:
        gc.set_threshold(*before)


@pytest.mark.unit
def test_a_disabled_or_higher_collector_is_left_alone() -> None:
    before = gc.get_threshold()
    gc.disable()
    try:
        with fewer_collections():
            assert gc.get_threshold() == before
    finally:
        gc.enable()
    try:
        gc.set_threshold(BATCH_GC_THRESHOLD * 2, *before[1:])
        with fewer_collections():
            assert gc.get_threshold()[0] == BATCH_GC_THRESHOLD * 2
        assert gc.get_threshold()[0] == BATCH_GC_THRESHOLD * 2
    finally:
        gc.set_threshold(*before)
