"""Recipe 12: evaluations and scores in your OpenTelemetry traces, exported over OTLP/HTTP.

With `pip install 'fi-evals[otel]'` the SDK records spans through the tracer provider your
service configured: `fi_evals.evaluate` and one `fi_evals.request` per HTTP request, under your
current span; the reference server adds `fi_evals.server.request` and
`fi_evals.server.evaluate` to the same trace (the client sends `traceparent`). `ScoreLogger`
records the trace and span ids with each score and, with `on_span=True`, puts
`eval.<name>.score` / `eval.<name>.passed` on your span when the verdict arrives.

The exporter is the standard one (`pip install opentelemetry-sdk
opentelemetry-exporter-otlp-proto-http`) and reads the standard variables: set
OTEL_EXPORTER_OTLP_ENDPOINT to your collector (Jaeger, Phoenix, an OpenTelemetry Collector...).
Without it, this recipe starts a tiny OTLP/HTTP receiver of its own on 127.0.0.1
(`_otlp_receiver.py`) and prints what arrived.
"""

import os

from _local import local_evaluator
from _otlp_receiver import OtlpReceiver
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from fi_evals import LoggedScore, ScoreLogger

ENDPOINT_VARS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


def serve_one_request(ev, logger: ScoreLogger, tracer: trace.Tracer) -> list[LoggedScore]:
    """What a request handler of your service does: answer, evaluate, log a score."""
    scored: list[LoggedScore] = []
    with tracer.start_as_current_span("handle_request") as span:
        answer = "not json"  # the model's answer, say
        result = ev.evaluate("is_json", {"text": ['{"ok": true}', answer]})
        print("evaluate:", ", ".join(r.output for r in result.eval_results))
        logger.log("is_json", {"text": answer}, callback=scored.append, metadata="req-7")
        # A real handler returns here; the verdict lands on the span only if it is still
        # open then, so this demo waits for it.
        logger.flush(timeout=30)
        ids = span.get_span_context()
    (score,) = scored
    assert score.trace_id == f"{ids.trace_id:032x}" and score.span_id == f"{ids.span_id:016x}"
    print(f"logged score: {score.eval_name} {score.status} {score.output}, trace "
          f"{score.trace_id}, span {score.span_id}")
    return scored


def main() -> None:
    receiver = None
    if not any(os.environ.get(name) for name in ENDPOINT_VARS):
        receiver = OtlpReceiver().start()
        os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = receiver.url
    # Your service's set-up, once at start (the exporter reads OTEL_EXPORTER_OTLP_*).
    provider = TracerProvider(resource=Resource.create({"service.name": "checkout-service"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    tracer = trace.get_tracer("checkout-service")

    with local_evaluator() as ev, ScoreLogger(ev, on_span=True, spool=False,
                                              overflow="drop_newest") as logger:
        serve_one_request(ev, logger, tracer)
    provider.shutdown()  # exports what is still buffered
    if receiver is None:
        print(f"exported to {os.environ.get(ENDPOINT_VARS[1]) or os.environ[ENDPOINT_VARS[0]]}")
        return
    receiver.stop()
    names = receiver.names()
    print(f"receiver: {len(receiver.spans)} spans in {receiver.requests} OTLP request(s): "
          + ", ".join(f"{name} x{n}" for name, n in sorted(names.items())
                      if name.startswith("fi_evals") or name == "handle_request"))
    handled = next(s for s in receiver.spans if s.name == "handle_request")
    print("handle_request:", ", ".join(f"{k}={v}" for k, v in sorted(handled.attributes.items())
                                       if k.startswith("eval.")))
    in_trace = sorted({s.name for s in receiver.spans if s.trace_id == handled.trace_id})
    print("in the request's trace:", ", ".join(in_trace))

if __name__ == "__main__":
    main()
