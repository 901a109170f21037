"""Wiring: one server's parts (store, executor, registry, metrics, service, HTTP layer, gateway).

This is the only module that picks implementations: the SQLite store and the thread worker
pool by default, Redis and Celery when ``config.backend`` names a Redis URL, or any
:class:`~fi_evals.server.store.JobStore` and :class:`~fi_evals.server.executor.JobExecutor`
passed in (``fi_evals.server.redis_backend`` plugs in here without touching the HTTP layer).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from fi_evals import _constants as C
from fi_evals.server.app import build_fastapi, bulk_status_handler, new_eval_handler
from fi_evals.server.config import ServerConfig
from fi_evals.server.evaluators import BaseEvaluator, Registry
from fi_evals.server.executor import CountFn, JobExecutor, ThreadWorkerPool
from fi_evals.server.isolation import IsolationLimits, IsolationPool, isolate
from fi_evals.server.metrics import ServerMetrics
from fi_evals.server.middleware import Gateway
from fi_evals.server.service import EvalService
from fi_evals.server.store import JobStore

__all__ = ["Application", "ExecutorFactory", "create_app"]

ExecutorFactory = Callable[[JobStore, Registry, ServerConfig, CountFn], JobExecutor]
"""Builds the executor from the store, the registry, the config and the metrics callback."""


def thread_pool_executor(store: JobStore, registry: Registry, config: ServerConfig,
                         count: CountFn) -> JobExecutor:
    """The default executor: ``config.workers`` threads in this process."""
    return ThreadWorkerPool(store, registry, workers=config.workers,
                            claim_batch=config.claim_batch,
                            sim_latency_ms=config.sim_latency_ms, count=count)


def sqlite_store(config: ServerConfig) -> JobStore:
    """The default store: the SQLite file at ``config.db_path``."""
    from fi_evals.server.store_sqlite import SQLiteJobStore

    return SQLiteJobStore(config.db_path, idempotency_ttl=C.IDEMPOTENCY_TTL_SECONDS)


class Application:
    """One server's parts; :meth:`start` recovers the store and starts the executor.

    ``asgi`` is what uvicorn serves (the gateway around the FastAPI app). The registry's
    evaluators without a natural cost bound run in ``isolation``'s child processes
    (:mod:`fi_evals.server.isolation`); :meth:`stop_isolation` ends them.
    """

    def __init__(self, config: ServerConfig, *, registry: Registry | None = None,
                 store: JobStore | None = None,
                 executor_factory: ExecutorFactory | None = None) -> None:
        if config.api_key is None:
            raise ValueError("the config has no keys: call config.with_keys() first")
        self.config = config
        self.isolation = IsolationPool(IsolationLimits.from_config(config))
        self.registry = isolate(registry if registry is not None
                                else Registry.default(config=config), self.isolation)
        backend = None
        if config.backend is not None and store is None and executor_factory is None:
            from fi_evals.server.redis_backend.wiring import RedisBackend  # needs [redis]

            backend = RedisBackend(config)
            store, executor_factory = backend.store, backend.executor_factory
        self.store = store if store is not None else sqlite_store(config)
        self.metrics = (backend.metrics() if backend is not None
                        else ServerMetrics(queue_depth=self.store.queue_depth))
        self.executor = (executor_factory or thread_pool_executor)(
            self.store, self.registry, config, self.metrics.count_evaluations)
        self.service = EvalService(config, self.store, self.executor, self.registry, self.metrics)
        self.fastapi = build_fastapi(self.service, self.metrics, config.compat)
        direct = {("POST", C.PATH_NEW_EVAL): new_eval_handler(self.service, config.compat)}
        if not config.compat:  # a hosted-API-shaped server has no bulk status
            direct[("POST", C.PATH_BULK_STATUS)] = bulk_status_handler(self.service)
        self.gateway = Gateway(self.fastapi, config, self.metrics, direct=direct)
        if backend is not None:
            backend.attach(self)  # e.g. the rate limit becomes cluster-wide
        self.asgi = self.gateway

    def start(self) -> None:
        self.store.recover()
        self.executor.start()

    def stop_isolation(self) -> None:
        """Kill the isolated child processes (after the executor stopped)."""
        self.isolation.stop()

    def __repr__(self) -> str:
        return f"<Application {self.config!r} {self.registry!r} store={self.store!r}>"


def create_app(config: ServerConfig, *, evaluators: Iterable[BaseEvaluator] | None = None,
               registry: Registry | None = None, store: JobStore | None = None,
               executor_factory: ExecutorFactory | None = None) -> Application:
    """Build (not start) a server.

    Args:
        config: the configuration; it must hold keys (``config.with_keys()``).
        evaluators: extra evaluators, replacing built-ins of the same template (tests use this
            to stand in for judge templates or to make an evaluator fail on purpose).
        registry: a complete registry instead of the built-in one.
        store: a job store instead of the SQLite file at ``config.db_path``.
        executor_factory: builds the executor instead of the thread worker pool.

    Returns:
        The unstarted :class:`Application`.
    """
    if registry is None:
        registry = Registry.default(evaluators or (), config=config)
    return Application(config, registry=registry, store=store, executor_factory=executor_factory)
