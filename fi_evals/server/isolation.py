"""Isolated evaluations: evaluators whose cost has no natural bound run in child processes.

Some evaluations cost what the request says they cost: a ``regex`` pattern or a ``json_schema``
schema is a program (compiling ``(?:(?:a{1000}){1000}){1000}`` allocates without bound; ``re``
under a schema's ``"pattern": "^(a+)+$"`` backtracks for ever, holding the GIL), and the
similarity templates are quadratic in the text length (rapidfuzz holds the GIL for 40 s on two
1 MiB strings). In the server process any of these freezes every request and can take all of
its memory. So they run here, in child processes, each item under a wall-clock limit enforced
from the parent and the child under an address-space cap:

- :class:`IsolationLimits`: the knobs (``ServerConfig.isolation_*``, ``--isolation-*`` flags
  of ``fi-evals serve`` and ``fi-evals worker``; defaults in :mod:`fi_evals._constants`).
- :class:`IsolationPool`: up to ``workers`` warm child processes, reused. A caller takes an idle
  child for one batch (the items of one request or claim), sends the batch in one message and
  reads one answer per item as the child finishes it; item *i* starts when answer *i-1* arrives,
  and gets its own deadline. On overrun the parent kills the child (SIGKILL), records the item
  ``failed`` naming the limit, and sends the rest of the batch to a fresh child. Each child sets
  ``RLIMIT_AS`` first thing; an item that hits it raises ``MemoryError`` in the child, which
  answers so (the item is ``failed`` naming the cap) and exits. A child whose address space
  passed the middle between its start size and the cap retires after its answer, so that what
  earlier items left in its caches (a compiled pattern can take 250 MB) never makes a later
  item fail: every item starts with at least half the child's first headroom free.
  An evaluator is sent to a child pickled, once per child and outside any item's time (a
  module import is not an item's cost); the child's loop is :mod:`.isolation_child`.
- :func:`isolate`: wraps a registry's evaluators by their ``isolation`` attribute
  (:data:`~fi_evals.server.evaluators.base.Isolation`): ``"always"`` sends the parameter check
  (``check_params``, run while validating a request, so a bad pattern is still a 400) and every
  item to the pool; ``"large"`` keeps items whose longest text is within ``inline_chars``
  in-process, as before, and sends the others. The built-in ``regex`` and ``json_schema`` are
  ``"always"``, the similarity templates ``"large"``; an evaluator of ``--evaluators`` opts in
  by setting the attribute.

Bounded per item, not per batch: a request of N runaway items holds a child for N times the
limit (the door limits of :mod:`fi_evals.server.limits` bound what reaches here).

Why not simpler: ``RLIMIT_CPU`` counts the whole process's CPU, not one item's, and cannot
interrupt a wait; ``concurrent.futures.ProcessPoolExecutor`` cannot kill one worker without
breaking the whole pool. Each child is a fresh interpreter (see :class:`_Child` for why not
``multiprocessing``), about 0.5 s to start. Children start with the first isolated work of a
server (which waits for one; the others start meanwhile), not with the server: a server that
never sees such work runs none, and the start of one that does costs nothing else (``make
bench`` P1 measures throughput right after a start). Then they are reused, and replaced in the
background after each kill or retirement. A forked copy of the pool (a Celery prefork child)
starts its own.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from fi_evals import _constants as C
from fi_evals.catalogue import CATALOGUE
from fi_evals.server.evaluators.base import BaseEvaluator, EvaluationError, ItemInputs, Outcome

__all__ = ["IsolatedEvaluator", "IsolationLimits", "IsolationPool", "SizeRoutedEvaluator",
           "isolate", "text_size"]

log = logging.getLogger("fi_evals.server.isolation")

_START_TIMEOUT = 30.0  # seconds a new child may take to say it is ready (a loaded machine)
_MIB = 1024 * 1024


@dataclass(frozen=True, kw_only=True)
class IsolationLimits:
    """What isolated evaluations may use.

    Attributes:
        workers: child processes (each runs one batch at a time).
        item_seconds: wall-clock seconds per item, and per parameter check.
        memory_mb: ``RLIMIT_AS`` of each child, in MiB.
        inline_chars: longest text input a ``"large"``-isolation evaluator runs in-process.
    """

    workers: int = C.ISOLATION_WORKERS
    item_seconds: float = C.ISOLATION_ITEM_SECONDS
    memory_mb: int = C.ISOLATION_MEMORY_MB
    inline_chars: int = C.ISOLATION_INLINE_CHARS

    @classmethod
    def from_config(cls, config: Any) -> IsolationLimits:
        """The limits of a :class:`~fi_evals.server.config.ServerConfig`."""
        return cls(workers=config.isolation_workers, item_seconds=config.isolation_item_seconds,
                   memory_mb=config.isolation_memory_mb,
                   inline_chars=config.isolation_inline_chars)

    def time_message(self, what: str) -> str:
        return (f"{what} exceeded the {self.item_seconds:g} s per-item time limit of isolated "
                "evaluations (--isolation-item-seconds); its process was replaced")

    def memory_message(self, what: str) -> str:
        return (f"{what} exceeded the {self.memory_mb} MB memory limit of isolated "
                "evaluations (--isolation-memory-mb)")


class _Child:
    """One child process (``python -m fi_evals.server.isolation_child``) and our end of its
    socket pair.

    A fresh interpreter, not a ``multiprocessing`` process: those re-import the parent's main
    script in the child (spawn and forkserver do), and the server may be embedded in a user's
    script without a ``__main__`` guard (``fi_evals.evaluate()``); forking the threaded server
    itself is unsafe. The child gets this process's ``sys.path``, so it can unpickle whatever
    evaluator this process can import.
    """

    def __init__(self, memory_bytes: int) -> None:
        ours, theirs = socket.socketpair()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "fi_evals.server.isolation_child", str(theirs.fileno()),
                 str(memory_bytes)], pass_fds=[theirs.fileno()], env=env,
                stdin=subprocess.DEVNULL)
        finally:
            theirs.close()
        self.conn = Connection(ours.detach())
        self.loaded: set[str] = set()
        self.retired = False
        """Killed, dead or exiting: never handed out again."""
        try:
            ready = self.conn.poll(_START_TIMEOUT) and self.conn.recv() == ("ready",)
        except (EOFError, OSError):
            ready = False
        if not ready:
            self.kill()
            raise EvaluationError("the isolated evaluation process did not start")

    @property
    def pid(self) -> int:
        return self.process.pid

    def kill(self) -> None:
        """SIGKILL and reap; idempotent."""
        if self.process.poll() is None:
            self.process.kill()
        try:
            self.process.wait(5.0)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL is not refused
            log.warning("isolated evaluation process %s did not exit", self.pid)
        self.conn.close()

    def exit_description(self) -> str:
        try:
            code = self.process.wait(1.0)
        except subprocess.TimeoutExpired:
            return "its pipe closed"
        if code is not None and code < 0:
            name = signal.Signals(-code).name
            hint = " (the system may be out of memory)" if -code == signal.SIGKILL else ""
            return f"killed by {name}{hint}"
        return f"exit code {code}"


class IsolationPool:
    """Warm child processes running :class:`IsolatedEvaluator` work under the limits.

    Thread-safe: many request threads and async workers share one pool; each batch holds one
    child at a time, and callers wait for a free child when all ``workers`` are busy.
    """

    def __init__(self, limits: IsolationLimits | None = None) -> None:
        self.limits = limits or IsolationLimits()
        self._cond = threading.Condition()
        self._idle: list[_Child] = []
        self._all: set[_Child] = set()
        self._starting = 0
        self._closed = False
        self._pid = os.getpid()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start the missing children in the background (about 0.5 s each; nothing waits for
        them unless it needs a child). Optional: work starts children on demand."""
        threading.Thread(target=self._warm, name="fi-evals-isolation-start", daemon=True).start()

    def _warm(self) -> None:
        self._after_fork()
        while True:
            with self._cond:
                if self._closed or not self._room():
                    return
                self._starting += 1
            try:
                child = self._start_child()
            except Exception as exc:  # noqa: BLE001 - callers will try again, and say why
                if not self._closed:
                    log.warning("could not start an isolated evaluation process: %s: %s",
                                type(exc).__name__, exc)
                return
            self._give_back(child, healthy=True)

    def stop(self) -> None:
        """Kill every child; later calls fail their items ("the server is stopping")."""
        with self._cond:
            self._closed = True
            children = list(self._all)
            self._all.clear()
            self._idle.clear()
            self._cond.notify_all()
        for child in children:
            child.kill()

    # ------------------------------------------------------------------ children

    def _take(self) -> _Child:
        """An idle child, else a new one while fewer than ``workers`` exist, else wait.

        Raises:
            EvaluationError: the pool is stopped, or a new child did not start.
        """
        self._after_fork()
        with self._cond:
            while True:
                if self._closed:
                    raise EvaluationError("the server is stopping")
                if self._idle:
                    return self._idle.pop()
                if self._room():
                    self._starting += 1
                    first = not self._all and self._starting == 1
                    break
                self._cond.wait()
        if first and self.limits.workers > 1:
            self.start()  # the first isolated work of this server: warm the others meanwhile
        return self._start_child()

    def _room(self) -> bool:
        return len(self._all) + self._starting < self.limits.workers

    def _start_child(self) -> _Child:
        """A new child, counted in ``_all`` (the caller counted it in ``_starting``)."""
        child = None
        try:
            child = _Child(self.limits.memory_mb * _MIB)
        finally:
            with self._cond:
                self._starting -= 1
                closed = self._closed
                if child is not None and not closed:
                    self._all.add(child)
                self._cond.notify()
        if closed:
            child.kill()
            raise EvaluationError("the server is stopping")
        return child

    def _after_fork(self) -> None:
        """In a forked copy of the server (a Celery prefork child) the children are not ours:
        start afresh."""
        if self._pid != os.getpid():
            self._cond = threading.Condition()
            self._idle, self._all, self._starting = [], set(), 0
            self._pid = os.getpid()

    def _give_back(self, child: _Child, *, healthy: bool) -> None:
        with self._cond:
            kept = healthy and not self._closed and child in self._all
            if kept:
                self._idle.append(child)
            else:
                self._all.discard(child)
            self._cond.notify()
        if not kept:
            child.kill()
            if not self._closed:
                self.start()  # a warm replacement, off the path of the next caller

    # ------------------------------------------------------------------ work

    def run(self, ref: EvaluatorRef, items: Sequence[ItemInputs], params: Mapping[str, Any],
            model: str | None) -> list[Outcome | BaseException]:
        """Evaluate ``items`` in the children; one result per item, an exception if it failed.

        Raises:
            EvaluationError: the pool is stopped (every item fails with it).
        """
        results: list[Outcome | BaseException] = []
        while len(results) < len(items):
            try:
                child = self._take()
            except EvaluationError as exc:  # stopping, or no child starts: the rest fail
                results.extend([exc] * (len(items) - len(results)))
                break
            healthy = False
            try:
                healthy = self._run_on(child, ref, items[len(results):], params, model, results)
            finally:
                self._give_back(child, healthy=healthy)
        return results

    def _run_on(self, child: _Child, ref: EvaluatorRef, items: Sequence[ItemInputs],
                params: Mapping[str, Any], model: str | None,
                results: list[Outcome | BaseException]) -> bool:
        """Run a batch on one child, appending to ``results`` (it may stop early).

        Returns:
            Whether the child can take more work.
        """
        problem = self._load(child, ref)
        if problem is not None:
            results.extend([EvaluationError(problem)] * len(items))
            return not child.retired
        child.conn.send(("run", ref.key, params, model, list(items)))
        for _ in items:
            answer = self._answer(child, ref, "evaluation")
            if answer[0] == "ok":
                results.append(Outcome(answer[2], answer[3]))
            else:
                results.append(EvaluationError(answer[2]))
            if child.retired:  # killed, dead or exiting: the rest goes to another child
                return False
        return True

    def check(self, ref: EvaluatorRef, params: Mapping[str, Any]) -> str | None:
        """Run ``check_params`` in a child: None when the parameters are fine, else why not.

        Raises:
            EvaluationError: the pool is stopped.
        """
        child = self._take()
        healthy = False
        try:
            problem = self._load(child, ref)
            if problem is None:
                child.conn.send(("check", ref.key, params))
                answer = self._answer(child, ref, "checking the parameters")
                problem = None if answer[0] == "ok" else str(answer[2])
            healthy = not child.retired
            return problem
        finally:
            self._give_back(child, healthy=healthy)

    def _load(self, child: _Child, ref: EvaluatorRef) -> str | None:
        """Have ``child`` load the evaluator (once); None when it did, else why not."""
        if ref.key in child.loaded:
            return None
        child.conn.send(("load", ref.key, ref.blob))
        answer = self._answer(child, ref, "loading the evaluator", _START_TIMEOUT)
        if answer[0] == "loaded" and answer[2] is None:
            child.loaded.add(ref.key)
        return None if answer[2] is None else str(answer[2])

    def _answer(self, child: _Child, ref: EvaluatorRef, what: str,
                seconds: float | None = None) -> tuple[Any, ...]:
        """The child's next answer, ``(kind, retire, *payload)``, within the per-item limit
        (or ``seconds``). An overrun, a memory error or a death becomes ``("timeout"|"memory"|
        "died", True, message)``; ``child.retired`` is set when the child is gone."""
        answer = self._receive(child, ref, what, seconds)
        child.retired = child.retired or bool(answer[1])
        return answer

    def _receive(self, child: _Child, ref: EvaluatorRef, what: str,
                 seconds: float | None) -> tuple[Any, ...]:
        limits = self.limits
        try:
            ready = child.conn.poll(limits.item_seconds if seconds is None else seconds)
            answer = child.conn.recv() if ready else None
        except (EOFError, OSError):
            if self._closed:
                return ("died", True, "the server stopped during the evaluation")
            description = child.exit_description()
            log.warning("isolated %s of %s: process %s died (%s)", what, ref.name, child.pid,
                        description)
            return ("died", True, f"the isolated evaluation process died ({description})")
        if answer is None:
            log.warning("isolated %s of %s took over %g s: killing process %s", what, ref.name,
                        limits.item_seconds if seconds is None else seconds, child.pid)
            child.kill()
            return ("timeout", True, limits.time_message(what) if seconds is None else
                    f"{what} took over {seconds:g} s; its process was replaced")
        if answer[0] == "memory":
            log.warning("isolated %s of %s hit the %d MB memory limit (process %s replaced)",
                        what, ref.name, limits.memory_mb, child.pid)
            return ("memory", True, limits.memory_message(what))
        return tuple(answer)

    def __repr__(self) -> str:
        return (f"<IsolationPool {len(self._all)}/{self.limits.workers} children, "
                f"{self.limits.item_seconds:g} s/item, {self.limits.memory_mb} MB>")


