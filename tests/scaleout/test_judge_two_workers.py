"""Two real Celery workers share one judge rate budget and one judge cache in Redis (issue 17,
points 1, 2 and 6): ``fi-evals worker`` processes judging the async work of one deployment
against the benchmark's rate-limited provider (``benchmarks/fake_provider.py``). Together they
stay within the budget, as one process would: the provider sees the budget's rate, not twice
it, answers (almost) no 429, and every row is scored; a rerun is answered from the shared
cache, ``cached: true``. Bounded: about 5 s of judging, 90 s at most per batch."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from benchmarks.fake_provider import FakeProvider
from fi_evals import Evaluator
from fi_evals import _constants as C

from .cluster import Deployment, RedisServer, WorkerProcess
from .conftest import inprocess_deployment

pytestmark = pytest.mark.slow

RPM, BURST, ROWS = 600, 10, 60  # 10 calls/s after a burst of 10: (60 - 10) / 10 = 5 s ideal
DB = 5  # a Redis database of its own: the session's shared workers (database 0) never see it


@dataclass
class Judged:
    provider: FakeProvider
    deployment: Deployment
    workers: list[WorkerProcess]

    def batch(self, rows: list[dict[str, Any]]) -> Any:
        with Evaluator(self.deployment.api_key, self.deployment.secret_key, self.deployment.url,
                       max_workers=4) as ev:
            return ev.evaluate_batch(rows, ["is_polite"], is_async=True, chunk_size=5,
                                     progress=False, deadline=90)


@pytest.fixture(scope="module")
def judged(redis_server: RedisServer,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Judged]:
    """The provider, one API node pair and two workers (debug logs: they show what each took)
    on database ``DB``, with the judge's budget and cache in that Redis."""
    logs = tmp_path_factory.mktemp("judge-workers")
    with FakeProvider(rpm=RPM, burst=BURST, latency=0.02) as provider:
        deployment = inprocess_deployment(redis_server, db=DB, judge_url=provider.url,
                                          judge_model="judge", judge_rpm=RPM)
        env = {C.ENV_JUDGE_BASE_URL: provider.url, C.ENV_JUDGE_MODEL: "judge",
               C.ENV_JUDGE_RPM: str(RPM)}
        workers = [WorkerProcess(deployment.config.backend or "", "--concurrency", "8",
                                 "--log-level", "debug", log_path=logs / f"worker{i}.log",
                                 env=env, wait=False) for i in range(2)]
        try:
            for worker in workers:
                worker.wait_ready()
            yield Judged(provider, deployment, workers)
        finally:
            for worker in workers:
                worker.terminate()
            for worker in workers:
                worker.wait(15)
            deployment.stop(keep_data=False)


def _rows() -> list[dict[str, str]]:
    return [{"output": f"Thank you for your patience, customer {i}."} for i in range(ROWS)]


def test_two_workers_share_one_budget_end_to_end(judged: Judged) -> None:
    started = time.monotonic()
    result = judged.batch(_rows())
    elapsed = time.monotonic() - started
    provider = judged.provider
    assert result.complete and result.stats.templates["is_polite"].scored == ROWS
    assert all(it.results["is_polite"].output == "Passed" for it in result)
    # both workers judged: each received some of the 12 chunks (Celery's "received" line)
    received = [w.log_path.read_text("utf-8", "replace").count(" received")
                for w in judged.workers]
    assert all(n > 0 for n in received), received
    # one budget: 60 calls at 10/s after a burst of 10 take ~5 s; two budgets would take ~2 s
    assert provider.answered == ROWS
    span = max(provider.answered_at) - min(provider.answered_at)
    assert span >= 0.8 * (ROWS - BURST) * 60 / RPM, (span, provider)
    assert provider.throttled <= 0.05 * provider.calls, provider
    assert elapsed < 60


def test_a_rerun_is_answered_from_the_shared_cache(judged: Judged) -> None:
    judged.batch(_rows()[:10])  # judged once (or already, by the test above)
    calls = judged.provider.calls
    again = judged.batch(_rows()[:10])
    assert judged.provider.calls == calls  # no judge call: both workers read the one cache
    assert [it.results["is_polite"].cached for it in again] == [True] * 10
    assert again.stats.judge.cached == 10
