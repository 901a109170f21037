"""``fi-evals serve``: run the reference evaluation server in the foreground.

Prints ``fi-evals serving on http://HOST:PORT`` on stdout once it accepts connections (and the
``export`` line to use when it generated the keys). SIGTERM or Ctrl-C drains: new requests get
503, in-flight requests finish, queued evaluations stay in the database for the next start.
A second signal stops at once.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from typing import IO, Any

from fi_evals import _constants as C
from fi_evals.cli._args import (
    add_evaluators_option,
    add_isolation_options,
    add_model_options,
    isolation_settings,
    model_settings,
    non_negative_int,
    positive_float,
    positive_int,
)
from fi_evals.cli._exit import EXIT_FAILED, EXIT_OK, EXIT_USAGE

__all__ = ["add_parser", "run"]






class _HelpFormatter(argparse.RawDescriptionHelpFormatter,
                     argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults, except the unset (None) and on/off ones, where they say nothing, and
    the options whose help says its default itself."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if (action.default is None or isinstance(action.default, bool)
                or "(default" in (action.help or "")):
            return action.help or ""
        return super()._get_help_string(action) or ""


_EPILOG = f"""examples:
  fi-evals serve            # generated keys, ./{C.DEFAULT_DB_PATH}, port {C.DEFAULT_PORT}
  fi-evals serve --port 0 --db /tmp/e.db --workers 8
  fi-evals serve --sim-latency-ms 200 --faults 500:0.05,reset:0.01  # test client retries
  fi-evals serve --backend redis://10.0.0.5:6379/0  # an API node; add `fi-evals worker`s
  fi-evals serve --judge-url http://localhost:11434/v1 --judge-model llama3.1  # LLM judge
  fi-evals serve --evaluators my_evals:EVALUATORS   # your evaluators (docs/custom-metrics.md)