# --------------------------------------------------------------------------- the evaluators


@dataclass(frozen=True)
class EvaluatorRef:
    """An evaluator as children load it: pickled once, cached by each child under ``key``."""

    name: str
    key: str
    blob: bytes

    @classmethod
    def of(cls, evaluator: BaseEvaluator) -> EvaluatorRef:
        blob = pickle.dumps(evaluator)
        return cls(evaluator.template.name, hashlib.sha256(blob).hexdigest(), blob)


class IsolatedEvaluator(BaseEvaluator):
    """``inner`` with its parameter check and every item run in the pool (``"always"``)."""

    def __init__(self, inner: BaseEvaluator, pool: IsolationPool) -> None:
        self.inner = inner
        self.template = inner.template
        self.isolation = inner.isolation
        self.preferred_batch = inner.preferred_batch
        self.pool = pool
        self._ref = EvaluatorRef.of(inner)

    def check_params(self, params: Mapping[str, Any]) -> None:
        """``inner.check_params`` in a child (compiling a pattern is already a risk).

        Raises:
            EvaluationError: the parameters cannot work, or checking them hit a limit.
        """
        problem = self.pool.check(self._ref, params)
        if problem is not None:
            raise EvaluationError(problem)

    def evaluate(self, inputs: ItemInputs, params: Mapping[str, Any],
                 model: str | None = None) -> Outcome:
        result = self.pool.run(self._ref, [inputs], params, model)[0]
        if isinstance(result, BaseException):
            raise result
        return result

    def evaluate_many(self, items: Sequence[ItemInputs], params: Mapping[str, Any],
                      model: str | None = None) -> list[Outcome | BaseException]:
        """All items as one batch to one child (a replacement takes over after a kill)."""
        return self.pool.run(self._ref, items, params, model)

    def __repr__(self) -> str:
        return f"<IsolatedEvaluator {self.inner!r}>"


