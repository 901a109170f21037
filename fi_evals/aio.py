"""``AsyncEvaluator``: the SDK for asyncio code (FastAPI, aiohttp), without blocking the loop.

::

    from fi_evals.aio import AsyncEvaluator

    async with AsyncEvaluator() as ev:          # the same constructor as Evaluator
        result = await ev.evaluate("is_json", {"text": ['{"a": 1}', "not json"]})
        batch = await ev.evaluate_batch(rows, ["is_json"], progress=False)
        async for item in ev.iter_batch(rows, ["is_json"], progress=False):
            print(item.index, item.results)

Design: the thread engine behind asyncio futures. An ``AsyncEvaluator`` wraps one
:class:`~fi_evals.client.Evaluator` (``.sync``) and runs each blocking call on a worker thread
(``loop.run_in_executor``), so the requests, retries, idempotency keys, polling and the batch
engine are the sync client's own (the same :class:`~fi_evals._context.ClientContext`: one
transport, one pool, one retry and poll policy; not copies). The loop only awaits futures.

- Cancellation: cancelling a task awaiting :meth:`evaluate_batch` (or leaving an ``async for``
  over :meth:`iter_batch` early) stops the batch as Ctrl-C does: nothing more is sent,
  requests on the wire get ``BATCH_INTERRUPT_GRACE`` seconds so their eval ids are journaled,
  the journal and output files are closed; then ``CancelledError`` propagates. A single
  :meth:`evaluate` cannot be recalled once sent: cancelling it returns at once and its answer
  is dropped.
- ``async def`` tasks run on the caller's own loop (``asyncio.run_coroutine_threadsafe``), so
  they may use the caller's clients (an ``httpx.AsyncClient``, a DB pool), at most
  ``max_workers`` at once; plain tasks run on the pool as in the sync client.
- :meth:`score_logger` gives an :class:`AsyncScoreLogger`: ``log()`` never blocks, ``await
  score(...)`` waits for one verdict, ``await flush()`` / ``await aclose()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Any, Self, TypeVar

from fi_evals import _otel

# Imported with this module, not at the first batch: importing the batch engine takes ~90 ms
# of the GIL, which would stall a running event loop (a service imports at start-up).
from fi_evals.batch.api import evaluate_batch
from fi_evals.client import Evaluator
from fi_evals.protocol import EvalStatus

if TYPE_CHECKING:
    from fi_evals._context import ClientContext
    from fi_evals.batch.output import BatchItem
    from fi_evals.batch.result import BatchResult
    from fi_evals.handles import Submission
    from fi_evals.logger import LoggedScore, ScoreLogger
    from fi_evals.results import BatchRunResult, EvalResult

__all__ = ["AsyncEvaluator", "AsyncScoreLogger", "BatchStream"]

T = TypeVar("T")


async def _in_thread(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, functools.partial(fn, *args, **kwargs))


class AsyncEvaluator:
    """An :class:`~fi_evals.Evaluator` for asyncio code (see the module docs).

    Takes exactly ``Evaluator``'s arguments (keys, ``fi_base_url``, ``max_workers``,
    ``timeout``, ``retry``, ``poll``...). Results and errors are the sync client's.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._sync = Evaluator(*args, **kwargs)
        self._batches: dict[asyncio.Future[Any], threading.Event] = {}
        """Batches running on a worker thread, with the event that stops each."""

    @property
    def sync(self) -> Evaluator:
        """The wrapped blocking client (for code running in threads)."""
        return self._sync

    @property
    def context(self) -> ClientContext:
        """The shared transport, pool, retry and poll policies (the sync client's own)."""
        return self._sync.context

    @property
    def base_url(self) -> str:
        return self._sync.base_url

    @property
    def max_workers(self) -> int:
        return self._sync.max_workers

    def __repr__(self) -> str:
        return f"<AsyncEvaluator {self._sync!r}>"

    async def aclose(self) -> None:
        """Close the HTTP session and the pool (in a thread: in-flight calls are awaited).

        Batches still running (one whose ``async for`` was left with a plain ``break``: its
        generator is closed by the loop a moment later) are stopped as on cancellation and
        awaited first, so they journal what they sent and close their files before the pool
        goes away."""
        running = list(self._batches.items())
        for _, cancel in running:
            cancel.set()
        if running:
            await asyncio.gather(*(asyncio.shield(f) for f, _ in running),
                                 return_exceptions=True)
        await _in_thread(self._sync.close)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ single calls

    async def evaluate(self, eval_templates: Any, inputs: Any, **options: Any
                       ) -> BatchRunResult:
        """:meth:`Evaluator.evaluate <fi_evals.Evaluator.evaluate>`, awaited."""
        return await _in_thread(self._sync.evaluate, eval_templates, inputs, **options)

    async def submit(self, eval_templates: Any, inputs: Any, **options: Any) -> Submission:
        """:meth:`Evaluator.submit <fi_evals.Evaluator.submit>`, awaited."""
        return await _in_thread(self._sync.submit, eval_templates, inputs, **options)

    async def get_result(self, eval_id: str, *, name: str = "") -> EvalResult:
        """:meth:`Evaluator.get_result <fi_evals.Evaluator.get_result>`, awaited."""
        return await _in_thread(self._sync.get_result, eval_id, name=name)

    async def get_eval_result(self, eval_id: str) -> dict[str, Any]:
        """:meth:`Evaluator.get_eval_result <fi_evals.Evaluator.get_eval_result>`, awaited."""
        return await _in_thread(self._sync.get_eval_result, eval_id)

    async def wait_all(self, handles_or_ids: Any, **options: Any) -> list[EvalResult]:
        """:meth:`Evaluator.wait_all <fi_evals.Evaluator.wait_all>`, awaited."""
        return await _in_thread(self._sync.wait_all, handles_or_ids, **options)

    # ------------------------------------------------------------------ batches

    def _batch_call(self, items: Any, evals: Any, options: dict[str, Any],
                    cancel: threading.Event, sink: Any = None) -> Callable[[], BatchResult]:
        task = options.pop("task", None)
        if task is not None and inspect.iscoroutinefunction(task):
            task = _on_loop(task, asyncio.get_running_loop())
        self._sync._check_open()
        return functools.partial(evaluate_batch, self._sync, items, evals, task=task,
                                 cancel=cancel, sink=sink, **options)

    def _start_batch(self, call: Callable[[], BatchResult],
                     cancel: threading.Event) -> asyncio.Future[BatchResult]:
        """Run ``call`` on a worker thread; :meth:`aclose` waits for it."""
        future = asyncio.get_running_loop().run_in_executor(None, call)
        self._batches[future] = cancel
        future.add_done_callback(lambda done: self._batches.pop(done, None))
        return future

    async def evaluate_batch(self, items: Any, evals: Any, **options: Any) -> BatchResult:
        """:meth:`Evaluator.evaluate_batch <fi_evals.Evaluator.evaluate_batch>`, awaited.

        Same options and result. Cancelling the awaiting task stops the batch (see the module
        docs), waits until it closed its files, and re-raises ``CancelledError``.
        """
        cancel = threading.Event()
        call = self._batch_call(items, evals, dict(options), cancel)
        future = self._start_batch(call, cancel)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            cancel.set()
            with contextlib.suppress(Exception):
                await future  # the batch settles its items and closes its journal
            raise

    def iter_batch(self, items: Any, evals: Any, **options: Any) -> BatchStream:
        """Run a batch and yield each finished :class:`~fi_evals.batch.BatchItem`, in input
        order, as ``async for`` iterates; ``stream.result`` is the :class:`BatchResult` after
        the loop (its items are not kept: they were yielded). Leaving the loop early cancels
        the batch."""
        return BatchStream(self, items, evals, options)

    # ------------------------------------------------------------------ score logging

    def score_logger(self, **options: Any) -> AsyncScoreLogger:
        """An :class:`AsyncScoreLogger` on this client's server and keys (``ScoreLogger``'s
        options; ``overflow="block"`` is refused: it would block the loop)."""
        return AsyncScoreLogger(self._sync, **options)


