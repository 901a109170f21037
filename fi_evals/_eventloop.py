"""A warning for blocking calls made from inside a running asyncio event loop.

``Evaluator.evaluate``, ``wait_all``, ``get_eval_result``, ``evaluate_batch`` (and the calls
built on them) block their thread until the server answers. Called from a coroutine, they
block the whole event loop: nothing else on it runs meanwhile. :func:`warn_if_in_event_loop`
says so with a :class:`RuntimeWarning`, once per process, pointing at the caller's line.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import warnings

__all__ = ["warn_if_in_event_loop"]

_PACKAGE = "fi_evals"
_lock = threading.Lock()
_warned = False  # once per process: the first blocking call in a loop tells the whole story


def warn_if_in_event_loop(call: str) -> None:
    """Warn once per process when ``call`` (e.g. ``"evaluate_batch"``) runs in an event loop.

    The warning points at the first line outside ``fi_evals`` on the stack, so
    ``ev.submit(...)`` (which calls ``evaluate``) blames the user's line, not ours.
    """
    global _warned
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # no loop running in this thread: blocking is fine
        return
    with _lock:
        if _warned:
            return
        _warned = True
    warnings.warn(
        f"Evaluator.{call}() blocks until the server answers, and it was called from a "
        f"running asyncio event loop, which can run nothing else meanwhile. Run it in a "
        f"thread instead, e.g. `await asyncio.to_thread(ev.{call}, ...)`. (fi_evals shows "
        f"this warning once per process.)", RuntimeWarning, stacklevel=_caller_level())


def _caller_level() -> int:
    """``stacklevel`` of the first frame outside the package, seen from ``warnings.warn``."""
    level = 2  # 1: warn_if_in_event_loop itself; 2: the fi_evals entry point calling it
    frame = sys._getframe(2)
    while frame is not None and _in_package(frame.f_globals.get("__name__", "")):
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    return level if frame is not None else 2


def _in_package(module: str) -> bool:
    return module == _PACKAGE or module.startswith(_PACKAGE + ".")
