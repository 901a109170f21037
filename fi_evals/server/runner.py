"""Run a reference server in a background thread: for tests, and the CLI's embedded server.

>>> from fi_evals.server.config import ServerConfig
>>> with start_server(ServerConfig(port=0, db_path="/tmp/x.db")) as server:   # doctest: +SKIP
...     print(server.url, server.api_key)

The socket is bound before uvicorn starts, so ``port=0`` gives a free port that is known at
once; :func:`start_server` returns only when the server accepts connections. Stopping drains:
new requests get 503, in-flight requests finish, queued evaluations stay in the store.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import Iterable
from types import TracebackType
from typing import Self

from fi_evals.server.application import Application, ExecutorFactory, create_app
from fi_evals.server.config import ServerConfig
from fi_evals.server.evaluators import BaseEvaluator, Registry
from fi_evals.server.store import JobStore

__all__ = ["RunningServer", "start_server"]

log = logging.getLogger("fi_evals.server")

_START_TIMEOUT = 30.0
_KEEP_ALIVE = 30  # seconds an idle connection stays open (longer than clients' typical reuse gap)
_BACKLOG = 2048


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto must be IPPROTO_TCP, not 0: asyncio only sets TCP_NODELAY on accepted sockets whose
    # proto says TCP, and without it every keep-alive answer stalls ~40 ms (Nagle + delayed ACK).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(_BACKLOG)
    sock.set_inheritable(True)
    return sock


class RunningServer:
    """A started server: ``url``, keys, ``config``, and :meth:`stop` (also a context manager)."""

    def __init__(self, app: Application, uv_server: object, thread: threading.Thread,
                 sock: socket.socket) -> None:
        self.app = app
        self.config = app.config
        host, port = sock.getsockname()[:2]
        self.host = host
        self.port = port
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{port}"
        self._uv = uv_server
        self._thread = thread
        self._sock = sock
        self._stopped = False
        self._lock = threading.Lock()

    @property
    def api_key(self) -> str:
        return self.config.api_key or ""

    @property
    def secret_key(self) -> str:
        return self.config.secret_key or ""

    @property
    def headers(self) -> dict[str, str]:
        """The authentication headers, for raw HTTP clients."""
        return {"X-Api-Key": self.api_key, "X-Secret-Key": self.secret_key}

    @property
    def running(self) -> bool:
        return self._thread.is_alive() and not self._stopped

    def stop(self, timeout: float | None = None) -> bool:
        """Drain and stop: 503 to new requests, wait for in-flight ones, stop the workers
        (unstarted evaluations stay pending in the store), close the store.

        Args:
            timeout: seconds to wait in all; default ``config.drain_timeout``.

        Returns:
            True when everything stopped in time. Idempotent.
        """
        with self._lock:
            if self._stopped:
                return True
            self._stopped = True
        timeout = self.config.drain_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        gateway = self.app.gateway
        gateway.begin_drain()  # 503s; bodies still arriving are cut at once
        self.app.executor.begin_stop()
        while gateway.inflight > 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        drained = gateway.inflight == 0
        workers_done = self.app.executor.stop(max(0.0, deadline - time.monotonic()))
        self.app.stop_isolation()
        self._uv.should_exit = True  # type: ignore[attr-defined]
        self._thread.join(max(1.0, deadline - time.monotonic()))
        if self._thread.is_alive():
            self._uv.force_exit = True  # type: ignore[attr-defined]
            self._thread.join(2.0)
        self._sock.close()
        if workers_done:
            self.app.store.close()
        ok = drained and workers_done and not self._thread.is_alive()
        if not ok:
            log.warning("server stopped before all work finished (drained=%s, workers=%s)",
                        drained, workers_done)
        return ok

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<RunningServer {self.url} {state} db={self.config.db_path!r}>"


def start_server(config: ServerConfig, *, evaluators: Iterable[BaseEvaluator] | None = None,
                 registry: Registry | None = None, store: JobStore | None = None,
                 executor_factory: ExecutorFactory | None = None) -> RunningServer:
    """Start a server in a daemon thread and return once it accepts connections.

    Args:
        config: the configuration; missing keys are generated (see ``RunningServer.api_key``).
        evaluators: extra evaluators replacing built-ins of the same template (``fi-evals
            serve --evaluators``, tests).
        registry: a complete registry instead of the built-in one.
        store: a job store instead of the SQLite file at ``config.db_path``.
        executor_factory: builds the executor instead of the thread worker pool.

    Returns:
        The :class:`RunningServer`.

    Raises:
        OSError: the address cannot be bound.
        RuntimeError: the server did not start within 30 s.
    """
    import uvicorn

    from fi_evals.server.connection import protocol_class

    config = config.with_keys()
    sock = _bind(config.host, config.port)  # first: a busy port must not touch the database
    try:
        app = create_app(config, evaluators=evaluators, registry=registry, store=store,
                         executor_factory=executor_factory)
    except BaseException:
        sock.close()
        raise
    uv_config = uvicorn.Config(
        app.asgi, log_config=None, access_log=False, lifespan="off", proxy_headers=False,
        server_header=False, timeout_keep_alive=_KEEP_ALIVE, ws="none",
        http=protocol_class(app.gateway, config.read_timeout),
        timeout_graceful_shutdown=max(1, int(config.drain_timeout)),
    )
    uv_server = uvicorn.Server(uv_config)
    failure: list[BaseException] = []

    def serve() -> None:
        try:
            asyncio.run(uv_server.serve(sockets=[sock]))
        except BaseException as exc:  # reported by start_server
            failure.append(exc)
            log.exception("the server thread failed")

    app.start()
    for knob in config.knobs():
        log.warning("TEST KNOB ON: %s", knob)
    thread = threading.Thread(target=serve, name="fi-evals-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + _START_TIMEOUT
    while not uv_server.started:
        if failure or not thread.is_alive() or time.monotonic() > deadline:
            app.executor.stop(1.0)
            app.stop_isolation()
            app.store.close()
            sock.close()
            raise RuntimeError(f"the server did not start: {failure[0] if failure else 'timeout'}")
        time.sleep(0.005)
    running = RunningServer(app, uv_server, thread, sock)
    log.info("fi-evals server on %s (db %s, %d workers)", running.url, config.db_path,
             config.workers)
    return running
