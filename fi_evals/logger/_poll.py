"""The score logger's delivery thread: poll submitted scores, hand out the results.

It runs next to the sender (``_worker.Worker``), sharing only the logger's
:class:`~fi_evals.logger._link.Link` with it, so that waiting on status answers never holds
up submissions, and it is the only thread that runs user code for results (callbacks, the
sink), so a callable sink needs no lock of its own. ``on_error`` may also be called from the
sender (a server that went away, an internal error).

One poll round asks for every pending score, in chunks of the server's ``max_status_ids``
(bulk status) or one id per GET without it; polling only the first chunk per round would cap
the logger at ``max_status_ids`` results per ``Retry-After``. Each chunk's finished scores are
handed out before the next chunk is asked for.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence

from fi_evals._constants import POLL_MAX_DELAY
from fi_evals._exceptions import FiEvalsError, ItemError
from fi_evals._transport import Transport
from fi_evals.logger._link import Link
from fi_evals.logger._prepare import Item
from fi_evals.logger._types import LoggedScore, LoggerError, ScoreStatus
from fi_evals.protocol import BulkStatusEntry, EvalResultPayload, EvalStatus

__all__ = ["ScorePoller", "poll_round", "score_of"]

log = logging.getLogger("fi_evals.logger")
_IDLE_WAIT_S = 0.5

POLL_REQUEST_TIMEOUT_S = 60.0
COMPAT_POLLS_PER_ROUND = 20
"""One-id GETs per round against a server without bulk status (each is a request)."""

Chunk = tuple[Sequence[str], list[EvalResultPayload], float | None]


def poll_round(transport: Transport, ids: Sequence[str]) -> Iterator[Chunk]:
    """Ask for the status of ``ids``, one request per chunk.

    Raises:
        FiEvalsError: from the transport (the caller decides: offline, or report).
    """
    caps = transport.capabilities()
    if caps is not None and caps.bulk_status:
        size = max(1, caps.max_status_ids)
        for start in range(0, len(ids), size):
            asked = ids[start:start + size]
            answer = transport.bulk_status(
                asked, deadline=time.monotonic() + POLL_REQUEST_TIMEOUT_S)
            yield asked, list(answer.value), answer.retry_after
        return
    for eval_id in ids[:COMPAT_POLLS_PER_ROUND]:
        got = transport.get_eval(eval_id, deadline=time.monotonic() + POLL_REQUEST_TIMEOUT_S)
        yield [eval_id], [got.value], got.retry_after


def score_of(item: Item, eval_id: str, entry: EvalResultPayload) -> LoggedScore:
    """The :class:`LoggedScore` of a finished status entry."""
    record = entry.record
    status: ScoreStatus = (EvalStatus.COMPLETED.value if entry.eval_status == EvalStatus.COMPLETED
                           else EvalStatus.FAILED.value)
    error = entry.error_message or (record.error_message if record is not None else None)
    if record is None:
        return LoggedScore(item.eval_name, status, eval_id=eval_id, metadata=item.metadata,
                           error=error or (str(entry.result) if entry.result else None))
    return LoggedScore(item.eval_name, status,
                       output=record.output if status == EvalStatus.COMPLETED else None,
                       reason=record.reason, runtime=record.runtime,
                       output_type=record.output_type, eval_id=eval_id,
                       error=error if status == EvalStatus.FAILED else None, metadata=item.metadata)


class ScorePoller:
    """The delivery thread's loop, on the logger's shared :class:`Link` (under its lock).

    Args:
        link: the connection state it shares with the sender (``pending``, ``online``...).
        overflow: how the queue overflows, for the "dropped" event (policy and size).
        stats_line: renders the counters for the periodic INFO line.
        stats_interval: seconds between two INFO lines.
    """

    def __init__(self, link: Link, overflow: str, stats_line: Callable[[], str],
                 stats_interval: float) -> None:
        self.link = link
        self.overflow = overflow
        self.stats_line = stats_line
        self.stats_interval = stats_interval
        self._next_stats = time.monotonic() + stats_interval
        self._dropped_reported = 0

    def __repr__(self) -> str:
        return f"<ScorePoller of {self.link!r}>"

    def run(self) -> None:
        link = self.link
        link.ready.wait()
        while not link.stopping.is_set():
            try:
                self._turn()
            except Exception as exc:  # noqa: BLE001 - the loop must survive its own bugs
                link.internal("a delivery turn", exc)
                link.stopping.wait(0.1)
            self.deliver_ready()
        self.deliver_ready()

    def _turn(self) -> None:
        link = self.link
        now = time.monotonic()
        self._report(now)
        if not link.probe_due() or not link.pending or now < link.next_poll:
            wait = _IDLE_WAIT_S if not link.pending else min(_IDLE_WAIT_S, link.next_poll - now)
            link.poll_wake.clear()
            if not link.ready_scores:
                link.poll_wake.wait(max(0.0, wait))
            return
        self._round()

    def _report(self, now: float) -> None:
        dropped = self.link.counters.values["dropped"]  # one int read: no lock needed
        if dropped > self._dropped_reported:
            n, self._dropped_reported = dropped - self._dropped_reported, dropped
            self.link.delivery.report(LoggerError(
                "dropped", f"{n} scores dropped ({self.overflow})", count=n))
        if now >= self._next_stats:
            self._next_stats = now + self.stats_interval
            log.info("score logger stats: %s", self.stats_line())

    def _round(self) -> None:
        link = self.link
        with link.state:
            ids = list(link.pending)
        retry_after: float | None = None
        try:
            for asked, entries, hint in poll_round(link.transport, ids):
                retry_after = hint if hint is not None else retry_after
                with link.state:
                    if link.abandoned:
                        return
                    self._polled(asked, entries)
                self.deliver_ready()
        except FiEvalsError as exc:
            with link.state:
                if link.abandoned:
                    return
                if ItemError.from_exception(exc).retryable:
                    link.went_offline(exc)
                else:
                    link.internal("polling", exc)
                    link.next_poll = time.monotonic() + POLL_MAX_DELAY
            return
        with link.state:
            if ids:
                link.reachable()
        wait = max(link.poll_interval, min(retry_after or 0.0, POLL_MAX_DELAY))
        link.next_poll = time.monotonic() + wait

    def _polled(self, asked: Sequence[str], entries: Sequence[EvalResultPayload]) -> None:
        link = self.link
        for eval_id, entry in zip(asked, entries):
            if isinstance(entry, BulkStatusEntry) and entry.eval_id != eval_id:
                continue  # out of order (should not happen): poll it again
            item = link.pending.get(eval_id)
            if item is None:
                continue
            if entry.eval_status == EvalStatus.NOT_FOUND:
                del link.pending[eval_id]
                link.finish(item, LoggedScore(item.eval_name, EvalStatus.FAILED.value,
                                              eval_id=eval_id, metadata=item.metadata,
                                              error="the server does not know this eval_id"))
            elif entry.finished:
                del link.pending[eval_id]
                link.finish(item, score_of(item, eval_id, entry))

    def deliver_ready(self) -> None:
        """Hand final results to callbacks and the sink, then settle them for ``flush()``."""
        delivery = self.link.delivery
        settled: list[int] = []
        while True:
            try:
                score, callback, lseq = self.link.ready_scores.popleft()
            except IndexError:
                break
            delivery.deliver(score, callback)
            if lseq is not None:
                settled.append(lseq)
        if settled:
            delivery.flush_sink()  # before settling: flush() promises the sink has them
            for lseq in settled:
                delivery.watermark.settle(lseq)
