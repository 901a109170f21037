"""Recipe 11: evaluations from asyncio code (a FastAPI or aiohttp service) without blocking.

`AsyncEvaluator` takes Evaluator's arguments; every call is awaited and runs the sync client's
engine on a worker thread, so the event loop keeps serving: a 10 ms ticker runs beside a
2,000-row batch here. Also: rows as they finish (`async for`), an `async def` task on this
loop, cancelling a batch, and the score logger from async code.
"""

import asyncio
import os
import time

from _local import local_server

from fi_evals import AsyncEvaluator

ROWS = [{"question": f"order {i}", "text": f'{{"order": {i}}}' if i % 10 else "oops"}
        for i in range(2000)]


async def main(server) -> None:
    # FI_BASE_URL set: AsyncEvaluator() reads the environment, as Evaluator() does.
    keys = () if server is None else (server.api_key, server.secret_key, server.url)
    async with AsyncEvaluator(*keys) as ev:
        one = await ev.evaluate("is_json", {"text": '{"ok": true}'})
        print(f"one evaluation: {one.eval_results[0].output}")

        gaps, stop = [], asyncio.Event()

        async def ticker() -> None:  # stands for the requests the service keeps serving
            last = time.perf_counter()
            while not stop.is_set():
                await asyncio.sleep(0.01)
                gaps.append(time.perf_counter() - last)
                last = time.perf_counter()

        ticking = asyncio.create_task(ticker())
        batch = await ev.evaluate_batch(ROWS, ["is_json"], progress=False)
        stop.set()
        await ticking
        print(f"batch: {batch.stats.templates['is_json'].scored} rows scored; the loop ticked "
              f"{len(gaps)} times meanwhile")

        passed = 0
        async for item in ev.iter_batch(ROWS[:300], ["is_json"], progress=False):
            passed += item.passed is True  # rows arrive in input order as they finish
        print(f"streamed: {passed}/300 rows passed")

        async def answer(row: dict) -> str:  # the model under test, on this very loop
            await asyncio.sleep(0.001)
            return f"Answer to {row['question']}."

        tasked = await ev.evaluate_batch(ROWS[:50], ["one_line"], task=answer,
                                         key_mapping={"text": "output"}, progress=False)
        print(f"async task: {sum(i.passed is True for i in tasked)}/50 one-line answers")

        long_batch = asyncio.create_task(ev.evaluate_batch(ROWS * 20, ["is_json"],
                                                           progress=False))
        await asyncio.sleep(0.3)
        long_batch.cancel()
        try:
            await long_batch
        except asyncio.CancelledError:
            print("cancelled: the batch stopped sending and closed cleanly")

        async with ev.score_logger(spool=False, overflow="drop_newest") as logger:
            logger.log("is_json", {"text": "{}"})  # returns at once: no I/O on the loop
            scored = await logger.score("is_json", {"text": "not json"}, metadata="req-42")
            print(f"logged score: {scored.eval_name} {scored.status} {scored.output} "
                  f"({scored.metadata})")


if os.environ.get("FI_BASE_URL"):
    asyncio.run(main(None))
else:
    with local_server() as server:
        asyncio.run(main(server))
