"""The child side of :mod:`fi_evals.server.isolation`: the loop an isolated process runs.

It caps its own address space first (``RLIMIT_AS``, hard limit included, so evaluator code
cannot lift it), then answers the parent's requests one at a time over its pipe. It never
decides about time: the parent kills it when an item overruns.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
from collections.abc import Mapping
from multiprocessing.connection import Connection
from typing import Any

from fi_evals.server.evaluators.base import BaseEvaluator, EvaluationError, ItemInputs, Outcome

__all__ = ["child_main"]


def child_main(conn: Connection, memory_bytes: int) -> None:
    """A child's loop: requests in, answers out, until ``None`` or a closed pipe.

    Requests: ``("load", key, blob)`` (answered ``("loaded", False, None | problem)``), then
    ``("run", key, params, model, items)`` or ``("check", key, params)``, answered once per item
    (once for a check) with ``("ok", retire, output, reason)``, ``("failed", retire, message)``
    or ``("memory", True)``. ``retire`` true: the child exits after this answer. The child says
    ``("ready",)`` first. Loading is its own step so that importing an evaluator's module is
    not counted against an item's time.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C drains the server; it ends us
    _limit_memory(memory_bytes)
    # Retire once less than half of the headroom we start with is left: every item then starts
    # with at least that much, whatever earlier items left in the evaluators' caches.
    retire_at = (memory_bytes + _address_space()) // 2
    try:
        conn.send(("ready",))
        _serve(conn, retire_at)
    except (EOFError, OSError):  # the parent went away or killed the pipe: nothing to answer
        return


def _serve(conn: Connection, retire_at: int) -> None:
    evaluators: dict[str, BaseEvaluator] = {}
    while True:
        try:
            message = conn.recv()
        except MemoryError:  # the batch itself does not fit: say so for its first item
            conn.send(("memory", True))
            return
        if message is None:
            return
        if message[0] == "load":
            try:
                conn.send(("loaded", False, _load(evaluators, message[1], message[2])))
            except MemoryError:
                conn.send(("memory", True))
                return
            continue
        kind, evaluator, params = message[0], evaluators[message[1]], message[2]
        for inputs in (message[4] if kind == "run" else [{}]):
            answer = (_evaluate(evaluator, inputs, params, message[3]) if kind == "run"
                      else _check(evaluator, params))
            retire = answer[0] == "memory" or _address_space() > retire_at
            conn.send((answer[0], retire, *answer[1:]))
            if retire:
                return


def _load(evaluators: dict[str, BaseEvaluator], key: str, blob: bytes) -> str | None:
    try:
        evaluators[key] = pickle.loads(blob)
    except Exception as exc:  # noqa: BLE001 - every item of the batch fails with it
        return f"cannot load the evaluator in its isolated process: {_problem(exc)}"
    return None


def _address_space() -> int:
    """This process's address space in bytes, what ``RLIMIT_AS`` limits (0 where there is no
    ``/proc``: the child then never retires early). Not ``ru_maxrss``: after ``exec`` Linux
    reports the parent's peak there. ~2 us: the file stays open."""
    global _STATM
    try:
        if _STATM is None:
            _STATM = os.open("/proc/self/statm", os.O_RDONLY)
        return int(os.pread(_STATM, 64, 0).split()[0]) * _PAGE
    except (OSError, ValueError, IndexError):  # pragma: no cover - not Linux
        return 0


_STATM: int | None = None
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _limit_memory(memory_bytes: int) -> None:
    try:
        import resource
    except ImportError:  # pragma: no cover - not a POSIX system: the time limit still holds
        return
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY and hard < memory_bytes:
        memory_bytes = hard
    # Hard limit too: evaluator code in the child cannot lift it.
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a crash must not write a 1 GB core


def _problem(exc: Exception) -> str:
    """The item's error message, worded as ``executor._failed`` words in-process failures."""
    if isinstance(exc, EvaluationError):
        return str(exc) or type(exc).__name__
    return f"evaluator error: {type(exc).__name__}: {exc}"


def _evaluate(evaluator: BaseEvaluator, inputs: ItemInputs, params: Mapping[str, Any],
              model: str | None) -> tuple[Any, ...]:
    try:
        outcome = evaluator.evaluate(inputs, params, model)
        if not isinstance(outcome, Outcome):
            raise TypeError(f"evaluate() returned {type(outcome).__name__}, not Outcome")
        return ("ok", outcome.output, outcome.reason)
    except MemoryError:
        return ("memory",)
    except Exception as exc:  # noqa: BLE001 - recorded on the item
        return ("failed", _problem(exc))


def _check(evaluator: BaseEvaluator, params: Mapping[str, Any]) -> tuple[Any, ...]:
    try:
        evaluator.check_params(params)
        return ("ok",)
    except MemoryError:
        return ("memory",)
    except Exception as exc:  # noqa: BLE001 - a 400 naming the problem
        return ("failed", _problem(exc))


if __name__ == "__main__":  # python -m fi_evals.server.isolation_child FD MEMORY_BYTES
    try:  # the built-in isolated evaluators: imported before "ready", not on a first request
        import fi_evals.server.evaluators.deterministic  # noqa: F401
    except ImportError:  # pragma: no cover - the server extra is missing: nothing to preload
        pass
    child_main(Connection(int(sys.argv[1])), int(sys.argv[2]))
