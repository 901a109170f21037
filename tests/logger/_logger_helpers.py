"""Helpers of the score logger tests (``from _logger_helpers import ...``; a module of its own
name, not ``conftest``, which would clash with other areas' conftest modules in one session)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _helpers import metric_sum

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
