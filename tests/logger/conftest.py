"""Score logger fixtures: a real server per test, loggers closed at teardown, a child script.

``make_logger(server, **options)`` builds an Evaluator on ``server`` and a ScoreLogger on it
(spool and sink under ``tmp_path`` unless given); every logger and Evaluator is closed at
the end of the test, so no worker thread outlives it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from _helpers import metric_sum

from fi_evals import Evaluator
from fi_evals.logger import ScoreLogger

CHILD = Path(__file__).with_name("_child_logger.py")
EVALUATIONS = "fi_evals_evaluations_total"


def free_port() -> int:
    """A port that was free a moment ago (for a server restarted on the same port)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def evaluated(server: Any) -> int:
    """Evaluator runs so far on a running server (``/metrics``)."""
    return int(metric_sum(server, EVALUATIONS))


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` passes; its last value."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]


def run_child(server: Any, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run ``_child_logger.py`` against ``server`` (keys through the environment)."""
    env = {**os.environ, "FI_API_KEY": server.api_key, "FI_SECRET_KEY": server.secret_key,
           "FI_BASE_URL": server.url, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.run([sys.executable, str(CHILD), *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture
def own_server(server_factory: Callable[..., Any]) -> Any:
    """A server of this test's own: exact /metrics counts, no other test's leftovers."""
    return server_factory(access_log=False)


@pytest.fixture
def make_logger(tmp_path: Path) -> Iterator[Callable[..., ScoreLogger]]:
    made: list[tuple[ScoreLogger, Evaluator]] = []

    def factory(server: Any, **options: Any) -> ScoreLogger:
        evaluator = Evaluator(server.api_key, server.secret_key, server.url, timeout=30)
        if options.get("overflow", "spool") == "spool":
            options.setdefault("spool", tmp_path / "spool.sqlite3")
        options.setdefault("sink", tmp_path / "sink.jsonl")
        options.setdefault("reconnect_max", 1.0)
        options.setdefault("poll_interval", 0.2)
        logger = ScoreLogger(evaluator, **options)
        made.append((logger, evaluator))
        return logger

    yield factory
    for logger, evaluator in reversed(made):
        logger.close(timeout=5)
        evaluator.close()
