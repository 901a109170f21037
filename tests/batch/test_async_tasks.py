"""``async def`` tasks in ``evaluate_batch``: awaited on one event loop the batch owns.

Unit tests of :class:`~fi_evals.batch.tasks.TaskRunner` first (no server), then batches against
the shared live server: concurrency, outputs through the key mapping, failures, item_timeout,
the loop's shutdown (also on Ctrl-C) and journal resume.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from fi_evals import Evaluator
from fi_evals.batch.tasks import TaskRunner, is_async_callable
from fi_evals.server.runner import RunningServer

LOOP_THREAD = "fi-evals-batch-tasks"


def loop_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == LOOP_THREAD and t.is_alive()]


def rows(n: int) -> list[dict[str, Any]]:
    return [{"id": i, "reference": f"Order {i} ships today."} for i in range(n)]


async def answer(row: Mapping[str, Any]) -> str:
    await asyncio.sleep(0.01)
    return f"Order {row['id']} ships today."


class AsyncModel:
    async def __call__(self, row: Mapping[str, Any]) -> str:
        return await answer(row)


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(2) as executor:
        yield executor


# ---------------------------------------------------------------------- units


def test_what_counts_as_an_async_task() -> None:
    async def with_prefix(prefix: str, row: Mapping[str, Any]) -> str:
        return prefix

    assert is_async_callable(answer)
    assert is_async_callable(AsyncModel())
    assert is_async_callable(functools.partial(with_prefix, "x"))
    assert is_async_callable(functools.partial(AsyncModel()))
    assert is_async_callable(AsyncModel().__call__)
    assert not is_async_callable(lambda row: row)
    assert not is_async_callable(dict)
    assert not is_async_callable(AsyncModel)  # calling the class makes an instance
    assert not is_async_callable(len)


def test_async_tasks_share_one_loop_which_close_stops(pool: ThreadPoolExecutor) -> None:
    loops: set[int] = set()

    async def task(row: Mapping[str, Any]) -> int:
        loops.add(id(asyncio.get_running_loop()))
        await asyncio.sleep(0.05)
        return int(row["id"]) * 2

    runner = TaskRunner(task, pool)
    assert runner.is_async and not loop_threads()  # started lazily
    futures = [runner.submit({"id": i}) for i in range(20)]
    assert [f.result(5) for f in futures] == [i * 2 for i in range(20)]
    assert len(loops) == 1 and len(loop_threads()) == 1
    runner.close()
    assert not loop_threads()
    runner.close()  # idempotent
    with pytest.raises(RuntimeError):
        runner.submit({"id": 0})


def test_cancelling_the_future_cancels_the_coroutine(pool: ThreadPoolExecutor) -> None:
    cancelled = threading.Event()

    async def task(row: Mapping[str, Any]) -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    runner = TaskRunner(task, pool)
    future = runner.submit({})
    time.sleep(0.1)
    assert future.cancel()
    assert cancelled.wait(5)
    runner.close()


def test_close_cancels_what_still_runs(pool: ThreadPoolExecutor) -> None:
    cancelled = threading.Event()

    async def task(row: Mapping[str, Any]) -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    runner = TaskRunner(task, pool)
    runner.submit({})
    time.sleep(0.1)
    started = time.monotonic()
    runner.close()
    assert cancelled.is_set() and time.monotonic() - started < 5
    assert not loop_threads()


def test_a_plain_task_returning_a_coroutine_has_it_awaited(pool: ThreadPoolExecutor) -> None:
    runner = TaskRunner(lambda row: answer(row), pool)
    assert not runner.is_async
    assert runner.submit({"id": 7}).result(5) == "Order 7 ships today."
    assert runner.submit({"id": 8}).result(5) == "Order 8 ships today."
    assert len(loop_threads()) == 1
    runner.close()
    assert not loop_threads()


def test_a_plain_task_never_starts_a_loop(pool: ThreadPoolExecutor) -> None:
    def boom(row: Mapping[str, Any]) -> None:
        raise ValueError("no")

    runner = TaskRunner(lambda row: row["id"] + 1, pool)
    assert runner.submit({"id": 1}).result(5) == 2
    with pytest.raises(ValueError, match="no"):
        TaskRunner(boom, pool).submit({}).result(5)
    assert not loop_threads()
    runner.close()


# ---------------------------------------------------------------------- live batches


def test_async_tasks_run_concurrently_and_feed_the_key_mapping(
        live_server: RunningServer, client_factory: Callable[..., Evaluator]) -> None:
    running = peak = 0
    loops: set[int] = set()

    async def task(row: Mapping[str, Any]) -> str:
        nonlocal running, peak
        loops.add(id(asyncio.get_running_loop()))
        running += 1  # one loop thread: no lock needed
        peak = max(peak, running)
        await asyncio.sleep(0.3)
        running -= 1
        return f"Order {row['id']} ships today."

    ev = client_factory(live_server, max_workers=8)
    started = time.monotonic()
    result = ev.evaluate_batch(rows(50), ["fuzzy_match"], task=task, max_workers=8,
                               key_mapping={"expected": "reference"}, progress=False)
    elapsed = time.monotonic() - started
    assert elapsed < 50 * 0.3 / 2  # serially it would take 15 s; 8 at a time about 2 s
    assert 1 < peak <= 8 and len(loops) == 1
    items = result.items
    assert [i.task_output for i in items] == [f"Order {i} ships today." for i in range(50)]
    assert all(i.results["fuzzy_match"].output == 1.0 for i in items)  # output = task's
    assert not loop_threads()


def test_an_async_task_that_raises_fails_its_row_only(evaluator: Evaluator) -> None:
    async def task(row: Mapping[str, Any]) -> dict[str, str]:
        await asyncio.sleep(0)
        if row["id"] == 3:
            raise RuntimeError("model crashed")
        return {"answer": f"Order {row['id']} ships today."}

    result = evaluator.evaluate_batch(
        rows(6), ["fuzzy_match", "is_json"], task=task, progress=False,
        key_mapping={"output": "task.answer", "expected": "reference", "text": "reference"})
    items = result.items
    assert {r.error.type for r in items[3].results.values() if r.error} == {"TaskError"}
    assert "RuntimeError: model crashed" in items[3].results["fuzzy_match"].error.message
    others = [i for i in items if i.index != 3]
    assert all(i.results["fuzzy_match"].output == 1.0 for i in others)
    assert all(i.results["is_json"].ok for i in others)  # a "Failed" verdict, not an error


def test_an_async_task_past_item_timeout_is_cancelled(evaluator: Evaluator) -> None:
    cancelled: list[int] = []

    async def task(row: Mapping[str, Any]) -> str:
        try:
            await asyncio.sleep(30 if row["id"] == 2 else 0.01)
        except asyncio.CancelledError:
            cancelled.append(row["id"])
            raise
        return f"Order {row['id']} ships today."

    started = time.monotonic()
    result = evaluator.evaluate_batch(rows(5), ["fuzzy_match"], task=task, item_timeout=0.5,
                                      key_mapping={"expected": "reference"}, progress=False)
    assert time.monotonic() - started < 10
    items = result.items
    assert items[2].results["fuzzy_match"].error.type == "TaskTimeoutError"
    assert [i.results["fuzzy_match"].output for i in items if i.index != 2] == [1.0] * 4
    deadline = time.monotonic() + 5
    while not cancelled and time.monotonic() < deadline:
        time.sleep(0.01)
    assert cancelled == [2]
    assert not loop_threads()


def test_callable_objects_partials_and_lambdas_returning_coroutines(
        evaluator: Evaluator) -> None:
    async def prefixed(prefix: str, row: Mapping[str, Any]) -> str:
        return prefix + await answer(row)

    for task, prefix in [(AsyncModel(), ""), (functools.partial(prefixed, "> "), "> "),
                         (lambda row: answer(row), "")]:
        result = evaluator.evaluate_batch(rows(4), ["fuzzy_match"], task=task,
                                          key_mapping={"expected": "reference"},
                                          progress=False)
        assert [i.task_output for i in result.items] == [
            f"{prefix}Order {i} ships today." for i in range(4)]
    assert not loop_threads()


def test_ctrl_c_closes_the_loop_and_settles_every_row(evaluator: Evaluator) -> None:
    async def task(row: Mapping[str, Any]) -> str:
        await asyncio.sleep(30)
        return "never"

    def interrupted() -> Iterator[dict[str, Any]]:
        yield from rows(3)
        time.sleep(0.2)  # the three tasks are running on the loop
        raise KeyboardInterrupt

    started = time.monotonic()
    result = evaluator.evaluate_batch(interrupted(), ["fuzzy_match"], task=task, chunk_size=3,
                                      key_mapping={"expected": "reference"}, progress=False)
    assert time.monotonic() - started < 10
    assert result.stopped == "interrupted"
    assert not loop_threads()


def test_journal_resume_restores_async_task_outputs(evaluator: Evaluator,
                                                    tmp_path: Path) -> None:
    calls: list[int] = []

    async def task(row: Mapping[str, Any]) -> str:
        calls.append(row["id"])
        await asyncio.sleep(0.01)
        if row["id"] == 1:
            raise ValueError("flaky model")
        return f"Order {row['id']} ships today."

    journal = tmp_path / "run.journal"
    options: dict[str, Any] = {"task": task, "journal": journal, "chunk_size": 2,
                               "key_mapping": {"expected": "reference"}, "progress": False}
    first = evaluator.evaluate_batch(rows(6), ["fuzzy_match"], **options)
    assert sorted(calls) == list(range(6))
    calls.clear()
    second = evaluator.evaluate_batch(rows(6), ["fuzzy_match"], **options)
    assert calls == []  # every task output came from the journal
    assert [i.task_output for i in second.items] == [i.task_output for i in first.items]
    assert second.items[1].results["fuzzy_match"].error.type == "TaskError"
    assert "flaky model" in second.items[1].results["fuzzy_match"].error.message
    assert [i.results["fuzzy_match"].eval_id for i in second.items] == [
        i.results["fuzzy_match"].eval_id for i in first.items]  # nothing evaluated twice
