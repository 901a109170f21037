"""AsyncEvaluator and AsyncScoreLogger (fi_evals/aio.py) against real loopback servers.

Each test drives its own loop with ``asyncio.run`` and turns the blocking API's in-loop
RuntimeWarning into an error: the async API must never call the blocking one on the loop.
"""

from __future__ import annotations

import asyncio
import gc
import json
import time
import warnings
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest
from _helpers import ServeProcess

from benchmarks.bench_asyncio import beside_ticker, frozen
from fi_evals import Evaluator, UnknownTemplateError, _eventloop
from fi_evals.aio import AsyncEvaluator
from fi_evals.server.runner import RunningServer

T = TypeVar("T")
MAX_GAP = 0.100


@pytest.fixture(autouse=True)
def _loop_warning_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_eventloop, "_warned", False)


def run(coro: Coroutine[Any, Any, T]) -> T:
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        return asyncio.run(coro)


def client(server: RunningServer, **options: Any) -> AsyncEvaluator:
    return AsyncEvaluator(server.api_key, server.secret_key, server.url, **options)


def test_same_results_errors_and_shared_policies(live_server: RunningServer) -> None:
    texts = ['{"a": 1}', "not json", "[]"]

    async def main() -> tuple[Any, ...]:
        async with client(live_server, timeout=60) as ev:
            assert ev.context is ev.sync.context  # one transport, pool and policy set
            result = await ev.evaluate("is_json", {"text": texts})
            submitted = await ev.submit("is_json", {"text": texts})
            waited = await ev.wait_all(submitted)
            one = await ev.get_result(result.eval_results[0].eval_id)
            with pytest.raises(UnknownTemplateError):
                await ev.evaluate("no_such_template", {"text": "x"})
            return result, waited, one

    result, waited, one = run(main())
    with Evaluator(live_server.api_key, live_server.secret_key, live_server.url) as sync:
        expected = [r.output for r in sync.evaluate("is_json", {"text": texts}).eval_results]
    assert [r.output for r in result.eval_results] == expected == ["Passed", "Failed", "Passed"]
    assert [r.output for r in waited] == expected
    assert one.output == "Passed"


def _rows(n: int) -> list[dict[str, str]]:
    return [{"text": f'{{"i": {i}}}' if i % 7 else "nope"} for i in range(n)]


@pytest.mark.slow
def test_a_10000_row_batch_never_blocks_the_loop(tmp_path: Path) -> None:
    # The server in its own process, as in production: an in-process one would share this
    # process's GIL and time the server's work into the loop's gaps.
    with ServeProcess(tmp_path / "evals.db", "--no-access-log") as server:
        _ticker_during_batch(server)


def _ticker_during_batch(server: ServeProcess) -> None:
    rows = _rows(10_000)
    done: list[Any] = []

    async def work() -> int:
        async with AsyncEvaluator(server.api_key, server.secret_key, server.url,
                                  timeout=120) as ev:
            done.append(await ev.evaluate_batch(rows, ["is_json"], progress=False))
        return len(rows)

    async def main() -> dict[str, Any]:
        return await beside_ticker(work)

    # The benchmark's ticker (scenario A of make bench) and its gc.freeze(): a full collection
    # of this process's heap (pytest, the server's modules) stops every thread for ~100 ms,
    # whatever the client does (measured here with gc.callbacks).
    figures = frozen(main)
    (result,) = done
    print(f"10,000 rows: {figures['ticks']} ticks, longest gap {figures['max_gap_ms']} ms")
    assert result.complete and result.stats.templates["is_json"].scored == 10_000
    assert figures["ticks"] > 10 and figures["max_gap_ms"] < MAX_GAP * 1000, figures


def test_iter_batch_yields_rows_in_order(live_server: RunningServer) -> None:
    async def main() -> tuple[list[Any], Any]:
        async with client(live_server) as ev:
            stream = ev.iter_batch(_rows(250), ["is_json"], chunk_size=20, progress=False)
            items = [item async for item in stream]
            return items, stream.result

    items, result = run(main())
    assert [i.index for i in items] == list(range(250))
    assert [i.results["is_json"].output for i in items[:8]] == ["Failed"] + ["Passed"] * 6 + \
        ["Failed"]
    assert result is not None and result.complete
    assert result.stats.templates["is_json"].scored == 250


def test_async_def_task_runs_on_the_callers_loop(live_server: RunningServer) -> None:
    async def main() -> tuple[Any, int]:
        loop = asyncio.get_running_loop()
        seen: set[bool] = set()
        running = peak = 0

        async def task(row: dict[str, Any]) -> str:
            nonlocal running, peak
            seen.add(asyncio.get_running_loop() is loop)
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0.01)
            running -= 1
            return row["q"].upper()

        async with client(live_server, max_workers=4) as ev:
            result = await ev.evaluate_batch([{"q": f"w{i}"} for i in range(40)],
                                             ["one_line"], task=task,
                                             key_mapping={"text": "output"}, progress=False)
        assert seen == {True}
        return result, peak

    result, peak = run(main())
    assert result.complete and [i.task_output for i in result][:2] == ["W0", "W1"]
    assert all(i.results["one_line"].output == "Passed" for i in result)
    assert 1 <= peak <= 4


