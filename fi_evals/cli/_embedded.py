"""The server the CLI talks to: ``FI_BASE_URL`` when set, else an embedded reference server.

The embedded server listens on 127.0.0.1 on an ephemeral port with generated keys, and stops
when the command ends. Its state (SQLite database and key pair) lives in a temporary directory
that is deleted at exit, unless ``--state DIR`` names one (``--journal J`` implies
``J.server``): then a rerun finds the same evaluations and the same keys, which is what lets a
journal resume against an embedded server. The key file is written with mode 0600.

This is the one place where client-side code imports the server (lazily).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from fi_evals import _constants as C

__all__ = ["ForeignServerOptions", "ServerMissing", "connect", "external_server"]

_KEYS_FILE = "keys.json"
_DB_FILE = "evals.db"


class ServerMissing(RuntimeError):
    """The embedded server is needed but the ``server`` extra is not installed."""


def _keys(state: Path) -> tuple[str, str]:
    path = state / _KEYS_FILE
    if path.exists():
        data = json.loads(path.read_text("utf-8"))
        return data["api_key"], data["secret_key"]
    from fi_evals.server.config import generate_key_pair

    api_key, secret_key = generate_key_pair()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump({"api_key": api_key, "secret_key": secret_key}, fh)
    return api_key, secret_key


def _judge_cache_path() -> str:
    from fi_evals.server.evaluators.judge_cache import default_cache_path

    return default_cache_path()


@contextlib.contextmanager
def _embedded(state: str | None, quiet: bool,
              models: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    try:
        from fi_evals.server.config import ServerConfig
        from fi_evals.server.runner import start_server
    except ImportError as exc:
        raise ServerMissing(
            f"{C.ENV_BASE_URL} is not set and the embedded reference server is not installed: "
            f"pip install 'fi-evals[server]', or set {C.ENV_BASE_URL}, {C.ENV_API_KEY} and "
            f"{C.ENV_SECRET_KEY} to use a running server") from exc
    with contextlib.ExitStack() as stack:
        if state is None:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="fi-evals-")))
        else:
            folder = Path(state)
            folder.mkdir(parents=True, exist_ok=True)
        api_key, secret_key = _keys(folder)
        # The embedded server's own log lines would interleave with the progress bar; the
        # level is put back at exit (in-process callers such as tests keep their logging).
        server_log = logging.getLogger("fi_evals.server")
        stack.callback(server_log.setLevel, server_log.level)
        server_log.setLevel(logging.ERROR)
        # The judge cache lives in the per-user cache folder (the score logger's spool rule),
        # whatever the state folder: a rerun, with or without --state/--journal, costs no
        # judge call.
        judge_cache_path = _judge_cache_path()
        server = start_server(ServerConfig(host=C.DEFAULT_HOST, port=0,
                                           db_path=str(folder / _DB_FILE), api_key=api_key,
                                           secret_key=secret_key, access_log=False,
                                           judge_cache_path=judge_cache_path, **models))
        stack.callback(server.stop)
        if not quiet:
            where = "temporary state" if state is None else f"state in {folder}"
            judge = (f"judge {models['judge_model'] or 'named by each request'} at "
                     f"{models['judge_url']}" if models.get("judge_url") else
                     "no judge (--judge-url)")
            print(f"fi-evals: {C.ENV_BASE_URL} is not set; started an embedded server on "
                  f"{server.url} ({where}; {judge})", file=sys.stderr)
        yield {"fi_api_key": api_key, "fi_secret_key": secret_key, "fi_base_url": server.url}


class ForeignServerOptions(ValueError):
    """Embedded-server options (a judge...) given while ``FI_BASE_URL`` names another server."""


def external_server() -> str | None:
    """The server ``FI_BASE_URL`` names, or None when the CLI would start an embedded one."""
    return os.environ.get(C.ENV_BASE_URL) or None


@contextlib.contextmanager
def connect(state: str | None = None, *, quiet: bool = False,
            models: Mapping[str, Any] | None = None,
            given: Sequence[str] = ()) -> Iterator[dict[str, Any]]:
    """Keyword arguments for ``Evaluator(...)``: the environment's server, or an embedded one.

    Args:
        state: folder for the embedded server's database and keys (None: a temporary one).
        quiet: do not announce the embedded server on stderr.
        models: ``ServerConfig`` judge and offline-model fields for the embedded server
            (see :func:`fi_evals.cli._args.model_settings`).
        given: the model options the user gave explicitly (flags or config keys); refused
            when ``FI_BASE_URL`` names another server, which has its own judge.

    Raises:
        ServerMissing: no ``FI_BASE_URL`` and no ``server`` extra.
        ForeignServerOptions: ``given`` is not empty and ``FI_BASE_URL`` is set.
    """
    url = external_server()
    if url:
        if given:
            raise ForeignServerOptions(
                f"{', '.join(given)} configure{'s' if len(given) == 1 else ''} the embedded "
                f"server, but {C.ENV_BASE_URL} points at {url}, which has its own judge: "
                f"configure the judge there (fi-evals serve --judge-url ...), or unset "
                f"{C.ENV_BASE_URL} to use the embedded server")
        yield {}  # the Evaluator reads FI_BASE_URL, FI_API_KEY and FI_SECRET_KEY itself
        return
    with _embedded(state, quiet, models or {}) as kwargs:
        yield kwargs
