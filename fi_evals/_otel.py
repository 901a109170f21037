"""OpenTelemetry spans, when ``opentelemetry-api`` is installed (the ``otel`` extra).

Without it every helper here is a no-op that allocates nothing: :func:`span` returns one shared
``nullcontext`` and :func:`in_context` returns the function it was given. With it, spans go to
whatever tracer provider the application configured (none: the API's no-op tracer).

Spans: ``fi_evals.evaluate`` (templates, items, eval ids, errors), ``fi_evals.evaluate_batch``
(evals, items, requests, retries, stopped) and ``fi_evals.request`` per logical HTTP request
(method, path, server, attempts, retries, status code, request id). Never keys or headers;
never inputs unless ``FI_OTEL_INPUTS=1`` asks (:func:`inputs_text`). The reference server's
spans (``fi_evals.server.request``, ``fi_evals.server.evaluate``) use the same helpers.
:func:`capture` is what ``ScoreLogger.log()`` records of the current span.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

from fi_evals._version import __version__

try:  # the optional dependency: absent, nothing below costs more than a function call
    from opentelemetry import propagate as _propagate
    from opentelemetry import trace as _trace
    from opentelemetry.trace import SpanKind, Status, StatusCode
except ImportError:  # pragma: no cover - exercised by installs without the otel extra
    _trace = None  # type: ignore[assignment]

__all__ = ["MAX_IDS", "capture", "enabled", "in_context", "inject", "server_span", "span",
           "verdict_to_span"]

F = TypeVar("F", bound=Callable[..., Any])
MAX_IDS = 100
"""Most eval ids put on one span (an attribute is a list: a 10,000-item call keeps 100)."""

_NULL = contextlib.nullcontext(None)
_QUIET: contextvars.ContextVar[bool] = contextvars.ContextVar("fi_evals_otel_quiet",
                                                             default=False)
"""True on the score logger's background threads: their requests record no spans."""
_PROVIDER: Any = None
"""The tracer provider; None: OpenTelemetry's global one (tests set their own)."""


def enabled() -> bool:
    """True when opentelemetry-api is importable."""
    return _trace is not None


def span(name: str, *, client: bool = False, **attributes: Any) -> Any:
    """A context manager: a current span named ``name`` (None without OpenTelemetry).

    ``attributes`` with a None value are left out. An exception leaving the block is recorded
    and sets the span's status to ERROR.
    """
    if _trace is None or _QUIET.get():
        return _NULL
    return _span(name, SpanKind.CLIENT if client else SpanKind.INTERNAL, attributes)


def quietly(fn: Callable[[], Any]) -> Callable[[], Any]:
    """``fn`` (a thread's target) run with no fi_evals spans: the score logger's background
    sends and polls would otherwise start a trace of their own every poll interval."""

    def run() -> Any:
        _QUIET.set(True)
        return fn()

    return run


def server_span(name: str, headers: Mapping[bytes, bytes], **attributes: Any) -> Any:
    """:func:`span` of kind SERVER whose parent is the W3C ``traceparent`` of the request's
    ``headers`` (lower-case byte names, as ASGI gives them), when it carries one."""
    if _trace is None:
        return _NULL
    carrier = {name.decode("latin-1"): headers[name].decode("latin-1")
               for name in _W3C_HEADERS if name in headers}
    parent = _propagate.extract(carrier) if carrier else None
    return _span(name, SpanKind.SERVER, attributes, parent)


_W3C_HEADERS = frozenset({b"traceparent", b"tracestate"})


def inject(headers: dict[str, str]) -> None:
    """Add the current span's ``traceparent`` (and ``tracestate``) to outgoing ``headers``, so
    the server's spans join the caller's trace. Nothing without OpenTelemetry."""
    if _trace is not None:
        _propagate.inject(headers)


@contextlib.contextmanager
def _span(name: str, kind: Any, attributes: dict[str, Any], parent: Any = None
          ) -> Iterator[Any]:
    tracer = _trace.get_tracer("fi_evals", __version__, tracer_provider=_PROVIDER)
    with tracer.start_as_current_span(name, context=parent, kind=kind, record_exception=True,
                                      set_status_on_exception=True) as current:
        set_attributes(current, **attributes)
        yield current


