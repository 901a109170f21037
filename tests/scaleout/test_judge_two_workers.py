"""Two real Celery workers share one judge rate budget in Redis (issue 17, points 1 and 6):
``fi-evals worker`` processes judging async work of one deployment against the benchmark's
rate-limited provider (``benchmarks/fake_provider.py``). Together they stay within the
budget, as one process would: the provider sees the budget's rate, not twice it, answers
(almost) no 429, and every row is scored. Bounded: about 5 s of judging, 90 s at most."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from benchmarks.fake_provider import FakeProvider
from fi_evals import Evaluator
from fi_evals import _constants as C

from .cluster import RedisServer, WorkerProcess
from .conftest import inprocess_deployment

pytestmark = pytest.mark.slow

RPM, BURST, ROWS = 600, 10, 60  # 10 calls/s after a burst of 10: (60 - 10) / 10 = 5 s ideal
DB = 5  # a Redis database of its own: the session's shared workers (database 0) never see it


def _span(times: list[float]) -> float:
    return max(times) - min(times) if times else 0.0


def test_two_workers_share_one_budget_end_to_end(redis_server: RedisServer,
                                                 tmp_path: Path) -> None:
    with FakeProvider(rpm=RPM, burst=BURST, latency=0.02) as provider:
        deployment = inprocess_deployment(redis_server, db=DB, judge_url=provider.url,
                                          judge_model="judge", judge_rpm=RPM,
                                          judge_cache="off")
        env = {C.ENV_JUDGE_BASE_URL: provider.url, C.ENV_JUDGE_MODEL: "judge",
               C.ENV_JUDGE_RPM: str(RPM), C.ENV_JUDGE_CACHE: "off"}
        backend = deployment.config.backend or ""
        workers = [WorkerProcess(backend, "--concurrency", "8", "--log-level", "debug",
                                 log_path=tmp_path / f"worker{i}.log", env=env, wait=False)
                   for i in range(2)]
        try:
            for worker in workers:
                worker.wait_ready()
            rows = [{"output": f"Thank you for your patience, customer {i}."}
                    for i in range(ROWS)]
            started = time.monotonic()
            with Evaluator(deployment.api_key, deployment.secret_key, deployment.url,
                           max_workers=4) as ev:
                result = ev.evaluate_batch(rows, ["is_polite"], is_async=True, chunk_size=5,
                                           progress=False, deadline=90)
            elapsed = time.monotonic() - started
        finally:
            for worker in workers:
                worker.terminate()
            for worker in workers:
                worker.wait(15)
            deployment.stop(keep_data=False)
        logs = [w.log_path.read_text("utf-8", "replace") for w in workers]
    assert result.complete and result.stats.templates["is_polite"].scored == ROWS
    assert all(it.results["is_polite"].output == "Passed" for it in result)
    # both workers judged: each received chunks of the 12 (Celery's "received" debug line)
    received = [log.count(" received") for log in logs]
    assert all(n > 0 for n in received), received
    # one budget: 60 calls at 10/s after a burst of 10 take ~5 s; two budgets would take ~2 s
    assert provider.answered == ROWS
    assert _span(provider.answered_at) >= 0.8 * (ROWS - BURST) * 60 / RPM, provider
    assert provider.throttled <= 0.05 * provider.calls, provider
    assert elapsed < 60
