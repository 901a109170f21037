"""Property: whatever the item count, chunk size, mode and failure pattern, a batch yields
exactly one outcome per (item, eval), in input order, with no duplicate, and each failure
recorded with the right type (or, when the first readable row lacks a field the evals read, a
KeyMappingError before anything is sent)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fi_evals import Evaluator, KeyMappingError
from fi_evals.server.config import ServerConfig
from fi_evals.server.runner import RunningServer, start_server

from .test_batch_live import FlakyOneLine

PATTERNS = ("ok", "bad_row", "missing", "task_error", "eval_fail")
SPECS = ("one_line", "is_json", "contains:keyword=line")


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Evaluator]]:
    """A clean server and one that answers 10% of API requests with a 500 (seeded)."""
    started: list[RunningServer] = []
    clients: dict[str, Evaluator] = {}
    base: Path = tmp_path_factory.mktemp("property")
    for name, faults in (("clean", None), ("faulty", "500:0.1")):
        server = start_server(ServerConfig(port=0, db_path=str(base / f"{name}.db"),
                                           poll_retry_after=0, faults=faults, fault_seed=3,
                                           access_log=False), evaluators=[FlakyOneLine()])
        started.append(server)
        clients[name] = Evaluator(server.api_key, server.secret_key, server.url, max_workers=4)
    yield clients
    for client in clients.values():
        client.close()
    for server in started:
        server.stop(10)


def _row(i: int, pattern: str) -> Any:
    if pattern == "bad_row":
        return f"row {i} is not a mapping"
    if pattern == "missing":
        return {"i": i}
    return {"i": i, "text": "FAIL" if pattern == "eval_fail" else f"a line {i}",
            "crash": pattern == "task_error"}


def _task(row: Mapping[str, Any]) -> dict[str, Any]:
    if row.get("crash"):
        raise ValueError("the model under test crashed")
    return {"text": row.get("text")}


def _expected(pattern: str, spec: str, with_task: bool) -> set[str]:
    """Acceptable outcome kinds: a status, or an error type."""
    if pattern in ("bad_row", "missing"):
        return {"InvalidInputError"}
    if pattern == "task_error" and with_task:
        return {"TaskError"}
    if pattern == "eval_fail" and spec == "one_line":
        return {"EvalFailedError"}
    return {"completed"}


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(patterns=st.lists(st.sampled_from(PATTERNS), max_size=40),
       chunk_size=st.integers(1, 12),
       specs=st.lists(st.sampled_from(SPECS), min_size=1, max_size=3, unique=True),
       is_async=st.booleans(), with_task=st.booleans(), faulty=st.booleans())
def test_one_outcome_per_item_and_eval_in_order(servers: dict[str, Evaluator],
                                                patterns: list[str], chunk_size: int,
                                                specs: list[str], is_async: bool,
                                                with_task: bool, faulty: bool) -> None:
    ev = servers["faulty" if faulty else "clean"]
    data = [_row(i, p) for i, p in enumerate(patterns)]
    first = next((p for p in patterns if p != "bad_row"), None)
    if first == "missing" and not with_task:  # the preflight refuses the whole batch
        with pytest.raises(KeyMappingError):
            ev.evaluate_batch(iter(data), specs, is_async=is_async, chunk_size=chunk_size,
                              progress=False)
        return
    result = ev.evaluate_batch(iter(data), specs, task=_task if with_task else None,
                               is_async=is_async, chunk_size=chunk_size, progress=False)
    labels = [s.partition(":")[0] for s in specs]
    items = result.items
    assert [it.index for it in items] == list(range(len(data)))  # order kept, none missing
    assert result.stats.outcomes == len(data) * len(specs)
    ids = [r.eval_id for it in items for r in it.results.values() if r.eval_id]
    assert len(ids) == len(set(ids))  # no evaluation reported twice
    for it, pattern in zip(items, patterns):
        assert list(it.results) == labels
        if isinstance(data[it.index], dict):
            assert it.item["i"] == it.index
        for spec, r in zip(specs, it.results.values()):
            kind = r.status if r.ok else r.error.type
            allowed = _expected(pattern, spec.partition(":")[0], with_task)
            if faulty and not allowed & {"InvalidInputError", "TaskError"}:
                allowed = allowed | {"ServerError"}  # its request was answered with a 500
            assert kind in allowed, (pattern, spec, kind, r)
