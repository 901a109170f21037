"""An API node's parts for ``--backend redis://...``: store, executor, metrics, rate limiter.

``fi_evals.server.application`` asks :class:`RedisBackend` for them when the config names a
backend; the HTTP layer and the service are the same as with SQLite.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

try:
    import celery  # noqa: F401
    import redis  # noqa: F401
except ImportError as exc:  # depends on the installed extras
    raise ImportError(f"--backend needs the redis extra: pip install 'fi-evals[redis]' "
                      f"({exc})") from exc

from fi_evals import _constants as C
from fi_evals.server.config import ServerConfig
from fi_evals.server.evaluators import Registry
from fi_evals.server.executor import CountFn, JobExecutor
from fi_evals.server.redis_backend.celery_app import make_celery
from fi_evals.server.redis_backend.cluster import RedisMetrics, RedisRateLimiter
from fi_evals.server.redis_backend.executor import CeleryExecutor
from fi_evals.server.redis_backend.settings import BackendURL
from fi_evals.server.redis_backend.store import RedisJobStore
from fi_evals.server.store import JobStore

if TYPE_CHECKING:
    from fi_evals.server.application import Application

__all__ = ["RedisBackend"]

log = logging.getLogger("fi_evals.server")


class RedisBackend:
    """Builds the Redis/Celery parts of one API node from its config."""

    def __init__(self, config: ServerConfig) -> None:
        if config.backend is None:
            raise ValueError("the config names no backend")
        self.config = config
        self.url = BackendURL.parse(config.backend)
        self.store = RedisJobStore(self.url, idempotency_ttl=C.IDEMPOTENCY_TTL_SECONDS)
        self.celery = make_celery(self.url)
        log.info("backend %s: evaluations in Redis, async work to Celery queue %r",
                 self.url, C.CELERY_QUEUE)

    def executor_factory(self, store: JobStore, registry: Registry, config: ServerConfig,
                         count: CountFn) -> JobExecutor:
        """The :data:`~fi_evals.server.application.ExecutorFactory` of this backend."""
        assert isinstance(store, RedisJobStore)
        return CeleryExecutor(store, self.celery, sim_latency_ms=config.sim_latency_ms)

    def metrics(self) -> RedisMetrics:
        return RedisMetrics(self.store)

    def attach(self, application: Application) -> None:
        """Finish wiring a built application: the rate limit becomes cluster-wide."""
        if self.config.rate_limit:
            gateway: Any = application.gateway
            gateway.limiter = RedisRateLimiter(self.store, self.config.rate_limit,
                                               self.config.rate_burst)

    def __repr__(self) -> str:
        return f"<RedisBackend {self.url}>"
