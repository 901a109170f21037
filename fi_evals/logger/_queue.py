"""The bounded in-memory queue between ``log()`` callers and the logger's worker.

The caller's side takes no lock on its common path: a number from ``itertools.count`` and a
``deque.append`` are each atomic in CPython, and the bound is checked with ``len()``. A lock
there would be shared with the worker, and a caller that finds it held must give up the GIL
and wait for it back (up to the interpreter's 5 ms switch interval) - the caller's p99 paid
for that. The price is a soft bound: concurrent callers may overshoot ``maxsize`` by at most
their number. Only the ``block`` policy waits, on a condition, within its timeout.

Sequence numbers follow the order of ``log()`` calls (``next()`` on one counter); ``flush()``
draws a *marker* number from the same counter, so "every score logged before this call" is
"every number below the marker".
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, NamedTuple

from fi_evals.logger._types import OverflowPolicy

__all__ = ["Entry", "ScoreQueue"]


class Entry(NamedTuple):
    """One logged score as the caller gave it (checked later, on the worker)."""

    lseq: int
    eval_name: Any
    inputs: Any
    metadata: Any
    callback: Callable[..., Any] | None
    model: Any
    params: Any
    trace: tuple[int, int, Any] | None = None
    """The span current at ``log()`` (:func:`fi_evals._otel.capture`), when there was one."""


# Outcomes of ScoreQueue.put.
QUEUED = 0
OVERFLOWED = 1  # handed to the spool writer
DROPPED = 2


class ScoreQueue:
    """Scores waiting for the worker, plus the overflow waiting for the spool writer.

    Args:
        maxsize: entries kept in memory before ``policy`` applies.
        policy: the overflow policy.
        block_timeout: the ``block`` policy's longest wait, in seconds.
        overflow_max: entries the spool writer may lag behind before ``spool`` drops.
    """

    def __init__(self, maxsize: int, policy: OverflowPolicy, block_timeout: float,
                 overflow_max: int) -> None:
        if maxsize < 1:
            raise ValueError(f"queue_size must be at least 1, not {maxsize}")
        self.maxsize = maxsize
        self.policy = policy
        self.block_timeout = block_timeout
        self.overflow_max = overflow_max
        self._seq = itertools.count(1)
        self._markers = 0
        self._marker_lock = threading.Lock()
        self._not_full = threading.Condition(threading.Lock())
        self._entries: deque[Entry] = deque()
        self._overflow: deque[Entry] = deque()
        self._blocked = 0
        self.wake = threading.Event()
        """Set when ``wake_at`` entries are queued (or by flush/stop); the worker clears it
        before it waits."""
        self.wake_at = 1
        self.overflow_wake = threading.Event()

    def __len__(self) -> int:
        return len(self._entries) + len(self._overflow)

    def __repr__(self) -> str:
        return (f"<ScoreQueue {len(self._entries)}/{self.maxsize} "
                f"overflow={len(self._overflow)} policy={self.policy.value}>")

    # ------------------------------------------------------------------ numbering

    def marker(self) -> tuple[int, int]:
        """A sequence number that no score gets, and how many scores were numbered before it.

        Every score numbered below the marker was logged before this call. The caller must
        settle the marker itself (it is never delivered).
        """
        with self._marker_lock:
            mark = next(self._seq)
            self._markers += 1
            return mark, mark - self._markers

    # ------------------------------------------------------------------ caller side

    def put(self, eval_name: Any, inputs: Any, metadata: Any, callback: Any, model: Any,
            params: Any, trace: tuple[int, int, Any] | None = None
            ) -> tuple[int, Entry | None]:
        """Number and enqueue one score; never raises, never does I/O.

        Returns:
            ``(outcome, dropped)``: outcome QUEUED, OVERFLOWED or DROPPED, and the entry that
            was dropped (the new one, or the oldest under ``drop_oldest``), if any.
        """
        entry = Entry(next(self._seq), eval_name, inputs, metadata, callback, model, params,
                      trace)
        size = len(self._entries)
        if size < self.maxsize:
            self._entries.append(entry)
            # Only a full batch wakes the worker early (it looks every `linger` anyway):
            # setting an Event wakes a sleeping thread, a syscall this path avoids.
            if size + 1 >= self.wake_at and not self.wake.is_set():
                self.wake.set()
            return QUEUED, None
        return self._full(entry)

    def _full(self, entry: Entry) -> tuple[int, Entry | None]:
        """The queue is full: apply the policy."""
        policy = self.policy
        if policy is OverflowPolicy.SPOOL:
            if len(self._overflow) >= self.overflow_max:
                return DROPPED, entry
            self._overflow.append(entry)
            if not self.overflow_wake.is_set():
                self.overflow_wake.set()
            return OVERFLOWED, None
        if policy is OverflowPolicy.DROP_OLDEST:
            self._entries.append(entry)
            try:
                return QUEUED, self._entries.popleft()
            except IndexError:  # the worker took everything meanwhile
                return QUEUED, None
        if policy is OverflowPolicy.BLOCK and self.block_timeout > 0 and self._wait_for_room():
            self._entries.append(entry)
            if not self.wake.is_set():
                self.wake.set()
            return QUEUED, None
        return DROPPED, entry

    def _wait_for_room(self) -> bool:
        deadline = time.monotonic() + self.block_timeout
        with self._not_full:
            self._blocked += 1
            try:
                while len(self._entries) >= self.maxsize:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    # Short waits: the worker reads _blocked without the lock, so a
                    # notification may be missed; the next check sees the room anyway.
                    self._not_full.wait(min(left, _BLOCK_RECHECK_S))
                return True
            finally:
                self._blocked -= 1

    # ------------------------------------------------------------------ worker side

    def take(self, max_n: int) -> list[Entry]:
        """Pop up to ``max_n`` entries, oldest first."""
        out = _pop_up_to(self._entries, max_n)
        if out and self._blocked:
            with self._not_full:
                self._not_full.notify(len(out))
        return out

    def queued(self) -> int:
        return len(self._entries)

    def take_overflow(self, max_n: int) -> list[Entry]:
        return _pop_up_to(self._overflow, max_n)

    def drain(self) -> list[Entry]:
        """Everything left, queue and overflow, in log order (at close)."""
        out = _pop_up_to(self._entries, 1 << 62) + _pop_up_to(self._overflow, 1 << 62)
        if self._blocked:
            with self._not_full:
                self._not_full.notify_all()
        return sorted(out, key=lambda e: e.lseq)


_BLOCK_RECHECK_S = 0.01


def _pop_up_to(source: deque[Entry], max_n: int) -> list[Entry]:
    out: list[Entry] = []
    pop = source.popleft
    try:
        for _ in range(min(max_n, len(source))):
            out.append(pop())
    except IndexError:  # a drop_oldest caller popped one meanwhile
        pass
    return out
