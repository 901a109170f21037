"""``fi-evals view``: a small local web app over kept runs (FastAPI + uvicorn, server extra).

It is its own app, not the evaluation server: it reads run folders and nothing else, and the
client side of the package never imports :mod:`fi_evals.server`. It listens on 127.0.0.1 only
and answers only requests whose ``Host`` header names that address (a web page elsewhere
cannot reach it by pointing a hostname of its own at 127.0.0.1).

The page (``page.html``: HTML, CSS and JavaScript in one file, no CDN, no network, no build
step) holds one page of rows at a time; every filter runs here, on SQLite indexes:

- ``GET /``: the page;
- ``GET /api/runs``: every opened run's overview (:meth:`Run.overview`);
- ``GET /api/runs/{n}/rows?eval=&verdict=&q=&offset=&limit=&count=``: a page of run ``n``'s
  rows (``n`` is the run's position on the command line, from 0), with the count of matches
  unless ``count=false`` (the page asks a text search's count apart: it scans the run);
- ``GET /api/runs/{n}/count?eval=&verdict=&q=``: that count alone;
- ``GET /api/runs/{n}/rows/{index}``: one row in full;
- ``GET /api/diff?base=&new=&key=``: two runs compared (:mod:`fi_evals.runs.diff`; computed
  once per pair and key, then kept while the viewer runs);
- ``GET /api/diff/rows?base=&new=&key=&kind=&offset=&limit=``: a page of its changed rows.

Bad parameters get a 400 (or FastAPI's 422) naming the parameter and what was expected.
"""

from __future__ import annotations

import asyncio
import importlib.resources
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Self

from fi_evals._constants import VIEW_MAX_PAGE_SIZE, VIEW_PAGE_SIZE
from fi_evals._extras import require
from fi_evals.runs.diff import Diff, diff_runs
from fi_evals.runs.run import RowQuery, Run
from fi_evals.runs.schema import read_meta

__all__ = ["RunningViewer", "create_app", "page_html", "start_viewer"]

HOST = "127.0.0.1"
_KEPT_DIFFS = 4
VIEW_READERS = 2
"""Threads reading SQLite for the page (a person clicks; two keep a slow search from
blocking the next page)."""
_START_TIMEOUT = 30.0


def page_html() -> str:
    """The viewer's page (the same file ``--export`` fills with data)."""
    return importlib.resources.files("fi_evals.runs").joinpath("page.html").read_text("utf-8")


class _Diffs:
    """The last few diffs computed, by (base, new, key); each is computed once."""

    def __init__(self, runs: Sequence[Run]) -> None:
        self.runs = runs
        self._kept: OrderedDict[tuple[int, int, str | None], Diff] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, base: int, new: int, key: str | None) -> Diff:
        ident = (base, new, key or None)
        with self._lock:  # one diff at a time: each is a few seconds of SQLite on big runs
            if ident in self._kept:
                self._kept.move_to_end(ident)
                return self._kept[ident]
            diff = diff_runs(self.runs[base], self.runs[new], key=key or None)
            self._kept[ident] = diff
            while len(self._kept) > _KEPT_DIFFS:
                self._kept.popitem(last=False)[1].close()
            return diff

    def close(self) -> None:
        with self._lock:
            for diff in self._kept.values():
                diff.close()
            self._kept.clear()


