"""Where results and errors go: callbacks, the sink, the error channel, and ``flush()``'s mark.

Everything here runs on the logger's threads and catches what user code raises (a callback,
a sink, an ``on_error`` hook): an exception there is counted and logged, never propagated
into the worker, which must keep going (as dramatiq's workers do with failing actors).
Log levels follow the kind of event: a misuse or a refused request is a WARNING, user code
that raised is an ERROR with its traceback, the server going away is a WARNING once.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import IO, Any, Union

from fi_evals.logger._types import Counters, LoggedScore, LoggerError
from fi_evals.protocol import EvalStatus

__all__ = ["Delivery", "JsonlSink", "Sink", "Watermark"]

log = logging.getLogger("fi_evals.logger")

Sink = Union[str, "os.PathLike[str]", Callable[[LoggedScore], Any]]
"""A JSONL file path, or a callable that receives each :class:`LoggedScore`."""

_WARN_EVERY_S = 10.0



class JsonlSink:
    """Appends one JSON line per result to a file (opened lazily, reopened after a fork)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._file: IO[str] | None = None
        self._pid = os.getpid()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"JsonlSink({self.path!r})"

    def __call__(self, score: LoggedScore) -> None:
        line = json.dumps(score.to_dict(), ensure_ascii=False, default=str) + "\n"
        with self._lock:
            if self._file is None or self._pid != os.getpid():
                folder = os.path.dirname(os.path.abspath(self.path))
                os.makedirs(folder, exist_ok=True)
                self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
                self._pid = os.getpid()
            self._file.write(line)

    def flush(self) -> None:
        with self._lock:
            if self._file is not None and self._pid == os.getpid():
                self._file.flush()

    def close(self) -> None:
        with self._lock:
            if self._file is not None and self._pid == os.getpid():
                self._file.close()
            self._file = None


class Watermark:
    """Which of this logger's scores (numbered 1, 2, ...) have settled, for ``flush()``.

    ``low`` is the largest n such that every score up to n has settled (delivered, failed,
    rejected or dropped). Scores settle out of order; those above ``low`` wait in a set until
    the gap below them closes, so the set stays as small as the disorder.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self.low = 0
        self._above: set[int] = set()

    def settle(self, lseq: int) -> None:
        with self._cond:
            if lseq <= self.low:
                return
            self._above.add(lseq)
            advanced = False
            while self.low + 1 in self._above:
                self._above.remove(self.low + 1)
                self.low += 1
                advanced = True
            if advanced:
                self._cond.notify_all()

    def wait(self, target: int, timeout: float | None) -> bool:
        """Wait until every score up to ``target`` settled; False at the timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self.low >= target, timeout)


class Delivery:
    """Hands results to callbacks and the sink, and events to the error channel.

    Args:
        counters: the logger's counters.
        watermark: settles each score of this logger once it is delivered.
        sink: a :class:`JsonlSink`, a callable, or None.
        on_error: called with every :class:`LoggerError`, or None.
    """

    def __init__(self, counters: Counters, watermark: Watermark,
                 sink: Callable[[LoggedScore], Any] | None,
                 on_error: Callable[[LoggerError], Any] | None) -> None:
        self.counters = counters
        self.watermark = watermark
        self.sink = sink
        self.on_error = on_error
        self._last_warned: dict[tuple[str, str | None], float] = {}

    def deliver(self, score: LoggedScore, callback: Callable[..., Any] | None) -> None:
        """Count the outcome, call the callback, write the sink (the caller settles it)."""
        self.counters.add(EvalStatus.COMPLETED.value if score.ok else EvalStatus.FAILED.value)
        if score.status == "rejected":
            self.counters.add("rejected")
        if not score.ok:
            self.report(LoggerError(score.status, score.error or score.status,
                                    score.eval_name, score.metadata))
        if callback is not None:
            try:
                callback(score)
            except Exception as exc:  # noqa: BLE001 - a caller's callback never stops delivery
                self.counters.add("callback_errors")
                self.report(LoggerError("callback", f"callback {callback!r} raised: {exc!r}",
                                        score.eval_name, score.metadata, exception=exc))
        if self.sink is not None:
            try:
                self.sink(score)
            except Exception as exc:  # noqa: BLE001 - a caller's sink never stops delivery
                self.counters.add("sink_errors")
                self.report(LoggerError("sink", f"sink {self.sink!r} raised: {exc!r}",
                                        score.eval_name, score.metadata, exception=exc))

    def flush_sink(self) -> None:
        flush = getattr(self.sink, "flush", None)
        if flush is not None:
            try:
                flush()
            except Exception as exc:  # noqa: BLE001 - a caller's sink never stops delivery
                self.counters.add("sink_errors")
                self.report(LoggerError("sink", f"flushing the sink failed: {exc!r}",
                                        exception=exc))

    def report(self, event: LoggerError) -> None:
        """Send one event to ``on_error`` and to the ``fi_evals.logger`` log."""
        self._log(event)
        if self.on_error is not None:
            try:
                self.on_error(event)
            except Exception:
                log.exception("the logger's on_error hook %r raised", self.on_error)

    def _log(self, event: LoggerError) -> None:
        if event.kind in ("callback", "sink", "internal"):
            level = logging.ERROR  # user code or our own bug: show the traceback
        elif event.kind == "failed":
            level = logging.INFO  # the server could not run it: data, not an incident
        else:
            level = logging.WARNING
        # A misconfigured service may hit the same problem on every request: one line per
        # (kind, template) every _WARN_EVERY_S at its level, the repeats at DEBUG.
        key = (event.kind, event.eval_name)
        now = time.monotonic()
        if now - self._last_warned.get(key, -_WARN_EVERY_S) < _WARN_EVERY_S:
            level = logging.DEBUG
        else:
            self._last_warned[key] = now
        exc_info = event.exception if level >= logging.ERROR else None
        log.log(level, "score logger %s: %s%s", event.kind, event.message,
                f" (x{event.count})" if event.count > 1 else "", exc_info=exc_info)
