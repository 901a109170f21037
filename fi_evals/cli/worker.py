"""``fi-evals worker``: a Celery worker that runs the evaluations of a Redis-backed deployment.

It imports the server's evaluator registry, not its HTTP layer, takes chunks of evaluation ids
from the Celery queue in Redis, and stores the results in the same Redis. Start as many as the
work needs, on any machines that reach the Redis server (docs/deployment.md).

Prints ``fi-evals worker ready: NAME`` on stdout once it consumes. SIGTERM or Ctrl-C: warm
shutdown (tasks in hand finish; unstarted ones go back to the queue). ``kill -9`` loses
nothing either: its unacknowledged tasks come back after the visibility timeout.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
from typing import Any

from fi_evals import _constants as C
from fi_evals.cli._args import (
    add_evaluators_option,
    add_isolation_options,
    isolation_settings,
    model_settings,
    positive_float,
    positive_int,
)
from fi_evals.cli._exit import EXIT_FAILED, EXIT_OK, EXIT_USAGE

__all__ = ["READY_LINE_PREFIX", "add_parser", "run"]

READY_LINE_PREFIX = "fi-evals worker ready: "
_POOLS = ("threads", "prefork", "solo")
# Celery logs two INFO lines per task: too many for chunks of cheap evaluations.
_CHATTY_LOGGERS = ("celery.app.trace", "celery.worker.strategy")




_EPILOG = f"""examples:
  fi-evals worker --backend redis://10.0.0.5:6379/0
  fi-evals worker --backend redis://10.0.0.5:6379/0 --concurrency 32   # slow judge models
  fi-evals worker --backend redis://localhost:6379/0 --evaluators mypkg.judges:EVALUATORS

The API nodes are `fi-evals serve --backend <the same URL>`. Tasks go to the Celery queue
{C.CELERY_QUEUE!r}; every default is in fi_evals/_constants.py."""


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "worker", help="run a Celery worker for `fi-evals serve --backend redis://...`",
        description="Run evaluations for a Redis-backed deployment (Celery worker).",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_EPILOG,
    )
    p.add_argument("--backend", metavar="URL", required=True,
                   help="redis://HOST:PORT/DB[?prefix=P], the same as the API nodes'")
    p.add_argument("--concurrency", type=positive_int, metavar="N",
                   default=C.WORKER_CONCURRENCY,
                   help=f"tasks run at once (default {C.WORKER_CONCURRENCY})")
    p.add_argument("--pool", choices=_POOLS, default="threads",
                   help="threads (default: evaluations mostly wait on models), prefork "
                        "(CPU-heavy custom evaluators) or solo (one task at a time)")
    add_evaluators_option(p)
    p.add_argument("--visibility-timeout", type=positive_float, metavar="SECONDS",
                   default=C.CELERY_VISIBILITY_TIMEOUT,
                   help="seconds before a task unacknowledged by a dead worker is delivered "
                        f"again (default {C.CELERY_VISIBILITY_TIMEOUT:g}); must exceed the "
                        "longest chunk")
    p.add_argument("--restore-interval", type=positive_float, metavar="SECONDS",
                   default=C.CELERY_RESTORE_INTERVAL,
                   help="seconds between looks for such tasks "
                        f"(default {C.CELERY_RESTORE_INTERVAL:g})")
    p.add_argument("--name", metavar="NODENAME", default=None,
                   help="Celery node name (default fi-evals-PID@HOSTNAME)")
    p.add_argument("--log-level", default="info",
                   choices=["debug", "info", "warning", "error"], help="log verbosity (stderr)")
    add_isolation_options(p)
    p.set_defaults(func=run)


def _model_config(args: argparse.Namespace) -> Any:
    """The judge and offline-model settings from the environment (as ``fi-evals serve`` reads
    them), so that workers run model-judged templates like the API nodes, and the isolation
    limits of the flags."""
    from fi_evals.server.config import ServerConfig

    return ServerConfig(judge_url=os.environ.get(C.ENV_JUDGE_BASE_URL) or None,
                        judge_model=os.environ.get(C.ENV_JUDGE_MODEL) or None,
                        judge_api_key=os.environ.get(C.ENV_JUDGE_API_KEY) or None,
                        embedding_model=os.environ.get(C.ENV_EMBEDDING_MODEL) or None,
                        embedding_precision=os.environ.get(C.ENV_EMBEDDING_PRECISION) or None,
                        local_grounding_heuristic=model_settings(
                            argparse.Namespace())["local_grounding_heuristic"],
                        backend=args.backend, **_judge_cache_settings(),
                        **isolation_settings(args))


def _judge_cache_settings() -> dict[str, Any]:
    """The judge cache, prices and rate limits of the environment (``FI_JUDGE_CACHE``,
    ``FI_JUDGE_RPM``...): the judge cache then lives in the backend's Redis, shared with the
    API nodes and the other workers."""
    settings = model_settings(argparse.Namespace())
    return {name: value for name, value in settings.items()
            if name.startswith(("judge_cache", "judge_price", "judge_rpm", "judge_tpm"))}


def _build(args: argparse.Namespace) -> tuple[Any, Any]:
    """The configured Celery app with the chunk task registered, and its isolation pool."""
    from fi_evals.server.evaluators import Registry, load_evaluators
    from fi_evals.server.isolation import IsolationLimits, IsolationPool, isolate
    from fi_evals.server.redis_backend.celery_app import make_celery, register_task
    from fi_evals.server.redis_backend.settings import BackendURL

    backend = BackendURL.parse(args.backend)
    config = _model_config(args)
    pool = IsolationPool(IsolationLimits.from_config(config))
    registry = isolate(Registry.default(load_evaluators(args.evaluators), config=config), pool)
    app = make_celery(backend, visibility_timeout=args.visibility_timeout,
                      restore_interval=args.restore_interval)
    register_task(app, backend, registry)
    logging.getLogger("fi_evals.server.worker").info(
        "worker for %s: %r, pool %s x %d, isolation %r", backend, registry, args.pool,
        args.concurrency, pool)
    return app, pool


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.log_level != "debug":
        for name in _CHATTY_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
    try:
        from celery.signals import worker_ready
    except ImportError as exc:
        print(f"fi-evals worker needs the redis extra: pip install 'fi-evals[redis]' ({exc})",
              file=sys.stderr)
        return EXIT_FAILED
    try:
        app, pool = _build(args)
    except (ValueError, ImportError, AttributeError) as exc:
        print(f"fi-evals worker: {exc}", file=sys.stderr)
        return EXIT_USAGE
    name = args.name or f"fi-evals-{os.getpid()}@{socket.gethostname()}"

    @worker_ready.connect(weak=False)
    def announce(sender: Any = None, **kwargs: Any) -> None:
        print(f"{READY_LINE_PREFIX}{name}", flush=True)

    argv = ["worker", "--loglevel", args.log_level.upper(), "--pool", args.pool,
            "--concurrency", str(args.concurrency), "--queues", C.CELERY_QUEUE,
            "--hostname", name,
            # No gossip, mingle or event heartbeats: workers share nothing but the queue, and
            # mingle alone adds seconds to every start.
            "--without-gossip", "--without-mingle", "--without-heartbeat"]
    try:
        app.worker_main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    finally:
        pool.stop()
    return EXIT_OK