@pytest.mark.slow
def test_cancelling_stops_submission_keeps_journaled_ids_and_closes(
        server_factory: Callable[..., RunningServer], tmp_path: Path) -> None:
    server = server_factory(sim_latency_ms=1, access_log=False)
    journal = tmp_path / "run.journal"
    rows = _rows(8000)  # 400 chunks of 20: seconds of submissions

    def answered_ids() -> bool:
        text = journal.read_text("utf-8") if journal.exists() else ""
        complete = text.splitlines()[:-1] if not text.endswith("\n") else text.splitlines()
        return any(json.loads(line).get("t") == "ids" for line in complete if line)

    async def main() -> None:
        async with client(server, max_workers=2) as ev:
            batch = asyncio.create_task(ev.evaluate_batch(
                rows, ["is_json"], is_async=True, chunk_size=20, journal=journal,
                progress=False))
            # Cancel once the first submissions are answered, while the rest are being sent.
            deadline = time.monotonic() + 30
            while not answered_ids():
                assert time.monotonic() < deadline and not batch.done()
                await asyncio.sleep(0.01)
            started = time.perf_counter()
            batch.cancel()
            with pytest.raises(asyncio.CancelledError):
                await batch
            assert time.perf_counter() - started < 10  # grace + settling, bounded

    run(main())
    lines = [json.loads(line) for line in journal.read_text("utf-8").splitlines() if line]
    submitted = [r for r in lines if r.get("t") == "sub"]
    answered = [r for r in lines if r.get("t") == "ids"]
    # Submission stopped part-way; every submission on the wire got its ids journaled.
    assert 0 < len(submitted) < 400 and len(answered) == len(submitted), (submitted, answered)
    with Evaluator(server.api_key, server.secret_key, server.url) as ev:  # resumes
        full = ev.evaluate_batch(rows, ["is_json"], is_async=True, chunk_size=20,
                                 journal=journal, progress=False)
    assert full.complete and full.stats.resumed > 0
    assert full.stats.templates["is_json"].scored == 8000


@pytest.mark.slow
@pytest.mark.parametrize("is_async", [False, True], ids=["sync-chunks", "submit-then-poll"])
def test_leaving_iter_batch_early_stops_the_batch_and_keeps_journaled_ids(
        server_factory: Callable[..., RunningServer], tmp_path: Path, is_async: bool) -> None:
    server = server_factory(sim_latency_ms=20, access_log=False)
    journal = tmp_path / "stream.journal"
    # Sync: 200 chunks of 20 (2 s at 2 workers and 20 ms each), so that leaving early stops it
    # part-way. Submit-then-poll submits every chunk before the first result can be yielded:
    # 20 chunks are enough to show the ids kept, without waiting on 200 submissions.
    chunks = 20 if is_async else 200
    rows = _rows(20 * chunks)

    problems: list[str] = []

    async def main() -> int:
        asyncio.get_running_loop().set_exception_handler(
            lambda _, context: problems.append(str(context.get("exception") or context)))
        async with client(server, max_workers=2) as ev:
            seen = 0
            # A plain `break`, as users write it: the generator is closed when dropped.
            async for _ in ev.iter_batch(rows, ["is_json"], chunk_size=20, journal=journal,
                                         is_async=is_async, progress=False):
                seen += 1
                if seen == 5:
                    break
        # Leaving `async with` at once: aclose() stops and awaits the abandoned batch before
        # closing the pool it runs on.
        return seen

    started = time.perf_counter()
    assert run(main()) == 5
    gc.collect()  # a future whose exception nobody retrieved reports it when collected
    assert time.perf_counter() - started < 30  # bounded: grace and settling
    assert problems == []  # the batch settled before the pool closed (no failed future)
    lines = [json.loads(line) for line in journal.read_text("utf-8").splitlines() if line]
    submitted = [r for r in lines if r.get("t") == "sub"]
    answered = [r for r in lines if r.get("t") == "ids"]
    # Every submission on the wire got its ids journaled; sync chunks stopped part-way
    # (async ones submit everything before the first result can be yielded).
    assert 0 < len(submitted) <= chunks and len(answered) == len(submitted), (submitted, answered)
    assert is_async or len(submitted) < chunks


def test_score_logger_from_async_code(live_server: RunningServer, tmp_path: Path) -> None:
    async def main() -> Any:
        async with client(live_server) as ev:
            with pytest.raises(ValueError, match="block the event loop"):
                ev.score_logger(overflow="block")
            async with ev.score_logger(spool=tmp_path / "spool", linger=0.01,
                                       poll_interval=0.05) as logger:
                started = time.perf_counter()
                assert logger.log("is_json", {"text": "{}"}) is True
                assert time.perf_counter() - started < 0.05  # queued, no I/O
                scored = await logger.score("is_json", {"text": "nope"}, metadata="r1")
                assert await logger.flush(timeout=30)
                return scored

    scored = run(main())
    assert scored.status == "completed" and scored.output == "Failed"
    assert scored.metadata == "r1"
