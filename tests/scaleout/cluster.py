"""Pieces of a scale-out deployment for tests: a real Redis, Celery workers, API nodes.

- :class:`RedisServer`: ``redis-server`` on a free loopback port, data in a tmp dir.
- :class:`WorkerProcess`: ``fi-evals worker`` in its own process group (``kill -9`` takes the
  whole worker, as a machine or container dying would).
- :class:`Deployment`: two API nodes sharing one Redis key prefix behind a
  :class:`~proxy.RoundRobinProxy`. It looks like a ``RunningServer`` to the tests (``url``,
  keys, ``headers``, ``config``, ``stop()``); stopping it deletes its keys, so the shared
  workers drop whatever of it is still queued.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Self

import redis

from fi_evals import _constants as C
from fi_evals.cli.worker import READY_LINE_PREFIX
from fi_evals.server.config import ServerConfig

from .proxy import RoundRobinProxy

TESTS_DIR = Path(__file__).resolve().parent.parent
STAND_INS = "scaleout.stand_ins:STAND_INS"
"""The stand-in evaluators of tests/server/conftest.py, for the workers (``--evaluators``)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env() -> dict[str, str]:
    """The environment of child processes: ``tests/`` importable (stand-in evaluators)."""
    env = {k: v for k, v in os.environ.items() if k not in (C.ENV_API_KEY, C.ENV_SECRET_KEY)}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS_DIR),
                                                      env.get("PYTHONPATH", "")]))
    return env


class RedisServer:
    """``redis-server`` on 127.0.0.1 (no persistence: tests need speed, not durability)."""

    def __init__(self, directory: Path, *, start_timeout: float = 10.0) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed: `make test` installs it "
                               "(apt-get install redis-server)")
        self.directory = directory
        for _ in range(5):  # a free port can be taken between the probe and the bind
            self.port = free_port()
            self.proc = subprocess.Popen(
                [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir",
                 str(directory), "--save", "", "--appendonly", "no",
                 "--logfile", str(directory / "redis.log")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if self._wait_ready(start_timeout):
                break
            self.proc.kill()
            self.proc.wait(5)
        else:
            raise RuntimeError(f"redis-server did not start: {self.log_text()}")
        self.url = f"redis://127.0.0.1:{self.port}"

    def _wait_ready(self, timeout: float) -> bool:
        client = redis.Redis(port=self.port, socket_connect_timeout=1)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                return bool(client.ping())
            except redis.ConnectionError:
                time.sleep(0.05)
        return False

    def client(self, db: int = 0) -> redis.Redis:
        return redis.Redis(port=self.port, db=db, decode_responses=True)

    def log_text(self) -> str:
        path = self.directory / "redis.log"
        return path.read_text() if path.exists() else ""

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def __repr__(self) -> str:
        return f"<RedisServer {self.url} pid={self.proc.pid}>"


class WorkerProcess:
    """``fi-evals worker --backend URL ...``; returns once it consumes."""

    def __init__(self, backend: str, *args: str, log_path: Path, wait: bool = True,
                 start_timeout: float = 60.0, env: dict[str, str] | None = None) -> None:
        """Args:
            backend: the ``--backend`` URL.
            *args: more ``fi-evals worker`` flags (a ``--log-level`` here wins).
            log_path: where its stderr goes.
            wait: return only once it consumes (else call :meth:`wait_ready`).
            env: more environment variables (``FI_JUDGE_*``: its judge settings).
        """
        self.backend = backend
        self.log_path = log_path
        self.name = ""
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in wait()
        cmd = [sys.executable, "-m", "fi_evals.cli", "worker", "--backend", backend,
               "--log-level", "warning", *args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._log,
                                     env={**child_env(), **(env or {})},
                                     start_new_session=True)
        if wait:
            self.wait_ready(start_timeout)

    def wait_ready(self, timeout: float = 60.0) -> str:
        """Wait for the ready line; returns the Celery node name."""
        if not self.name:
            self.name = self._read_ready(timeout)
        return self.name

    def _read_ready(self, timeout: float) -> str:
        found: list[str] = []

        def read() -> None:
            assert self.proc.stdout is not None
            for raw in self.proc.stdout:
                line = raw.decode("utf-8", "replace").strip()
                if line.startswith(READY_LINE_PREFIX):
                    found.append(line[len(READY_LINE_PREFIX):])
                    break
            for _ in self.proc.stdout:  # keep the pipe drained
                pass

        threading.Thread(target=read, daemon=True).start()
        deadline = time.monotonic() + timeout
        while not found and time.monotonic() < deadline and self.proc.poll() is None:
            time.sleep(0.02)
        if not found:
            self.kill9()
            raise RuntimeError(f"fi-evals worker did not start; log:\n{self.log_text()}")
        return found[0]

    def kill9(self) -> None:
        """SIGKILL to the worker's whole process group, then reap it."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.wait(10)

    def terminate(self) -> None:
        """SIGTERM: warm shutdown (tasks in hand finish); :meth:`wait` for the exit."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM (warm shutdown), SIGKILL after ``timeout``."""
        self.terminate()
        return self.wait(timeout)

    def wait(self, timeout: float) -> int:
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            code = self.proc.wait(10)
        self._log.close()
        return code

    def log_text(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text("utf-8", "replace")

    def __repr__(self) -> str:
        return f"<WorkerProcess {self.name or '?'} pid={self.proc.pid}>"


class Deployment:
    """Two (or more) API nodes on one Redis prefix behind a round-robin proxy."""

    def __init__(self, node_urls: Sequence[str], stoppers: Sequence[Callable[[], Any]], *,
                 config: ServerConfig, redis_client: redis.Redis, prefix: str,
                 keep_data: bool = False) -> None:
        self.node_urls = list(node_urls)
        self.proxy = RoundRobinProxy(self.node_urls)
        self.url = self.proxy.url
        self.config = config
        self.api_key = config.api_key or ""
        self.secret_key = config.secret_key or ""
        self.prefix = prefix
        self._redis = redis_client
        self.keep_data = keep_data
        self._stoppers = list(stoppers)
        self._stopped = False

    @property
    def headers(self) -> dict[str, str]:
        return {C.HEADER_API_KEY: self.api_key, C.HEADER_SECRET_KEY: self.secret_key}

    def stop(self, timeout: float | None = None, *, keep_data: bool | None = None) -> bool:
        """Stop the proxy and the nodes (once); then delete the prefix's keys unless
        ``keep_data`` (default: the constructor's, true for a deployment "on a db file")."""
        if not self._stopped:
            self._stopped = True
            self.proxy.stop()
            with ThreadPoolExecutor(len(self._stoppers)) as pool:  # nodes drain in parallel
                list(pool.map(lambda stop: stop(), self._stoppers))
        if not (self.keep_data if keep_data is None else keep_data):
            delete_prefix(self._redis, self.prefix)
        return True

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<Deployment {self.url} nodes={self.node_urls} prefix={self.prefix!r}>"


def delete_prefix(client: redis.Redis, prefix: str) -> int:
    """Delete every key under ``prefix``; returns how many."""
    deleted = 0
    batch: list[str] = []
    for key in client.scan_iter(match=f"{prefix}*", count=1000):
        batch.append(key)
        if len(batch) >= 1000:
            deleted += client.delete(*batch)
            batch = []
    if batch:
        deleted += client.delete(*batch)
    return deleted
