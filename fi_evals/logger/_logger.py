"""``ScoreLogger``: log scores from a live service without waiting, failing or losing them.

The caller's side (``log()``) numbers the score and appends it to a bounded in-memory queue:
one short critical section, no I/O, no validation, and every exception caught. A daemon
*sender* thread checks, batches and submits (:mod:`fi_evals.logger._worker`), a *delivery*
thread polls and hands out results (:mod:`fi_evals.logger._poll`), the two sharing one
connection state (:mod:`fi_evals.logger._link`), and a *spool writer*
thread moves queue overflow to the on-disk spool, so that a sender stuck on a slow server
never makes ``log()`` wait or drop under the default ``spool`` policy.

Process life cycle:

- **Exit.** One ``atexit`` hook closes every open logger with its ``exit_timeout``: it flushes
  for that long, then writes what is left (queue, unsent batches, unfinished submissions) to
  the spool, where the next logger on that spool picks it up. Like ``concurrent.futures``, the
  hook is registered once for the module and finds loggers through a weak set.
- **Fork.** ``os.register_at_fork`` gives each logger in the child a fresh queue, counters,
  locks, HTTP session and spool connection; its threads start on the child's first call. What
  the parent had queued stays the parent's (it is not sent twice). This is what gunicorn's
  pre-fork workers need when the logger is built before the fork (``--preload``).
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Self

from fi_evals import _otel
from fi_evals._cachedir import user_cache_dir
from fi_evals._constants import (
    LOGGER_BATCH_SIZE,
    LOGGER_BLOCK_TIMEOUT,
    LOGGER_CLOSE_TIMEOUT,
    LOGGER_EXIT_TIMEOUT,
    LOGGER_LINGER,
    LOGGER_MAX_PENDING,
    LOGGER_OVERFLOW_MAX,
    LOGGER_OVERFLOW_POLICY,
    LOGGER_POLL_INTERVAL,
    LOGGER_QUEUE_SIZE,
    LOGGER_RECONNECT_INITIAL,
    LOGGER_RECONNECT_MAX,
    LOGGER_RETRY_ATTEMPTS,
    LOGGER_SPOOL_DIR_ENV,
    LOGGER_SPOOL_SUBDIR,
    LOGGER_STATS_INTERVAL,
)
from fi_evals._retry import Backoff, RetryPolicy
from fi_evals._transport import Transport
from fi_evals.logger._delivery import Delivery, JsonlSink, Sink, Watermark
from fi_evals.logger._link import Link
from fi_evals.logger._poll import ScorePoller
from fi_evals.logger._queue import DROPPED, ScoreQueue
from fi_evals.logger._spool import Spool
from fi_evals.logger._types import Counters, LoggedScore, LoggerError, LoggerStats, OverflowPolicy
from fi_evals.logger._worker import Worker, WorkerConfig

if TYPE_CHECKING:
    from fi_evals.client import Evaluator

__all__ = ["ScoreLogger", "default_spool_path"]

log = logging.getLogger("fi_evals.logger")

_LIVE: weakref.WeakSet[ScoreLogger] = weakref.WeakSet()
_JOIN_GRACE_S = 1.0  # how long close() waits for a thread after asking it to stop


def default_spool_path(base_url: str, api_key: str) -> str:
    """The default spool file: one per (server, API key), under the user's cache folder.

    ``$FI_EVALS_SPOOL_DIR`` overrides the folder. Keyed by server and key so that spooled
    scores are never replayed to another server or with another tenant's key.
    """
    folder = user_cache_dir(LOGGER_SPOOL_SUBDIR, LOGGER_SPOOL_DIR_ENV)
    digest = hashlib.sha256(f"{base_url}\0{api_key}".encode()).hexdigest()[:16]
    return os.path.join(folder, f"scores-{digest}.sqlite3")


class ScoreLogger:
    """Background score logging for production services.

    ``log()`` returns at once from any thread; daemon threads batch the scores into async,
    idempotent submissions grouped by template, poll their results in bulk and hand each
    result to the score's ``callback`` and to the ``sink``.

    Args:
        evaluator: the :class:`~fi_evals.Evaluator` whose server and keys to use (the logger
            opens its own HTTP session with them).
        queue_size: scores kept in memory before ``overflow`` applies (``LOGGER_QUEUE_SIZE``).
        overflow: ``"spool"`` (default), ``"block"``, ``"drop_newest"`` or ``"drop_oldest"``
            (see :class:`OverflowPolicy`).
        block_timeout: longest wait of ``log()`` under ``block`` (``LOGGER_BLOCK_TIMEOUT``).
        spool: the spool file; None means :func:`default_spool_path` under the ``spool``
            policy and no spool otherwise; False means no spool (not with ``spool``).
            With a spool, scores also go there while the server is unreachable.
        sink: a JSONL file path or a callable receiving every :class:`LoggedScore`.
        on_error: called (on a logger thread) with every :class:`LoggerError`.
        model: the judge model for model-based templates, unless ``log()`` names one.
        batch_size: most scores per submission (``LOGGER_BATCH_SIZE``, capped by the
            server's ``max_batch_size``).
        linger: seconds the sender waits for a full batch (``LOGGER_LINGER``).
        poll_interval: least seconds between polls (``LOGGER_POLL_INTERVAL``).
        max_pending: most unfinished submissions (``LOGGER_MAX_PENDING``).
        stats_interval: seconds between INFO lines with the counters
            (``LOGGER_STATS_INTERVAL``).
        exit_timeout: seconds spent flushing at interpreter exit (``LOGGER_EXIT_TIMEOUT``).
        reconnect_initial, reconnect_max: backoff bounds while the server is unreachable.
        on_span: with OpenTelemetry, also put each completed score's verdict on the span
            current at ``log()`` as ``eval.<name>.score`` and ``eval.<name>.passed``, if that
            span still records when the verdict arrives. Off by default. The trace and span
            ids are recorded with every score either way (:class:`LoggedScore`).

    Raises:
        ValueError: an unknown policy, ``spool=False`` with the ``spool`` policy, or a bad size.
    """

    def __init__(self, evaluator: Evaluator, *, queue_size: int = LOGGER_QUEUE_SIZE,
                 overflow: OverflowPolicy | str = LOGGER_OVERFLOW_POLICY,
                 block_timeout: float = LOGGER_BLOCK_TIMEOUT,
                 spool: str | os.PathLike[str] | bool | None = None,
                 sink: Sink | None = None,
                 on_error: Callable[[LoggerError], Any] | None = None,
                 model: str | None = None, batch_size: int = LOGGER_BATCH_SIZE,
                 linger: float = LOGGER_LINGER, poll_interval: float = LOGGER_POLL_INTERVAL,
                 max_pending: int = LOGGER_MAX_PENDING,
                 stats_interval: float = LOGGER_STATS_INTERVAL,
                 exit_timeout: float = LOGGER_EXIT_TIMEOUT,
                 reconnect_initial: float = LOGGER_RECONNECT_INITIAL,
                 reconnect_max: float = LOGGER_RECONNECT_MAX, on_span: bool = False) -> None:
        policy = OverflowPolicy(overflow)
        self._on_span = bool(on_span)
        if batch_size < 1 or max_pending < 1:
            raise ValueError("batch_size and max_pending must be at least 1")
        base = evaluator.context.transport  # the Evaluator's server, keys and timeouts
        self._base_transport = base
        self._spool_path = self._pick_spool(spool, policy, base)
        self._sink: Callable[[LoggedScore], Any] | None = (
            sink if sink is None or callable(sink) else JsonlSink(sink))
        self._on_error = on_error
        self._model = model
        self.policy = policy
        self.exit_timeout = exit_timeout
        self._queue_args = (queue_size, policy, block_timeout, LOGGER_OVERFLOW_MAX)
        self._cfg = WorkerConfig(batch_size=batch_size, linger=linger,
                                 poll_interval=poll_interval, max_pending=max_pending,
                                 reconnect_initial=reconnect_initial,
                                 reconnect_max=reconnect_max, stats_interval=stats_interval)
        self._spool = Spool(self._spool_path) if self._spool_path else None
        self._build()
        self._start()
        _LIVE.add(self)

    @staticmethod
    def _pick_spool(spool: str | os.PathLike[str] | bool | None, policy: OverflowPolicy,
                    base: Transport) -> str | None:
        if spool is False:
            if policy is OverflowPolicy.SPOOL:
                raise ValueError("the 'spool' overflow policy needs a spool: pass spool=<path> "
                                 "or leave it None for the default file")
            return None
        if spool is None and policy is not OverflowPolicy.SPOOL:
            return None
        if spool is None or spool is True:
            # The key is read off the Evaluator's transport: it lives on the instance only.
            return default_spool_path(base.base_url, base.api_key)
        return os.fspath(spool)

    def _build(self) -> None:
        """Fresh per-process state: queue, counters, session, worker (in __init__ and after
        a fork)."""
        self._queue = ScoreQueue(*self._queue_args)
        self._counters = Counters()
        self._watermark = Watermark()
        self._callbacks: dict[int, Callable[..., Any]] = {}
        # One connection per logger thread that talks to the server: sender, delivery, and
        # the spool writer (only to look up a template the catalogue does not know).
        self._transport = self._base_transport.clone(
            pool_size=3, retry=RetryPolicy(max_attempts=LOGGER_RETRY_ATTEMPTS))
        self._delivery = Delivery(self._counters, self._watermark, self._sink, self._on_error)
        # What the sender and the delivery thread share about the server: one object.
        self._link = Link(self._transport, self._delivery, self._counters, self._callbacks,
                          poll_interval=self._cfg.poll_interval,
                          reconnect=Backoff(self._cfg.reconnect_initial, self._cfg.reconnect_max,
                                            jitter="equal"),
                          spool_path=self._spool.path if self._spool is not None else None)
        self._worker = Worker(self._cfg, self._link, self._queue, self._spool)
        self._poller = ScorePoller(self._link, f"overflow policy {self._queue.policy.value}, queue "
                              f"size {self._queue.maxsize}", lambda: str(self.stats()),
                              self._cfg.stats_interval)
        self._threads: list[threading.Thread] = []
        self._stop_writer = threading.Event()
        self._start_lock = threading.Lock()
        self._closed = False
        self._pid = 0  # set by _start(): log() takes its fast path only once threads run

    def _start(self) -> None:
        with self._start_lock:
            if self._threads or self._closed:
                return
            self._threads = [
                threading.Thread(target=_otel.quietly(target), daemon=True,
                                 name=f"fi-evals-score-{role}-{id(self):x}")
                for role, target in (("sender", self._worker.run),
                                     ("delivery", self._poller.run),
                                     ("spool", self._write_overflow))]
            for thread in self._threads:
                thread.start()
            self._pid = _current_pid[0]

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("online" if self._link.online else "offline")
        return (f"<ScoreLogger {self._transport.base_url} {state} policy={self.policy.value} "
                f"in_queue={len(self._queue)} spool={self._spool_path!r}>")

    # ------------------------------------------------------------------ the caller's side

    def log(self, eval_name: str, inputs: Mapping[str, Any], *, metadata: Any = None,
            callback: Callable[[LoggedScore], Any] | None = None,
            config: Mapping[str, Any] | None = None, model: str | None = None) -> bool:
        """Queue one score and return at once. Never raises, never does I/O.

        The score is checked on the sender thread: an unknown template or bad inputs end up
        ``rejected`` (error channel, ``failed``/``rejected`` counters, and the callback).

        Args:
            eval_name: the template name.
            inputs: one item's inputs (a dict is copied, shallowly, so it may be reused).
            metadata: anything to find the score again (a request id...); handed back on the
                :class:`LoggedScore`. Keep it JSON-serialisable if it may be spooled.
            callback: called once with the :class:`LoggedScore` (on the delivery thread) when
                the score completes, fails or is rejected; not called when it is dropped.
                What it raises is caught and counted.
            config: template parameters (``{"keyword": "refund"}``).
            model: judge model, overriding the logger's.

        Returns:
            True when the score was queued or spooled, False when it was dropped.
        """
        try:
            if self._closed or self._pid != _current_pid[0]:
                return self._log_slow(eval_name, inputs, metadata, callback, config, model)
            if type(inputs) is dict:
                inputs = inputs.copy()
            trace = _otel.capture(self._on_span)  # None at once without OpenTelemetry
            if trace is not None and trace[2] is not None:
                callback = _otel.verdict_to_span(trace[2], callback)
            outcome, dropped = self._queue.put(eval_name, inputs, metadata, callback,
                                               self._model if model is None else model, config,
                                               trace)
            if dropped is not None:
                self._drop(dropped.lseq)
            return outcome != DROPPED
        except Exception:  # noqa: BLE001 - the host's request must never see our failure
            self._counters.add("dropped")
            return False

    def _log_slow(self, *args: Any) -> bool:
        if self._closed:
            self._counters.add("dropped")
            return False
        self._start()  # first call in a forked child
        return self.log(args[0], args[1], metadata=args[2], callback=args[3], config=args[4],
                        model=args[5])

    def _drop(self, lseq: int) -> None:
        self._counters.add("dropped")
        self._watermark.settle(lseq)

    # ------------------------------------------------------------------ flush, close

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every score logged before this call has settled, and the spooled or
        submitted scores of earlier loggers on this spool too.

        Settled means: delivered (completed, failed or rejected) or dropped. While the server
        is unreachable nothing settles, and ``flush`` returns False at the timeout.

        Args:
            timeout: seconds; None waits as long as it takes.

        Returns:
            True when everything settled, False at the timeout.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        self._start()
        mark, _ = self._queue.marker()
        self._watermark.settle(mark)
        self._queue.wake.set()  # no lingering for a fuller batch: someone is waiting
        if not self._watermark.wait(mark, timeout):
            return False
        self._link.ready.wait(_remaining(deadline))
        while self._link.inherited() or self._older_spooled():
            left = _remaining(deadline)
            if left is not None and left <= 0:
                return False
            time.sleep(min(0.05, left if left is not None else 0.05))
        return True

    def _older_spooled(self) -> int:
        if self._spool is None:
            return 0
        return self._spool.count_before_gen(self._worker.gen)

    def close(self, timeout: float = LOGGER_CLOSE_TIMEOUT) -> bool:
        """Flush for up to ``timeout`` seconds, then stop; whatever is left goes to the spool
        (without a spool: counted as dropped). Later ``log()`` calls drop (counted).

        Returns:
            True when everything had settled before the stop.
        """
        if self._closed:
            return True
        flushed = self.flush(timeout) if self._pid == _current_pid[0] else False
        self._closed = True
        self._stop_writer.set()
        self._queue.overflow_wake.set()
        for thread in self._threads[2:]:
            thread.join(_JOIN_GRACE_S)
        self._worker.stop()
        for thread in self._threads[:2]:
            thread.join(_JOIN_GRACE_S)
        self._worker.abandon_now()  # no-op when the sender did it; else it is stuck
        self._poller.deliver_ready()
        self._transport.close()
        if self._spool is not None:
            self._spool.close()
        if isinstance(self._sink, JsonlSink):
            self._sink.close()
        _LIVE.discard(self)
        log.info("score logger closed: %s", self.stats())
        return flushed

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def spool_path(self) -> str | None:
        return self._spool_path

    # ------------------------------------------------------------------ counters

    def stats(self) -> LoggerStats:
        """A snapshot of the counters (reads the spool's row count from its file)."""
        mark, queued = self._queue.marker()
        self._watermark.settle(mark)
        values = self._counters.snapshot()
        try:
            in_spool = self._spool.count() if self._spool is not None else 0
        except Exception:  # noqa: BLE001 - a locked or broken spool must not break stats()
            in_spool = -1
        return LoggerStats(queued=queued, in_queue=len(self._queue),
                           pending=len(self._link.pending), in_spool=in_spool,
                           online=self._link.online, **values)

    # ------------------------------------------------------------------ threads

    def _write_overflow(self) -> None:
        """The spool writer: moves queue overflow to the spool, whatever the sender does."""
        self._link.ready.wait()
        while True:
            stopping = self._stop_writer.is_set()
            self._queue.overflow_wake.clear()
            while True:
                entries = self._queue.take_overflow(1000)
                if not entries:
                    break
                try:
                    self._worker.spool_entries(entries)
                except Exception as exc:  # noqa: BLE001 - log() never raises: reported instead
                    self._delivery.report(LoggerError(
                        "internal", f"writing {len(entries)} scores to the spool failed: {exc!r}",
                        count=len(entries), exception=exc))
                    self._counters.add("dropped", len(entries))
                    for e in entries:
                        self._watermark.settle(e.lseq)
            if stopping:
                return
            self._queue.overflow_wake.wait(0.5)

    def _after_fork_in_child(self) -> None:
        if self._closed:
            return
        if self._spool is not None:
            self._spool.after_fork_in_child()
        if isinstance(self._sink, JsonlSink):
            self._sink = JsonlSink(self._sink.path)
        # The parent's session and threads are the parent's: never close or join them here.
        self._build()


# Updated at fork, so that log() tells a forked child from its parent without a syscall.
_current_pid = [os.getpid()]


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


_forking: list[Spool] = []  # spools held by the before-fork hook, released after the fork


def _before_fork() -> None:
    for logger in list(_LIVE):
        spool = logger._spool
        if spool is not None and not logger.closed:
            spool.before_fork()
            _forking.append(spool)


def _after_fork_in_parent() -> None:
    while _forking:
        _forking.pop().after_fork_in_parent()


def _after_fork_in_child() -> None:
    _current_pid[0] = os.getpid()
    _forking.clear()
    for logger in list(_LIVE):
        try:
            logger._after_fork_in_child()
        except Exception:
            log.exception("resetting %r after fork failed", logger)


def _close_all_at_exit() -> None:
    loggers = [lg for lg in list(_LIVE) if not lg.closed]
    if not loggers:
        return
    deadline = time.monotonic() + max(lg.exit_timeout for lg in loggers)
    for logger in loggers:
        try:
            logger.close(timeout=max(0.0, deadline - time.monotonic()))
        except Exception:
            log.exception("closing %r at exit failed", logger)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                        after_in_child=_after_fork_in_child)
# urllib3 empties every connection pool at exit through weakref.finalize, and atexit runs its
# hooks last-registered first. weakref registers its exit hook when the first finalizer is
# made, which may be after this import (the first pool): a sender thread that had not sent yet
# would then wait forever for a connection while the exit flush waits for it. Making a
# finalizer first puts weakref's hook before ours, so the loggers flush while pools still work.
weakref.finalize(_close_all_at_exit, lambda: None)
atexit.register(_close_all_at_exit)
