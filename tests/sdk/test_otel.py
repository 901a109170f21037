"""OpenTelemetry spans (fi_evals/_otel.py), read with the SDK's in-memory exporter.

The spans go to a tracer provider of the test's own (``_otel._PROVIDER``), never the global
one, so the rest of the suite records nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from fi_evals import AsyncEvaluator, Evaluator, _otel
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
