"""Scale-out fixtures: one real Redis for the session, two Celery workers, two-node deployments.

The suite-wide fixtures are overridden here, so that the protocol and SDK tests adopted by
``test_cluster_*.py`` run unchanged against a deployment of two API nodes behind a per-request
round-robin proxy (``proxy.py`` says why per request), sharing one Redis and two workers:

- ``live_server`` (session): two ``fi-evals serve --backend`` *processes*.
- ``sdk_server`` (module, extended and compat): the same, with ``--compat`` for compat.
- ``server_factory`` (function): two in-process nodes with the given config overrides (and
  evaluators); a ``db_path`` maps to a Redis prefix, so "restart on the same db" works.

Every deployment gets its own key prefix; the workers are shared (tasks carry the prefix, and
the API node's ``--sim-latency-ms``), and stopping a deployment deletes its keys, so the
workers drop what is left of it.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from _helpers import ServeProcess

from fi_evals.server.config import ServerConfig, generate_key_pair
from fi_evals.server.runner import start_server

from .cluster import STAND_INS, Deployment, RedisServer, WorkerProcess, child_env

NODES = 2
WORKERS = 2
WORKER_CONCURRENCY = 8
_STOP_TIMEOUT = 15.0
_prefixes = itertools.count()


def new_prefix(label: str) -> str:
    return f"t{next(_prefixes)}-{label}:"


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A real redis-server on a free loopback port, for the whole session."""
    if shutil.which("redis-server") is None:
        message = "redis-server is not installed; `make test` installs it (apt-get)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def cluster_workers(redis_server: RedisServer,
                    tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[WorkerProcess]]:
    """Two ``fi-evals worker`` processes on database 0, shared by every deployment."""
    logs = tmp_path_factory.mktemp("workers")
    workers = [WorkerProcess(f"{redis_server.url}/0", "--concurrency", str(WORKER_CONCURRENCY),
                             "--evaluators", STAND_INS, log_path=logs / f"worker{i}.log",
                             wait=False)
               for i in range(WORKERS)]
    for worker in workers:
        worker.wait_ready()
    yield workers
    for worker in workers:
        worker.terminate()
    for worker in workers:
        worker.wait(15)


def process_deployment(redis_server: RedisServer, directory: Path, *flags: str,
                       label: str, compat: bool = False) -> Deployment:
    """Two ``fi-evals serve --backend`` processes on a fresh prefix, behind the proxy."""
    prefix = new_prefix(label)
    backend = f"{redis_server.url}/0?prefix={prefix}"
    api_key, secret_key = generate_key_pair()
    args = ["--backend", backend, "--no-access-log", *flags, *(["--compat"] if compat else [])]

    def start(n: int) -> ServeProcess:
        return ServeProcess(directory / f"{label}-node{n}.db", *args, api_key=api_key,
                            secret_key=secret_key, env=child_env())

    with ThreadPoolExecutor(NODES) as pool:
        nodes = list(pool.map(start, range(NODES)))

    def stopper(node: ServeProcess) -> Any:
        def stop() -> None:
            node.terminate()
            node.wait(_STOP_TIMEOUT)
        return stop

    config = ServerConfig(port=0, api_key=api_key, secret_key=secret_key, compat=compat,
                          backend=backend)
    return Deployment([n.url for n in nodes], [stopper(n) for n in nodes], config=config,
                      redis_client=redis_server.client(), prefix=prefix)


def inprocess_deployment(redis_server: RedisServer, *, evaluators: Any = None, db: int = 0,
                         **overrides: Any) -> Deployment:
    """Two in-process nodes with ``ServerConfig`` overrides (a ``db_path`` names the prefix),
    on Redis database ``db`` (0: the shared workers')."""
    db_path = overrides.pop("db_path", None)
    prefix = ("db-" + hashlib.sha1(str(db_path).encode()).hexdigest()[:12] + ":"
              if db_path else new_prefix("factory"))
    overrides.setdefault("port", 0)
    config = ServerConfig(backend=f"{redis_server.url}/{db}?prefix={prefix}",
                          **overrides).with_keys()
    nodes = [start_server(config, evaluators=evaluators) for _ in range(NODES)]
    return Deployment([n.url for n in nodes], [lambda n=n: n.stop(_STOP_TIMEOUT) for n in nodes],
                      config=config, redis_client=redis_server.client(db), prefix=prefix,
                      keep_data=db_path is not None)


@pytest.fixture(scope="session")
def live_server(redis_server: RedisServer, cluster_workers: list[WorkerProcess],
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """The shared deployment: two ``fi-evals serve --backend`` processes."""
    deployment = process_deployment(redis_server, tmp_path_factory.mktemp("live"),
                                    label="live")
    yield deployment
    deployment.stop()


@pytest.fixture(scope="module", params=["extended", "compat"])
def sdk_server(request: pytest.FixtureRequest, redis_server: RedisServer,
               cluster_workers: list[WorkerProcess],
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """Per module and mode, like tests/sdk's: two processes, ``--compat`` in compat mode."""
    deployment = process_deployment(redis_server, tmp_path_factory.mktemp("sdk"),
                                    label=f"sdk-{request.param}",
                                    compat=request.param == "compat")
    yield deployment
    deployment.stop()


@pytest.fixture
def server_factory(redis_server: RedisServer,
                   cluster_workers: list[WorkerProcess]) -> Iterator[Any]:
    """``server_factory(**config_overrides, evaluators=[...])`` -> a two-node deployment."""
    started: list[Deployment] = []

    def factory(*, evaluators: Any = None, registry: Any = None, store: Any = None,
                executor_factory: Any = None, **overrides: Any) -> Deployment:
        if registry is not None or store is not None or executor_factory is not None:
            raise TypeError("a Redis deployment has its own registry, store and executor")
        deployment = inprocess_deployment(redis_server, evaluators=evaluators, **overrides)
        started.append(deployment)
        return deployment

    yield factory
    for deployment in reversed(started):
        deployment.stop(keep_data=False)
