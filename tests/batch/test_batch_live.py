"""evaluate_batch against the real reference server on loopback."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from _helpers import metric_sum, scrape

from fi_evals import Evaluator, RetryPolicy
from fi_evals.batch import BatchResult
from fi_evals.catalogue import CATALOGUE
from fi_evals.server.evaluators.base import BaseEvaluator, EvaluationError, Outcome

from .conftest import EVALS, MAPPING, rows

EVALS_TOTAL = "fi_evals_evaluations_total"


class FlakyOneLine(BaseEvaluator):
    """``one_line`` that cannot evaluate texts containing FAIL (a failed evaluation)."""

    template = CATALOGUE["one_line"]

    def evaluate(self, inputs: Mapping[str, Any], params: Mapping[str, Any],
                 model: str | None = None) -> Outcome:
        if "FAIL" in str(inputs["text"]):
            raise EvaluationError("injected: the judge is unreachable")
        return Outcome("Passed", "one line")


def _check_shape(result: BatchResult, n: int, labels: Sequence[str]) -> None:
    items = result.items
    assert [i.index for i in items] == list(range(n))
    assert all(list(i.results) == list(labels) for i in items)
    assert all(t.total == n for t in result.stats.templates.values())
    assert result.stats.outcomes == n * len(labels) and len(result) == n


def test_sync_batch_in_order_with_errors_recorded_not_raised(evaluator: Evaluator) -> None:
    data: list[Any] = rows(40)
    data[5] = "not a mapping"
    del data[7]["reference"]  # fuzzy_match cannot run on this row; the others can
    result = evaluator.evaluate_batch(data, EVALS, key_mapping=MAPPING, progress=False)
    _check_shape(result, 40, ["is_json", "fuzzy_match", "contains"])
    by_index = result.items
    assert all(r.error.type == "InvalidInputError" for r in by_index[5].results.values())
    assert by_index[7].results["fuzzy_match"].error.type == "InvalidInputError"
    assert "reference" in by_index[7].results["fuzzy_match"].error.message
    assert by_index[7].results["is_json"].ok
    assert by_index[1].results["is_json"].output == "Passed"
    assert by_index[3].results["is_json"].output == "Failed"
    assert {i.index for i in result.failed_items()} == {5, 7}
    assert len(result.passing_items()) + len(result.failing_items()) == 38
    stats = result.stats.templates["fuzzy_match"]
    assert (stats.scored, stats.total, stats.errors["InvalidInputError"]) == (38, 40, 2)
    summary = str(result)
    assert "38/40" in summary and "95.0%" in summary and "p95" in summary
    assert result.stats.requests > 0 and result.complete
    assert result.passed is False and result.problems == [
        "4 of 120 outcomes errored (3.3% > max error rate 0.0%)"]


def _async_vs_sync(server: Any, ev: Evaluator, **options: Any
                   ) -> tuple[BatchResult, Callable[[str], float]]:
    """An async run of 120 rows in chunks of 25, checked against a sync run of the same rows
    (same outputs, reasons and statuses; 360 distinct ids), and the requests it made by
    route."""
    sync = ev.evaluate_batch(rows(120), EVALS, key_mapping=MAPPING, progress=False)
    before = scrape(server)
    result = ev.evaluate_batch(rows(120), EVALS, key_mapping=MAPPING, is_async=True,
                               chunk_size=25, progress=False, **options)
    _check_shape(result, 120, ["is_json", "fuzzy_match", "contains"])
    assert [[(r.output, r.reason, r.status) for r in i.results.values()] for i in result] == \
        [[(r.output, r.reason, r.status) for r in i.results.values()] for i in sync]
    ids = [r.eval_id for i in result for r in i.results.values()]
    assert len(set(ids)) == 360 and all(ids)
    after = scrape(server)

    def delta(route: str) -> float:
        return sum(v - before.get(k, 0) for k, v in after.items()
                   if k[0] == "fi_evals_http_requests_total" and ("route", route) in k[1])

    return result, delta


def test_async_submit_then_poll_with_bulk_status(server_factory: Callable[..., Any],
                                                 client_factory: Callable[..., Evaluator]
                                                 ) -> None:
    # Queued (not evaluated at submit): the items reach the workers and are polled for.
    server = server_factory(poll_retry_after=0, access_log=False, inline_cheap_async=False)
    _, delta = _async_vs_sync(server, client_factory(server, max_workers=4))
    assert delta("/sdk/api/v1/new-eval/") == 15  # 5 chunks x 3 evals, submitted once each
    assert delta("/sdk/api/v1/new-eval/status/") >= 1  # polled in bulk
    assert metric_sum(server, EVALS_TOTAL) == 720  # the sync run and the async run


def test_async_cheap_results_come_with_the_ids(server_factory: Callable[..., Any],
                                               client_factory: Callable[..., Evaluator],
                                               tmp_path: Path) -> None:
    """Cheap templates are evaluated at submit; the async batch asks for those results
    (``Prefer: return=representation``) and settles them without a single status poll, with
    the same outcomes and journaled ids as the polled path."""
    server = server_factory(poll_retry_after=0, access_log=False)
    ev = client_factory(server, max_workers=4)
    journal = tmp_path / "run.journal"
    result, delta = _async_vs_sync(server, ev, journal=journal)
    assert delta("/sdk/api/v1/new-eval/") == 15
    assert delta("/sdk/api/v1/new-eval/status/") == 0  # nothing left to poll
    assert metric_sum(server, EVALS_TOTAL) == 720
    # The ids are what the server stores: each reads back with the same result.
    firsts = [i.results["fuzzy_match"] for i in result][:10]
    for r in firsts:
        again = ev.get_result(r.eval_id, name="fuzzy_match")
        assert (again.status, again.output) == ("completed", r.output)
    assert journal.exists() and firsts[0].eval_id in journal.read_text()


def test_task_key_mapping_task_errors_and_item_timeout(evaluator: Evaluator) -> None:
    def task(row: Mapping[str, Any]) -> dict[str, Any]:
        if row["id"] == 2:
            raise RuntimeError("model crashed")
        if row["id"] == 4:
            time.sleep(3)
        return {"answer": f"Order {row['id']} ships today.", "json": '{"ok": true}'}

    result = evaluator.evaluate_batch(
        rows(8), ["fuzzy_match", "is_json"], task=task, item_timeout=1.0, progress=False,
        key_mapping={"output": "task.answer", "expected": "reference", "text": "json"})
    items = result.items
    assert items[0].results["fuzzy_match"].output == 1.0
    assert items[0].task_output["json"] == '{"ok": true}'
    assert {r.error.type for r in items[2].results.values()} == {"TaskError"}
    assert "model crashed" in items[2].results["is_json"].error.message
    assert {r.error.type for r in items[4].results.values()} == {"TaskTimeoutError"}
    assert len(result.failed_items()) == 2


def test_deadline_stops_the_batch_and_settles_every_item_read(
        server_factory: Callable[..., Any], client_factory: Callable[..., Evaluator]) -> None:
    server = server_factory(sim_latency_ms=200, access_log=False)
    ev = client_factory(server, max_workers=2)
    started = time.monotonic()
    result = ev.evaluate_batch(rows(400), ["is_json"], key_mapping=MAPPING, chunk_size=2,
                               deadline=1.0, progress=False, thresholds={"is_json": 0.1})
    elapsed = time.monotonic() - started
    assert elapsed < 5.0  # bounded: the deadline holds (generous margin for a slow machine)
    assert result.stopped == "deadline" and not result.complete
    items = result.items
    assert [i.index for i in items] == list(range(len(items)))
    errors = {r.error.type for i in items for r in i.results.values() if r.error}
    assert errors <= {"DeadlineExceededError", "APITimeoutError"} and errors
    assert result.passed is False and "deadline" in str(result)


def test_item_timeout_in_async_mode(server_factory: Callable[..., Any],
                                    client_factory: Callable[..., Evaluator]) -> None:
    server = server_factory(sim_latency_ms=3000, workers=1, poll_retry_after=0,
                            access_log=False)
    ev = client_factory(server, max_workers=2)
    result = ev.evaluate_batch(rows(6), ["one_line"], key_mapping={"text": "answer"},
                               is_async=True, item_timeout=0.8, progress=False)
    types = [i.results["one_line"].error.type for i in result if i.results["one_line"].error]
    assert types and set(types) == {"WaitTimeoutError"}
    assert all(i.results["one_line"].eval_id for i in result)  # the ids are kept


def test_failed_evaluations_are_errors_not_verdicts(server_factory: Callable[..., Any],
                                                    client_factory: Callable[..., Evaluator]
                                                    ) -> None:
    server = server_factory(evaluators=[FlakyOneLine()], poll_retry_after=0, access_log=False)
    ev = client_factory(server)
    data = [{"text": "FAIL" if i % 4 == 0 else "fine"} for i in range(12)]
    for is_async in (False, True):
        result = ev.evaluate_batch(data, ["one_line"], is_async=is_async, progress=False)
        statuses = [i.results["one_line"].status for i in result]
        assert statuses == ["failed" if i % 4 == 0 else "completed" for i in range(12)]
        assert result.stats.templates["one_line"].errors == {"EvalFailedError": 3}


def test_dataframe_and_csv_inputs_give_the_same_outcomes(evaluator: Evaluator,
                                                          tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    data = rows(20)
    frame = pd.DataFrame(data)
    csv_path = tmp_path / "rows.csv"
    frame.to_csv(csv_path, index=False)
    outputs = []
    for source in (data, frame, csv_path):
        result = evaluator.evaluate_batch(source, EVALS, key_mapping=MAPPING, progress=False)
        _check_shape(result, 20, ["is_json", "fuzzy_match", "contains"])
        outputs.append([[r.output for r in i.results.values()] for i in result])
    assert outputs[0] == outputs[1] == outputs[2]


def test_streamed_output_and_exports(evaluator: Evaluator, tmp_path: Path) -> None:
    out = tmp_path / "scored.jsonl"
    result = evaluator.evaluate_batch(rows(30), EVALS, key_mapping=MAPPING, output=out,
                                      progress=False)
    assert result._items is None  # nothing kept in memory
    assert len(out.read_text().splitlines()) == 30
    _check_shape(result, 30, ["is_json", "fuzzy_match", "contains"])
    csv_path = result.to_csv(tmp_path / "scored.csv")
    assert len(csv_path.read_text().splitlines()) == 31
    frame = result.to_dataframe()
    assert list(frame.index) == list(range(30))
    assert frame["is_json.output"].tolist()[:4] == ["Failed", "Passed", "Passed", "Failed"]
    assert result.to_jsonl(tmp_path / "copy.jsonl").read_text() == out.read_text()


def test_server_faults_never_abort_the_batch(server_factory: Callable[..., Any],
                                            client_factory: Callable[..., Evaluator]) -> None:
    server = server_factory(faults="500:0.3", fault_seed=7, access_log=False)
    # 500s are retried by default (the server announces idempotency): turned off here, so that
    # they reach the items (test_live_idempotent_retries.py checks the retries).
    ev = client_factory(server, max_workers=4, retry=RetryPolicy(retry_server_errors=False))
    result = ev.evaluate_batch(rows(200), ["is_json", "one_line"], key_mapping=MAPPING,
                               chunk_size=5, progress=False)
    _check_shape(result, 200, ["is_json", "one_line"])
    errors = {r.error.type for i in result for r in i.results.values() if r.error}
    assert errors == {"ServerError"}  # an unretried 500 is recorded on the chunk's items
    ok = sum(t.scored for t in result.stats.templates.values())
    assert 0 < ok < 400 and metric_sum(server, EVALS_TOTAL) == ok


def test_ctrl_c_returns_partial_result_then_resume_completes(
        server_factory: Callable[..., Any], client_factory: Callable[..., Evaluator],
        tmp_path: Path) -> None:
    server = server_factory(poll_retry_after=0, access_log=False)
    ev = client_factory(server, max_workers=4)
    journal = tmp_path / "run.journal"
    data = rows(90)

    def interrupted() -> Iterator[dict[str, Any]]:
        yield from data[:50]
        raise KeyboardInterrupt  # as if Ctrl-C arrived while the batch reads its input

    part = ev.evaluate_batch(interrupted(), EVALS, key_mapping=MAPPING, is_async=True,
                             chunk_size=10, journal=journal, progress=False)
    assert part.interrupted and part.stopped == "interrupted"
    assert [i.index for i in part] == list(range(len(part.items)))
    assert "INTERRUPTED" in str(part)
    full = ev.evaluate_batch(data, EVALS, key_mapping=MAPPING, is_async=True, chunk_size=10,
                             journal=journal, progress=False)
    _check_shape(full, 90, ["is_json", "fuzzy_match", "contains"])
    assert full.complete and not full.failed_items()
    assert full.stats.resumed > 0
    assert metric_sum(server, EVALS_TOTAL) == 90 * 3  # nothing ran twice


def test_an_input_that_breaks_stops_reading_but_finishes_what_was_read(
        evaluator: Evaluator) -> None:
    def broken() -> Iterator[dict[str, Any]]:
        yield from rows(25)
        raise OSError("the network share went away")

    result = evaluator.evaluate_batch(broken(), ["is_json"], key_mapping=MAPPING,
                                      chunk_size=10, progress=False, thresholds={"is_json": 0})
    assert result.stopped == "input_error" and "network share" in result.input_error
    assert [i.index for i in result] == list(range(25))  # every row read is scored
    assert not result.failed_items() and result.passed is False
    assert "reading the input failed" in str(result)


def test_compat_server_small_chunks_and_per_id_polls(server_factory: Callable[..., Any],
                                                     client_factory: Callable[..., Evaluator]
                                                     ) -> None:
    server = server_factory(compat=True, poll_retry_after=0, access_log=False)
    ev = client_factory(server, max_workers=4)
    for is_async in (False, True):
        result = ev.evaluate_batch(rows(10), ["is_json", "fuzzy_match"], key_mapping=MAPPING,
                                   is_async=is_async, progress=False)
        _check_shape(result, 10, ["is_json", "fuzzy_match"])
        assert not result.failed_items()
        assert result.items[1].results["fuzzy_match"].score == pytest.approx(
            next(iter(result)).results["fuzzy_match"].score, abs=0.2)
    assert metric_sum(server, EVALS_TOTAL) == 40


def test_usage_errors_raise_before_anything_is_sent(evaluator: Evaluator,
                                                    tmp_path: Path) -> None:
    from fi_evals import AuthenticationError, UnknownTemplateError

    with pytest.raises(UnknownTemplateError):
        evaluator.evaluate_batch(rows(3), ["is_jsn"], progress=False)
    with pytest.raises(ValueError, match="threshold"):
        evaluator.evaluate_batch(rows(3), ["is_json"], key_mapping=MAPPING,
                                 thresholds={"nope": 0.5}, progress=False)
    with pytest.raises(FileNotFoundError):
        evaluator.evaluate_batch(tmp_path / "missing.jsonl", ["is_json"], progress=False)
    bad = Evaluator("wrong", "keys", evaluator.base_url)
    with bad, pytest.raises(AuthenticationError):
        bad.evaluate_batch(rows(3), ["is_json"], key_mapping=MAPPING, progress=False)


def test_adaptive_request_size_grows_on_cheap_templates_and_keeps_order(
        evaluator: Evaluator) -> None:
    # Issue 20: without chunk_size, a sync batch of cheap templates grows its requests (so
    # it needs far fewer than its start size would), and rows still come back once each, in
    # input order, with the right verdicts (chunk starts follow the varying sizes).
    n = 3000
    data = rows(n)
    result = evaluator.evaluate_batch(data, ["is_json"], key_mapping=MAPPING, progress=False)
    _check_shape(result, n, ["is_json"])
    # The fixed rule starts 3,000 rows on 4 workers at 50 per request (60 requests).
    assert result.stats.requests < n // 50
    for item in result.items:
        expected = "Passed" if item.index % 3 else "Failed"
        assert item.results["is_json"].output == expected, item.index
        assert item.item["id"] == item.index
    fixed = evaluator.evaluate_batch(data, ["is_json"], key_mapping=MAPPING, progress=False,
                                     chunk_size=50)
    assert fixed.stats.requests == n // 50  # an explicit chunk_size stays fixed
