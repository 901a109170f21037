"""Test helpers shared by every area (import with ``from _helpers import ...``).

- :func:`parse_metrics` / :func:`metric_sum`: read a server's ``GET /metrics``.
- :class:`ServeProcess`: ``fi-evals serve`` in a subprocess (SIGTERM, ``kill -9``, restarts).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Self

import requests

from fi_evals import _constants as C
from fi_evals.cli.serve import read_serving_url

__all__ = ["ServeProcess", "metric_sum", "parse_metrics", "scrape"]

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')

MetricKey = tuple[str, frozenset[tuple[str, str]]]


def parse_metrics(text: str) -> dict[MetricKey, float]:
    """Prometheus text -> {(name, frozenset(labels.items())): value}."""
    samples: dict[MetricKey, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if not match:
            continue
        name, labels_text, value = match.groups()
        labels = {k: bytes(v, "utf-8").decode("unicode_escape")
                  for k, v in _LABEL.findall(labels_text or "")}
        samples[(name, frozenset(labels.items()))] = float(value)
    return samples


def scrape(server: Any) -> dict[MetricKey, float]:
    """Parsed ``GET {server.url}/metrics``."""
    response = requests.get(f"{server.url}{C.PATH_METRICS}", timeout=10)
    response.raise_for_status()
    return parse_metrics(response.text)


def metric_sum(server: Any, name: str, **label_filter: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``label_filter``.

    ``metric_sum(server, "fi_evals_evaluations_total", template="is_json")``; 0.0 when none.
    """
    wanted = set(label_filter.items())
    return sum(v for (n, labels), v in scrape(server).items()
               if n == name and wanted <= labels)


class ServeProcess:
    """``python -m fi_evals.cli serve --port 0 --db PATH ...`` as a child process.

    Starts at construction and returns once the server printed its URL. Keys are explicit
    (``api_key``/``secret_key``), so the same pair works across restarts on the same db.
    stderr (the server log) goes to ``log_path``; :meth:`log_text` reads it.
    """

    def __init__(self, db_path: str | os.PathLike[str], *args: str,
                 api_key: str | None = "test-api-key", secret_key: str | None = "test-secret-key",
                 log_path: str | os.PathLike[str] | None = None, start_timeout: float = 30.0,
                 env: dict[str, str] | None = None) -> None:
        """Args:
            db_path: the ``--db`` file.
            *args: more ``fi-evals serve`` flags (``"--sim-latency-ms", "5"``).
            api_key, secret_key: passed as flags; None passes none (the server then takes
                ``FI_API_KEY``/``FI_SECRET_KEY`` from ``env`` or generates a pair, which is
                read back from its ``export`` line).
            env: extra environment variables of the child (``FI_API_KEY``/``FI_SECRET_KEY``
                are removed from the inherited environment unless given here).
        """
        self.db_path = str(db_path)
        self.api_key = api_key or ""
        self.secret_key = secret_key or ""
        self.log_path = Path(log_path or f"{self.db_path}.{time.time_ns()}.log")
        key_flags = [] if api_key is None else ["--api-key", api_key, "--secret-key",
                                                secret_key or ""]
        cmd = [sys.executable, "-m", "fi_evals.cli", "serve", "--port", "0", "--db", self.db_path,
               *key_flags, *args]
        child_env = {k: v for k, v in os.environ.items()
                     if k not in (C.ENV_API_KEY, C.ENV_SECRET_KEY)}
        child_env.update(env or {})
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in wait()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._log, env=child_env)
        self.stdout_lines: list[str] = []
        self.url = self._read_url(start_timeout)
        threading.Thread(target=self._drain_stdout, daemon=True).start()
        if api_key is None:
            self._read_exported_keys(env or {})

    def _read_exported_keys(self, env: dict[str, str], timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.stdout_lines:
                if line.startswith("export "):
                    pairs = dict(p.split("=", 1) for p in line[len("export "):].split())
                    self.api_key = pairs[C.ENV_API_KEY]
                    self.secret_key = pairs[C.ENV_SECRET_KEY]
                    return
            if C.ENV_API_KEY in env:  # keys from the environment: no export line comes
                self.api_key, self.secret_key = env[C.ENV_API_KEY], env[C.ENV_SECRET_KEY]
                return
            time.sleep(0.02)

    def _read_url(self, timeout: float) -> str:
        assert self.proc.stdout is not None
        url = read_serving_url(self.proc.stdout, timeout)
        if url is None:
            self.proc.kill()
            self.wait(5)
            raise RuntimeError(f"fi-evals serve did not start; log:\n{self.log_text()}")
        return url

    def _drain_stdout(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.stdout_lines.append(raw.decode("utf-8", "replace").rstrip("\n"))

    @property
    def headers(self) -> dict[str, str]:
        return {C.HEADER_API_KEY: self.api_key, C.HEADER_SECRET_KEY: self.secret_key}

    @property
    def pid(self) -> int:
        return self.proc.pid

    def kill9(self) -> int:
        """SIGKILL, then wait: returns the exit code."""
        self.proc.send_signal(signal.SIGKILL)
        return self.wait(10)

    def terminate(self) -> None:
        """SIGTERM (drain); use :meth:`wait` for the exit code."""
        self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout: float = 30.0) -> int:
        """Wait for the process to exit (kills it after ``timeout``); returns the exit code."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(10)
        self._log.close()
        return code

    def log_text(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text("utf-8", "replace")

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.wait(10)

    def __repr__(self) -> str:
        state = "running" if self.proc.poll() is None else f"exited {self.proc.returncode}"
        return f"<ServeProcess pid={self.proc.pid} {self.url} {state}>"