class SizeRoutedEvaluator(IsolatedEvaluator):
    """``inner`` in-process for items within ``inline_chars``, isolated above (``"large"``).

    It keeps the base class's item-by-item ``evaluate_many``: a batch mixing both kinds sends
    only its large items to the pool, one at a time (each costs milliseconds or more anyway).
    """

    evaluate_many = BaseEvaluator.evaluate_many

    def __init__(self, inner: BaseEvaluator, pool: IsolationPool) -> None:
        super().__init__(inner, pool)
        self.inline_chars = pool.limits.inline_chars

    def check_params(self, params: Mapping[str, Any]) -> None:
        self.inner.check_params(params)

    def evaluate(self, inputs: ItemInputs, params: Mapping[str, Any],
                 model: str | None = None) -> Outcome:
        if text_size(inputs) <= self.inline_chars:
            return self.inner.evaluate(inputs, params, model)
        return super().evaluate(inputs, params, model)

    def __repr__(self) -> str:
        return f"<SizeRoutedEvaluator {self.inner!r} inline up to {self.inline_chars} chars>"


def text_size(inputs: ItemInputs) -> int:
    """The longest input of an item, in characters (a list counts the sum of its strings)."""
    largest = 0
    for value in inputs.values():
        if type(value) is str:
            size = len(value)
        elif isinstance(value, (list, tuple)):
            size = sum(len(v) if isinstance(v, str) else text_size({"": v}) for v in value)
        else:
            continue
        if size > largest:  # not max(): this runs for every item of every sync request
            largest = size
    return largest


def isolate(registry: Any, pool: IsolationPool) -> Any:
    """A copy of ``registry`` whose evaluators with an ``isolation`` run through ``pool``.

    Args:
        registry: a :class:`~fi_evals.server.evaluators.Registry`.
        pool: the pool their isolated work goes to.

    Returns:
        A new registry; the others' evaluators are the same objects.
    """
    wrapped = []
    for name in registry:
        evaluator = registry.get(CATALOGUE[name])
        if isinstance(evaluator, IsolatedEvaluator):  # isolated twice: rewire to this pool
            evaluator = evaluator.inner
        mode = getattr(evaluator, "isolation", None)
        if mode == "always":
            evaluator = IsolatedEvaluator(evaluator, pool)
        elif mode == "large":
            evaluator = SizeRoutedEvaluator(evaluator, pool)
        wrapped.append(evaluator)
    return type(registry)(wrapped)