def capture(keep_span: bool) -> tuple[int, int, Any] | None:
    """``(trace_id, span_id, span)`` of the current span, None when no valid span is current
    (or without OpenTelemetry). ``span`` is the span itself when ``keep_span`` and it records,
    else None. Cheap (a context-variable read): ``ScoreLogger.log()`` calls it on every score.
    """
    if _trace is None:
        return None
    current = _trace.get_current_span()
    context = current.get_span_context()
    if not context.is_valid:
        return None
    return (context.trace_id, context.span_id,
            current if keep_span and current.is_recording() else None)


def hex_ids(captured: tuple[int, int, Any] | None) -> tuple[str, str] | None:
    """The W3C hex forms (32 and 16 digits) of :func:`capture`'s ids."""
    if captured is None:
        return None
    return f"{captured[0]:032x}", f"{captured[1]:016x}"


def set_attributes(current: Any, **attributes: Any) -> None:
    """Set the non-None ``attributes`` on ``current`` (a span or None)."""
    if current is None:
        return
    for key, value in attributes.items():
        if value is not None:
            current.set_attribute(key, value)


def set_error(current: Any, description: str) -> None:
    """Mark ``current`` (a span or None) as failed."""
    if current is not None:
        current.set_status(Status(StatusCode.ERROR, description))


def current_span() -> Any:
    """The current span (None without OpenTelemetry)."""
    return None if _trace is None else _trace.get_current_span()


def record_score(current: Any, name: str, output: Any) -> None:
    """Put ``eval.<name>.score`` and ``eval.<name>.passed`` on ``current`` while it records
    (Pass/Fail verdicts: 1.0 / 0.0; scores pass at ``BATCH_SCORE_PASS_THRESHOLD``; labels:
    nothing)."""
    if current is None or not current.is_recording():
        return
    from fi_evals._constants import BATCH_SCORE_PASS_THRESHOLD, OUTPUT_FAILED, OUTPUT_PASSED
    from fi_evals.protocol import score_of

    score = score_of(output)
    if score is None:
        return
    limit = 1.0 if output in (OUTPUT_PASSED, OUTPUT_FAILED) else BATCH_SCORE_PASS_THRESHOLD
    current.set_attribute(f"eval.{name}.score", score)
    current.set_attribute(f"eval.{name}.passed", score >= limit)


def verdict_to_span(current: Any, callback: Callable[[Any], Any] | None
                    ) -> Callable[[Any], Any]:
    """A score callback that puts a completed score's verdict on ``current`` (see
    :func:`record_score`), then calls ``callback``."""

    from fi_evals.protocol import EvalStatus

    def record(scored: Any) -> Any:
        if scored.status == EvalStatus.COMPLETED:
            record_score(current, scored.eval_name, scored.output)
        return None if callback is None else callback(scored)

    return record


def in_context(fn: F) -> F:
    """``fn`` to run on a pool thread inside a copy of the caller's context (its current span),
    so request spans nest under the call that made them. ``fn`` itself without OpenTelemetry."""
    if _trace is None:
        return fn
    context = contextvars.copy_context()

    def run(*args: Any, **kwargs: Any) -> Any:
        return context.copy().run(fn, *args, **kwargs)

    return run  # type: ignore[return-value]


def inputs_text(inputs: Any) -> str | None:
    """``inputs`` as JSON for the ``fi_evals.inputs`` attribute, cut at
    ``OTEL_INPUTS_MAX_CHARS``; None (no attribute) unless ``FI_OTEL_INPUTS`` asks for it."""
    from fi_evals._constants import ENV_OTEL_INPUTS, OTEL_INPUTS_MAX_CHARS

    if os.environ.get(ENV_OTEL_INPUTS, "").strip().lower() not in ("1", "true", "yes"):
        return None
    try:
        text = json.dumps(inputs, ensure_ascii=False, default=str)
    except (TypeError, ValueError):  # a DataFrame, a generator...: its type, never a guess
        text = f"<{type(inputs).__name__}>"
    if len(text) > OTEL_INPUTS_MAX_CHARS:
        text = text[:OTEL_INPUTS_MAX_CHARS] + f"... ({len(text):,} characters)"
    return text


def eval_ids(ids: Any) -> list[str]:
    """The first :data:`MAX_IDS` non-empty ids, for a span attribute."""
    out: list[str] = []
    for value in ids:
        if value:
            out.append(str(value))
            if len(out) >= MAX_IDS:
                break
    return out