metrics: GET /metrics (Prometheus); API docs: GET /docs"""


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "serve", help="run the reference evaluation server",
        description="Run the reference evaluation server (PROTOCOL.md sections A and B).\n\n"
                    "Keys: --api-key/--secret-key, else FI_API_KEY/FI_SECRET_KEY from the\n"
                    "environment, else a generated pair (printed as an export line).\n"
                    "SIGTERM drains: 503 to new requests, in-flight ones finish, queued\n"
                    "evaluations stay in --db for the next start.",
        formatter_class=_HelpFormatter, epilog=_EPILOG,
    )
    p.add_argument("--host", default=C.DEFAULT_HOST, help="interface to listen on")
    p.add_argument("--port", type=int, default=C.DEFAULT_PORT, help="TCP port; 0 picks a free one")
    p.add_argument("--db", default=C.DEFAULT_DB_PATH, metavar="PATH",
                   help="SQLite file holding evaluations (created if missing)")
    p.add_argument("--workers", type=positive_int, metavar="N",
                   default=C.DEFAULT_SERVER_WORKERS, help="async worker threads")
    p.add_argument("--backend", metavar="URL", default=None,
                   help="redis://HOST:PORT/DB: keep evaluations in Redis and send async work "
                        "to `fi-evals worker` processes (Celery) instead of --db/--workers; "
                        "see docs/deployment.md")
    p.add_argument("--api-key", metavar="KEY",
                   help=f"accepted API key (default: ${C.ENV_API_KEY} or generated)")
    p.add_argument("--secret-key", metavar="KEY",
                   help=f"accepted secret key (default: ${C.ENV_SECRET_KEY} or generated)")
    p.add_argument("--max-batch-size", type=positive_int, metavar="N",
                   default=C.DEFAULT_MAX_BATCH_SIZE, help="items per new-eval request")
    p.add_argument("--max-status-ids", type=positive_int, metavar="N",
                   default=C.DEFAULT_MAX_STATUS_IDS, help="ids per bulk-status request")
    p.add_argument("--max-queue", type=positive_int, metavar="N", default=C.DEFAULT_MAX_QUEUE,
                   help="pending+processing evaluations above which async submissions get 503")
    p.add_argument("--max-body-mb", type=positive_float, metavar="MB",
                   default=C.DEFAULT_MAX_BODY_MB, help="request body limit in MB (413 above it)")
    p.add_argument("--rate-limit", type=positive_float, default=C.DEFAULT_RATE_LIMIT,
                   metavar="PER_SECOND", help="requests per second per API key (off if unset)")
    p.add_argument("--rate-burst", type=positive_int, default=None, metavar="N",
                   help="token bucket capacity (default: the rate, at least 1)")
    p.add_argument("--log-level", default="info",
                   choices=["debug", "info", "warning", "error"], help="log verbosity (stderr)")
    p.add_argument("--no-access-log", dest="access_log", action="store_false",
                   help="do not log one line per request")
    p.add_argument("--drain-timeout", type=positive_float, metavar="SECONDS",
                   default=C.DEFAULT_DRAIN_TIMEOUT,
                   help="seconds to wait for in-flight work on SIGTERM")
    _add_limit_options(p)
    add_model_options(p)
    add_evaluators_option(p)
    add_isolation_options(p)
    knobs = p.add_argument_group("test knobs (off by default, logged loudly when on)")
    knobs.add_argument("--sim-latency-ms", type=non_negative_int, metavar="MS",
                       default=C.DEFAULT_SIM_LATENCY_MS,
                       help="every evaluation takes at least this long, like a judge model")
    knobs.add_argument("--faults", metavar="SPEC", default=None,
                       help="break answers to /sdk/api/ at random, e.g. "
                            "500:0.05,429:0.02,503:0.01,500-after:0.01,reset:0.01,slow:0.01 "
                            "(500/429/503 answer before any work; 500-after does the work, "
                            "then answers 500; reset drops the connection after doing the "
                            "work; slow answers after --fault-slow-seconds)")
    knobs.add_argument("--fault-slow-seconds", type=positive_float, metavar="SECONDS",
                       default=C.DEFAULT_FAULT_SLOW_SECONDS, help="delay of a slow fault")
    knobs.add_argument("--fault-seed", type=int, default=None, metavar="N",
                       help="seed of the fault draws (reproducible runs)")
    knobs.add_argument("--compat", action="store_true",
                       help="turn every section B extension off (hosted-API-shaped server)")
    p.set_defaults(func=run)


def _add_limit_options(p: argparse.ArgumentParser) -> None:
    limits = p.add_argument_group(
        "limits (a request over one gets a 4xx naming it; see docs/server-limits.md)")
    limits.add_argument("--read-timeout", type=positive_float, metavar="SECONDS",
                        default=C.DEFAULT_REQUEST_READ_TIMEOUT,
                        help="a request's headers and body must arrive within this many "
                             "seconds of its first byte (else 408)")
    limits.add_argument("--max-json-depth", type=positive_int, metavar="N",
                        default=C.DEFAULT_MAX_JSON_DEPTH,
                        help="deepest nesting of arrays/objects in a request body")
    limits.add_argument("--max-schema-depth", type=positive_int, metavar="N",
                        default=C.DEFAULT_MAX_SCHEMA_DEPTH,
                        help="deepest nesting of the json_schema template's schema")
    limits.add_argument("--max-pattern-length", type=positive_int, metavar="CHARS",
                        default=C.DEFAULT_MAX_PATTERN_LENGTH,
                        help="longest regular expression (regex pattern, a schema's pattern)")
    limits.add_argument("--max-pattern-nesting", type=positive_int, metavar="N",
                        default=C.DEFAULT_MAX_PATTERN_NESTING,
                        help="deepest group nesting of a regular expression")
    limits.add_argument("--max-pattern-expansion", type=positive_int, metavar="N",
                        default=C.DEFAULT_MAX_PATTERN_EXPANSION,
                        help="compile budget of a regular expression: atoms times the counts "
                             "of the fixed repeats around them, e.g. (?:a{1000}){1000} is "
                             "1,000,000")
    quadratic = ", ".join(sorted(C.QUADRATIC_TEMPLATES))
    limits.add_argument("--max-quadratic-input-chars", type=positive_int, metavar="CHARS",
                        default=C.DEFAULT_MAX_QUADRATIC_INPUT_CHARS,
                        help=f"longest input string of {quadratic} (their cost grows with "
                             "the product of the input lengths)")
    limits.add_argument("--max-status-answer-mb", type=positive_float, metavar="MB",
                        default=C.DEFAULT_MAX_STATUS_ANSWER_MB,
                        help="a bulk-status answer stops adding entries past this size; "
                             "clients ask again for the rest")


def _limit_settings(args: argparse.Namespace) -> dict[str, Any]:
    names = ("read_timeout", "max_json_depth", "max_schema_depth", "max_pattern_length",
             "max_pattern_nesting", "max_pattern_expansion", "max_quadratic_input_chars",
             "max_status_answer_mb")
    return {name: getattr(args, name) for name in names}


def _config(args: argparse.Namespace) -> Any:
    from fi_evals.server.config import ServerConfig

    api_key = args.api_key or os.environ.get(C.ENV_API_KEY) or None
    secret_key = args.secret_key or os.environ.get(C.ENV_SECRET_KEY) or None
    if (api_key is None) != (secret_key is None):
        raise ValueError("give both an API key and a secret key (flags or "
                         f"{C.ENV_API_KEY}/{C.ENV_SECRET_KEY}), or neither to generate a pair")
    return ServerConfig(
        host=args.host, port=args.port, db_path=args.db, workers=args.workers,
        api_key=api_key, secret_key=secret_key, max_batch_size=args.max_batch_size,
        max_status_ids=args.max_status_ids, max_queue=args.max_queue,
        max_body_mb=args.max_body_mb, rate_limit=args.rate_limit, rate_burst=args.rate_burst,
        sim_latency_ms=args.sim_latency_ms, faults=args.faults,
        fault_slow_seconds=args.fault_slow_seconds, fault_seed=args.fault_seed,
        compat=args.compat, drain_timeout=args.drain_timeout, access_log=args.access_log,
        backend=args.backend,
        **_limit_settings(args),
        **model_settings(args), **isolation_settings(args),
    )


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        from fi_evals.server.runner import start_server
    except ImportError as exc:
        print(f"fi-evals serve needs the server extra: pip install 'fi-evals[server]' ({exc})",
              file=sys.stderr)
        return EXIT_FAILED
    from fi_evals.server.evaluators import load_evaluators

    try:
        config = _config(args)
        evaluators = load_evaluators(args.evaluators)
    except ValueError as exc:
        print(f"fi-evals serve: {exc}", file=sys.stderr)
        return EXIT_USAGE
    generated = config.api_key is None
    config = config.with_keys()
    try:
        server = start_server(config, evaluators=evaluators or None)
    except OSError as exc:
        print(f"fi-evals serve: cannot listen on {config.host}:{config.port}: {exc}",
              file=sys.stderr)
        return EXIT_FAILED
    stop = threading.Event()
    signals: list[int] = []

    def on_signal(signum: int, frame: object) -> None:
        signals.append(signum)
        if len(signals) > 1:  # a second signal: no more waiting
            os._exit(EXIT_FAILED)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print(f"{C.SERVING_LINE_PREFIX}{server.url}", flush=True)
    if generated:
        # The only place a key is ever shown: the operator needs it to talk to the server.
        print(f"export {C.ENV_API_KEY}={server.api_key} {C.ENV_SECRET_KEY}={server.secret_key} "
              f"{C.ENV_BASE_URL}={server.url}", flush=True)
    while not stop.wait(1.0):
        pass
    logging.getLogger("fi_evals.server").warning(
        "%s received: draining (503 to new requests, waiting up to %g s for in-flight work)",
        signal.Signals(signals[0]).name, config.drain_timeout)
    clean = server.stop(config.drain_timeout)
    logging.getLogger("fi_evals.server").info("stopped%s", "" if clean else " (timed out)")
    return EXIT_OK if clean else EXIT_FAILED


def read_serving_url(stream: IO[bytes], timeout: float) -> str | None:
    """Read a ``fi-evals serve`` child's stdout up to its "serving on URL" line.

    For programs that start the server as a subprocess (tests, benchmarks). Lines before it are
    consumed; the rest of the stream is left to the caller.

    Returns:
        The URL, or None when the line did not come within ``timeout`` seconds.
    """
    found: list[str] = []

    def read() -> None:
        for raw in stream:
            line = raw.decode("utf-8", "replace").strip()
            if line.startswith(C.SERVING_LINE_PREFIX):
                found.append(line[len(C.SERVING_LINE_PREFIX):])
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    return found[0] if found else None
