"""The score logger's sender thread: batch, submit, replay the spool, go offline, close.

One daemon thread per logger submits; another, the delivery thread (``_poll.Poller``), polls
and hands out results; they share ``pending`` and the online state under one lock. Each turn
of the sender's loop does one thing:

1. while the server is unreachable, move the unsent batches and the queue to the spool (when
   there is one) and wait out a jittered, growing backoff; the next request is the probe;
2. send the outbox's head batch (a batch taken from the queue and not yet accepted);
3. if the spool holds claimable scores, replay its head batch (spooled scores go in log
   order); a batch first sent before is sent again with its recorded ``Idempotency-Key`` and
   body, so the server runs it once. Turns alternate between the spool and the queue while
   both hold scores, so that a long backlog does not starve live traffic or the reverse;
4. otherwise take up to a batch of queued scores (lingering up to ``linger`` for a full
   one), check and encode them, group them by template/model/parameters/keys into the outbox.

A submission that fails because the server is away (connection error, 429, 503, 502/504
after the transport's retries) goes to the spool with its key, or stays in the outbox without
a spool, and the logger goes offline. Any other error answer rejects the batch's scores.
Every exception is caught per turn, reported as an ``internal`` event, and the loop goes on
(as dramatiq's workers do).

Closing: ``stop()`` ends the loops, and ``abandon_now()`` writes whatever is left (queue,
outbox, ids of unfinished submissions) to the spool for the next logger on it. If the sender
is stuck in a request past the close deadline, the closing thread calls ``abandon_now()``
itself, under the state lock; the sender, when its request returns, finds ``abandoned`` set
and leaves everything as it is.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fi_evals._constants import COMPAT_MAX_BATCH_SIZE
from fi_evals._exceptions import FiEvalsError, ItemError
from fi_evals._retry import Backoff
from fi_evals._transport import Transport
from fi_evals.logger._delivery import Delivery
from fi_evals.logger._prepare import Item, Preparer
from fi_evals.logger._queue import Entry, ScoreQueue
from fi_evals.logger._spool import Spool, SpooledBatch
from fi_evals.logger._types import Counters, LoggedScore, LoggerError

__all__ = ["Worker", "WorkerConfig"]

log = logging.getLogger("fi_evals.logger")

_SEND_TIMEOUT_S = 60.0  # one submission, retries included
_SPOOL_RECHECK_S = 5.0  # look for rows other processes left in the spool this often
_MIN_IDLE_WAIT_S = 0.02
_OFFLINE_SLICE_S = 0.1
_FULL_WAIT_S = 0.05


@dataclass(frozen=True)
class WorkerConfig:
    batch_size: int
    linger: float
    poll_interval: float
    max_pending: int
    reconnect_initial: float
    reconnect_max: float
    stats_interval: float


@dataclass
class _Batch:
    """A submission: its items, key and body; ``from_spool`` when its rows are spooled."""

    items: list[Item]
    key: str
    body: dict[str, Any]
    from_spool: bool = False


class Worker:
    """The loop behind one :class:`~fi_evals.logger.ScoreLogger` (see the module docs).

    State shared with the delivery and closing threads (``outbox``, ``pending``, ``online``,
    ``abandoned``) changes only under ``state``; network calls happen outside it.
    """

    def __init__(self, cfg: WorkerConfig, queue: ScoreQueue, spool: Spool | None,
                 transport: Transport, delivery: Delivery, counters: Counters,
                 callbacks: dict[int, Callable[..., Any]]) -> None:
        self.cfg = cfg
        self.queue = queue
        self.spool = spool
        self.transport = transport
        self.delivery = delivery
        self.counters = counters
        self.callbacks = callbacks
        self.preparer = Preparer(transport.templates)
        queue.wake_at = cfg.batch_size
        self.gen = 0
        self.ready = threading.Event()
        self.online = True
        self.pending: dict[str, Item] = {}
        self.outbox: deque[_Batch] = deque()
        self.abandoned = False
        self.state = threading.RLock()
        self.stopping = threading.Event()
        self.poll_wake = threading.Event()
        """Wakes the delivery thread: results to hand out, or stop."""
        self.next_poll = 0.0
        self._failures = 0
        self._retry_at = 0.0
        self._reconnect = Backoff(cfg.reconnect_initial, cfg.reconnect_max, jitter="equal")
        self._spool_backlog = spool is not None
        self._spool_checked = time.monotonic()
        self._replay_next = True
        # Final results for the delivery thread, handed out outside the state lock (callbacks
        # are user code: they must not run while a closing thread may need the lock).
        self.ready_scores: deque[tuple[LoggedScore, Callable[..., Any] | None, int | None]] = (
            deque())

    def __repr__(self) -> str:
        return (f"<Worker gen={self.gen} online={self.online} outbox={len(self.outbox)} "
                f"pending={len(self.pending)} abandoned={self.abandoned}>")

    def inherited(self) -> int:
        """Scores of earlier loggers this one still has to finish (pending results)."""
        return sum(1 for it in list(self.pending.values()) if not it.own)

    # ------------------------------------------------------------------ loop

    def run(self) -> None:
        try:
            self._start()
        except Exception as exc:  # a broken spool must not stop the network side
            self.internal("starting", exc)
        finally:
            self.ready.set()
        while not self.stopping.is_set():
            try:
                self._turn()
            except Exception as exc:
                self.internal("a sender turn", exc)
                self.stopping.wait(0.1)
        self.abandon_now()

    def stop(self) -> None:
        """Ask both loops to end; the sender then writes what is left to the spool."""
        self.stopping.set()
        self.queue.wake.set()
        self.poll_wake.set()

    def _start(self) -> None:
        if self.spool is None:
            return
        self.gen = self.spool.next_generation()
        saved = self.spool.take_submitted(10**9)
        with self.state:
            for eval_id, gen, lseq, name, rec in saved:
                self.pending[eval_id] = Item(gen, lseq, name, "", True, {}, None, None,
                                             rec.get("metadata"), None, own=False)
        if saved:
            log.info("score logger: fetching the results of %d scores an earlier logger "
                     "submitted", len(saved))

    def _turn(self) -> None:
        now = time.monotonic()
        if not self.online:
            if self.spool is not None:
                self._spool_outbox()
                self.spool_entries(self.queue.take(self.queue.maxsize))
            if now < self._retry_at:
                # Not woken by each log(): the queue goes to the spool in slices, not one
                # transaction per score.
                self.stopping.wait(min(self._retry_at - now, _OFFLINE_SLICE_S))
                return
            # Past the backoff: the next request is the probe (online stays False until one
            # succeeds).
        if self.outbox:
            self._send(self.outbox[0])
        elif len(self.pending) >= self.cfg.max_pending:
            self.stopping.wait(_FULL_WAIT_S)  # the delivery thread makes room
        elif (self.spool is not None and self._has_backlog(now)
              and (self._replay_next or not self.queue.queued())):
            self._replay_next = False  # alternate with the queue: neither starves the other
            self._replay_one()
        else:
            self._replay_next = True
            self._fill_outbox()

    def _has_backlog(self, now: float) -> bool:
        if not self._spool_backlog and now - self._spool_checked > _SPOOL_RECHECK_S:
            self._spool_checked = now  # rows a process that died left behind
            self._spool_backlog = self.spool is not None and self.spool.count() > 0
        return self._spool_backlog

    def internal(self, what: str, exc: BaseException) -> None:
        """Report a bug caught in a loop (the loop goes on)."""
        self.delivery.report(LoggerError("internal", f"{what} failed: {exc!r}", exception=exc))

    # ------------------------------------------------------------------ queued scores

    def _fill_outbox(self) -> None:
        if self.queue.queued() < self.cfg.batch_size:
            # Linger for a full batch; log() wakes us when one is there, flush() at once.
            self.queue.wake.clear()
            queued = self.queue.queued()
            if queued < self.cfg.batch_size:
                self.queue.wake.wait(self.cfg.linger if queued else
                                     max(self.cfg.linger, _MIN_IDLE_WAIT_S))
            if self.queue.queued() == 0:
                return
        size = self._max_batch()
        with self.state:
            if self.abandoned:
                return
            groups: dict[str, list[Item]] = {}
            for item in self._prepare_all(self.queue.take(self.cfg.batch_size)):
                groups.setdefault(item.grp, []).append(item)
            for items in groups.values():
                step = size if items[0].batchable else 1
                for start in range(0, len(items), step):
                    chunk = items[start:start + step]
                    self.outbox.append(_Batch(chunk, str(uuid.uuid4()), Preparer.body(chunk)))

    def _prepare_all(self, entries: Sequence[Entry]) -> list[Item]:
        items = []
        for entry in entries:
            try:
                items.append(self.preparer.prepare(entry, self.gen))
            except (FiEvalsError, TypeError, ValueError) as exc:
                name = (entry.eval_name if isinstance(entry.eval_name, str)
                        else repr(entry.eval_name))
                self.ready_scores.append((LoggedScore(name, "rejected", metadata=entry.metadata,
                                                      error=f"{type(exc).__name__}: {exc}"),
                                          entry.callback, entry.lseq))
                self.poll_wake.set()
        return items

    def _max_batch(self) -> int:
        try:
            caps = self.transport.capabilities()
        except FiEvalsError:
            caps = None  # unreachable: small batches are right for either kind of server
            return max(1, min(self.cfg.batch_size, COMPAT_MAX_BATCH_SIZE))
        limit = caps.max_batch_size if caps is not None else COMPAT_MAX_BATCH_SIZE
        return max(1, min(self.cfg.batch_size, limit))

    # ------------------------------------------------------------------ spool

    def spool_entries(self, entries: Sequence[Entry]) -> None:
        if entries:
            with self.state:
                self._spool_items(self._prepare_all(entries))

    def _spool_items(self, items: Sequence[Item]) -> None:
        if not items or self.spool is None:
            return
        self.spool.append(it.row() for it in items)
        self._remember_callbacks(items)
        self.counters.add("spooled", len(items))
        self._spool_backlog = True

    def _spool_outbox(self) -> None:
        """Bound batches (maybe sent already) to the spool, with their keys."""
        with self.state:
            while self.outbox and self.spool is not None:
                batch = self.outbox.popleft()
                if batch.from_spool:
                    continue  # its rows are in the spool already
                self.spool.append_bound(batch.key, batch.body, [it.row() for it in batch.items])
                self._remember_callbacks(batch.items)
                self.counters.add("spooled", len(batch.items))
                self._spool_backlog = True

    def _remember_callbacks(self, items: Sequence[Item]) -> None:
        for it in items:
            if it.callback is not None:
                self.callbacks[it.lseq] = it.callback

    def _replay_one(self) -> None:
        assert self.spool is not None
        claimed = self.spool.claim_next(self._max_batch())
        if claimed is None:
            self._spool_backlog = False
            self._spool_checked = time.monotonic()
            return
        items = [Preparer.from_row(r, self.gen, self.callbacks) for r in claimed.rows]
        if claimed.key is not None and claimed.body is not None:
            batch = _Batch(items, claimed.key, claimed.body, from_spool=True)
        else:
            if not items[0].batchable and len(items) > 1:
                self.spool.release([it.row_id for it in items[1:] if it.row_id is not None])
                items = items[:1]
            key, body = str(uuid.uuid4()), Preparer.body(items)
            self.spool.bind(SpooledBatch(claimed.rows[:len(items)]), key, body)
            batch = _Batch(items, key, body, from_spool=True)
        with self.state:
            self.outbox.appendleft(batch)
        self._send(batch)

    # ------------------------------------------------------------------ submit

    def _send(self, batch: _Batch) -> None:
        """Submit the outbox's head batch; on success it leaves the outbox."""
        try:
            answer = self.transport.new_eval(batch.body, idempotency_key=batch.key,
                                             deadline=time.monotonic() + _SEND_TIMEOUT_S)
        except FiEvalsError as exc:
            with self.state:
                if self.abandoned:
                    return
                if ItemError.from_exception(exc).retryable:
                    self.went_offline(batch, exc)
                    return
                self._pop(batch)
                self._refused(batch, exc)
            return
        with self.state:
            if self.abandoned:
                return
            self._pop(batch)
            self._accepted(batch, [e.eval_id for e in answer.value])

    def _pop(self, batch: _Batch) -> None:
        if self.outbox and self.outbox[0] is batch:
            self.outbox.popleft()

    def _accepted(self, batch: _Batch, eval_ids: Sequence[str | None]) -> None:
        n = len(batch.items)
        if batch.from_spool and self.spool is not None:
            self.spool.delete([it.row_id for it in batch.items if it.row_id is not None],
                              batch.key)
            self.counters.add("replayed", n)
        self.counters.add("sent", n)
        self.reachable()
        if len(eval_ids) != n:
            log.warning("the server answered %d eval ids for %d scores", len(eval_ids), n)
        for i, item in enumerate(batch.items):
            eval_id = eval_ids[i] if i < len(eval_ids) else None
            if eval_id is None:
                self.finish(item, LoggedScore(item.eval_name, "failed", metadata=item.metadata,
                                               error="the server answered no eval_id for it"))
                continue
            item.wire = {}  # not needed any more, and pending scores may be many
            self.pending[eval_id] = item
        if self.next_poll <= time.monotonic():
            # The first poll waits one interval: nothing finishes the instant it is stored.
            self.next_poll = time.monotonic() + self.cfg.poll_interval

    def _refused(self, batch: _Batch, exc: BaseException) -> None:
        if batch.from_spool and self.spool is not None:
            self.spool.delete([it.row_id for it in batch.items if it.row_id is not None],
                              batch.key)
        error = f"{type(exc).__name__}: {exc}"
        for item in batch.items:
            self.finish(item, LoggedScore(item.eval_name, "rejected", metadata=item.metadata,
                                           error=error))

    def probe_due(self) -> bool:
        """Online, or offline with the backoff over (the next request is the probe)."""
        return self.online or time.monotonic() >= self._retry_at

    def reachable(self) -> None:
        """A request succeeded (state lock held)."""
        if not self.online:
            log.info("score logger: the server is reachable again")
        self.online = True
        self._failures = 0

    def went_offline(self, batch: _Batch | None, exc: BaseException) -> None:
        """The server is away (state lock held): back off; spool or hold the unsent."""
        if self._failures == 0:
            where = (f"spooling scores to {self.spool.path}" if self.spool is not None
                     else "holding scores in memory")
            self.delivery.report(LoggerError(
                "unreachable", f"server unreachable ({exc}); {where} until it is back",
                exception=exc))
        self.online = False
        self._failures += 1
        self._retry_at = time.monotonic() + self._reconnect.sample(self._failures - 1)
        if batch is not None and batch.from_spool:
            self._pop(batch)
            if self.spool is not None:
                self.spool.release([it.row_id for it in batch.items if it.row_id is not None])
        if self.spool is not None:
            self._spool_outbox()
        # Without a spool the outbox keeps the batch (same key) until the server is back.

    # ------------------------------------------------------------------ results

    def finish(self, item: Item, score: LoggedScore) -> None:
        """Queue a final result for the delivery thread."""
        callback = self.callbacks.pop(item.lseq, None) if item.own else None
        self.ready_scores.append((score, item.callback or callback,
                                  item.lseq if item.own else None))
        self.poll_wake.set()

    # ------------------------------------------------------------------ closing

    def abandon_now(self) -> None:
        """Write whatever is left to the spool and stop for good (idempotent).

        Called by the worker when asked to stop, or by the closing thread when the worker is
        stuck in a request. Without a spool, unsent scores are counted as dropped.
        """
        with self.state:
            if self.abandoned:
                return
            self.abandoned = True
            try:
                self._abandon_locked()
            except Exception as exc:
                self.internal("writing the rest to the spool at close", exc)

    def _abandon_locked(self) -> None:
        entries = self.queue.drain()
        if self.spool is None:
            lost = [it for b in self.outbox for it in b.items]
            self.outbox.clear()
            for lseq in [it.lseq for it in lost if it.own] + [e.lseq for e in entries]:
                self.delivery.watermark.settle(lseq)
            if lost or entries:
                n = len(lost) + len(entries)
                self.counters.add("dropped", n)
                self.delivery.report(LoggerError(
                    "dropped", f"{n} scores were still unsent at close and there is no spool",
                    count=n))
            if self.pending:
                log.warning("score logger: %d submitted scores unfinished at close; without a "
                            "spool their results are not delivered (the server has them)",
                            len(self.pending))
            return
        self._spool_outbox()
        self._spool_items(self._prepare_all(entries))
        self.spool.save_submitted(
            (eid, it.gen, it.lseq, it.eval_name, {"metadata": it.metadata})
            for eid, it in self.pending.items())
        if self.pending:
            log.info("score logger: %d submitted scores unfinished at close; the next logger "
                     "on %s fetches their results", len(self.pending), self.spool.path)
        self.pending.clear()
        self.spool.release_all_mine()
