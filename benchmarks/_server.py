"""The reference server under test: ``fi-evals serve`` in its own process.

A separate process, not a thread of the harness: the client under test and the server must not
share one GIL (an in-process server would slow the client down and the other way round, and
no deployment looks like that). Each run gets a fresh server on an ephemeral port with an
empty database in a temporary folder, so that no run inherits another's rows.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from types import TracebackType
from typing import Self

from fi_evals.cli.serve import read_serving_url

__all__ = ["BenchServer"]

_START_TIMEOUT = 60.0


class BenchServer:
    """``python -m fi_evals.cli serve --port 0 ...`` with fixed keys; a context manager.

    Args:
        *flags: more ``fi-evals serve`` flags, e.g. ``"--sim-latency-ms", "50"``.
        root: the source tree whose ``fi_evals`` serves (default: the one importing this; the
            baseline contenders give the baseline worktree, see ``baseline.py``).
    """

    api_key = "bench-api-key"
    secret_key = "bench-secret-key"

    def __init__(self, *flags: str, root: str | None = None) -> None:
        self.flags = list(flags)
        self.root = root
        self._folder = tempfile.mkdtemp(prefix="fi-evals-bench-")
        cmd = [sys.executable, "-m", "fi_evals.cli", "serve", "--port", "0",
               "--db", os.path.join(self._folder, "bench.db"), "--api-key", self.api_key,
               "--secret-key", self.secret_key, "--no-access-log", "--log-level", "warning",
               *self.flags]
        self._log = open(os.path.join(self._folder, "server.log"), "wb")  # noqa: SIM115
        env = None
        if root is not None:
            env = dict(os.environ)
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._log, cwd=root,
                                     env=env)
        self.url = self._read_url()
        threading.Thread(target=self._drain, daemon=True).start()

    def _read_url(self) -> str:
        assert self.proc.stdout is not None
        url = read_serving_url(self.proc.stdout, _START_TIMEOUT)
        if url is None:
            self.stop()
            raise RuntimeError(f"fi-evals serve {' '.join(self.flags)} did not start:\n"
                               f"{self.log_text()}")
        return url

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        self.proc.stdout.read()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_text(self) -> str:
        self._log.flush()
        with open(self._log.name, encoding="utf-8", errors="replace") as f:
            return f.read()[-4000:]

    def stop(self) -> None:
        """SIGTERM (queued work is not waited for: it is the benchmark's own), then clean up."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()
        # The server may still be writing its database for a moment after a kill.
        for _ in range(3):
            try:
                shutil.rmtree(self._folder)
                break
            except OSError:
                time.sleep(0.2)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<BenchServer {self.url} pid={self.proc.pid} flags={self.flags}>"
