"""Adaptive request size for sync batches (issue 20): :class:`ChunkSizer`.

A sync request costs a fixed overhead (HTTP round trip, one transaction, the client's
bookkeeping) plus the evaluations themselves. For cheap templates the overhead dominates small
requests, so the sizer doubles the rows per chunk while requests come back fast, up to the
server's ``max_batch_size``. For slow (judge-like) templates a request of the starting size
already takes long: the size stays, and so do full waves of ``max_workers`` requests. The size
halves when a request nears the client's read timeout, or when the server slows down (rows take
several times longer than the fastest seen, and the request is no longer fast).

Near the end of an input of known length, the size never exceeds what keeps
``BATCH_MIN_CHUNKS_PER_WORKER`` chunks per worker for the rows left (never below the start
size), so the tail still spreads over every worker; requests that take a small part of ``fast``
are exempt (an uneven tail of them costs less than the extra requests would).
"""

from __future__ import annotations

import math

from fi_evals._constants import (
    BATCH_ADAPT_FAST_SECONDS,
    BATCH_ADAPT_NEAR_TIMEOUT,
    BATCH_ADAPT_SLOWDOWN,
    BATCH_MIN_CHUNKS_PER_WORKER,
)

__all__ = ["ChunkSizer"]


class ChunkSizer:
    """Picks the rows of the next chunk from how the last requests went.

    Args:
        start: the first chunks' size (the fixed rule's choice).
        maximum: the largest size (the server's ``max_batch_size``).
        workers: requests in flight at once (``max_workers``).
        read_timeout: the client's read timeout in seconds (a request must stay well within).
        fast: a full request answered faster than this lets the size double.
    """

    def __init__(self, start: int, maximum: int, workers: int, read_timeout: float, *,
                 fast: float = BATCH_ADAPT_FAST_SECONDS) -> None:
        self.size = max(1, min(start, maximum))
        self.minimum = min(self.size, maximum)
        self.maximum = maximum
        self.workers = workers
        self.read_timeout = read_timeout
        self.fast = fast
        self.best_per_row: float | None = None
        self.history: list[int] = [self.size]
        """Every size taken, in order (the first one included)."""

    def observe(self, rows: int, seconds: float) -> None:
        """One sync request of ``rows`` rows was answered after ``seconds``."""
        if rows <= 0 or seconds < 0:
            return
        per_row = seconds / rows
        if self.best_per_row is None or per_row < self.best_per_row:
            self.best_per_row = per_row
        if seconds > self.read_timeout * BATCH_ADAPT_NEAR_TIMEOUT or (
                seconds > self.fast and per_row > BATCH_ADAPT_SLOWDOWN * self.best_per_row):
            self._set(max(1, min(self.size, rows) // 2))
        elif rows >= self.size and seconds < self.fast:
            self._set(min(self.maximum, self.size * 2))

    def next_size(self, remaining: int | None = None) -> int:
        """Rows for the next chunk; ``remaining``: rows not yet read, when known."""
        if remaining is None or self.best_per_row is None \
                or self.best_per_row * self.size < self.fast / 4:
            return self.size
        spread = math.ceil(remaining / (self.workers * BATCH_MIN_CHUNKS_PER_WORKER))
        return max(1, min(self.size, max(spread, self.minimum)))

    def _set(self, size: int) -> None:
        if size != self.size:
            self.size = size
            self.history.append(size)

    def __repr__(self) -> str:
        return f"<ChunkSizer size={self.size} max={self.maximum} history={self.history}>"
