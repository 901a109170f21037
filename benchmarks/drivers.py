"""The contenders that run in the dev virtualenv, one per process: ``python -m benchmarks.drivers``.

- ``fi-sync``: ``Evaluator.evaluate_batch(rows, evals)`` with the SDK's defaults;
- ``fi-async``: the same with ``is_async=True`` (submit everything; results the server
  finished at submit come back with the ids, the rest are bulk-polled);
- ``http-ceiling``: a bare ``requests.Session`` shared by ``--workers`` threads that POSTs the
  same bodies fi_evals sends (same chunks, same ``Idempotency-Key`` header) and only checks the
  status: what the server and HTTP allow on this machine, with the least client work;
- ``in-process``: the server's evaluators called directly (``evaluate_many``), no HTTP, no
  storage: the ceiling of the evaluation work itself;
- ``server-no-http``: the server's request pipeline (``EvalService.submit``: validation,
  evaluation, SQLite storage, idempotency record) on the same bodies, no HTTP: what the server
  costs per evaluation before any networking.

Each prints one JSON line (``_probe.emit``): seconds of the timed part, outcomes, and for the
HTTP contenders the server's request and evaluation counts over exactly that part. Rows are
generated before the clock starts; a warm-up request (connections, caches) happens before too.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from benchmarks._data import TEMPLATE_KEYS, rows
from benchmarks._probe import CpuClock, emit, scrape
from fi_evals import _constants as C

__all__ = ["CONTENDERS", "main"]

Args = argparse.Namespace


def _chunk_size(args: Args) -> int:
    """Rows per request: ``--chunk-size``, else what ``evaluate_batch`` picks for this input."""
    if args.chunk_size:
        return int(args.chunk_size)
    try:  # the SDK's own rule, so the ceiling sends the very requests fi-sync sends
        from fi_evals.batch.api import _chunk_size as sdk_rule

        return int(sdk_rule(None, None, False, args.items, args.workers, C.DEFAULT_MAX_BATCH_SIZE))
    except (ImportError, TypeError):
        return min(C.BATCH_CHUNK_SIZE, math.ceil(args.items / (2 * args.workers)))


def _bodies(items: list[dict[str, str]], evals: list[str], size: int,
            is_async: bool = False) -> list[bytes]:
    """The request bodies fi_evals sends for these rows (compact JSON, chunk by chunk)."""
    out = []
    for start in range(0, len(items), size):
        part = items[start:start + size]
        for template in evals:
            inputs = {k: [r[k] for r in part] for k in TEMPLATE_KEYS[template]}
            body = {"eval_name": template, "inputs": inputs, "model": None, "is_async": is_async}
            out.append(json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode())
    return out


def _timed(args: Args, work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    url = args.url
    before = scrape(url) if url else None
    clock = CpuClock(args.server_pid)
    clock.start()
    out = work()
    out.update(clock.stop())
    if url and before is not None:
        out.update(scrape(url).minus(before))
    return out


# ---------------------------------------------------------------------- fi_evals


def fi_batch(args: Args, *, is_async: bool) -> dict[str, Any]:
    from fi_evals import Evaluator

    evals = args.evals.split(",")
    items = list(rows(args.items))
    with Evaluator(args.api_key, args.secret_key, args.url, max_workers=args.workers) as ev:
        for template in evals:  # warm-up: capabilities, template list, connections
            ev.evaluate(template, {k: items[0][k] for k in TEMPLATE_KEYS[template]})

        def work() -> dict[str, Any]:
            result = ev.evaluate_batch(items, evals, is_async=is_async, progress=False,
                                       chunk_size=args.chunk_size or None)
            return {"ok": result.stats.outcomes - result.stats.errors,
                    "errors": result.stats.errors, "client_requests": result.stats.requests,
                    "retries": result.stats.retries}

        out = _timed(args, work)
    out.update(workers=args.workers)
    return out


# ---------------------------------------------------------------------- ceilings


def http_ceiling(args: Args) -> dict[str, Any]:
    import requests
    from requests.adapters import HTTPAdapter

    evals = args.evals.split(",")
    size = _chunk_size(args)
    bodies = _bodies(list(rows(args.items)), evals, size)
    session = requests.Session()
    session.mount("http://", HTTPAdapter(pool_connections=1, pool_maxsize=args.workers))
    session.headers.update({C.HEADER_API_KEY: args.api_key, C.HEADER_SECRET_KEY: args.secret_key,
                            "Content-Type": "application/json"})
    url = args.url + C.PATH_NEW_EVAL
    session.post(url, data=bodies[0], headers={C.HEADER_IDEMPOTENCY_KEY: str(uuid.uuid4())})
    queue: Iterator[bytes] = iter(bodies)
    lock = threading.Lock()
    bad: list[int] = []

    def loop() -> None:
        while True:
            with lock:
                body = next(queue, None)
            if body is None:
                return
            answer = session.post(url, data=body,
                                  headers={C.HEADER_IDEMPOTENCY_KEY: str(uuid.uuid4())})
            if answer.status_code != 200:
                bad.append(answer.status_code)

    def work() -> dict[str, Any]:
        threads = [threading.Thread(target=loop) for _ in range(args.workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return {"bad_answers": len(bad), "workers": args.workers, "chunk_size": size}

    return _timed(args, work)


def in_process(args: Args) -> dict[str, Any]:
    from fi_evals.catalogue import get_template
    from fi_evals.server.evaluators import Registry

    evals = args.evals.split(",")
    size = _chunk_size(args)
    registry = Registry.default()
    items = list(rows(args.items))
    jobs = []
    for start in range(0, len(items), size):
        for template in evals:
            keys = TEMPLATE_KEYS[template]
            jobs.append((registry.get(get_template(template)),
                         [{k: r[k] for k in keys} for r in items[start:start + size]]))
    jobs[0][0].evaluate_many(jobs[0][1][:1], {})  # warm-up (lazy imports, caches)

    def work() -> dict[str, Any]:
        ok = 0
        for evaluator, part in jobs:
            ok += sum(1 for r in evaluator.evaluate_many(part, {}) if not isinstance(r, Exception))
        return {"ok": ok, "chunk_size": size}

    return _timed(args, work)


def server_no_http(args: Args) -> dict[str, Any]:
    from fi_evals.server.application import create_app
    from fi_evals.server.config import ServerConfig

    evals = args.evals.split(",")
    size = _chunk_size(args)
    bodies = _bodies(list(rows(args.items)), evals, size)
    with tempfile.TemporaryDirectory(prefix="fi-evals-bench-") as folder:
        config = ServerConfig(port=0, db_path=os.path.join(folder, "bench.db")).with_keys()
        app = create_app(config)
        service = app.service
        service.submit(bodies[0], "bench", str(uuid.uuid4()))  # warm-up

        def work() -> dict[str, Any]:
            for body in bodies:  # one thread: the server's Python work holds one GIL anyway
                service.submit(body, "bench", str(uuid.uuid4()))
            return {"chunk_size": size}

        out = _timed(args, work)
        app.store.close()
    return out


CONTENDERS: dict[str, Callable[[Args], dict[str, Any]]] = {
    "fi-sync": lambda a: fi_batch(a, is_async=False),
    "fi-async": lambda a: fi_batch(a, is_async=True),
    "http-ceiling": http_ceiling,
    "in-process": in_process,
    "server-no-http": server_no_http,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("contender", choices=sorted(CONTENDERS))
    parser.add_argument("--url", default=None)
    parser.add_argument("--api-key", default="")
    parser.add_argument("--secret-key", default="")
    parser.add_argument("--items", type=int, required=True)
    parser.add_argument("--evals", default="is_json,fuzzy_match")
    parser.add_argument("--workers", type=int, default=C.DEFAULT_MAX_WORKERS)
    parser.add_argument("--chunk-size", type=int, default=0, help="0: the SDK's choice")
    parser.add_argument("--server-pid", type=int, default=None, help="to read its CPU time")
    args = parser.parse_args(argv)
    out = CONTENDERS[args.contender](args)
    out.update(contender=args.contender, items=args.items,
               outcomes=args.items * len(args.evals.split(",")))
    emit(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
