"""The API node's executor: it sends stored async evaluations to Celery, it runs none itself.

Sending follows the outbox pattern. The store writes new pending evaluations and their ids in
``{P}outbox`` in one transaction, then hands the ids to :meth:`CeleryExecutor.dispatch`, which
publishes one task per chunk and takes the ids off the outbox. An API node that dies between
the two (or a broker that refused the publish) leaves ids in the outbox; every node sweeps it
(one at a time, under a lock) and sends again what is older than ``OUTBOX_GRACE_SECONDS``.
A task sent twice costs nothing: a chunk claims only unfinished evaluations.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from celery import Celery

from fi_evals import _constants as C
from fi_evals.server.executor import JobExecutor
from fi_evals.server.redis_backend.celery_app import TASK_NAME
from fi_evals.server.redis_backend.store import RedisJobStore

__all__ = ["CeleryExecutor"]

log = logging.getLogger("fi_evals.server.executor")

_SWEEP_BATCH = 5_000  # outbox ids re-sent per sweep


class CeleryExecutor(JobExecutor):
    """Publishes chunks of ``chunk_size`` evaluation ids as Celery tasks."""

    def __init__(self, store: RedisJobStore, app: Celery, *, sim_latency_ms: int = 0,
                 chunk_size: int = C.CELERY_TASK_CHUNK,
                 sweep_seconds: float = C.OUTBOX_SWEEP_SECONDS,
                 grace_seconds: float = C.OUTBOX_GRACE_SECONDS) -> None:
        self.store = store
        self.app = app
        self.sim_latency_ms = sim_latency_ms
        self.chunk_size = chunk_size
        self.sweep_seconds = sweep_seconds
        self.grace_seconds = grace_seconds
        self._stopping = threading.Event()
        self._sweeper: threading.Thread | None = None
        store.dispatch = self.dispatch

    def dispatch(self, eval_ids: Sequence[str]) -> None:
        """Send ``eval_ids`` as tasks; on failure they stay in the outbox for the sweep."""
        try:
            with self.app.producer_or_acquire() as producer:
                for start in range(0, len(eval_ids), self.chunk_size):
                    chunk = list(eval_ids[start:start + self.chunk_size])
                    self.app.send_task(TASK_NAME, args=[self.store.prefix, chunk,
                                                        self.sim_latency_ms],
                                       queue=C.CELERY_QUEUE, producer=producer)
            self.store.dispatched(eval_ids)
        except Exception:  # the answer is stored already; the sweep re-sends
            log.exception("sending %d evaluations to the workers failed; the outbox sweep "
                          "sends them again", len(eval_ids))

    def sweep(self) -> int:
        """Re-send outbox entries older than the grace period (one node at a time).

        Returns:
            How many evaluations were sent again.
        """
        lock = self.store.redis.lock(self.store.prefix + "lock:outbox",
                                     timeout=max(self.sweep_seconds, 5.0), blocking=False)
        if not lock.acquire():
            return 0
        try:
            stale = self.store.stale_outbox(self.grace_seconds, _SWEEP_BATCH)
            if stale:
                log.warning("re-sending %d evaluations whose tasks were never confirmed sent",
                            len(stale))
                self.dispatch(stale)
            return len(stale)
        finally:
            try:
                lock.release()
            except Exception:  # noqa: BLE001, S110 - expired meanwhile: nothing to release
                pass

    def _sweep_loop(self) -> None:
        while not self._stopping.wait(self.sweep_seconds):
            try:
                self.sweep()
            except Exception:  # Redis away for a moment: try next round
                log.exception("outbox sweep failed")

    def start(self) -> None:
        self._sweeper = threading.Thread(target=self._sweep_loop, name="fi-evals-outbox",
                                         daemon=True)
        self._sweeper.start()

    def notify(self) -> None:
        # The store already handed the new ids to dispatch() when its transaction committed.
        return None

    def begin_stop(self) -> None:
        self._stopping.set()

    def stop(self, timeout: float) -> bool:
        self.begin_stop()
        if self._sweeper is not None:
            self._sweeper.join(timeout)
        alive = self._sweeper is not None and self._sweeper.is_alive()
        if not alive:
            self.app.close()
        return not alive

    def __repr__(self) -> str:
        return (f"<CeleryExecutor queue={C.CELERY_QUEUE!r} chunk={self.chunk_size} "
                f"store={self.store!r}>")
