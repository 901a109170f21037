"""The blocking API called from inside a running event loop warns, once per process, at the
caller's line; outside a loop (or in a thread via ``asyncio.to_thread``) it says nothing."""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from fi_evals import Evaluator, _eventloop
from fi_evals.server.runner import RunningServer


@pytest.fixture
def ev(live_server: RunningServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[Evaluator]:
    monkeypatch.setattr(_eventloop, "_warned", False)  # as if no earlier test had warned
    with Evaluator(live_server.api_key, live_server.secret_key, live_server.url,
                   timeout=60) as client:
        yield client


def record(fn: Callable[[], Any]) -> list[warnings.WarningMessage]:
    """The RuntimeWarnings ``fn`` emits (every one, whatever the filters say)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fn()
    return [w for w in caught if issubclass(w.category, RuntimeWarning)]


def in_loop(fn: Callable[[], Any]) -> Callable[[], Any]:
    async def main() -> Any:
        return fn()

    return lambda: asyncio.run(main())


def test_evaluate_in_a_running_loop_warns_once_at_the_callers_line(ev: Evaluator) -> None:
    def twice() -> None:
        ev.evaluate("is_json", {"text": "{}"})
        ev.evaluate("is_json", {"text": "{}"})

    caught = record(in_loop(twice))
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "Evaluator.evaluate() blocks" in message and "event loop" in message
    assert "await asyncio.to_thread(ev.evaluate, ...)" in message
    assert caught[0].filename == __file__  # the line that called evaluate, not ours
    # Once per process: later calls in loops stay quiet.
    assert record(in_loop(lambda: ev.evaluate("is_json", {"text": "[]"}))) == []


@pytest.mark.parametrize("call", ["evaluate_batch", "wait_all", "get_eval_result", "submit"])
def test_every_blocking_entry_point_warns(ev: Evaluator, call: str) -> None:
    eval_id = ev.evaluate("is_json", {"text": "{}"}).eval_ids[0]
    assert eval_id is not None
    calls: dict[str, Callable[[], Any]] = {
        "evaluate_batch": lambda: ev.evaluate_batch([{"text": "{}"}], ["is_json"],
                                                    progress=False),
        "wait_all": lambda: ev.wait_all([eval_id]),
        "get_eval_result": lambda: ev.get_eval_result(eval_id),
        "submit": lambda: ev.submit("is_json", {"text": "{}"}).wait(),
    }
    caught = record(in_loop(calls[call]))
    assert len(caught) == 1
    named = "evaluate" if call == "submit" else call  # submit() is evaluate(is_async=True)
    assert f"Evaluator.{named}() blocks" in str(caught[0].message)
    assert caught[0].filename == __file__  # through submit() too: the first frame outside


def test_no_warning_outside_a_loop_or_in_a_thread(ev: Evaluator) -> None:
    def outside() -> None:
        eval_id = ev.evaluate("is_json", {"text": "{}"}).eval_ids[0]
        ev.wait_all(ev.submit("is_json", {"text": "{}"}))
        ev.get_eval_result(eval_id or "")
        ev.evaluate_batch([{"text": "{}"}], ["is_json"], progress=False)

    assert record(outside) == []

    async def threaded() -> None:
        await asyncio.to_thread(ev.evaluate_batch, [{"text": "{}"}], ["is_json"],
                                progress=False)
        await asyncio.to_thread(ev.evaluate, "is_json", {"text": "{}"})

    assert record(lambda: asyncio.run(threaded())) == []
    assert _eventloop._warned is False


def test_pytest_warns_sees_it(ev: Evaluator) -> None:
    async def main() -> None:
        ev.evaluate("is_json", {"text": "{}"})

    with pytest.warns(RuntimeWarning, match="blocks"):
        asyncio.run(main())
