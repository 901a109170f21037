"""OpenTelemetry spans (fi_evals/_otel.py), read with the SDK's in-memory exporter.

The spans go to a tracer provider of the test's own (``_otel._PROVIDER``), never the global
one, so the rest of the suite records nothing.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from fi_evals import AsyncEvaluator, Evaluator, _otel
from fi_evals import _constants as C
from fi_evals.logger import LoggedScore, ScoreLogger
from fi_evals.server.runner import RunningServer

SECRET_INPUT = "the-confidential-answer-7731"


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[TracerProvider,
                                                              InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(_otel, "_PROVIDER", provider)
    yield provider, exporter
    provider.shutdown()


@pytest.fixture
def ev(live_server: RunningServer) -> Iterator[Evaluator]:
    with Evaluator(live_server.api_key, live_server.secret_key, live_server.url,
                   timeout=60) as evaluator:
        evaluator.max_batch_size()  # the capabilities request, outside the spans below
        yield evaluator


def _values(span) -> str:
    return repr(dict(span.attributes))


def _settled(exporter: InMemorySpanExporter, status: int) -> list[Any]:
    """The finished spans once a server request span answered ``status`` is among them: the
    server ends a request's span after sending the answer, so the client may read it first."""
    deadline = time.monotonic() + 10
    while True:
        finished = list(exporter.get_finished_spans())
        if time.monotonic() > deadline or any(
                s.name == "fi_evals.server.request"
                and s.attributes.get("http.response.status_code") == status for s in finished):
            return finished
        time.sleep(0.01)


def test_evaluate_spans_nest_under_the_callers_span(spans, ev: Evaluator,
                                                    live_server: RunningServer) -> None:
    provider, exporter = spans
    with provider.get_tracer("app").start_as_current_span("handle_request") as parent:
        result = ev.evaluate("is_json", {"text": ['{"a": 1}', SECRET_INPUT]}, chunk_size=1)
    finished = {s.name: s for s in exporter.get_finished_spans()}
    evaluate = finished["fi_evals.evaluate"]
    assert evaluate.parent.span_id == parent.get_span_context().span_id
    assert evaluate.attributes["fi_evals.templates"] == ("is_json",)
    assert evaluate.attributes["fi_evals.items"] == 2
    assert evaluate.attributes["fi_evals.errors"] == 0
    assert list(evaluate.attributes["fi_evals.eval_ids"]) == result.eval_ids
    requests = [s for s in exporter.get_finished_spans() if s.name == "fi_evals.request"
                and s.attributes["http.request.method"] == "POST"]
    assert len(requests) == 2  # one per chunk, each on a pool thread, under evaluate
    for request in requests:
        assert request.kind == SpanKind.CLIENT
        assert request.parent.span_id == evaluate.context.span_id
        assert request.context.trace_id == parent.get_span_context().trace_id
        assert request.attributes["http.request.method"] == "POST"
        assert request.attributes["fi_evals.attempts"] == 1
    for span in exporter.get_finished_spans():  # no keys, no inputs
        for secret in (live_server.api_key, live_server.secret_key, SECRET_INPUT):
            assert secret not in _values(span)


def test_batch_span_with_its_requests(spans, ev: Evaluator) -> None:
    _, exporter = spans
    rows = [{"text": "{}"} for _ in range(30)]
    ev.evaluate_batch(rows, ["is_json"], chunk_size=10, progress=False)
    finished = exporter.get_finished_spans()
    batch = next(s for s in finished if s.name == "fi_evals.evaluate_batch")
    assert batch.attributes["fi_evals.items"] == 30
    assert batch.attributes["fi_evals.evals"] == ("is_json",)
    assert batch.attributes["fi_evals.requests"] == 3
    assert batch.status.status_code != StatusCode.ERROR
    posts = [s for s in finished if s.name == "fi_evals.request"
             and s.parent is not None and s.parent.span_id == batch.context.span_id]
    assert len(posts) == 3


def test_a_failed_request_is_an_error_span(spans, ev: Evaluator) -> None:
    _, exporter = spans
    with pytest.raises(Exception, match="not found|Not Found|404"):
        ev.get_eval_result("00000000-0000-0000-0000-000000000000")
    request = next(s for s in exporter.get_finished_spans() if s.name == "fi_evals.request"
                   and s.attributes["url.path"].endswith("/new-eval/"))
    assert request.status.status_code == StatusCode.ERROR
    assert request.attributes["http.response.status_code"] == 404
    assert request.attributes["error.type"] == "NotFoundError"


def test_no_cost_without_opentelemetry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_otel, "_trace", None)

    def fn() -> int:
        return 1

    assert _otel.in_context(fn) is fn
    assert _otel.span("x", a=1) is _otel.span("y")  # one shared nullcontext
    with _otel.span("x") as current:
        assert current is None


