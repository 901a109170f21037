"""Suite-wide fixtures: real reference servers on loopback, each with its own SQLite file.

- ``live_server`` (session): one shared server with default settings. Its database and metrics
  are shared by every test that uses it: compare metric *deltas*, never absolute values.
- ``server_factory`` (function): ``server_factory(**config_overrides) -> RunningServer`` starts
  a fresh server (``ServerConfig`` fields, plus ``evaluators=[...]`` to replace or add
  evaluators); every server it started is stopped at teardown.

Areas add their own fixtures in ``tests/<area>/conftest.py``; helpers live in ``_helpers.py``.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from _unit_mark import unit_test_servers

from fi_evals import _constants as C
from fi_evals._constants import ENV_HOME
from fi_evals.server.config import ServerConfig
from fi_evals.server.runner import RunningServer, start_server

_STOP_TIMEOUT = 10.0


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Fail a ``unit`` test that needs a server before any fixture starts one: ``make unit``
    stays fast and runs anywhere."""
    servers = unit_test_servers(item)
    if servers:
        pytest.fail(f"{item.nodeid} is marked unit but uses {', '.join(servers)}: a unit test "
                    "starts no server (drop the mark or the fixture)", pytrace=False)


@pytest.fixture(scope="session", autouse=True)
def _runs_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Every ``fi-evals run`` keeps its run (``FI_EVALS_HOME/runs``, else ``.fi-evals/runs`` in
    the working directory): during the tests, in a temporary home, subprocesses included."""
    home = tmp_path_factory.mktemp("fi-evals-home")
    before = os.environ.get(ENV_HOME)
    os.environ[ENV_HOME] = str(home)
    yield home
    if before is None:
        os.environ.pop(ENV_HOME, None)
    else:
        os.environ[ENV_HOME] = before


@pytest.fixture(autouse=True)
def _judge_cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The judge cache of ``fi-evals run``'s embedded server (the per-user cache folder) in a
    folder of each test's own, subprocesses included: no test sees another's cached judgments."""
    folder = tmp_path / "judge-cache"
    monkeypatch.setenv(C.ENV_JUDGE_CACHE_DIR, str(folder))
    return folder


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A shared reference server (default config, generated keys, port 0)."""
    db = tmp_path_factory.mktemp("live_server") / "evals.db"
    server = start_server(ServerConfig(port=0, db_path=str(db)))
    yield server
    server.stop(_STOP_TIMEOUT)


ServerFactory = Callable[..., RunningServer]


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[ServerFactory]:
    """Start servers with config overrides; all are stopped when the test ends.

    ``server_factory(sim_latency_ms=5, faults="500:0.1", evaluators=[...])``. Defaults: port 0,
    a fresh ``db_path`` under ``tmp_path`` (pass ``db_path`` to restart on the same file).
    ``store=``/``executor_factory=`` swap the implementations behind the interfaces.
    """
    started: list[RunningServer] = []
    numbers = itertools.count()

    def factory(*, evaluators: Any = None, registry: Any = None, store: Any = None,
                executor_factory: Any = None, **overrides: Any) -> RunningServer:
        overrides.setdefault("port", 0)
        overrides.setdefault("db_path", str(tmp_path / f"server{next(numbers)}.db"))
        server = start_server(ServerConfig(**overrides), evaluators=evaluators,
                              registry=registry, store=store, executor_factory=executor_factory)
        started.append(server)
        return server

    yield factory
    for server in reversed(started):
        server.stop(_STOP_TIMEOUT)
