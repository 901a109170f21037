"""Judge at provider scale (issue 17, point 5): the rate budget and the judge cache against a
fake provider that enforces its limits (``benchmarks/fake_provider.py``: token buckets, 429 +
``Retry-After`` + ``x-ratelimit-*`` headers, 100 ms per call).

Scenarios, 600 ``is_polite`` rows, 32 client workers, 32 judge calls in flight on the server,
a provider at 1,200 RPM with a 200-call burst (ideal time: the burst at once, then 20 calls/s:
20 s):

- ``budget``: the judge client's rate budget (limits learned from the headers), no cache;
- ``no budget``: the same without the budget (every thread sends when it likes), no cache;
- ``rerun``: the same rows twice with the judge cache: the rerun's judge calls;
- ``10% changed``: then 10% of the rows changed: its judge calls.

Usage::

    .venv/bin/python -m benchmarks.bench_judge                    # prints a table
    .venv/bin/python -m benchmarks.bench_judge --rows 600 --json out.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.fake_provider import FakeProvider
from fi_evals import Evaluator
from fi_evals.batch import evaluate_batch
from fi_evals.catalogue import CATALOGUE
from fi_evals.server.config import ServerConfig
from fi_evals.server.evaluators import Registry
from fi_evals.server.evaluators.judge import JudgeClient, JudgeEvaluator, JudgeSettings
from fi_evals.server.evaluators.judge_budget import NoBudget
from fi_evals.server.runner import start_server

TARGET_RATIO = 1.2
TARGET_THROTTLED = 0.05


def _rows(n: int, changed: int = 0) -> list[dict[str, str]]:
    return [{"output": f"Thank you for your patience, customer {i}"
                       + (" (edited)" if i < changed else "") + "."} for i in range(n)]


def _run(provider: FakeProvider, rows: list[dict[str, str]], folder: Path, name: str, *,
         budget: bool = True, cache: bool = False, db: str | None = None,
         workers: int = 32) -> dict[str, Any]:
    config = ServerConfig(port=0, db_path=db or str(folder / f"{name}.db"),
                          judge_url=provider.url, judge_model="judge", judge_concurrency=workers,
                          judge_timeout=120.0, judge_cache="on" if cache else "off",
                          access_log=False)
    registry = Registry.default(config=config)
    if not budget:
        settings = JudgeSettings(base_url=provider.url, model="judge", concurrency=workers,
                                 timeout=120.0)
        client = JudgeClient(settings, budget=NoBudget())
        registry.add(JudgeEvaluator(CATALOGUE["is_polite"], client))
    server = start_server(config, registry=registry)
    calls, throttled = provider.calls, provider.throttled
    try:
        with Evaluator(server.api_key, server.secret_key, server.url,
                       max_workers=workers) as ev:
            started = time.monotonic()
            result = evaluate_batch(ev, rows, ["is_polite"], max_workers=workers, chunk_size=1,
                                    progress=False, save=False)
            elapsed = time.monotonic() - started
    finally:
        server.stop(30)
    stats = result.stats.templates["is_polite"]
    made = provider.calls - calls
    return {"scenario": name, "rows": len(rows), "scored": stats.scored,
            "seconds": round(elapsed, 2), "judge_calls": made,
            "answered_429": provider.throttled - throttled,
            "share_429": round((provider.throttled - throttled) / made, 4) if made else 0.0,
            "cached": stats.judge.cached}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=600)
    parser.add_argument("--rpm", type=float, default=1200)
    parser.add_argument("--burst", type=float, default=200)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--workers", type=int, default=32)
    parser.add_argument("--skip-no-budget", action="store_true")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    ideal = max(0.0, args.rows - args.burst) / (args.rpm / 60.0) + args.latency
    results = []
    with tempfile.TemporaryDirectory(prefix="fi-evals-bench-judge-") as tmp:
        folder = Path(tmp)
        scenarios = [("budget", True)] + ([] if args.skip_no_budget else [("no budget", False)])
        for name, budget in scenarios:
            with FakeProvider(args.rpm, args.burst, latency=args.latency) as provider:
                results.append(_run(provider, _rows(args.rows), folder, name, budget=budget,
                                    workers=args.workers))
        with FakeProvider(args.rpm, args.burst, latency=args.latency) as provider:
            db = str(folder / "cached.db")
            _run(provider, _rows(args.rows), folder, "first", cache=True, db=db,
                 workers=args.workers)
            results.append(_run(provider, _rows(args.rows), folder, "rerun", cache=True, db=db,
                                workers=args.workers))
            results.append(_run(provider, _rows(args.rows, args.rows // 10), folder,
                                "10% changed", cache=True, db=db, workers=args.workers))
    report = {"ideal_seconds": round(ideal, 2), "scenarios": results,
              "targets": {"ratio": TARGET_RATIO, "share_429": TARGET_THROTTLED}}
    budget = results[0]
    report["budget_ratio"] = round(budget["seconds"] / ideal, 3) if ideal else None
    report["budget_meets_targets"] = (
        budget["scored"] == budget["rows"] and budget["share_429"] <= TARGET_THROTTLED
        and (report["budget_ratio"] or 0) <= TARGET_RATIO)
    print(f"ideal {ideal:.1f} s ({args.rows} rows, {args.rpm:g} RPM, burst {args.burst:g})")
    print(f"{'scenario':<12} {'scored':>9} {'seconds':>8} {'calls':>6} {'429':>5} "
          f"{'429 %':>6} {'cached':>6}")
    for r in results:
        print(f"{r['scenario']:<12} {r['scored']:>4}/{r['rows']:<4} {r['seconds']:>8.1f} "
              f"{r['judge_calls']:>6} {r['answered_429']:>5} {r['share_429']:>6.1%} "
              f"{r['cached']:>6}")
    print(f"budget: {report['budget_ratio']}x ideal; targets met: "
          f"{report['budget_meets_targets']}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