class BatchStream:
    """``async for item in ev.iter_batch(...)``: finished rows as the batch produces them."""

    def __init__(self, ev: AsyncEvaluator, items: Any, evals: Any,
                 options: Mapping[str, Any]) -> None:
        self._ev = ev
        self._args = (items, evals, dict(options))
        self.result: BatchResult | None = None
        self._started = False

    def __aiter__(self) -> AsyncIterator[BatchItem]:
        if self._started:
            raise RuntimeError("a BatchStream is iterated once")
        self._started = True
        return self._run()

    async def _run(self) -> AsyncIterator[BatchItem]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        done = object()
        cancel = threading.Event()

        class _Sink:
            def write(self, item: BatchItem) -> None:
                loop.call_soon_threadsafe(queue.put_nowait, item)

            def close(self) -> None:
                pass

        items, evals, options = self._args
        call = self._ev._batch_call(items, evals, options, cancel, sink=_Sink())
        future = self._ev._start_batch(call, cancel)
        # Resolved on the loop after every write the batch scheduled: the sentinel comes last.
        future.add_done_callback(lambda _: queue.put_nowait(done))
        try:
            while (item := await queue.get()) is not done:
                yield item
            self.result = future.result()
        finally:
            if not future.done():
                cancel.set()
                with contextlib.suppress(BaseException):
                    await asyncio.shield(future)


