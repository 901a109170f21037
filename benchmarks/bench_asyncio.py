"""P2 through ``AsyncEvaluator`` beside a 10 ms ticker, against the sync ``evaluate_batch`` and
a native ``httpx.AsyncClient`` prototype (scenario A of ``make bench``).

P2 (benchmarks/scenarios.py): ``is_json`` on a latency-bound server (``--sim-latency-ms 50``),
``max_workers=32``, 5,000 items. Three clients run it against one server in another process
(``fi-evals serve``), one after another:

- ``sync``: ``Evaluator.evaluate_batch`` (the baseline);
- ``async (thread engine)``: ``await AsyncEvaluator.evaluate_batch`` in ``asyncio.run``, the
  design fi_evals ships (the sync engine on threads, behind asyncio futures);
- ``async (httpx native)``: the alternative, measured as a prototype: one
  ``httpx.AsyncClient`` (at most 32 connections) and 32 coroutines POSTing the very bodies the
  SDK sends (same chunks, an ``Idempotency-Key`` each) and decoding each answer's JSON. It has
  none of the SDK's retries, polling, journal or per-item results: a lower bound on what a
  native transport costs, not a client.

The two async clients run beside a ticker that sleeps 10 ms in a loop; the script reports
items/s of each, the ticks per second the loop kept (100/s is a free loop) and the longest gap
between ticks.

Usage (``make bench`` runs it as scenario A; standalone)::

    .venv/bin/python benchmarks/bench_asyncio.py
    .venv/bin/python benchmarks/bench_asyncio.py --items 10000 --json out.json

Target (issue 19, point 1): the longest gap of the thread engine's run stays under 100 ms.
The httpx prototype needs ``httpx`` (the ``bench`` extra); without it that line is skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.bench_logger import _KEYS, _SERVING
from benchmarks.scenarios import P2_EVALS, P2_LATENCY_MS, P2_WORKERS
from fi_evals import _constants as C

TICK = 0.010
TARGET_MAX_GAP_MS = 100.0


def _start_server(folder: str) -> tuple[subprocess.Popen[bytes], str]:
    """``fi-evals serve`` with P2's simulated latency, in another process."""
    cmd = [sys.executable, "-m", "fi_evals.cli", "serve", "--port", "0", "--db",
           os.path.join(folder, "evals.db"), "--api-key", _KEYS[0], "--secret-key", _KEYS[1],
           "--no-access-log", "--log-level", "warning", "--sim-latency-ms", str(P2_LATENCY_MS)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    for raw in proc.stdout:
        line = raw.decode("utf-8", "replace").strip()
        if line.startswith(_SERVING):
            threading.Thread(target=proc.stdout.read, daemon=True).start()  # keep draining
            return proc, line[len(_SERVING):]
    proc.kill()
    raise RuntimeError("fi-evals serve did not start")


def _rows(n: int) -> list[dict[str, str]]:
    return [{"text": f'{{"n": {i}}}' if i % 10 else "not json"} for i in range(n)]


def sync_run(url: str, rows: list[dict[str, str]]) -> dict[str, Any]:
    from fi_evals import Evaluator

    with Evaluator(*_KEYS, url, max_workers=P2_WORKERS, timeout=600) as ev:
        ev.evaluate(P2_EVALS, {"text": "{}"})  # warm-up: capabilities, a connection
        started = time.perf_counter()
        result = ev.evaluate_batch(rows, [P2_EVALS], progress=False)
        wall = time.perf_counter() - started
    assert result.complete
    return {"client": "sync", "items": len(rows), "wall_s": round(wall, 3),
            "items_per_s": round(len(rows) / wall, 1)}


async def beside_ticker(work: Callable[[], Awaitable[int]]) -> dict[str, Any]:
    """Run ``work`` (returns the items it scored) while a 10 ms ticker runs on the same loop."""
    gaps: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not stop.is_set():
            await asyncio.sleep(TICK)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    ticking = asyncio.create_task(ticker())
    await asyncio.sleep(TICK)  # the ticker is running before the clock starts
    started = time.perf_counter()
    items = await work()
    wall = time.perf_counter() - started
    stop.set()
    await ticking
    return {"items": items, "wall_s": round(wall, 3), "items_per_s": round(items / wall, 1),
            "ticks": len(gaps), "ticks_per_s": round(len(gaps) / wall, 1),
            "max_gap_ms": round(max(gaps) * 1000, 1),
            "p99_gap_ms": round(sorted(gaps)[int(0.99 * (len(gaps) - 1))] * 1000, 1)}


def frozen(main: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
    """``asyncio.run(main())`` with the heap that existed before it frozen (``gc.freeze``): a
    full collection of a test or benchmark process's heap stops every thread for ~100 ms,
    whatever the client does; a service calls ``gc.freeze()`` after start for the same reason."""
    gc.collect()
    gc.freeze()  # as a service would after start: its long-lived heap out of full collections
    try:
        return asyncio.run(main())  # type: ignore[arg-type]
    finally:
        gc.unfreeze()


def async_run(url: str, rows: list[dict[str, str]]) -> dict[str, Any]:
    """The design fi_evals ships: ``AsyncEvaluator`` (the thread engine)."""
    from fi_evals import AsyncEvaluator

    async def main() -> dict[str, Any]:
        async with AsyncEvaluator(*_KEYS, url, max_workers=P2_WORKERS, timeout=600) as ev:
            await ev.evaluate(P2_EVALS, {"text": "{}"})  # warm-up, as for the others

            async def work() -> int:
                result = await ev.evaluate_batch(rows, [P2_EVALS], progress=False)
                assert result.complete
                return len(rows)

            out = await beside_ticker(work)
        return {"client": "async (thread engine)", **out}

    return frozen(main)


def httpx_run(url: str, rows: list[dict[str, str]]) -> dict[str, Any]:
    """The alternative: a native ``httpx.AsyncClient`` prototype sending P2's requests."""
    import httpx

    from benchmarks.drivers import _bodies
    from fi_evals.batch.api import _chunk_size

    size = _chunk_size(None, None, False, len(rows), P2_WORKERS, C.DEFAULT_MAX_BATCH_SIZE)
    bodies = _bodies(rows, [P2_EVALS], size)
    headers = {C.HEADER_API_KEY: _KEYS[0], C.HEADER_SECRET_KEY: _KEYS[1],
               "Content-Type": "application/json"}
    limits = httpx.Limits(max_connections=P2_WORKERS, max_keepalive_connections=P2_WORKERS)

    async def main() -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits,
                                     timeout=600) as client:
            async def post(body: bytes) -> int:
                answer = await client.post(C.PATH_NEW_EVAL, content=body, headers={
                    C.HEADER_IDEMPOTENCY_KEY: str(uuid.uuid4())})
                answer.raise_for_status()
                return len(answer.json()["result"][0]["evaluations"])

            await post(bodies[0])  # warm-up: one connection open before the clock starts
            queue = iter(bodies)

            async def worker() -> int:
                return sum([await post(body) for body in queue])

            async def work() -> int:
                return sum(await asyncio.gather(*(worker() for _ in range(P2_WORKERS))))

            out = await beside_ticker(work)
        assert out["items"] == len(rows), out
        return {"client": "async (httpx native prototype)", "chunk_size": size, **out}

    return frozen(main)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=5_000)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    rows = _rows(args.items)
    with tempfile.TemporaryDirectory(prefix="fi-evals-bench-asyncio-") as folder:
        proc, url = _start_server(folder)
        try:
            results = [sync_run(url, rows), async_run(url, rows)]
            try:
                results.append(httpx_run(url, rows))
            except ImportError as exc:
                results.append({"client": "async (httpx native prototype)",
                                "skipped": f"httpx is not installed ({exc}); pip install "
                                           f"'fi-evals[bench]'"})
        finally:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
    for r in results:
        print(json.dumps(r))
    worst = results[1]["max_gap_ms"]
    native = results[2]
    other = (f"httpx prototype {native['items_per_s']}/s (loop {native['ticks_per_s']} ticks/s, "
             f"longest gap {native['max_gap_ms']} ms)" if "items_per_s" in native
             else native["skipped"])
    print(f"P2 {args.items} items: sync {results[0]['items_per_s']}/s; thread engine "
          f"{results[1]['items_per_s']}/s, loop {results[1]['ticks_per_s']} ticks/s, longest gap "
          f"{worst} ms (target < {TARGET_MAX_GAP_MS:g} ms); {other}")
    if args.json:
        Path(args.json).write_text(json.dumps({"results": results}, indent=2), "utf-8")
    return 0 if worst < TARGET_MAX_GAP_MS else 1


if __name__ == "__main__":
    sys.exit(main())
