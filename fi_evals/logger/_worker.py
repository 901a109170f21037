"""The score logger's sender thread: batch, submit, replay the spool, go offline, close.

One daemon thread per logger submits; another, the delivery thread (``_poll.ScorePoller``), polls
and hands out results; what they share (``pending``, the online state, results ready to hand
out) is one :class:`~fi_evals.logger._link.Link`, changed under its lock. Each turn of the
sender's loop does one thing:

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
import time
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fi_evals._constants import COMPAT_MAX_BATCH_SIZE
from fi_evals._exceptions import FiEvalsError, ItemError
from fi_evals._otel import hex_ids
from fi_evals.logger._link import Link
from fi_evals.logger._prepare import Item, Preparer, trace_of
from fi_evals.logger._queue import Entry, ScoreQueue
from fi_evals.logger._spool import Spool, SpooledBatch
from fi_evals.logger._types import LoggedScore, LoggerError
from fi_evals.protocol import EvalStatus

__all__ = ["Worker", "WorkerConfig"]

log = logging.getLogger("fi_evals.logger")

_SEND_TIMEOUT_S = 60.0  # one submission, retries included
_SPOOL_RECHECK_S = 5.0  # look for rows other processes left in the spool this often
_MIN_IDLE_WAIT_S = 0.02
_OFFLINE_SLICE_S = 0.1
_FULL_WAIT_S = 0.05


@dataclass(frozen=True, kw_only=True)
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

    What it shares with the delivery thread is its ``link``; the ``outbox``, which the closing
    thread (``abandon_now``) and an offline poll (``link.spill``) may empty too, changes only
    under ``link.state`` like the rest; network calls happen outside it.
    """

    def __init__(self, cfg: WorkerConfig, link: Link, queue: ScoreQueue,
                 spool: Spool | None) -> None:
        self.cfg = cfg
        self.link = link
        self.queue = queue
        self.spool = spool
        self.preparer = Preparer(link.transport.templates)
        queue.wake_at = cfg.batch_size
        self.gen = 0
        self.outbox: deque[_Batch] = deque()
        self._spool_backlog = spool is not None
        self._spool_checked = time.monotonic()
        self._replay_next = True
        link.spill = self._spool_outbox  # a poll that finds the server away spools them too

    def __repr__(self) -> str:
        link = self.link
        return (f"<Worker gen={self.gen} online={link.online} outbox={len(self.outbox)} "
                f"pending={len(link.pending)} abandoned={link.abandoned}>")

    # ------------------------------------------------------------------ loop

    def run(self) -> None:
        try:
            self._start()
        except Exception as exc:  # noqa: BLE001 - a broken spool must not stop the network side
            self.link.internal("starting", exc)
        finally:
            self.link.ready.set()
        while not self.link.stopping.is_set():
            try:
                self._turn()
            except Exception as exc:  # noqa: BLE001 - the loop must survive its own bugs
                self.link.internal("a sender turn", exc)
                self.link.stopping.wait(0.1)
        self.abandon_now()

    def stop(self) -> None:
        """Ask both loops to end; the sender then writes what is left to the spool."""
        self.link.stopping.set()
        self.queue.wake.set()
        self.link.poll_wake.set()

    def _start(self) -> None:
        if self.spool is None:
            return
        self.gen = self.spool.next_generation()
        saved = self.spool.take_submitted(10**9)
        with self.link.state:
            for eval_id, gen, lseq, name, rec in saved:
                self.link.pending[eval_id] = Item(
                    gen=gen, lseq=lseq, eval_name=name, grp="", batchable=True, wire={},
                    model=None, params=None, metadata=rec.get("metadata"), callback=None,
                    own=False, trace=trace_of(rec))
        if saved:
            log.info("score logger: fetching the results of %d scores an earlier logger "
                     "submitted", len(saved))

    def _turn(self) -> None:
        now = time.monotonic()
        if not self.link.online:
            if self.spool is not None:
                self._spool_outbox()
                self.spool_entries(self.queue.take(self.queue.maxsize))
            if not self.link.probe_due():
                # Not woken by each log(): the queue goes to the spool in slices, not one
                # transaction per score.
                self.link.stopping.wait(min(self.link.retry_in(), _OFFLINE_SLICE_S))
                return
            # Past the backoff: the next request is the probe (online stays False until one
            # succeeds).
        if self.outbox:
            self._send(self.outbox[0])
        elif len(self.link.pending) >= self.cfg.max_pending:
            self.link.stopping.wait(_FULL_WAIT_S)  # the delivery thread makes room
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
        with self.link.state:
            if self.link.abandoned:
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
                ids = hex_ids(entry.trace) or (None, None)
                self.link.ready_scores.append((
                    LoggedScore(name, "rejected", metadata=entry.metadata,
                                error=f"{type(exc).__name__}: {exc}", trace_id=ids[0],
                                span_id=ids[1]),
                    entry.callback, entry.lseq))
                self.link.poll_wake.set()
        return items

    def _max_batch(self) -> int:
        try:
            caps = self.link.transport.capabilities()
        except FiEvalsError:  # unreachable: small batches are right for either kind of server
            return max(1, min(self.cfg.batch_size, COMPAT_MAX_BATCH_SIZE))
        limit = caps.max_batch_size if caps is not None else COMPAT_MAX_BATCH_SIZE
        return max(1, min(self.cfg.batch_size, limit))

    # ------------------------------------------------------------------ spool

    def spool_entries(self, entries: Sequence[Entry]) -> None:
        if entries:
            with self.link.state:
                self._spool_items(self._prepare_all(entries))

    def _spool_items(self, items: Sequence[Item]) -> None:
        if not items or self.spool is None:
            return
        self.spool.append(it.row() for it in items)
        self._remember_callbacks(items)
        self.link.counters.add("spooled", len(items))
        self._spool_backlog = True

    def _spool_outbox(self) -> None:
        """Bound batches (maybe sent already) to the spool, with their keys."""
        with self.link.state:
            while self.outbox and self.spool is not None:
                batch = self.outbox.popleft()
                if batch.from_spool:
                    continue  # its rows are in the spool already
                self.spool.append_bound(batch.key, batch.body, [it.row() for it in batch.items])
                self._remember_callbacks(batch.items)
                self.link.counters.add("spooled", len(batch.items))
                self._spool_backlog = True

    def _remember_callbacks(self, items: Sequence[Item]) -> None:
        for it in items:
            if it.callback is not None:
                self.link.callbacks[it.lseq] = it.callback

    def _replay_one(self) -> None:
        assert self.spool is not None
        claimed = self.spool.claim_next(self._max_batch())
        if claimed is None:
            self._spool_backlog = False
            self._spool_checked = time.monotonic()
            return
        items = [Preparer.from_row(r, self.gen, self.link.callbacks) for r in claimed.rows]
        if claimed.key is not None and claimed.body is not None:
            batch = _Batch(items, claimed.key, claimed.body, from_spool=True)
        else:
            if not items[0].batchable and len(items) > 1:
                self.spool.release([it.row_id for it in items[1:] if it.row_id is not None])
                items = items[:1]
            key, body = str(uuid.uuid4()), Preparer.body(items)
            self.spool.bind(SpooledBatch(claimed.rows[:len(items)]), key, body)
            batch = _Batch(items, key, body, from_spool=True)
        with self.link.state:
            self.outbox.appendleft(batch)
        self._send(batch)

    # ------------------------------------------------------------------ submit

    def _send(self, batch: _Batch) -> None:
        """Submit the outbox's head batch; on success it leaves the outbox."""
        try:
            answer = self.link.transport.new_eval(batch.body, idempotency_key=batch.key,
                                                  deadline=time.monotonic() + _SEND_TIMEOUT_S)
        except FiEvalsError as exc:
            with self.link.state:
                if self.link.abandoned:
                    return
                if ItemError.from_exception(exc).retryable:
                    self._went_offline(batch, exc)
                    return
                self._pop(batch)
                self._refused(batch, exc)
            return
        with self.link.state:
            if self.link.abandoned:
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
            self.link.counters.add("replayed", n)
        self.link.counters.add("sent", n)
        self.link.reachable()
        if len(eval_ids) != n:
            log.warning("the server answered %d eval ids for %d scores", len(eval_ids), n)
        for i, item in enumerate(batch.items):
            eval_id = eval_ids[i] if i < len(eval_ids) else None
            if eval_id is None:
                self.link.finish(item, LoggedScore(item.eval_name, EvalStatus.FAILED.value,
                                                   metadata=item.metadata,
                                                   error="the server answered no eval_id for it"))
                continue
            item.wire = {}  # not needed any more, and pending scores may be many
            self.link.pending[eval_id] = item
        self.link.schedule_poll()

    def _refused(self, batch: _Batch, exc: BaseException) -> None:
        if batch.from_spool and self.spool is not None:
            self.spool.delete([it.row_id for it in batch.items if it.row_id is not None],
                              batch.key)
        error = f"{type(exc).__name__}: {exc}"
        for item in batch.items:
            self.link.finish(item, LoggedScore(item.eval_name, "rejected",
                                               metadata=item.metadata, error=error))

    def _went_offline(self, batch: _Batch, exc: BaseException) -> None:
        """A submission found the server away (state lock held): back off; spool or hold the
        unsent."""
        self.link.mark_offline(exc)
        if batch.from_spool:
            self._pop(batch)
            if self.spool is not None:
                self.spool.release([it.row_id for it in batch.items if it.row_id is not None])
        if self.spool is not None:
            self._spool_outbox()
        # Without a spool the outbox keeps the batch (same key) until the server is back.

    # ------------------------------------------------------------------ closing

    def abandon_now(self) -> None:
        """Write whatever is left to the spool and stop for good (idempotent).

        Called by the worker when asked to stop, or by the closing thread when the worker is
        stuck in a request. Without a spool, unsent scores are counted as dropped.
        """
        with self.link.state:
            if self.link.abandoned:
                return
            self.link.abandoned = True
            try:
                self._abandon_locked()
            except Exception as exc:  # noqa: BLE001 - close() must finish: reported instead
                self.link.internal("writing the rest to the spool at close", exc)

    def _abandon_locked(self) -> None:
        entries = self.queue.drain()
        if self.spool is None:
            lost = [it for b in self.outbox for it in b.items]
            self.outbox.clear()
            for lseq in [it.lseq for it in lost if it.own] + [e.lseq for e in entries]:
                self.link.delivery.watermark.settle(lseq)
            if lost or entries:
                n = len(lost) + len(entries)
                self.link.counters.add("dropped", n)
                self.link.delivery.report(LoggerError(
                    "dropped", f"{n} scores were still unsent at close and there is no spool",
                    count=n))
            if self.link.pending:
                log.warning("score logger: %d submitted scores unfinished at close; without a "
                            "spool their results are not delivered (the server has them)",
                            len(self.link.pending))
            return
        self._spool_outbox()
        self._spool_items(self._prepare_all(entries))
        self.spool.save_submitted(
            (eid, it.gen, it.lseq, it.eval_name, {"metadata": it.metadata})
            for eid, it in self.link.pending.items())
        if self.link.pending:
            log.info("score logger: %d submitted scores unfinished at close; the next logger "
                     "on %s fetches their results", len(self.link.pending), self.spool.path)
        self.link.pending.clear()
        self.spool.release_all_mine()
