"""The judge's rate budget in Redis (issue 17, point 1): two processes' budgets (two Celery
workers, or API nodes) on one ``--backend`` draw from one pair of buckets."""

from __future__ import annotations

import threading
import time

from fi_evals.server.config import ServerConfig
from fi_evals.server.evaluators.judge_budget import RedisRateBudget, judge_budget_for

from .cluster import RedisServer
from .conftest import new_prefix


def test_two_workers_share_one_budget(redis_server: RedisServer) -> None:
    backend = f"{redis_server.url}/0?prefix={new_prefix('judge-budget')}"
    endpoint = "http://127.0.0.1:9/v1/chat/completions"
    first = judge_budget_for(ServerConfig(backend=backend, judge_rpm=600), endpoint)
    second = RedisRateBudget(backend, endpoint, rpm=600)  # 10/s, a burst of 10, shared
    assert isinstance(first, RedisRateBudget) and first.key == second.key
    taken: list[float] = []
    lock = threading.Lock()

    def draw(budget: RedisRateBudget) -> None:
        for _ in range(10):
            assert budget.acquire(10, deadline=time.monotonic() + 10)
            with lock:
                taken.append(time.monotonic())

    started = time.monotonic()
    threads = [threading.Thread(target=draw, args=(b,)) for b in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(15)
    assert len(taken) == 20
    # 20 calls through one budget of 10/s with a burst of 10: about 1 s, not 0 (two budgets)
    assert time.monotonic() - started >= 0.8
    second.throttle(0.5)  # a 429 seen by one worker pauses the other one too
    paused = time.monotonic()
    assert first.acquire(1, deadline=time.monotonic() + 5)
    assert time.monotonic() - paused >= 0.4


def test_limits_learned_by_one_worker_pace_the_other(redis_server: RedisServer) -> None:
    backend = f"{redis_server.url}/0?prefix={new_prefix('judge-budget')}"
    first, second = (RedisRateBudget(backend, "http://p/v1/chat/completions") for _ in "ab")
    first.observe({"x-ratelimit-limit-requests": "600", "x-ratelimit-remaining-requests": "0"})
    started = time.monotonic()
    assert second.acquire(1, deadline=time.monotonic() + 5)  # nothing left: one refill, 0.1 s
    assert 0.05 <= time.monotonic() - started <= 1.0
    assert float(second.to_dict()["requests_cap"]) == 600
