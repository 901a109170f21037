"""The caller's ``task``, run for the batch coordinator: on the pool, or on one event loop.

A plain function runs on the Evaluator's pool. An ``async def`` task (a coroutine function,
an object whose ``__call__`` is one, or a ``functools.partial`` of either) runs on **one**
event loop that the batch owns: a daemon thread started with the first task and closed when
the batch ends, normally or not (deadline, error, Ctrl-C). Each ``task(row)`` coroutine is
handed to that loop with :func:`asyncio.run_coroutine_threadsafe`, so the coordinator's
``max_workers`` running tasks are that many coroutines awaiting concurrently.

Either way the coordinator gets a :class:`concurrent.futures.Future` holding the task's
output or exception, so collecting, ``item_timeout`` expiry and the journal work alike.
Cancelling the future of a coroutine cancels the coroutine (a thread cannot be stopped).

A plain function that *returns* an awaitable (``lambda row: answer(row)`` with ``async def
answer``) has it awaited on the same loop, its pool thread freed meanwhile: the output is
what the awaitable returns, as if the async function itself had been passed.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import threading
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import Executor, Future, InvalidStateError
from concurrent.futures import TimeoutError as FutureTimeoutError
from typing import Any

from fi_evals._constants import BATCH_TASK_LOOP_CLOSE_TIMEOUT

__all__ = ["TaskRunner", "is_async_callable"]

Task = Callable[[Mapping[str, Any]], Any]


def is_async_callable(fn: Any) -> bool:
    """True for an ``async def`` function or method, an object with an ``async def
    __call__``, or a ``functools.partial`` of either."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    if inspect.iscoroutinefunction(fn):
        return True
    if inspect.isroutine(fn) or isinstance(fn, type):  # a class's __call__ is its instances'
        return False
    return inspect.iscoroutinefunction(getattr(fn, "__call__", None))  # noqa: B004


class TaskRunner:
    """Starts ``task(row)`` calls; see the module docs. Call :meth:`close` when the batch ends.

    Args:
        task: the caller's task.
        pool: the executor plain functions run on (the Evaluator's pool).
        close_timeout: seconds :meth:`close` waits for cancelled coroutines to finish
            (``BATCH_TASK_LOOP_CLOSE_TIMEOUT``).
    """

    def __init__(self, task: Task, pool: Executor, *,
                 close_timeout: float = BATCH_TASK_LOOP_CLOSE_TIMEOUT) -> None:
        self.task = task
        self.is_async = is_async_callable(task)
        self._pool = pool
        self._close_timeout = close_timeout
        self._lock = threading.Lock()  # pool threads may start the loop (awaitable returns)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closed = False

    def __repr__(self) -> str:
        kind = "async" if self.is_async else "sync"
        loop = "loop running" if self._thread is not None else "no loop"
        return f"<TaskRunner {kind} {getattr(self.task, '__name__', self.task)!r}, {loop}>"

    def submit(self, row: Mapping[str, Any]) -> Future[Any]:
        """Start ``task(row)``; the future holds its output or its exception.

        Raises:
            RuntimeError: the runner is closed (or the pool shut down).
        """
        if self.is_async:
            loop = self._start()  # first: a closed runner creates no coroutine to leak
            return asyncio.run_coroutine_threadsafe(_call_async(self.task, row), loop)
        outer: Future[Any] = Future()
        self._pool.submit(self._call_sync, row, outer)
        return outer

    def close(self) -> None:
        """Cancel what still runs on the loop, then stop and close it (idempotent)."""
        with self._lock:
            self._closed = True
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        try:
            finished = asyncio.run_coroutine_threadsafe(
                _cancel_all(self._close_timeout), loop)
            finished.result(self._close_timeout + 1.0)
        except FutureTimeoutError:
            pass  # a coroutine that ignores cancellation: the daemon thread is left behind
        finally:  # also on a second Ctrl-C while waiting above
            loop.call_soon_threadsafe(loop.stop)
        thread.join(self._close_timeout)
        if not thread.is_alive():
            loop.close()

    # ------------------------------------------------------------------ internals

    def _start(self) -> asyncio.AbstractEventLoop:
        """The batch's loop, started on first use."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the batch's task runner is closed")
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=_serve, args=(loop,), daemon=True,
                                          name="fi-evals-batch-tasks")
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    def _loop_for(self, awaitable: Awaitable[Any]) -> asyncio.AbstractEventLoop:
        try:
            return self._start()
        except RuntimeError:
            if inspect.iscoroutine(awaitable):
                awaitable.close()  # never awaited: say nothing about it at garbage collection
            raise

    def _call_sync(self, row: Mapping[str, Any], outer: Future[Any]) -> None:
        """On a pool thread: run the plain task; await what it returns if awaitable."""
        if outer.cancelled():  # the batch stopped before this task started
            return
        try:
            value = self.task(row)
            if inspect.isawaitable(value):
                _chain(asyncio.run_coroutine_threadsafe(_await(value), self._loop_for(value)),
                       outer)
                return
        except BaseException as exc:  # noqa: BLE001 - stored on the future, like the pool does
            _set(outer, exception=exc)
            return
        _set(outer, value)


def _serve(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    loop.run_forever()


async def _call_async(task: Task, row: Mapping[str, Any]) -> Any:
    # Called on the loop, so a task that raises before its first await fails like any other.
    return await task(row)


async def _await(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


async def _cancel_all(timeout: float) -> None:
    """On the loop: cancel every other task, wait for them, then close async generators."""
    current = asyncio.current_task()
    tasks = [t for t in asyncio.all_tasks() if t is not current]
    for t in tasks:
        t.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=timeout)
    await asyncio.get_running_loop().shutdown_asyncgens()


def _chain(inner: Future[Any], outer: Future[Any]) -> None:
    """``outer`` gets ``inner``'s outcome; cancelling ``outer`` cancels ``inner``."""

    def copy(done: Future[Any]) -> None:
        if done.cancelled():
            outer.cancel()
        elif done.exception() is not None:
            _set(outer, exception=done.exception())
        else:
            _set(outer, done.result())

    def cancel(done: Future[Any]) -> None:
        if done.cancelled():
            inner.cancel()

    outer.add_done_callback(cancel)
    inner.add_done_callback(copy)


def _set(future: Future[Any], value: Any = None, *,
         exception: BaseException | None = None) -> None:
    try:
        if exception is not None:
            future.set_exception(exception)
        else:
            future.set_result(value)
    except InvalidStateError:  # cancelled meanwhile (item_timeout, or the batch stopped)
        pass