def create_app(runs: Sequence[Run], *, allowed_hosts: set[str] | None = None) -> Any:
    """The viewer's ASGI app over ``runs``.

    Args:
        runs: the runs to show, in order (the page's run 0, 1, ...).
        allowed_hosts: ``Host`` header values accepted (``127.0.0.1:PORT``...); None accepts
            any (tests that call the app in-process).

    Raises:
        ImportError: the server extra (FastAPI) is not installed.
    """
    fastapi = require("fastapi", "server", "fi-evals view")
    responses = require("fastapi.responses", "server", "fi-evals view")
    app = fastapi.FastAPI(title="fi-evals view", docs_url=None, redoc_url=None,
                          openapi_url=None)
    app.state.diffs = diffs = _Diffs(runs)
    # SQLite is read by a pool of its own, not by the framework's 40 threads: each thread that
    # ever reads keeps an allocator arena of its own, and the viewer's memory would grow with
    # them (measured: +45 MB over 40 requests on the default pool).
    app.state.pool = pool = ThreadPoolExecutor(VIEW_READERS, thread_name_prefix="fi-evals-view")
    page = page_html()
    query = fastapi.Query

    def error(status: int, message: str) -> Any:
        return responses.JSONResponse({"error": message}, status_code=status)

    @app.middleware("http")
    async def only_local(request: Any, call_next: Any) -> Any:
        if allowed_hosts is not None and request.headers.get("host") not in allowed_hosts:
            return error(403, "this viewer answers requests to its own 127.0.0.1 address only")
        return await call_next(request)

    def run_at(n: int) -> Run:
        if not 0 <= n < len(runs):
            raise LookupError(f"run: no run {n} (this viewer shows runs 0 to {len(runs) - 1})")
        run = runs[n]
        if run.meta.get("status") == "running":  # still written: read its meta again
            try:
                run.meta = read_meta(run.folder)
            except (OSError, ValueError):
                pass
        return run

    def settle(work: Any) -> Any:
        try:
            return work()
        except LookupError as exc:
            return error(404, str(exc.args[0] if exc.args else exc))
        except ValueError as exc:
            return error(400, str(exc))

    async def answer(work: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(pool, settle, work)

    @app.get("/", response_class=responses.HTMLResponse)
    async def index() -> Any:
        return responses.HTMLResponse(page, headers={"Cache-Control": "no-store"})

    @app.get("/api/runs")
    async def list_runs() -> Any:
        return await answer(lambda: {"runs": [run_at(n).overview() for n in range(len(runs))]})

    @app.get("/api/runs/{n}/rows")
    async def rows(n: int, eval: str | None = None, verdict: str | None = None,
                   q: str | None = None, offset: int = query(0, ge=0),
                   limit: int = query(VIEW_PAGE_SIZE, ge=1, le=VIEW_MAX_PAGE_SIZE),
                   count: bool = True) -> Any:
        filt = RowQuery(eval=eval or None, verdict=verdict or None, text=q or None)
        return await answer(lambda: run_at(n).page(filt, offset=offset, limit=limit,
                                                   count=count))

    @app.get("/api/runs/{n}/count")
    async def count_rows(n: int, eval: str | None = None, verdict: str | None = None,
                         q: str | None = None) -> Any:
        filt = RowQuery(eval=eval or None, verdict=verdict or None, text=q or None)

        def work() -> Any:
            total, capped = run_at(n).count(filt)
            return {"total": total, "total_capped": capped}
        return await answer(work)

    @app.get("/api/runs/{n}/rows/{index}")
    async def row(n: int, index: int) -> Any:
        def work() -> Any:
            found = run_at(n).row(index)
            if found is None:
                raise LookupError(f"index: run {n} has no row {index}")
            return found
        return await answer(work)

    def pair(base: int, new: int) -> None:
        run_at(base)
        run_at(new)
        if base == new:
            raise ValueError("new: choose a run other than base")

    @app.get("/api/diff")
    async def diff(base: int = 0, new: int = 1, key: str | None = None) -> Any:
        def work() -> Any:
            pair(base, new)
            return diffs.get(base, new, key).to_dict()
        return await answer(work)

    @app.get("/api/diff/rows")
    async def diff_rows(base: int = 0, new: int = 1, key: str | None = None,
                  kind: str = "regressed", offset: int = query(0, ge=0),
                  limit: int = query(VIEW_PAGE_SIZE, ge=1, le=VIEW_MAX_PAGE_SIZE)) -> Any:
        def work() -> Any:
            pair(base, new)
            d = diffs.get(base, new, key)
            return {"kind": kind, "offset": offset, "limit": limit, "total": d.count(kind),
                    "rows": d.rows(kind, offset=offset, limit=limit)}
        return await answer(work)

    return app


class RunningViewer:
    """A viewer serving in a background thread: ``url``, :meth:`stop`."""

    def __init__(self, app: Any, server: Any, thread: threading.Thread,
                 sock: socket.socket) -> None:
        self.app = app
        self.port = sock.getsockname()[1]
        self.url = f"http://{HOST}:{self.port}/"
        self._server = server
        self._thread = thread
        self._sock = sock

    def wait(self) -> None:
        """Block until the viewer stops (Ctrl-C in the CLI)."""
        while self._thread.is_alive():
            self._thread.join(0.5)

    def stop(self) -> None:
        """Stop serving and delete the diffs' scratch databases (idempotent)."""
        self._server.should_exit = True
        self._thread.join(10.0)
        self._sock.close()
        self.app.state.diffs.close()
        self.app.state.pool.shutdown(wait=False)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<RunningViewer {self.url}>"


def start_viewer(runs: Sequence[Run], *, port: int = 0) -> RunningViewer:
    """Serve ``runs`` on 127.0.0.1:``port`` (0: any free port) from a daemon thread.

    Raises:
        ImportError: the server extra is not installed.
        OSError: the port cannot be bound.
        RuntimeError: the viewer did not start within 30 s.
    """
    uvicorn = require("uvicorn", "server", "fi-evals view")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((HOST, port))
        sock.listen(64)
        bound = sock.getsockname()[1]
        allowed = {f"{HOST}:{bound}", f"localhost:{bound}"}
        app = create_app(runs, allowed_hosts=allowed)
    except BaseException:
        sock.close()
        raise
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off",
                            server_header=False, ws="none")
    server = uvicorn.Server(config)
    failure: list[BaseException] = []

    def serve() -> None:
        try:
            asyncio.run(server.serve(sockets=[sock]))
        except BaseException as exc:  # noqa: BLE001 - reported by start_viewer
            failure.append(exc)

    thread = threading.Thread(target=serve, name="fi-evals-view", daemon=True)
    thread.start()
    deadline = time.monotonic() + _START_TIMEOUT
    while not server.started:
        if failure or not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise RuntimeError(f"the viewer did not start: "
                               f"{failure[0] if failure else 'timeout'}")
        time.sleep(0.01)
    return RunningViewer(app, server, thread, sock)
