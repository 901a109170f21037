"""The progress bar: outcomes finished out of the total, with submitted / completed / failed.

A thin layer over ``tqdm`` (written to stderr) that the coordinator updates from its own
thread; with ``progress=False`` every call is a no-op counter update.
"""

from __future__ import annotations

import time
from typing import Any

__all__ = ["Progress"]

_POSTFIX_INTERVAL = 0.5  # seconds between two postfix refreshes (each redraws the bar)


class Progress:
    """Counters of the batch, and a bar when enabled.

    Args:
        enabled: draw a bar.
        total: outcomes expected (items x evals), None when the input's length is unknown.
        desc: the bar's label.
    """

    def __init__(self, enabled: bool, total: int | None, desc: str = "evaluating") -> None:
        self.submitted = 0
        self.completed = 0
        self.failed = 0
        self._bar: Any = None
        self._last = 0.0
        if enabled:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=desc, unit="eval", dynamic_ncols=True,
                             smoothing=0.1)

    def advance(self, n: int = 1) -> None:
        """``n`` more outcomes finished."""
        if self._bar is not None and n:
            self._bar.update(n)

    def refresh(self, limit: int | None = None, *, force: bool = False) -> None:
        """Show the counters (at most every ``_POSTFIX_INTERVAL`` seconds unless forced)."""
        if self._bar is None:
            return
        now = time.monotonic()
        if not force and now - self._last < _POSTFIX_INTERVAL:
            return
        self._last = now
        postfix = {"submitted": self.submitted, "completed": self.completed,
                   "failed": self.failed}
        if limit is not None:
            postfix["in_flight_limit"] = limit
        self._bar.set_postfix(postfix, refresh=True)

    def close(self) -> None:
        if self._bar is not None:
            self.refresh(force=True)
            self._bar.close()

    def __repr__(self) -> str:
        return (f"<Progress submitted={self.submitted} completed={self.completed} "
                f"failed={self.failed}>")
