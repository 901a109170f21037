"""A tiny OTLP/HTTP trace receiver on 127.0.0.1, standing in for a collector (Jaeger, Phoenix,
an OpenTelemetry Collector) where none can be installed.

It accepts ``POST /v1/traces`` with an ``ExportTraceServiceRequest`` in protobuf (what
``opentelemetry-exporter-otlp-proto-http`` sends, gzip or not), decodes it with the message
classes of ``opentelemetry-proto`` and keeps each span as a :class:`ReceivedSpan`. Anything else
gets a 404 (another path), 415 (not protobuf), 413 (over 16 MiB) or 400 (undecodable).

    with OtlpReceiver() as receiver:
        os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = receiver.url
        ...                                   # the application exports its spans
        print(receiver.names())
"""

from __future__ import annotations

import gzip
import threading
import zlib
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

MAX_BODY = 16 * 1024 * 1024
PROTOBUF = "application/x-protobuf"


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as it arrived: ids in W3C hex, attributes as Python values."""

    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    kind: int
    service: str
    attributes: dict[str, Any] = field(default_factory=dict)


def _value(any_value: Any) -> Any:
    """An OTLP ``AnyValue`` as a Python value (arrays as tuples)."""
    which = any_value.WhichOneof("value")
    if which == "array_value":
        return tuple(_value(v) for v in any_value.array_value.values)
    if which == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in any_value.kvlist_value.values}
    return None if which is None else getattr(any_value, which)


def decode(body: bytes) -> list[ReceivedSpan]:
    """The spans of one serialized ``ExportTraceServiceRequest``."""
    request = ExportTraceServiceRequest.FromString(body)
    out = []
    for resource_spans in request.resource_spans:
        resource = {kv.key: _value(kv.value) for kv in resource_spans.resource.attributes}
        service = str(resource.get("service.name", ""))
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                out.append(ReceivedSpan(
                    name=span.name, trace_id=span.trace_id.hex(), span_id=span.span_id.hex(),
                    parent_span_id=span.parent_span_id.hex(), kind=span.kind, service=service,
                    attributes={kv.key: _value(kv.value) for kv in span.attributes}))
    return out


class OtlpReceiver:
    """``POST /v1/traces`` on 127.0.0.1 (an ephemeral port unless given); spans in ``spans``."""

    def __init__(self, port: int = 0) -> None:
        self.spans: list[ReceivedSpan] = []
        self.requests = 0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                status, body = receiver._handle(self.path, self.headers, self.rfile)
                self.send_response(status)
                self.send_header("Content-Type", PROTOBUF if status == 200 else "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:  # quiet: the caller prints what matters
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="otlp-receiver", daemon=True)

    @property
    def url(self) -> str:
        """The base URL an OTLP exporter's ``OTEL_EXPORTER_OTLP_ENDPOINT`` takes."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def _handle(self, path: str, headers: Any, stream: Any) -> tuple[int, bytes]:
        if path.split("?", 1)[0] != "/v1/traces":
            return 404, b"only POST /v1/traces is served here"
        if headers.get("Content-Type", "").split(";")[0].strip() != PROTOBUF:
            return 415, b"send application/x-protobuf"
        size = int(headers.get("Content-Length") or 0)
        if size > MAX_BODY:
            return 413, b"body too large"
        body = stream.read(size)
        try:
            if headers.get("Content-Encoding", "").lower() == "gzip":
                body = gzip.decompress(body)
            elif headers.get("Content-Encoding", "").lower() == "deflate":
                body = zlib.decompress(body)
            spans = decode(body)
        except Exception as exc:  # noqa: BLE001 - any undecodable body is the sender's error
            return 400, f"undecodable body: {type(exc).__name__}".encode()
        with self._lock:
            self.spans.extend(spans)
            self.requests += 1
        return 200, ExportTraceServiceResponse().SerializeToString()

    def names(self) -> Counter[str]:
        """How many spans of each name arrived."""
        with self._lock:
            return Counter(s.name for s in self.spans)

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