def test_async_score_logger_puts_the_verdict_on_the_current_span(spans, live_server,
                                                                 tmp_path) -> None:
    provider, exporter = spans
    tracer = provider.get_tracer("app")

    async def main() -> None:
        async with AsyncEvaluator(live_server.api_key, live_server.secret_key,
                                  live_server.url) as ev, \
                ev.score_logger(spool=False, overflow="drop_newest", linger=0.01,
                                poll_interval=0.05) as logger:
            with tracer.start_as_current_span("handle_request"):
                await logger.score("is_json", {"text": "not json"})
                await logger.score("fuzzy_match", {"output": "abc", "expected": "abc"})

    asyncio.run(main())
    handled = next(s for s in exporter.get_finished_spans() if s.name == "handle_request")
    assert handled.attributes["eval.is_json.score"] == 0.0
    assert handled.attributes["eval.is_json.passed"] is False
    assert handled.attributes["eval.fuzzy_match.score"] == 1.0
    assert handled.attributes["eval.fuzzy_match.passed"] is True


# ---------------------------------------------------------------------- ScoreLogger


def _logger(ev: Evaluator, **options: Any) -> ScoreLogger:
    options.setdefault("spool", False)
    options.setdefault("overflow", "drop_newest")
    options.setdefault("linger", 0.01)
    return ScoreLogger(ev, poll_interval=0.05, **options)


def test_score_logger_records_the_trace_and_span_ids(spans, ev: Evaluator,
                                                     tmp_path: Path) -> None:
    provider, exporter = spans
    exporter.clear()  # the ev fixture's own capabilities request
    got: list[LoggedScore] = []
    sink = tmp_path / "scores.jsonl"
    with _logger(ev, sink=sink) as logger:
        with provider.get_tracer("app").start_as_current_span("handle_request") as parent:
            logger.log("is_json", {"text": "{}"}, callback=got.append, metadata="in-span")
            logger.log("no_such_template", {"text": "x"}, callback=got.append,
                       metadata="rejected")
        logger.log("is_json", {"text": "{}"}, callback=got.append, metadata="no-span")
        assert logger.flush(timeout=30)
    context = parent.get_span_context()
    by_meta = {s.metadata: s for s in got}
    for meta in ("in-span", "rejected"):
        assert by_meta[meta].trace_id == f"{context.trace_id:032x}"
        assert by_meta[meta].span_id == f"{context.span_id:016x}"
    assert by_meta["in-span"].status == "completed" and by_meta["rejected"].status == "rejected"
    assert by_meta["no-span"].trace_id is None and by_meta["no-span"].span_id is None
    lines = {r["metadata"]: r for r in map(json.loads, sink.read_text().splitlines())}
    assert lines["in-span"]["trace_id"] == f"{context.trace_id:032x}"
    # Without on_span the verdict stays off the caller's span.
    handled = next(s for s in exporter.get_finished_spans() if s.name == "handle_request")
    assert not [k for k in handled.attributes if k.startswith("eval.")]
    # The logger's background sends and polls record no client spans (a trace per poll).
    assert not [s for s in exporter.get_finished_spans() if s.name == "fi_evals.request"]


def test_score_logger_on_span_puts_the_verdict_on_the_span(spans, ev: Evaluator) -> None:
    provider, exporter = spans
    with _logger(ev, on_span=True) as logger:
        with provider.get_tracer("app").start_as_current_span("handle_request"):
            logger.log("is_json", {"text": "not json"})
            logger.log("fuzzy_match", {"output": "abc", "expected": "abc"})
            logger.log("no_such_template", {"text": "x"})  # rejected: nothing on the span
            assert logger.flush(timeout=30)  # the verdicts arrive while the span records
        with provider.get_tracer("app").start_as_current_span("ended_before_the_verdict"):
            logger.log("is_json", {"text": "{}"})
        assert logger.flush(timeout=30)
    finished = {s.name: s for s in exporter.get_finished_spans()}
    handled = finished["handle_request"].attributes
    assert handled["eval.is_json.score"] == 0.0 and handled["eval.is_json.passed"] is False
    assert handled["eval.fuzzy_match.score"] == 1.0 and handled["eval.fuzzy_match.passed"]
    assert not [k for k in handled if "no_such_template" in k]
    assert not [k for k in finished["ended_before_the_verdict"].attributes
                if k.startswith("eval.")]


def test_spooled_scores_keep_their_trace_ids(spans, ev: Evaluator, tmp_path: Path) -> None:
    provider, _ = spans
    got: list[LoggedScore] = []
    with _logger(ev, overflow="spool", spool=tmp_path / "spool.db", queue_size=1,
                 linger=0.5) as logger:
        with provider.get_tracer("app").start_as_current_span("burst") as parent:
            for i in range(40):
                logger.log("is_json", {"text": "{}"}, callback=got.append, metadata=i)
        assert logger.flush(timeout=60)
        spooled = logger.stats().spooled
    assert spooled > 0  # the path through the spool file was taken
    assert len(got) == 40
    assert {s.trace_id for s in got} == {f"{parent.get_span_context().trace_id:032x}"}


