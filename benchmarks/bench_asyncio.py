"""P2 through ``AsyncEvaluator`` beside a 10 ms ticker, against the sync ``evaluate_batch``.

P2 (benchmarks/scenarios.py): ``is_json`` on a latency-bound server (``--sim-latency-ms 50``),
``max_workers=32``, 5,000 items. The same batch runs with the sync client (the baseline) and
awaited through ``AsyncEvaluator`` in ``asyncio.run`` while a ticker sleeps 10 ms in a loop; the
script reports items/s of both, the ticks per second the loop kept (100/s is a free loop) and
the longest gap between ticks. The server runs in another process (``fi-evals serve``).

Usage (standalone; not yet folded into ``make bench``)::

    .venv/bin/python benchmarks/bench_asyncio.py
    .venv/bin/python benchmarks/bench_asyncio.py --items 10000 --json out.json

Target (issue 19, point 1): the longest gap stays under 100 ms.
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
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.bench_logger import _KEYS, _SERVING
from benchmarks.scenarios import P2_EVALS, P2_LATENCY_MS, P2_WORKERS

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
        started = time.perf_counter()
        result = ev.evaluate_batch(rows, [P2_EVALS], progress=False)
        wall = time.perf_counter() - started
    assert result.complete
    return {"client": "sync", "items": len(rows), "wall_s": round(wall, 3),
            "items_per_s": round(len(rows) / wall, 1)}


def async_run(url: str, rows: list[dict[str, str]]) -> dict[str, Any]:
    from fi_evals import AsyncEvaluator

    async def main() -> dict[str, Any]:
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
        async with AsyncEvaluator(*_KEYS, url, max_workers=P2_WORKERS, timeout=600) as ev:
            started = time.perf_counter()
            result = await ev.evaluate_batch(rows, [P2_EVALS], progress=False)
            wall = time.perf_counter() - started
        stop.set()
        await ticking
        assert result.complete
        return {"client": "async (thread engine)", "items": len(rows), "wall_s": round(wall, 3),
                "items_per_s": round(len(rows) / wall, 1),
                "ticks_per_s": round(len(gaps) / wall, 1),
                "max_gap_ms": round(max(gaps) * 1000, 1),
                "p99_gap_ms": round(sorted(gaps)[int(0.99 * (len(gaps) - 1))] * 1000, 1)}

    gc.collect()
    gc.freeze()  # as a service would after start: its long-lived heap out of full collections
    try:
        return asyncio.run(main())
    finally:
        gc.unfreeze()


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
        finally:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
    for r in results:
        print(json.dumps(r))
    worst = results[1]["max_gap_ms"]
    print(f"P2 {args.items} items: sync {results[0]['items_per_s']}/s, async "
          f"{results[1]['items_per_s']}/s; loop {results[1]['ticks_per_s']} ticks/s, longest gap "
          f"{worst} ms (target < {TARGET_MAX_GAP_MS:g} ms)")
    if args.json:
        Path(args.json).write_text(json.dumps({"results": results}, indent=2), "utf-8")
    return 0 if worst < TARGET_MAX_GAP_MS else 1


if __name__ == "__main__":
    sys.exit(main())