def _on_loop(task: Callable[..., Any], loop: asyncio.AbstractEventLoop) -> Callable[..., Any]:
    """A plain function for the engine's pool that runs ``async def`` ``task`` on ``loop``."""

    @functools.wraps(task)
    def run(*args: Any, **kwargs: Any) -> Any:
        future = asyncio.run_coroutine_threadsafe(task(*args, **kwargs), loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise

    return run


class AsyncScoreLogger:
    """A :class:`~fi_evals.logger.ScoreLogger` for asyncio code.

    ``log()`` is the ScoreLogger's (queues, never blocks, never raises); ``await score(...)``
    logs and waits for that score's :class:`~fi_evals.logger.LoggedScore`; ``flush`` and
    ``aclose`` wait in a thread. ``.logger`` is the wrapped ScoreLogger.
    """

    def __init__(self, evaluator: Evaluator, **options: Any) -> None:
        if str(options.get("overflow", "")).lower() in ("block", "overflowpolicy.block"):
            raise ValueError('overflow="block" would block the event loop; use "spool", '
                             '"drop_newest" or "drop_oldest" from async code')
        from fi_evals.logger import ScoreLogger

        self.logger: ScoreLogger = ScoreLogger(evaluator, **options)

    def log(self, eval_name: str, inputs: Mapping[str, Any], **options: Any) -> bool:
        """:meth:`ScoreLogger.log <fi_evals.ScoreLogger.log>`: queue and return at once."""
        return self.logger.log(eval_name, inputs, **options)

    async def score(self, eval_name: str, inputs: Mapping[str, Any], *,
                    on_span: bool = True, **options: Any) -> LoggedScore:
        """Log one score and await its verdict (completed, failed or rejected).

        With OpenTelemetry (the ``otel`` extra) and ``on_span``, the verdict is also put on the
        span current at the call, as ``eval.<name>.score`` and ``eval.<name>.passed``, when
        that span is still recording.

        Raises:
            RuntimeError: the score was dropped (queue full under a drop policy, or closed).
        """
        loop = asyncio.get_running_loop()
        span = _otel.current_span() if on_span else None
        answer: asyncio.Future[LoggedScore] = loop.create_future()
        given = options.pop("callback", None)

        def settle(scored: LoggedScore) -> None:
            if given is not None:
                given(scored)
            loop.call_soon_threadsafe(_resolve, answer, scored)

        if not self.logger.log(eval_name, inputs, callback=settle, **options):
            raise RuntimeError(f"the score for {eval_name!r} was dropped (queue full or the "
                               f"logger closed)")
        scored = await answer
        if scored.status == EvalStatus.COMPLETED:
            _otel.record_score(span, scored.eval_name, scored.output)
        return scored

    async def flush(self, timeout: float | None = None) -> bool:
        """:meth:`ScoreLogger.flush <fi_evals.ScoreLogger.flush>`, awaited."""
        return await _in_thread(self.logger.flush, timeout)

    async def aclose(self, timeout: float | None = None) -> bool:
        """:meth:`ScoreLogger.close <fi_evals.ScoreLogger.close>`, awaited."""
        if timeout is None:
            return await _in_thread(self.logger.close)
        return await _in_thread(self.logger.close, timeout)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def stats(self) -> Any:
        """The wrapped logger's counters."""
        return self.logger.stats()


def _resolve(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)