def test_score_logger_without_opentelemetry_records_no_ids(monkeypatch: pytest.MonkeyPatch,
                                                           ev: Evaluator) -> None:
    monkeypatch.setattr(_otel, "_trace", None)
    assert _otel.capture(True) is None
    got: list[LoggedScore] = []
    with _logger(ev, on_span=True) as logger:
        logger.log("is_json", {"text": "{}"}, callback=got.append)
        assert logger.flush(timeout=30)
    assert got[0].status == "completed" and got[0].trace_id is None


# ---------------------------------------------------------------------- the server's spans


def test_server_spans_join_the_callers_trace(spans, ev: Evaluator,
                                             live_server: RunningServer) -> None:
    provider, exporter = spans
    exporter.clear()
    with provider.get_tracer("app").start_as_current_span("handle_request"):
        result = ev.evaluate("is_json", {"text": ['{"a": 1}', SECRET_INPUT]})
    finished = _settled(exporter, 200)
    client = next(s for s in finished if s.name == "fi_evals.request"
                  and s.attributes["http.request.method"] == "POST")
    served = next(s for s in finished if s.name == "fi_evals.server.request"
                  and s.attributes["http.request.method"] == "POST")
    assert served.kind == SpanKind.SERVER
    assert served.parent.span_id == client.context.span_id  # through traceparent
    assert served.context.trace_id == client.context.trace_id
    assert served.attributes["http.route"] == C.PATH_NEW_EVAL
    assert served.attributes["http.response.status_code"] == 200
    assert served.attributes["fi_evals.request_id"] == client.attributes["fi_evals.request_id"]
    evaluated = next(s for s in finished if s.name == "fi_evals.server.evaluate")
    assert evaluated.parent.span_id == served.context.span_id
    assert evaluated.attributes["fi_evals.template"] == "is_json"
    assert evaluated.attributes["fi_evals.items"] == 2
    assert evaluated.attributes["fi_evals.is_async"] is False
    assert evaluated.attributes["fi_evals.failed"] == 0  # "Failed" is a verdict, not a failure
    assert list(evaluated.attributes["fi_evals.eval_ids"]) == result.eval_ids
    for span in finished:  # no keys, no inputs
        for secret in (live_server.api_key, live_server.secret_key, SECRET_INPUT):
            assert secret not in _values(span)


def test_server_spans_for_async_work_and_refused_requests(spans, ev: Evaluator,
                                                          live_server: RunningServer) -> None:
    _, exporter = spans
    handles = ev.submit("is_json", {"text": ["{}", "[]", "no"]})
    results = ev.wait_all(handles, timeout=30)
    assert [r.output for r in results] == ["Passed", "Passed", "Failed"]
    with Evaluator(live_server.api_key, "wrong-secret", live_server.url) as bad, \
            pytest.raises(Exception, match="401|X-Secret-Key|auth"):
        bad.evaluate("is_json", {"text": "{}"})
    finished = _settled(exporter, 401)
    worked = [s for s in finished if s.name == "fi_evals.server.evaluate"
              and s.attributes["fi_evals.is_async"] is True]
    assert sorted(i for s in worked for i in s.attributes["fi_evals.eval_ids"]) == \
        sorted(h.eval_id for h in handles)
    refused = [s for s in finished if s.name == "fi_evals.server.request"
               and s.attributes.get("http.response.status_code") == 401]
    assert refused and all(s.status.status_code != StatusCode.ERROR for s in refused)


def test_no_server_spans_without_opentelemetry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_otel, "_trace", None)
    assert _otel.server_span("x", {b"traceparent": b"00-" + b"1" * 32 + b"-" + b"2" * 16
                                   + b"-01"}) is _otel.span("y")
    headers: dict[str, str] = {}
    _otel.inject(headers)
    assert headers == {}


def test_inputs_only_when_asked(spans, ev: Evaluator, monkeypatch: pytest.MonkeyPatch) -> None:
    _, exporter = spans
    ev.evaluate("is_json", {"text": [SECRET_INPUT]})
    assert all("fi_evals.inputs" not in s.attributes for s in exporter.get_finished_spans())
    exporter.clear()
    monkeypatch.setenv(C.ENV_OTEL_INPUTS, "1")  # the server runs in this process: both see it
    monkeypatch.setattr(C, "OTEL_INPUTS_MAX_CHARS", 60)
    ev.evaluate("is_json", {"text": [SECRET_INPUT, "x" * 100]})
    finished = {s.name: s for s in exporter.get_finished_spans()}
    sent = finished["fi_evals.evaluate"].attributes["fi_evals.inputs"]
    served = finished["fi_evals.server.evaluate"].attributes["fi_evals.inputs"]
    assert sent.startswith('{"text": ["' + SECRET_INPUT) and sent.endswith("characters)")
    assert served.startswith('[{"text": "' + SECRET_INPUT) and len(served) < 100
