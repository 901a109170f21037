"""Function metrics (issue 17, 4a): a Python function as an eval, next to template specs, in
sync, async (``AsyncEvaluator``) and resumed (journal) runs, and ``fi-evals run --metric``."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from fi_evals import AsyncEvaluator, Evaluator, metric
from fi_evals import _constants as C
from fi_evals._loading import ImportTargetError
from fi_evals.batch import MetricResultError, load_metric
from fi_evals.cli import main
from fi_evals.server.runner import RunningServer

from .conftest import client_for


def _rows(n: int) -> list[dict[str, Any]]:
    return [{"id": i, "answer": f"Order {i} ships today", "reference": f"order {i} ships today"
             if i % 4 else f"order {i} is late", "tool_call": "{}"} for i in range(n)]


def exact(row: Mapping[str, Any]) -> bool:
    """Pass/Fail by annotation."""
    return bool(row["answer"].lower() == row["reference"].lower())


def overlap(row: Mapping[str, Any]) -> Any:
    """A score with a reason; raises on row 5, returns a wrong type on row 6."""
    if row["id"] == 5:
        raise KeyError("no such column")
    if row["id"] == 6:
        return ["not", "a", "score"]
    a, b = set(row["answer"].lower().split()), set(row["reference"].lower().split())
    return len(a & b) / len(a | b), f"{len(a & b)} shared words"


def test_function_metrics_mix_with_templates(live_server: RunningServer) -> None:
    with client_for(live_server, max_workers=4) as ev:
        result = ev.evaluate_batch(
            _rows(12), ["is_json", exact, metric(overlap, pass_threshold=0.6, label="words")],
            key_mapping={"text": "tool_call"}, progress=False, chunk_size=5,
            thresholds={"exact": 0.7, "words.mean": 0.5})
    items = result.items
    assert [it.index for it in items] == list(range(12))
    assert items[0].results["exact"].output == "Failed"  # row 0: "is late"
    assert items[1].results["exact"].output == "Passed"
    assert items[1].results["words"].output == 1.0
    assert items[1].results["words"].reason == "4 shared words"
    assert items[5].results["words"].error.type == "MetricError"
    assert "KeyError" in items[5].results["words"].error.message
    bad = items[6].results["words"].error
    assert bad.type == "MetricResultError" and "returned list" in bad.message
    assert all(it.results["is_json"].output == "Passed" for it in items)
    stats = result.stats.templates
    assert stats["exact"].output_type == "Pass/Fail" and stats["exact"].pass_rate == 0.75
    assert stats["words"].output_type == "score" and stats["words"].scored == 10
    assert dict(stats["words"].errors) == {"MetricError": 1, "MetricResultError": 1}
    assert [(c.label, c.passed) for c in result.checks] == [("exact", True), ("words", False)]
    assert not result.passed  # two errored outcomes, and words' coverage is 10/12


def test_normalizing_what_a_metric_returns() -> None:
    score = metric(lambda row: 0, name="s")
    assert score.result(True, 1.0).output == 1.0
    assert score.result((0.25, "why"), 1.0).output == 0.25
    assert score.result((0.25, "why"), 1.0).reason == "why"
    verdict = metric(exact)
    assert verdict.output_type == "Pass/Fail"
    assert verdict.result((False, "no"), 1.0).output == "Failed"
    for wrong in (1.5, float("nan"), "0.5", None, (0.5, 3), (0.1, "a", "b")):
        with pytest.raises(MetricResultError, match="a score metric returns"):
            score.result(wrong, 1.0)
    with pytest.raises(MetricResultError, match="a Pass/Fail metric returns a bool"):
        verdict.result(0.5, 1.0)
    with pytest.raises(ValueError, match="pass_threshold must be a number from 0 to 1"):
        metric(overlap, pass_threshold=2)


def test_async_evaluator_and_async_metric(live_server: RunningServer) -> None:
    async def slow_exact(row: Mapping[str, Any]) -> bool:
        await asyncio.sleep(0.001)
        return exact(row)

    async def main_() -> Any:
        async with AsyncEvaluator(live_server.api_key, live_server.secret_key,
                                  live_server.url, max_workers=4) as ev:
            return await ev.evaluate_batch(_rows(8), [slow_exact, "is_json"],
                                           key_mapping={"text": "tool_call"}, progress=False)

    result = asyncio.run(main_())
    outputs = [it.results["slow_exact"].output for it in result.items]
    assert outputs == ["Failed", "Passed", "Passed", "Passed"] * 2
    assert result.stats.templates["slow_exact"].output_type == "Pass/Fail"


def test_a_resumed_run_does_not_call_the_metric_on_finished_rows(
        live_server: RunningServer, tmp_path: Path) -> None:
    calls: list[int] = []
    lock = threading.Lock()
    stop = threading.Event()

    def counted(row: Mapping[str, Any]) -> float:
        with lock:
            calls.append(row["id"])
            if len(calls) == 12:
                stop.set()  # cancel the first run part-way (in chunk 2), as Ctrl-C would
        return 0.5

    journal = tmp_path / "j.journal"
    options: dict[str, Any] = {"key_mapping": {"text": "tool_call"}, "progress": False,
                               "chunk_size": 5, "journal": journal}
    with client_for(live_server, max_workers=1) as ev:
        from fi_evals.batch import evaluate_batch
        first = evaluate_batch(ev, _rows(40), [counted, "is_json"], cancel=stop, **options)
        assert first.stopped == "cancelled"
        finished = {it.index for it in first.items if it.results["counted"].ok}
        assert 5 < len(finished) < 40  # some rows finished (a whole chunk at least), not all
        journaled = [json.loads(line) for line in journal.read_text().splitlines()
                     if json.loads(line)["t"] == "fn"]
        assert [r["c"] for r in journaled] == [0, 1, 2]  # chunks 0 and 1, and 2 part-way:
        assert journaled[2]["out"][2:] == [None, None, None]  # its rows 12-14 did not run
        calls.clear()
        second = ev.evaluate_batch(_rows(40), [counted, "is_json"], **options)
        assert second.complete and second.stats.templates["counted"].scored == 40
        # Exactly the rows the first run did not finish, each once.
        assert sorted(calls) == [i for i in range(40) if i not in finished]
        calls.clear()
        third = ev.evaluate_batch(_rows(40), [counted, "is_json"], **options)
        assert calls == [] and third.stats.templates["counted"].scored == 40
        changed = _rows(40)
        changed[12]["answer"] = "changed"
        ev.evaluate_batch(changed, [counted, "is_json"], **options)
        assert sorted(calls) == [10, 11, 12, 13, 14]  # only the chunk whose rows changed


@pytest.fixture
def metrics_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``./cli_metrics.py`` in the working directory, as a user would write it."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(C.ENV_BASE_URL, raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "cli_metrics.py").write_text(
        "def exact(row) -> bool:\n"
        "    return row['answer'].lower() == row['reference'].lower()\n"
        "def words(row):\n"
        "    a, b = set(row['answer'].split()), set(row['reference'].split())\n"
        "    return len(a & b) / len(a | b), 'overlap'\n")
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in _rows(8)))
    return data


def test_cli_metric_flag(metrics_module: Path, tmp_path: Path,
                         capsys: pytest.CaptureFixture[str]) -> None:
    stats = tmp_path / "stats.json"
    base = ["run", str(metrics_module), "--metric", "cli_metrics:exact", "--metric",
            "w=cli_metrics:words:pass_threshold=0.5", "--eval", "is_json", "--map",
            "text=tool_call", "--no-progress", "--no-save", "--stats-json", str(stats)]
    assert main([*base, "--threshold", "exact=0.7"]) == 0
    out = capsys.readouterr().out
    assert "PASS exact.pass_rate 0.750" in out
    figures = json.loads(stats.read_text())
    assert figures["templates"]["exact"]["pass_rate"] == 0.75
    assert figures["templates"]["w"]["output_type"] == "score"
    assert main([*base, "--threshold", "exact=0.8"]) == 1


@pytest.mark.parametrize(("ref", "says"), [
    ("no_such_module_17:exact", "cannot import module 'no_such_module_17'"),
    ("cli_metrics:exakt", "has no attribute 'exakt'; it has: exact, words"),
    ("cli_metrics", "write MODULE:ATTR"),
    ("cli_metrics:exact:threshold=1", "only :pass_threshold=X may follow"),
])
def test_cli_metric_that_cannot_be_imported_exits_2(metrics_module: Path, ref: str, says: str,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(metrics_module), "--metric", ref, "--no-progress"]) == 2
    assert says in capsys.readouterr().err


def test_load_metric_reads_label_and_threshold(metrics_module: Path) -> None:
    loaded = load_metric("close=cli_metrics:words:pass_threshold=0.3")
    assert (loaded.name, loaded.label, loaded.pass_threshold) == ("words", "close", 0.3)
    assert loaded.reference == "cli_metrics:words" and loaded.output_type == "score"
    with pytest.raises(ImportTargetError):
        load_metric("cli_metrics:nothing")


def test_sync_evaluator_default_is_the_pool(live_server: RunningServer) -> None:
    threads: set[str] = set()

    def where(row: Mapping[str, Any]) -> bool:
        threads.add(threading.current_thread().name)
        return True

    with Evaluator(live_server.api_key, live_server.secret_key, live_server.url,
                   max_workers=2) as ev:
        result = ev.evaluate_batch(_rows(6), [where], progress=False)
    assert result.passed and threading.current_thread().name not in threads


def test_a_metric_past_item_timeout_is_an_error_on_its_row(live_server: RunningServer) -> None:
    async def slow_on_row_2(row: Mapping[str, Any]) -> float:
        if row["id"] == 2:
            await asyncio.sleep(30)  # cancelled at item_timeout
        return 1.0

    with client_for(live_server, max_workers=2) as ev:
        result = ev.evaluate_batch(_rows(4), [slow_on_row_2], progress=False, item_timeout=0.5)
    errors = {it.index: it.results["slow_on_row_2"].error for it in result}
    assert errors[2] is not None and errors[2].type == "MetricTimeoutError"
    assert errors[2].retryable  # a resumed run calls it again on that row
    assert [errors[i] for i in (0, 1, 3)] == [None, None, None]
    assert result.stats.wall_time < 10


def test_metric_as_a_decorator() -> None:
    @metric(pass_threshold=0.8, label="strict")
    def close(row: Mapping[str, Any]) -> float:
        return 0.9

    assert (close.name, close.label, close.pass_threshold) == ("close", "strict", 0.8)
    assert close({"x": 1}) == 0.9 and close.output_type == "score"
    assert close.reference.endswith(":test_metric_as_a_decorator.<locals>.close")
