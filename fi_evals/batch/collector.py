"""Fewer garbage collector runs while a batch runs: :func:`fewer_collections`.

A batch allocates a few container objects per evaluation (answers, results, rows, items), and
CPython's cyclic collector runs its youngest generation every 700 container allocations
(``gc.get_threshold()[0]``): every ~100 rows. Each run promotes the survivors, and every 100th
one traverses the whole heap, every result the batch holds so far included: on P1 (100,000
rows, two evals, items kept in memory) the collector took ~40% of the client's CPU time. For
the length of the batch the first threshold is raised to :data:`BATCH_GC_THRESHOLD` (the
collector still runs, 30x less often; reference counting frees everything else as before),
then restored.

The thresholds are the process's: batches running at the same time (threads, AsyncEvaluator)
share one raise, undone when the last one ends; a threshold the program set meanwhile is kept,
and a collector turned off (``gc.disable()``, or a threshold of 0) is left alone.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["BATCH_GC_THRESHOLD", "fewer_collections"]

BATCH_GC_THRESHOLD = 20_000
"""The collector's first threshold during a batch (CPython's default: 700). At 20,000 the
collector's share of P1's client CPU time fell from ~40% to ~10%; cyclic garbage waits at most
20,000 allocations to be freed."""

_lock = threading.Lock()
_depth = 0
_saved: tuple[int, int, int] | None = None


@contextmanager
def fewer_collections(threshold: int = BATCH_GC_THRESHOLD) -> Iterator[None]:
    """Raise ``gc``'s first threshold to ``threshold`` inside the block (see the module docs)."""
    global _depth, _saved
    with _lock:
        if _depth == 0:
            current = gc.get_threshold()
            _saved = None
            if gc.isenabled() and 0 < current[0] < threshold:
                _saved = current
                gc.set_threshold(threshold, current[1], current[2])
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _saved is not None:
                if gc.get_threshold()[0] == threshold:  # else the program set its own
                    gc.set_threshold(*_saved)
                _saved = None
