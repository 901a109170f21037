"""The judge cache in the Redis of ``--backend redis://`` (issue 17, point 2): one cache for
every API node and worker of a deployment, under the deployment's key prefix, expiring."""

from __future__ import annotations

import time

from fi_evals.server.config import ServerConfig
from fi_evals.server.evaluators.judge_cache import RedisJudgeCache, judge_cache_for

from .cluster import RedisServer
from .conftest import new_prefix


def test_outcomes_are_shared_through_redis_and_expire(redis_server: RedisServer) -> None:
    prefix = new_prefix("judge-cache")
    backend = f"{redis_server.url}/0?prefix={prefix}"
    node = judge_cache_for(ServerConfig(backend=backend, judge_cache_ttl=0.5))
    worker = RedisJudgeCache(backend, ttl=0.5)  # another process's view of the same cache
    assert isinstance(node, RedisJudgeCache)
    node.put("k", {"output": "Passed", "reason": "fine"})
    assert worker.get("k") == {"output": "Passed", "reason": "fine"}
    assert worker.redis.keys(prefix + "judge-cache:*") == [prefix + "judge-cache:k"]
    assert 0 < worker.redis.pttl(prefix + "judge-cache:k") <= 500
    time.sleep(0.6)
    assert worker.get("k") is None
    assert judge_cache_for(ServerConfig(backend=backend, judge_cache="off")) is None
    node.close()
    worker.close()
