"""The official client (``ai-evaluation==1.1.0``, ``from fi.evals import Evaluator``), driven as
its large-scale cookbook does. Runs in the official client's own virtualenv (no ``fi_evals``).

- ``sync``: a ``ThreadPoolExecutor(max_workers=8)`` runs one task per item; the task calls
  ``Evaluator.evaluate(template, inputs)`` once per template (the official ``evaluate`` scores
  one template per call).
- ``async``: the same pool calls ``evaluate(template, inputs, is_async=True)`` once per item and
  template and keeps the ``eval_id``; then polling rounds call ``get_eval_result(eval_id)`` for
  every unfinished id (spread over the same 8 threads, which is generous: a loop would be
  slower), with a 3 s sleep between rounds, until every evaluation is finished.

One ``Evaluator`` is shared by the threads, as in the cookbook. Prints one JSON line (see
``_probe.emit``). Usage (the harness runs it)::

    benchmarks/.venv-official/bin/python benchmarks/official_driver.py --url URL \\
        --api-key K --secret-key S --mode sync --items 2000 --evals is_json,fuzzy_match
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _data, _probe: stdlib only
from _data import TEMPLATE_KEYS, rows
from _probe import CpuClock, emit, scrape

_FINISHED = ("completed", "failed")


def _inputs(row: dict[str, str], template: str) -> dict[str, str]:
    return {key: row[key] for key in TEMPLATE_KEYS[template]}


def _ok(result: Any) -> bool:
    """A sync result that holds a verdict (the client turns errors into ``output=None``)."""
    return result is not None and result.output is not None


def run_sync(ev: Any, items: list[dict[str, str]], evals: list[str],
             threads: int) -> dict[str, Any]:
    def task(row: dict[str, str]) -> int:
        ok = 0
        for template in evals:
            batch = ev.evaluate(template, _inputs(row, template))
            ok += sum(1 for r in batch.eval_results if _ok(r))
        return ok

    with ThreadPoolExecutor(max_workers=threads) as pool:
        ok = sum(pool.map(task, items))
    return {"ok": ok}


def run_async(ev: Any, items: list[dict[str, str]], evals: list[str], threads: int,
              poll_sleep: float, poll_timeout: float) -> dict[str, Any]:
    def submit(row: dict[str, str]) -> list[str | None]:
        ids = []
        for template in evals:
            batch = ev.evaluate(template, _inputs(row, template), is_async=True)
            first = batch.eval_results[0] if batch.eval_results else None
            ids.append(first.eval_id if first is not None else None)
        return ids

    def status(eval_id: str) -> str:
        try:
            body = ev.get_eval_result(eval_id)
        except Exception:  # counted as still unfinished, asked again
            return "error"
        payload = body.get("result") if isinstance(body, dict) else None
        return str(payload.get("eval_status", "")).lower() if isinstance(payload, dict) else ""

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        ids = [i for group in pool.map(submit, items) for i in group]
        submitted = time.perf_counter() - started
        pending = [i for i in ids if i]
        failed_submits = len(ids) - len(pending)
        ok = failed = rounds = 0
        deadline = time.monotonic() + poll_timeout
        while pending and time.monotonic() < deadline:
            if rounds:
                time.sleep(poll_sleep)
            rounds += 1
            states = list(pool.map(status, pending))
            ok += states.count("completed")
            failed += states.count("failed")
            pending = [i for i, s in zip(pending, states) if s not in _FINISHED]
    return {"ok": ok, "failed": failed, "failed_submits": failed_submits,
            "unfinished": len(pending), "poll_rounds": rounds,
            "submit_seconds": round(submitted, 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--secret-key", required=True)
    parser.add_argument("--mode", choices=["sync", "async"], required=True)
    parser.add_argument("--items", type=int, required=True)
    parser.add_argument("--evals", default="is_json,fuzzy_match")
    parser.add_argument("--threads", type=int, default=8, help="the cookbook's max_workers")
    parser.add_argument("--poll-sleep", type=float, default=3.0)
    parser.add_argument("--poll-timeout", type=float, default=600.0)
    parser.add_argument("--server-pid", type=int, default=None, help="to read its CPU time")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    from importlib.metadata import version

    from fi.evals import Evaluator

    evals = args.evals.split(",")
    items = list(rows(args.items))
    ev = Evaluator(fi_api_key=args.api_key, fi_secret_key=args.secret_key, fi_base_url=args.url)
    for template in evals:  # warm-up: the registry fetch (cached per process), connections
        ev.evaluate(template, _inputs(items[0], template))
    before = scrape(args.url)
    clock = CpuClock(args.server_pid)
    clock.start()
    if args.mode == "sync":
        out = run_sync(ev, items, evals, args.threads)
    else:
        out = run_async(ev, items, evals, args.threads, args.poll_sleep, args.poll_timeout)
    out.update(clock.stop())
    out.update(scrape(args.url).minus(before))
    out.update(items=len(items), outcomes=len(items) * len(evals), threads=args.threads,
               client=f"ai-evaluation {version('ai-evaluation')}")
    emit(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
