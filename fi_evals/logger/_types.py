"""Values the score logger hands out: results, counters, error events, the overflow policies."""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field, fields
from enum import Enum
from typing import Any, Literal

from fi_evals.protocol import EvalStatus

__all__ = ["LoggedScore", "LoggerError", "LoggerStats", "OverflowPolicy", "ScoreStatus"]

ScoreStatus = Literal["completed", "failed", "rejected"]
"""The protocol's finished statuses (:data:`~fi_evals.protocol.FINISHED_STATUSES`) plus the
logger's ``rejected``. ``completed``: the evaluation ran (its verdict may be "Failed").
``failed``: the server could not run it. ``rejected``: it was never run: unknown template, bad
inputs, or the server refused the request (400/401/403/413/422)."""


class OverflowPolicy(str, Enum):  # noqa: UP042 - StrEnum would change str() of a member
    """What ``log()`` does when the in-memory queue is full.

    - ``block``: wait up to ``block_timeout`` seconds for room, then drop the score (counted).
    - ``drop_newest``: drop the score being logged (counted).
    - ``drop_oldest``: drop the oldest queued score to make room (counted).
    - ``spool`` (default): hand the score to the spool writer thread, which appends it to the
      on-disk spool; it is replayed in log order once the worker catches up.
    """

    BLOCK = "block"
    DROP_NEWEST = "drop_newest"
    DROP_OLDEST = "drop_oldest"
    SPOOL = "spool"


@dataclass(frozen=True)
class LoggedScore:
    """The outcome of one logged score, as handed to callbacks and the sink.

    Attributes:
        eval_name: the template.
        status: see :data:`ScoreStatus`.
        output: the verdict ("Passed"/"Failed", a float, labels) when completed, else None.
        reason: the evaluator's explanation, when given.
        runtime: the evaluator's time in milliseconds, when known.
        output_type: "Pass/Fail", "score", "choices" or "numeric", when known.
        eval_id: the server's id (None when rejected before sending).
        error: why there is no output (``failed`` and ``rejected``), else None.
        metadata: what the caller passed to ``log(..., metadata=...)``. For scores replayed
            from another process's spool it went through JSON (values may have become text).
        trace_id, span_id: the OpenTelemetry trace and span current when ``log()`` was called
            (W3C hex, 32 and 16 digits), kept through the spool; None without OpenTelemetry
            or without a current span.
    """

    eval_name: str
    status: ScoreStatus
    output: Any = None
    reason: str | None = None
    runtime: float | None = None
    output_type: str | None = None
    eval_id: str | None = None
    error: str | None = None
    metadata: Any = None
    trace_id: str | None = None
    span_id: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == EvalStatus.COMPLETED

    def to_dict(self) -> dict[str, Any]:
        """A shallow dict of the fields (``metadata`` is not copied: ``asdict`` would deep-copy
        it, which cost more than the rest of the worker's per-score work together)."""
        return {name: getattr(self, name) for name in _SCORE_FIELDS}


_SCORE_FIELDS = tuple(f.name for f in fields(LoggedScore))


@dataclass(frozen=True)
class LoggerError:
    """One event on the logger's error channel (``on_error`` and the ``fi_evals.logger`` log).

    Attributes:
        kind: ``rejected`` (misuse or refused request), ``failed`` (the evaluation could not
            run), ``dropped`` (overflow policy; ``count`` says how many since the last event),
            ``callback`` (a callback raised), ``sink`` (the sink raised), ``unreachable`` (the
            server went away; scores are spooled or held), ``internal`` (a bug in the logger,
            caught so that the worker keeps going).
        message: what happened.
        eval_name: the template concerned, when one is.
        metadata: the score's metadata, when one score is concerned.
        count: how many scores the event covers.
        exception: the exception caught, when there was one.
    """

    kind: str
    message: str
    eval_name: str | None = None
    metadata: Any = None
    count: int = 1
    exception: BaseException | None = None


@dataclass(frozen=True)
class LoggerStats:
    """A snapshot of the logger's counters (since it was built, or since the fork).

    Attributes:
        queued: scores accepted by ``log()``.
        sent: scores accepted by the server (submissions, replays included).
        completed: evaluations finished ``completed`` and delivered.
        failed: scores that ended without a verdict: evaluations ``failed`` plus ``rejected``.
        rejected: scores never run (misuse, refused request); included in ``failed``.
        dropped: scores dropped by the overflow policy (never sent, never spooled).
        spooled: scores written to the on-disk spool.
        replayed: spooled scores later accepted by the server (by this logger).
        callback_errors: callbacks that raised (caught, logged).
        sink_errors: sink writes that raised (caught, logged).
        in_queue: scores waiting in memory now (queue and spool writer).
        pending: scores sent and not finished yet.
        in_spool: rows in the spool file now (every process's), -1 when unknown.
        online: False from a request that found the server unreachable until one succeeds.
    """

    queued: int = 0
    sent: int = 0
    completed: int = 0
    failed: int = 0
    rejected: int = 0
    dropped: int = 0
    spooled: int = 0
    replayed: int = 0
    callback_errors: int = 0
    sink_errors: int = 0
    in_queue: int = 0
    pending: int = 0
    in_spool: int = -1
    online: bool = True

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        return " ".join(f"{f.name}={getattr(self, f.name)}" for f in fields(self))


_COUNTER_NAMES = ("sent", "completed", "failed", "rejected", "dropped", "spooled", "replayed",
                  "callback_errors", "sink_errors")


@dataclass
class Counters:
    """The live counters behind :class:`LoggerStats` (``queued`` lives on the logger's lock)."""

    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    values: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_COUNTER_NAMES, 0))

    def add(self, name: str, n: int = 1) -> None:
        if n:
            with self.lock:
                self.values[name] += n

    def snapshot(self) -> dict[str, int]:
        with self.lock:
            return dict(self.values)
