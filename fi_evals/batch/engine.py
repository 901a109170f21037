"""The batch coordinator: one thread that reads, plans, sends, polls and emits, in order.

The caller's thread runs the loop; the Evaluator's pool runs the blocking calls (the task,
function metrics, ``new-eval/`` requests, status polls); an ``async def`` task or metric runs
on an event loop of the batch (:mod:`~fi_evals.batch.tasks`). A function metric
(:mod:`~fi_evals.batch.metrics`) is called per row once the row's task is done, at most
``max_workers`` at once, and its outcomes are journaled per chunk (``fn`` records).
Only this thread touches the batch's state, so there are
no locks beyond the throttle listener's. Each turn of the loop:

1. **fill**: read rows into the window (chunks of ``C``) while it has room, start their tasks;
2. **dispatch**: send queued requests and the next poll round while fewer than the adaptive
   limit are in flight (every submission is journaled before it is sent);
3. **wait** for a result, a tick (``BATCH_TICK_SECONDS``), the next poll or the deadline;
4. **collect** finished calls into outcomes (results, or typed errors on the items);
5. **expire** tasks and async evaluations past ``item_timeout``;
6. **emit** finished chunks from the head of the window, in input order, to the output
   file (or memory), the stats and the progress bar.

Memory is bounded by the window (``BATCH_WINDOW_CHUNKS_PER_WORKER`` chunks per worker in sync
mode, ``BATCH_ASYNC_WINDOW_ITEMS`` items in async mode), never by the input's size.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, wait
from itertools import islice
from typing import Any, cast

from fi_evals import _otel
from fi_evals._constants import BATCH_INTERRUPT_GRACE, BATCH_TICK_SECONDS, OUTPUT_PASSED
from fi_evals._context import ClientContext
from fi_evals._exceptions import APIError, ItemError, WaitTimeoutError
from fi_evals._polling import Poller, PollRound
from fi_evals.batch.collector import fewer_collections
from fi_evals.batch.concurrency import AdaptiveLimit
from fi_evals.batch.errors import (
    BatchInterruptedError,
    DeadlineExceededError,
    JournalMismatchError,
    MetricError,
    MetricResultError,
    MetricTimeoutError,
    TaskError,
    TaskTimeoutError,
    item_error,
)
from fi_evals.batch.journal import Journal, JournalEntry, body_hash, default_task_dump
from fi_evals.batch.metrics import row_view
from fi_evals.batch.output import BatchItem, ItemSink
from fi_evals.batch.plan import (
    ChunkState,
    InFlight,
    MetricCall,
    PollCall,
    Request,
    RequestCall,
    Settings,
    TaskCall,
    cut_requests,
    item_verdict,
)
from fi_evals.batch.progress import Progress
from fi_evals.batch.readers import BadRow
from fi_evals.batch.sizing import ChunkSizer
from fi_evals.batch.stats import BatchStats, TemplateStats
from fi_evals.batch.tasks import TaskRunner
from fi_evals.results import EvalResult

__all__ = ["Coordinator", "Settings"]

_COMPLETED = "completed"
_SCORE_TYPES = frozenset({"score", "numeric"})


class Coordinator:
    """Runs one batch; see the module docs. Use once: ``Coordinator(...).run(rows)``."""

    def __init__(self, settings: Settings, context: ClientContext, *,
                 journal: Journal | None, writer: ItemSink | None,
                 progress: Progress, cancel: threading.Event | None = None) -> None:
        self.s = settings
        # Set from another thread (AsyncEvaluator on asyncio cancellation): stop as on Ctrl-C.
        self.cancel = cancel
        self.transport = context.transport
        self.pool = context.executor
        self.journal = journal
        self.writer = writer
        self.progress = progress
        self.limit = AdaptiveLimit(settings.max_workers)
        # The Evaluator's poll schedule (Evaluator(poll=...)) spaces the status rounds.
        self.backoff = context.poll
        self.poller = Poller(self.transport, context.poll)
        self.stats = BatchStats({
            spec.label or spec.name: TemplateStats(spec.label or spec.name, spec.name,
                                                   tmpl.output_type, spec.score_threshold)
            for spec, tmpl in settings.specs})
        self._labels = list(self.stats.templates)
        # Per spec, what a plainly passing outcome is (see _emit_chunk).
        self._clean = [(tmpl.output_type in _SCORE_TYPES, spec.score_threshold)
                       for spec, tmpl in settings.specs]
        self.items: list[BatchItem] | None = None if writer is not None else []
        self.stopped: str | None = None
        self.input_error: str | None = None
        self._window: deque[ChunkState] = deque()
        self._rows: Iterator[Any] | None = None
        self._exhausted = False
        self._next_chunk = 0
        self._next_start = 0  # input index of the next chunk's first row
        self.sizer = (ChunkSizer(settings.chunk_size, settings.max_batch_size,
                                 settings.max_workers, context.transport.read_timeout)
                      if settings.adaptive and not settings.is_async else None)
        self._send: deque[Request] = deque()
        self._task_queue: deque[tuple[ChunkState, int]] = deque()
        # Plain tasks run on the pool; async ones on one event loop of this batch.
        self._tasks = (TaskRunner(settings.task, self.pool) if settings.task is not None
                       else None)
        # Function metrics run like tasks: a plain function on the pool, async on a loop.
        self._metrics = {e: TaskRunner(spec.function.fn, self.pool)
                         for e, (spec, _) in enumerate(settings.specs)
                         if spec.function is not None}
        self._metric_queue: deque[tuple[ChunkState, int, int]] = deque()
        self._metric_open: dict[tuple[int, int], int] = {}
        self._metric_chunks: dict[tuple[int, int], ChunkState] = {}
        self._metric_hash: dict[tuple[int, int], str] = {}
        self._running_metrics = 0
        self._futures: dict[Future[Any], InFlight] = {}
        self._in_flight = 0
        self._running_tasks = 0
        self._waiting: OrderedDict[str, tuple[Request, int]] = OrderedDict()
        self._poll_round: list[Future[Any]] = []
        self._poll_no = 0
        self._poll_hint: float | None = None
        self._poll_progress = False
        self._poll_unfinished = False  # some id of the current round was not finished
        self._next_poll = 0.0
        self._started = time.monotonic()

    def __repr__(self) -> str:
        return (f"<Coordinator {len(self._window)} chunks in window, {self._in_flight} in "
                f"flight, {len(self._waiting)} waiting, limit {self.limit.limit}>")

    # ------------------------------------------------------------------ the loop

    def run(self, rows: Iterator[Mapping[str, Any] | BadRow]) -> None:
        """Process every row (or stop at the deadline or on Ctrl-C); fills ``self.stats``."""
        self._rows = rows
        with fewer_collections():  # the collector runs ~30x less often (see collector.py)
            self._run()

    def _run(self) -> None:
        before = self.transport.stats()
        self.transport.add_throttle_listener(self.limit.on_throttle)
        try:
            self._loop()
            if self.input_error is not None and self.stopped is None:
                self.stopped = "input_error"
        except KeyboardInterrupt:
            self._stop("interrupted", BatchInterruptedError("interrupted (Ctrl-C) before this "
                                                            "item finished"),
                       grace=BATCH_INTERRUPT_GRACE)
        finally:
            if self._tasks is not None:
                self._tasks.close()  # stops the async tasks' event loop, if one was started
            for runner in self._metrics.values():
                runner.close()
            self.transport.remove_throttle_listener(self.limit.on_throttle)
            after = self.transport.stats()
            self.stats.requests = after.requests - before.requests
            self.stats.retries = after.retries - before.retries
            self.stats.throttled = after.throttled - before.throttled
            self.stats.concurrency = self.limit.history
            self.stats.wall_time = time.monotonic() - self._started

    def _loop(self) -> None:
        while True:
            if self.cancel is not None and self.cancel.is_set():
                self._stop("cancelled", BatchInterruptedError(
                    "the batch was cancelled before this item finished"),
                    grace=BATCH_INTERRUPT_GRACE)
                return
            if self.s.deadline is not None and time.monotonic() >= self.s.deadline:
                self._stop("deadline", DeadlineExceededError(
                    "the batch deadline passed before this item finished"))
                return
            self._fill()
            self._dispatch()
            if self._exhausted and not self._window:
                return
            done = self._wait()
            self._collect(done)
            self._expire()
            self._emit()
            self.progress.refresh(self.limit.limit)

    # ------------------------------------------------------------------ 1. fill

    def _fill(self) -> None:
        # Read only while the queues are short: rows are read as they can be sent, so a slow
        # generator does not hold back the first requests, and the backlog stays small.
        backlog = 2 * self.s.max_workers
        while (not self._exhausted and len(self._window) < self.s.window_chunks
               and len(self._send) + len(self._task_queue) < backlog):
            assert self._rows is not None
            rows: list[Any] = []
            size = self.s.chunk_size
            if self.sizer is not None:
                left = None if self.s.n_items is None else self.s.n_items - self._next_start
                size = self.sizer.next_size(left if left is None or left > 0 else None)
            try:
                rows.extend(islice(self._rows, size))
            except Exception as exc:  # noqa: BLE001 - the caller's iterator broke: finish what was read
                self.input_error = f"{type(exc).__name__}: {exc}"
                self._exhausted = True
            if not rows:
                self._exhausted = True
                return
            chunk = ChunkState(self._next_chunk, self._next_start, rows, len(self.s.specs))
            self._next_chunk += 1
            self._next_start += len(rows)
            self._window.append(chunk)
            self._prepare(chunk)

    def _prepare(self, chunk: ChunkState) -> None:
        for pos, row in enumerate(chunk.rows):
            if isinstance(row, BadRow):
                error = ItemError("InvalidInputError", row.reason)
                for e in range(len(self.s.specs)):
                    self._settle_error(chunk, pos, e, error)
        if self.s.task is None:
            self._plan(chunk)
            return
        journaled = self.journal.task_outputs(chunk.number) if self.journal else None
        chunk.task_outputs = [None] * len(chunk.rows)
        if journaled is not None and len(journaled) == len(chunk.rows):
            self._restore_tasks(chunk, journaled)
            self._plan(chunk)
            return
        for pos, row in enumerate(chunk.rows):
            if not isinstance(row, BadRow):
                chunk.tasks_pending += 1
                self._task_queue.append((chunk, pos))
        if not chunk.tasks_pending:
            self._tasks_done(chunk)

    def _restore_tasks(self, chunk: ChunkState, journaled: list[Any]) -> None:
        assert chunk.task_outputs is not None
        for pos, entry in enumerate(journaled):
            if isinstance(entry, dict) and "__task_error__" in entry:
                self._task_failed(chunk, pos, ItemError(**entry["__task_error__"]))
            else:
                chunk.task_outputs[pos] = entry

    def _task_failed(self, chunk: ChunkState, pos: int, error: ItemError) -> None:
        chunk.task_errors[pos] = error
        for e in range(len(self.s.specs)):
            self._settle_error(chunk, pos, e, error)

    def _tasks_done(self, chunk: ChunkState) -> None:
        if self.journal is not None and chunk.task_outputs is not None:
            record = [default_task_dump(o) for o in chunk.task_outputs]
            for pos, error in chunk.task_errors.items():
                record[pos] = {"__task_error__": {"type": error.type, "message": error.message,
                                                  "retryable": error.retryable}}
            self.journal.record_tasks(chunk.number, record)
        self._plan(chunk)

    def _plan(self, chunk: ChunkState) -> None:
        requests, errors = cut_requests(chunk, self.s.specs, self.s.mappings,
                                        is_async=self.s.is_async,
                                        max_batch_size=self.s.max_batch_size)
        for pos, e, error in errors:
            self._settle_error(chunk, pos, e, error)
        for e in self._metrics:
            self._plan_metric(chunk, e)
        for request in requests:
            entry = (self.journal.lookup(chunk.number, request.spec, request.part)
                     if self.journal else None)
            if entry is None:
                self._send.append(request)
            else:
                self._resume(request, entry)

    def _plan_metric(self, chunk: ChunkState, e: int) -> None:
        """Queue a function metric on the chunk's open rows, or take its journaled outcomes
        when a previous run finished them on the same rows."""
        positions = [pos for pos in range(len(chunk.rows))
                     if chunk.results[pos][e] is None and pos not in chunk.task_errors]
        if not positions:
            return
        key = (chunk.number, e)
        if self.journal is not None:  # the rows it reads, hashed: a changed row runs again
            views = [default_task_dump(self._metric_row(chunk, pos)) for pos in positions]
            self._metric_hash[key] = body_hash({"positions": positions, "rows": views})
            recorded = self.journal.metric_outputs(*key)
            if recorded is not None and recorded[0] == self._metric_hash[key]:
                positions = self._restore_metric(chunk, e, positions, recorded[1])
                if not positions:
                    return
        self._metric_open[key] = len(positions)
        self._metric_chunks[key] = chunk
        self._metric_queue.extend((chunk, pos, e) for pos in positions)

    def _restore_metric(self, chunk: ChunkState, e: int, positions: list[int],
                        outcomes: list[Any]) -> list[int]:
        """Settle the journaled outcomes; returns the positions to run again (retryable
        errors, such as a timeout)."""
        name = self.s.specs[e][0].name
        output_type = self.s.specs[e][1].output_type
        again = []
        for pos in positions:
            entry = outcomes[pos] if pos < len(outcomes) else None
            if isinstance(entry, list) and len(entry) == 3:
                self._settle(chunk, pos, e, EvalResult(
                    name=name, output=entry[0], reason=entry[1], runtime=entry[2],
                    output_type=output_type))
                self.stats.resumed += 1
            elif isinstance(entry, dict) and not entry.get("retryable"):
                self._settle_error(chunk, pos, e, ItemError(
                    str(entry.get("type")), str(entry.get("message")), None, False))
                self.stats.resumed += 1
            else:
                again.append(pos)
        return again

    def _metric_row(self, chunk: ChunkState, pos: int) -> dict[str, Any]:
        task_output = chunk.task_outputs[pos] if chunk.task_outputs else None
        return row_view(chunk.row(pos), task_output)

    def _resume(self, request: Request, entry: JournalEntry) -> None:
        assert self.journal is not None
        if entry.hash != request.hash or entry.size != len(request.positions):
            error = item_error(JournalMismatchError(
                f"the journal's submission for rows of chunk {request.chunk.number} was made "
                f"with other inputs; not sent again (use a new journal)"))
            for pos in request.positions:
                self._settle_error(request.chunk, pos, request.spec, error)
            return
        request.key, request.journaled = entry.key, True
        ids = self.journal.eval_ids(entry)
        if ids is not None and len(ids) == len(request.positions):
            request.eval_ids = ids
            request.sent_at = time.monotonic()
            for i, eval_id in enumerate(ids):
                self._waiting[eval_id] = (request, request.positions[i])
            self.stats.resumed += len(ids)
            self.progress.submitted += len(ids)
        else:
            self._send.append(request)  # sent again with the same idempotency key

    # ------------------------------------------------------------------ 2. dispatch

    def _dispatch(self) -> None:
        while self._task_queue and self._running_tasks < self.s.max_workers:
            chunk, pos = self._task_queue.popleft()
            started = time.monotonic()
            assert self._tasks is not None
            future = self._tasks.submit(chunk.rows[pos])  # type: ignore[arg-type]
            self._futures[future] = TaskCall(chunk, pos, started)
            self._running_tasks += 1
        while self._metric_queue and self._running_metrics < self.s.max_workers:
            chunk, pos, e = self._metric_queue.popleft()
            if chunk.results[pos][e] is not None:
                continue  # settled meanwhile (the batch stopped)
            future = self._metrics[e].submit(self._metric_row(chunk, pos))
            self._futures[future] = MetricCall(chunk, pos, e, time.monotonic())
            self._running_metrics += 1
        while self._send and self._in_flight < self.limit.limit:
            request = self._send.popleft()
            if self.journal is not None and not request.journaled:
                # Before the request leaves: a kill from here on can only lead to a resend
                # with the same key, which the server answers by replaying.
                self.journal.record_submit(request.chunk.number, request.spec, request.part,
                                           JournalEntry(request.key, len(request.positions),
                                                        request.hash, request.is_async))
                request.journaled = True
            request.sent_at = time.monotonic()
            future = self.pool.submit(_otel.in_context(self._post), request)
            request.future = future
            self._futures[future] = RequestCall(request)
            self._in_flight += 1
            self.progress.submitted += len(request.positions)
        self._start_poll_round()

    def _post(self, request: Request) -> Any:
        # Sync answers become results on the pool's thread (one EvalResult per evaluation);
        # of an async answer, the eval ids, and the results of items the server finished at
        # submit (cheap templates: Transport.new_eval_submit).
        send = self.transport.new_eval_submit if request.is_async \
            else self.transport.new_eval_results
        return send(request.body, idempotency_key=request.key, deadline=self._call_deadline())

    def _call_deadline(self) -> float | None:
        ends = [d for d in (self.s.deadline, None if self.s.item_timeout is None
                            else time.monotonic() + self.s.item_timeout) if d is not None]
        return min(ends) if ends else None

    def _poll_may_start(self) -> bool:
        """Whether a poll round would start once its time comes (all but the clock)."""
        if not self._waiting or self._poll_round:
            return False
        if self._send or self._in_flight >= self.limit.limit:
            return False  # submissions first: everything in the window is sent before polling
        return not self.s.is_async or self._exhausted or len(self._window) >= self.s.window_chunks

    def _start_poll_round(self) -> None:
        if time.monotonic() < self._next_poll or not self._poll_may_start():
            return
        per_request = self.poller.status_batch_size()
        groups = max(1, self.limit.limit - self._in_flight)
        ids = list(islice(self._waiting, groups * per_request))
        names = {i: self.s.specs[self._waiting[i][0].spec][1].name for i in ids}
        for start in range(0, len(ids), per_request):
            group = ids[start:start + per_request]
            future = self.pool.submit(_otel.in_context(self.poller.fetch), group,
                                      deadline=self._call_deadline(), names=names)
            self._futures[future] = PollCall(group)
            self._poll_round.append(future)
            self._in_flight += 1
        self._poll_progress = False
        self._poll_unfinished = False
        self._poll_hint = None

    # ------------------------------------------------------------------ 3. wait

    def _wait(self) -> set[Future[Any]]:
        timeout = BATCH_TICK_SECONDS
        now = time.monotonic()
        # Wake for a poll only when one could start: a due poll held back by submissions waits
        # for a request to finish (a timeout of 0 here spun the loop ~8,000 times a second).
        if self._poll_may_start():
            timeout = min(timeout, max(0.0, self._next_poll - now))
        if self.s.deadline is not None:
            timeout = min(timeout, max(0.0, self.s.deadline - now))
        if not self._futures:
            if timeout > 0 and not (self._send or self._task_queue or self._metric_queue):
                time.sleep(timeout)
            return set()
        done, _ = wait(list(self._futures), timeout=timeout, return_when=FIRST_COMPLETED)
        return done

    # ------------------------------------------------------------------ 4. collect

    def _collect(self, done: set[Future[Any]]) -> None:
        for future in done:
            call = self._futures.pop(future, None)
            if isinstance(call, TaskCall):
                self._running_tasks -= 1
                self._on_task(future, call.chunk, call.pos)
            elif isinstance(call, MetricCall):
                self._running_metrics -= 1
                self._on_metric(future, call)
            elif isinstance(call, RequestCall):
                self._in_flight -= 1
                self._on_request(future, call.request)
            elif isinstance(call, PollCall):
                self._in_flight -= 1
                self._on_poll(future, call.ids)

    def _on_task(self, future: Future[Any], chunk: ChunkState, pos: int) -> None:
        try:
            assert chunk.task_outputs is not None
            chunk.task_outputs[pos] = future.result()
        except Exception as exc:  # noqa: BLE001 - the task is the caller's code: anything may come out
            self._task_failed(chunk, pos, item_error(TaskError(f"{type(exc).__name__}: {exc}")))
        chunk.tasks_pending -= 1
        if chunk.tasks_pending == 0:
            self._tasks_done(chunk)

    def _on_metric(self, future: Future[Any], call: MetricCall) -> None:
        spec = self.s.specs[call.spec][0]
        assert spec.function is not None
        runtime_ms = (time.monotonic() - call.started) * 1000.0
        try:
            result = spec.function.result(future.result(), runtime_ms)
        except MetricResultError as exc:
            self._settle_error(call.chunk, call.pos, call.spec, item_error(exc))
        except Exception as exc:  # noqa: BLE001 - the metric is the caller's code: anything may come out
            self._settle_error(call.chunk, call.pos, call.spec, item_error(
                MetricError(f"{type(exc).__name__}: {exc}")))
        else:
            self._settle(call.chunk, call.pos, call.spec, result)
        self._metric_done(call.chunk, call.spec)

    def _metric_done(self, chunk: ChunkState, e: int) -> None:
        """One call fewer open; once the chunk's are all in, journal its outcomes."""
        key = (chunk.number, e)
        self._metric_open[key] -= 1
        if self._metric_open[key] > 0:
            return
        del self._metric_open[key]
        del self._metric_chunks[key]
        self._journal_metric(chunk, e)

    def _journal_metric(self, chunk: ChunkState, e: int) -> None:
        """Record a function metric's outcomes on a chunk (null for rows without one yet: a
        batch that stops records what its metrics finished, and a rerun calls only the rest)."""
        rows_hash = self._metric_hash.pop((chunk.number, e), None)
        if self.journal is None or rows_hash is None:
            return
        outcomes: list[Any] = []
        for pos in range(len(chunk.rows)):
            r = chunk.results[pos][e]
            if r is None or pos in chunk.task_errors:
                outcomes.append(None)
            elif r.ok:
                outcomes.append([r.output, r.reason, r.runtime])
            else:
                error = r.error or ItemError("MetricError", r.reason or "no result")
                outcomes.append({"type": error.type, "message": error.message,
                                 "retryable": error.retryable})
        if any(o is not None for o in outcomes):
            self.journal.record_metric(chunk.number, e, rows_hash, outcomes)

    def _on_request(self, future: Future[Any], request: Request) -> None:
        chunk, e = request.chunk, request.spec
        try:
            answer = future.result()
            items = answer.value
            if len(items) != len(request.positions):
                raise APIError(f"the server answered {len(items)} evaluations for "
                               f"{len(request.positions)} items", status_code=200)
        except Exception as exc:  # noqa: BLE001 - recorded on the items: nothing aborts the batch
            error = item_error(exc)
            for pos in request.positions:
                self._settle_error(chunk, pos, e, error)
            return
        self.limit.on_success()
        ids: list[Any]
        if request.is_async:  # eval ids, and the results a server had at submit (Prefer)
            ids = [item if item is None or item.__class__ is str else item.eval_id
                   for item in items]
        else:
            ids = [item.eval_id for item in items]
        if self.journal is not None and all(ids):
            self.journal.record_ids(request.key, ids)
        request.eval_ids = ids
        now = time.monotonic()
        if self.sizer is not None:
            self.sizer.observe(len(request.positions), now - request.sent_at)
        if not request.is_async:
            # The results (a sync item that could not run is "failed": EvalFailedError).
            self._settle_request(chunk, e, request.positions, items, now - request.sent_at)
            return
        done_at: list[int] = []
        done: list[EvalResult] = []
        for pos, eval_id, item in zip(request.positions, ids, items):
            if item is not None and item.__class__ is not str:
                done_at.append(pos)  # finished at submit: settled as a sync answer's are
                done.append(item)
            elif eval_id:
                self._waiting[eval_id] = (request, pos)
            else:
                self._settle_error(chunk, pos, e, ItemError(
                    "APIError", "the async answer carried no eval_id"))
        if done:
            self._settle_request(chunk, e, tuple(done_at), done, now - request.sent_at)

    def _on_poll(self, future: Future[Any], group: list[str]) -> None:
        self._poll_round.remove(future)
        now = time.monotonic()
        try:
            round_: PollRound = future.result()
        except Exception as exc:  # noqa: BLE001 - not retryable and concerns every id (e.g. bad keys)
            error = item_error(exc)
            for eval_id in group:
                self._finish_waiting(eval_id, None, error, now)
            round_ = PollRound()
        if round_.retry_after is not None:
            self._poll_hint = max(self._poll_hint or 0.0, round_.retry_after)
        # The finished results, settled request by request as a sync answer's are.
        finished = 0
        by_request: dict[int, tuple[Request, list[int], list[EvalResult]]] = {}
        waiting = self._waiting
        for eval_id, result in round_.results.items():
            if not result.finished:
                continue
            finished += 1
            entry = waiting.pop(eval_id, None)
            if entry is None:
                continue
            request, pos = entry
            slot = by_request.get(id(request))
            if slot is None:
                slot = by_request[id(request)] = (request, [], [])
            slot[1].append(pos)
            slot[2].append(result)
        if by_request:
            self._poll_progress = True
        for request, positions, results in by_request.values():
            self._settle_request(request.chunk, request.spec, tuple(positions), results,
                                 now - request.sent_at)
        if finished < len(group):
            self._poll_unfinished = True
        if not self._poll_round:
            self._poll_no = 0 if self._poll_progress else self._poll_no + 1
            if self._poll_progress and not self._poll_unfinished:
                # Every id asked was finished (a server that evaluates cheap work at submit):
                # the ids submitted since are asked at once, not after a poll delay. A round
                # with any unfinished id waits as before, so no id is asked again sooner.
                delay = 0.0
            else:
                delay = self.backoff.delay(self._poll_no, retry_after=self._poll_hint) or 0.0
            self._next_poll = now + delay

    def _finish_waiting(self, eval_id: str, result: EvalResult | None,
                        error: ItemError | None, now: float) -> None:
        entry = self._waiting.pop(eval_id, None)
        if entry is None:
            return
        request, pos = entry
        self._poll_progress = True
        if result is not None:
            self._settle(request.chunk, pos, request.spec, result, now - request.sent_at)
        else:
            assert error is not None
            self._settle_error(request.chunk, pos, request.spec, error, eval_id)

    # ------------------------------------------------------------------ 5. expire

    def _expire(self) -> None:
        if self.s.item_timeout is None:
            return
        now = time.monotonic()
        limit = self.s.item_timeout
        for future, call in list(self._futures.items()):
            if isinstance(call, TaskCall) and now - call.started > limit:
                # A coroutine is cancelled; a thread cannot be stopped (its answer is ignored).
                del self._futures[future]
                future.cancel()
                self._running_tasks -= 1
                chunk, pos = call.chunk, call.pos
                self._task_failed(chunk, pos, item_error(TaskTimeoutError(
                    f"the task did not return within item_timeout={limit:g}s")))
                chunk.tasks_pending -= 1
                if chunk.tasks_pending == 0:
                    self._tasks_done(chunk)
            elif isinstance(call, MetricCall) and now - call.started > limit:
                del self._futures[future]
                future.cancel()
                self._running_metrics -= 1
                self._settle_error(call.chunk, call.pos, call.spec, item_error(
                    MetricTimeoutError(f"the metric did not return within "
                                       f"item_timeout={limit:g}s")))
                self._metric_done(call.chunk, call.spec)
        # Async evaluations wait in submission order: only the head can be overdue.
        while self._waiting:
            eval_id, (request, _) = next(iter(self._waiting.items()))
            if now - request.sent_at <= limit:
                break
            error = item_error(WaitTimeoutError([eval_id], timeout=limit))
            self._finish_waiting(eval_id, None, error, now)

    # ------------------------------------------------------------------ 6. emit

    def _settle(self, chunk: ChunkState, pos: int, e: int, result: EvalResult,
                latency: float | None = None) -> None:
        if not chunk.settle(pos, e, result):
            return
        stats = self.stats.templates[self._labels[e]]
        if result.ok:
            stats.record_result(result.output, result.reason)
            self.progress.completed += 1
        else:
            stats.record_error(result.error.type if result.error else result.status)
            self.progress.failed += 1
        if latency is not None:
            self.stats.latency.add(latency)
        self.progress.advance()

    def _settle_request(self, chunk: ChunkState, e: int, positions: tuple[int, ...],
                        results: list[EvalResult], latency: float) -> None:
        """:meth:`_settle` for the outcomes of one request (a sync answer, or the finished
        async ones of a poll round), counted in one go."""
        fresh = chunk.settle_many(positions, e, results)
        scored = self.stats.templates[self._labels[e]].record_outcomes(fresh)
        self.progress.completed += scored
        self.progress.failed += len(fresh) - scored
        self.stats.latency.add_many(latency, len(fresh))
        self.progress.advance(len(fresh))

    def _settle_error(self, chunk: ChunkState, pos: int, e: int, error: ItemError,
                      eval_id: str | None = None) -> None:
        name = self.s.specs[e][0].name
        self._settle(chunk, pos, e, EvalResult.from_error(name, error, eval_id=eval_id))

    def _emit(self) -> None:
        while self._window and self._window[0].open == 0 and not self._window[0].tasks_pending:
            self._emit_chunk(self._window.popleft())

    def _emit_chunk(self, chunk: ChunkState) -> None:
        """Emit a chunk's items, in order, once it has no open outcome (every result set).

        A row whose outcomes all plainly pass (a "Passed" verdict, a number at or above the
        threshold) is ``passed`` and adds nothing to the failure sample, so it skips both
        checks; any other row gets them (``item_verdict``, ``BatchStats.note_item``).
        """
        labels, specs, clean = self._labels, self.s.specs, self._clean
        stats = self.stats
        put: Callable[[BatchItem], None]
        if self.writer is not None:
            put = self.writer.write
        else:
            assert self.items is not None
            put = self.items.append
        task_outputs = chunk.task_outputs
        index = chunk.start
        outcomes = cast("list[list[EvalResult]]", chunk.results)  # all set by now
        for pos, (row, done) in enumerate(zip(chunk.rows, outcomes)):
            results = dict(zip(labels, done))
            item = {} if isinstance(row, BadRow) else dict(row)
            task_output = task_outputs[pos] if task_outputs else None
            for result, (is_score, threshold) in zip(done, clean):
                if result.status != _COMPLETED:
                    break
                output = result.output
                if is_score:
                    kind = output.__class__
                    if (kind is not float and kind is not int) or not output >= threshold:
                        break
                elif output.__class__ is not str or output != OUTPUT_PASSED:
                    break
            else:  # every outcome plainly passes
                stats.items += 1  # note_item, without the failure sample's no-op look
                put(BatchItem(index + pos, item, results, task_output, True))
                continue
            stats.note_item(index + pos, results)
            put(BatchItem(index + pos, item, results, task_output, item_verdict(specs, done)))

    # ------------------------------------------------------------------ stopping early

    def _stop(self, reason: str, exc: BaseException, grace: float = 0.0) -> None:
        """Stop reading and sending; settle what is unfinished with ``exc``; emit everything."""
        self.stopped = reason
        self._exhausted = True
        self._send.clear()
        self._task_queue.clear()
        self._metric_queue.clear()
        for (_, e), chunk in list(self._metric_chunks.items()):
            self._journal_metric(chunk, e)  # what finished, before the rest gets the error
        self._metric_chunks.clear()
        for future in list(self._futures):
            if future.cancel():
                self._futures.pop(future)
        if grace > 0:
            self._drain(time.monotonic() + grace)
        error = item_error(exc)
        for eval_id, (request, pos) in list(self._waiting.items()):
            # Submitted but unfinished: the error keeps the id, to be read later.
            self._settle_error(request.chunk, pos, request.spec, error, eval_id)
        for chunk in self._window:
            for pos in range(len(chunk.rows)):
                for e in range(len(self.s.specs)):
                    if chunk.results[pos][e] is None:
                        self._settle_error(chunk, pos, e, error)
            chunk.tasks_pending = 0
        self._waiting.clear()
        self._emit()

    def _drain(self, until: float) -> None:
        """Ctrl-C: give requests already on the wire a moment (so their ids get journaled),
        then read once what the submitted evaluations have become (a fuller partial result)."""
        try:
            polled = False
            while time.monotonic() < until:
                pending = [f for f, call in self._futures.items()
                           if not isinstance(call, (TaskCall, MetricCall))]
                if not pending:
                    if polled or not self._waiting:
                        return
                    polled, self._next_poll = True, 0.0
                    self._start_poll_round()
                    continue
                done, _ = wait(pending, timeout=until - time.monotonic(),
                               return_when=FIRST_COMPLETED)
                self._collect(done)
        except KeyboardInterrupt:  # a second Ctrl-C: stop waiting at once
            return

