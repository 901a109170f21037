"""The score logger's connection state: one object shared by its sender and delivery threads.

The sender (:mod:`fi_evals.logger._worker`) submits and the delivery thread
(:mod:`fi_evals.logger._poll`) polls, through the same transport, and what one learns the
other must act on: a submission adds ids for the delivery thread to poll; a poll that finds the
server away takes the logger offline for the sender too (its unsent batches go to the spool);
either thread, and the closing one, may settle a score. All of that lives in one :class:`Link`
and changes only under its ``state`` lock; network calls happen outside it.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from fi_evals._retry import Backoff
from fi_evals._transport import Transport
from fi_evals.logger._delivery import Delivery
from fi_evals.logger._prepare import Item
from fi_evals.logger._types import Counters, LoggedScore, LoggerError

__all__ = ["Link", "ReadyScore"]

log = logging.getLogger("fi_evals.logger")

ReadyScore = tuple[LoggedScore, Callable[..., Any] | None, int | None]
"""A final result waiting for the delivery thread: the score, its callback, its ``lseq``
(None for a score an earlier logger logged: it does not count for ``flush()``)."""


def _no_spill() -> None:
    """The default of :attr:`Link.spill`: nothing unsent to put aside."""


class Link:
    """What the logger's threads share about its server (see the module docs).

    Args:
        transport: the logger's own HTTP transport (one connection per thread that talks).
        delivery: where results and error events go (sink, callbacks, ``on_error``).
        counters: the logger's counters.
        callbacks: ``lseq`` -> callback of spooled scores this logger logged.
        poll_interval: least seconds between two polls of the same scores.
        reconnect: the backoff between probes while the server is away.
        spool_path: the spool file, named in the "unreachable" event (None: no spool).

    Attributes:
        state: the lock under which everything below changes.
        online: False from a failure that says the server is away until a request succeeds.
        pending: ``eval_id`` -> the submitted score whose result is awaited.
        next_poll: ``time.monotonic()`` time of the next poll round.
        abandoned: set once, at close, when what was left went to the spool.
        ready: set once the sender has read the spool (the other threads wait for it).
        stopping: set by ``close()``: every loop ends.
        poll_wake: wakes the delivery thread (results to hand out, or stop).
        ready_scores: final results for the delivery thread, handed out outside the lock
            (callbacks are user code: they must not run while a closing thread needs it).
        spill: called (lock held) when the server goes away: the sender sets it to move its
            unsent batches to the spool.
    """

    def __init__(self, transport: Transport, delivery: Delivery, counters: Counters,
                 callbacks: dict[int, Callable[..., Any]], *, poll_interval: float,
                 reconnect: Backoff, spool_path: str | None) -> None:
        self.transport = transport
        self.delivery = delivery
        self.counters = counters
        self.callbacks = callbacks
        self.poll_interval = poll_interval
        self.state = threading.RLock()
        self.online = True
        self.pending: dict[str, Item] = {}
        self.next_poll = 0.0
        self.abandoned = False
        self.ready = threading.Event()
        self.stopping = threading.Event()
        self.poll_wake = threading.Event()
        self.ready_scores: deque[ReadyScore] = deque()
        self.spill: Callable[[], None] = _no_spill
        self._reconnect = reconnect
        self._spool_path = spool_path
        self._failures = 0
        self._retry_at = 0.0

    def __repr__(self) -> str:
        return (f"<Link {self.transport.base_url} online={self.online} "
                f"pending={len(self.pending)} abandoned={self.abandoned}>")

    # ------------------------------------------------------------------ reachability

    def probe_due(self) -> bool:
        """Online, or offline with the backoff over (the next request is the probe)."""
        return self.online or time.monotonic() >= self._retry_at

    def retry_in(self) -> float:
        """Seconds until the next probe may go (0 when it may go now)."""
        return max(0.0, self._retry_at - time.monotonic())

    def reachable(self) -> None:
        """A request succeeded (state lock held)."""
        if not self.online:
            log.info("score logger: the server is reachable again")
        self.online = True
        self._failures = 0

    def mark_offline(self, exc: BaseException) -> None:
        """The server is away (state lock held): report it once, and back off."""
        if self._failures == 0:
            where = (f"spooling scores to {self._spool_path}" if self._spool_path is not None
                     else "holding scores in memory")
            self.delivery.report(LoggerError(
                "unreachable", f"server unreachable ({exc}); {where} until it is back",
                exception=exc))
        self.online = False
        self._failures += 1
        self._retry_at = time.monotonic() + self._reconnect.sample(self._failures - 1)

    def went_offline(self, exc: BaseException) -> None:
        """A poll found the server away (state lock held): back off; the sender's unsent
        batches go to the spool."""
        self.mark_offline(exc)
        self.spill()

    def schedule_poll(self) -> None:
        """Scores were just submitted: poll one interval from now, unless a poll is due sooner
        (nothing finishes the instant it is stored)."""
        if self.next_poll <= time.monotonic():
            self.next_poll = time.monotonic() + self.poll_interval

    # ------------------------------------------------------------------ results

    def finish(self, item: Item, score: LoggedScore) -> None:
        """Queue a final result for the delivery thread (with the item's trace ids)."""
        if item.trace is not None and score.trace_id is None:
            score = dataclasses.replace(score, trace_id=item.trace[0], span_id=item.trace[1])
        callback = self.callbacks.pop(item.lseq, None) if item.own else None
        self.ready_scores.append((score, item.callback or callback,
                                  item.lseq if item.own else None))
        self.poll_wake.set()

    def inherited(self) -> int:
        """Scores of earlier loggers this one still has to finish (pending results)."""
        return sum(1 for it in list(self.pending.values()) if not it.own)

    def internal(self, what: str, exc: BaseException) -> None:
        """Report a bug caught in a loop (the loop goes on)."""
        self.delivery.report(LoggerError("internal", f"{what} failed: {exc!r}", exception=exc))
