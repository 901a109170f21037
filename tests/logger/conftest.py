"""Score logger fixtures: a real server per test, loggers closed at teardown (helpers such as
the child script runner live in _logger_helpers.py).

``make_logger(server, **options)`` builds an Evaluator on ``server`` and a ScoreLogger on it
(spool and sink under ``tmp_path`` unless given); every logger and Evaluator is closed at
the end of the test, so no worker thread outlives it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fi_evals import Evaluator
from fi_evals.logger import ScoreLogger


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
