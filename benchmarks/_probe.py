"""What every driver shares: the server's ``/metrics`` counters and the JSON result line.

Standard library only (the official client's driver imports it by path from its own
virtualenv). A driver scrapes ``/metrics`` right before and right after its timed part, so the
counts are exactly that part's: no warm-up request and no other contender is in them (the
scenarios run one contender at a time, each against its own fresh server).
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
import urllib.request
from typing import Any

__all__ = ["Counters", "CpuClock", "emit", "scrape"]

_SAMPLE = re.compile(r'^(fi_evals_[a-z_]+)(?:\{(.*)\})?\s+(\S+)')
_LABEL = re.compile(r'([a-zA-Z_]+)="([^"]*)"')
_API_PREFIX = "/sdk/api/"


class Counters:
    """The two counters the benchmark reads: HTTP answers and evaluator runs."""

    def __init__(self, requests: dict[str, float], evaluations: float) -> None:
        self.requests = requests
        """API requests answered, by route (``/metrics`` and ``/healthcheck/`` left out)."""
        self.evaluations = evaluations
        """Evaluator runs (completed + failed)."""

    def minus(self, before: Counters) -> dict[str, Any]:
        """The difference ``self - before`` as a JSON-ready dict."""
        by_route = {r: self.requests.get(r, 0) - before.requests.get(r, 0)
                    for r in set(self.requests) | set(before.requests)}
        by_route = {r: int(n) for r, n in sorted(by_route.items()) if n}
        return {"requests": sum(by_route.values()), "requests_by_route": by_route,
                "evaluations": int(self.evaluations - before.evaluations)}

    def __repr__(self) -> str:
        return f"<Counters {sum(self.requests.values()):.0f} requests, " \
               f"{self.evaluations:.0f} evaluations>"


def scrape(base_url: str) -> Counters:
    """Read ``GET {base_url}/metrics``."""
    with urllib.request.urlopen(base_url.rstrip("/") + "/metrics", timeout=30) as answer:
        text = answer.read().decode("utf-8")
    requests: dict[str, float] = {}
    evaluations = 0.0
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if not match:
            continue
        name, labels_text, value = match.groups()
        labels = dict(_LABEL.findall(labels_text or ""))
        if name == "fi_evals_http_requests_total":
            route = labels.get("route", "")
            if route.startswith(_API_PREFIX) or route == "other":
                requests[route] = requests.get(route, 0.0) + float(value)
        elif name == "fi_evals_evaluations_total":
            evaluations += float(value)
    return Counters(requests, evaluations)


def _own_cpu(pid: int) -> float | None:
    """CPU seconds (user + system, all threads) of process ``pid`` itself, plus those of its
    children already waited for; None where unreadable."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])) \
            / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _children(pid: int) -> list[int]:
    found = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children", encoding="ascii") as f:
                found += [int(c) for c in f.read().split()]
    except (OSError, ValueError):
        pass
    return found


def _process_cpu(pid: int) -> float | None:
    """CPU seconds of process ``pid`` and of all its descendants (living ones read from
    ``/proc``, finished ones counted by their parent): the server's isolation children
    work for it (issue 20). None where ``pid`` is unreadable."""
    total = _own_cpu(pid)
    if total is None:
        return None
    todo = _children(pid)
    while todo:
        child = todo.pop()
        total += _own_cpu(child) or 0.0
        todo += _children(child)
    return total


class CpuClock:
    """CPU seconds used by this process and by the server between :meth:`start` and
    :meth:`stop`, next to the wall time: says which side was busy (2 cores, 2 processes)."""

    def __init__(self, server_pid: int | None) -> None:
        self.server_pid = server_pid
        self._start: tuple[float, float, float | None] = (0.0, 0.0, None)

    def start(self) -> None:
        server = _process_cpu(self.server_pid) if self.server_pid else None
        self._start = (time.perf_counter(), time.process_time(), server)

    def stop(self) -> dict[str, Any]:
        wall0, cpu0, server0 = self._start
        wall = time.perf_counter() - wall0
        out: dict[str, Any] = {"client_cpu_seconds": round(time.process_time() - cpu0, 3)}
        server = _process_cpu(self.server_pid) if self.server_pid else None
        if server is not None and server0 is not None:
            out["server_cpu_seconds"] = round(server - server0, 3)
        out["seconds"] = round(wall, 3)
        return out


def emit(result: dict[str, Any]) -> None:
    """Print the driver's result as the last line of stdout (what the harness parses)."""
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
