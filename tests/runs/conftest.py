"""Fixtures of the run store's tests: batches on the shared live server, kept as runs.

``scored(...)`` scores a small support-agent dataset with three evals and a task (the model
under test), so that a run has passing, failing and errored rows:

- ``is_json`` reads the task's ``tool_call``: not JSON on every ``bad_json``-th row;
- ``close`` (``fuzzy_match``, passes at 0.8) compares the task's ``answer`` with ``reference``;
- ``polite`` (``contains:keyword=please``) reads the task's ``answer``;
- the task raises on rows whose id is in ``broken``: every eval of the row is a TaskError.

Every run also streams to a JSONL output (``output=``, through the same tee as the run
store), which the tests read as the reference the store must agree with.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from fi_evals import Evaluator
from fi_evals.batch import BatchResult
from fi_evals.server.runner import RunningServer

EVALS = ["is_json", "close=fuzzy_match:pass_threshold=0.8", "polite=contains:keyword=please"]
MAPPING = {"text": "tool_call", "output": "answer", "expected": "reference",
           "polite": {"text": "answer"}}


def dataset(ids: Sequence[int]) -> list[dict[str, Any]]:
    """Rows as a user's dataset holds them: the question and the reference answer."""
    return [{"id": i, "question": f"Where is order {i}?",
             "reference": f"Please wait, order {i} ships today."} for i in ids]


def make_task(*, bad_json: int, broken: set[int], rude: int = 4) -> Callable[..., Any]:
    """The model under test: its answer and tool call for a row."""
    def task(row: dict[str, Any]) -> dict[str, Any]:
        i = row["id"]
        if i in broken:
            raise RuntimeError(f"model unavailable for row {i}")
        call = "lookup(%d" % i if i % bad_json == 0 else '{"tool": "lookup", "id": %d}' % i
        answer = (f"order {i} ships today." if i % rude == 0
                  else f"Please wait, order {i} ships today.")
        return {"answer": answer, "tool_call": call}
    return task


Scored = Callable[..., BatchResult]


@pytest.fixture
def runs_dir(tmp_path: Path) -> Path:
    return tmp_path / "runs"


@pytest.fixture
def evaluator(live_server: RunningServer) -> Iterator[Evaluator]:
    with Evaluator(live_server.api_key, live_server.secret_key, live_server.url,
                   max_workers=4) as ev:
        yield ev


@pytest.fixture
def scored(evaluator: Evaluator, runs_dir: Path, tmp_path: Path) -> Scored:
    """``scored(ids=range(60), bad_json=3, broken={7, 18}, run_name="main", **kwargs)``."""
    count = iter(range(1000))

    def run(ids: Sequence[int] = range(60), *, bad_json: int = 3,
            broken: set[int] | frozenset[int] = frozenset({7, 18}), rude: int = 4,
            **kwargs: Any) -> BatchResult:
        kwargs.setdefault("runs_dir", runs_dir)
        kwargs.setdefault("output", tmp_path / f"out{next(count)}.jsonl")
        kwargs.setdefault("progress", False)
        return evaluator.evaluate_batch(dataset(ids), EVALS, key_mapping=MAPPING,
                                        task=make_task(bad_json=bad_json, broken=set(broken),
                                                       rude=rude), **kwargs)

    return run
