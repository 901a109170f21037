"""Runs kept by ``evaluate_batch`` against a real server: what the store holds and serves.

The reference for every figure is the batch itself: ``result.stats`` and the JSONL output the
same rows were streamed to (``output=`` and the run store share one tee).
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from fi_evals import Evaluator
from fi_evals.batch import BatchItem, BatchResult, read_jsonl
from fi_evals.batch.stats import TemplateStats
from fi_evals.runs import RowQuery, Run, RunStore
from fi_evals.runs.schema import META_FILE, ROWS_FILE

from .conftest import EVALS, MAPPING, Scored


def verdicts(result: BatchResult, item: BatchItem) -> dict[str, str]:
    """Each eval's verdict of one row, by the stats' own rule."""
    out = {}
    for label, r in item.results.items():
        t: TemplateStats = result.stats.templates[label]
        graded = t.grade(r.output) if r.ok else None
        out[label] = ("errored" if not r.ok else "scored" if graded is None
                      else "passed" if graded else "failed")
    return out


def row_status(v: dict[str, str]) -> str:
    values = set(v.values())
    return "errored" if "errored" in values else "failed" if "failed" in values else "passed"


def test_a_kept_run_holds_every_row_and_the_batch_figures(scored: Scored,
                                                          runs_dir: Path) -> None:
    result = scored(run_name="main", thresholds={"is_json": 0.5})
    run = result.run
    assert run is not None and run.name == "main" and run.id.endswith("-main")
    assert run.folder.parent == runs_dir
    assert (run.folder / META_FILE).is_file() and (run.folder / ROWS_FILE).is_file()
    assert not (run.folder / f"{ROWS_FILE}-wal").exists()  # one file once the run ended
    assert (runs_dir / ".gitignore").read_text().splitlines()[-1] == "*"
    assert run.status == "complete" and run.rows == 60
    assert run.verdict == ("PASS" if result.passed else "FAIL") == "FAIL"
    assert run.meta["problems"] == result.problems
    config = run.meta["config"]
    assert [e["eval"] for e in config["evals"]] == ["is_json", "fuzzy_match", "contains"]
    assert config["key_mapping"] == MAPPING and config["thresholds"] == {"is_json": 0.5}
    assert config["task"].endswith("make_task.<locals>.task")
    assert run.meta["versions"]["fi_evals"] and run.meta["server"]["protocol"] == "fi-evals/1"
    assert run.meta["key_excluded"] == ["answer"]
    assert run.meta["stats"] == json.loads(json.dumps(result.stats.to_dict()))
    overview = run.overview()
    for entry in overview["evals"]:
        t = result.stats.templates[entry["label"]]
        assert (entry["total"], entry["scored"], entry["passed"], entry["graded"]) == \
            (t.total, t.scored, t.passed, t.graded)
        assert entry["pass_rate"] == t.pass_rate and entry["mean"] == t.mean_score
        assert entry["errors"] == dict(t.errors) == {"TaskError": 2}
    (check,) = overview["evals"][0]["checks"]
    assert check["passed"] is result.checks[0].passed
    assert overview["evals"][1]["histogram"]["bins"] and overview["evals"][0]["histogram"] is None
    # The store and the JSONL output got the same rows, in input order.
    reference = [i.to_dict() for i in read_jsonl(result.output)]  # type: ignore[arg-type]
    assert [i.to_dict() for i in run.iter_items()] == reference
    assert run.item(18).results["is_json"].error.type == "TaskError"  # type: ignore[union-attr]


def test_without_output_the_result_reads_its_rows_back_from_the_store(scored: Scored) -> None:
    result = scored(output=None, save=True)
    assert result._items is None  # nothing held in memory: the store has them
    assert result.run is not None and result.run.name is None
    assert len(result) == 60 and [i.index for i in result] == list(range(60))
    assert result[5].index == 5 and result[-1].index == 59
    with pytest.raises(IndexError):
        result[60]
    assert {i.index for i in result.failed_items()} == {7, 18}
    assert len(result.passing_items()) + len(result.failing_items()) == 58


def test_pages_filter_by_eval_verdict_and_text(scored: Scored) -> None:
    result = scored(run_name="filters")
    run = result.run
    assert run is not None
    items = list(read_jsonl(result.output))  # type: ignore[arg-type]
    table = {item.index: verdicts(result, item) for item in items}
    for label in result.stats.templates:
        for verdict in ("passed", "failed", "errored", "scored"):
            expected = [i for i, v in table.items() if v[label] == verdict]
            page = run.page(RowQuery(eval=label, verdict=verdict), limit=500)
            assert [r["index"] for r in page["rows"]] == expected, (label, verdict)
            assert page["total"] == len(expected)
    for status in ("passed", "failed", "errored"):
        expected = [i for i, v in table.items() if row_status(v) == status]
        assert run.count(RowQuery(verdict=status)) == (len(expected), False)
        page = run.page(RowQuery(verdict=status), limit=500)
        assert [r["index"] for r in page["rows"]] == expected
        assert all(r["status"] == status for r in page["rows"])
    # Paging: offset and limit walk the matches in input order.
    failing = [i for i, v in table.items() if row_status(v) == "failed"]
    second = run.page(RowQuery(verdict="failed"), offset=5, limit=5)
    assert [r["index"] for r in second["rows"]] == failing[5:10]
    # Text: inputs, reasons and error messages.
    assert [r["index"] for r in run.page(RowQuery(text="order 42?"))["rows"]] == [42]
    found = run.page(RowQuery(text="MODEL UNAVAILABLE"))
    assert [r["index"] for r in found["rows"]] == [7, 18] and found["total"] == 2
    assert run.page(RowQuery(text="100%_"))["total"] == 0  # LIKE wildcards are literal
    with pytest.raises(ValueError, match="eval: no eval labelled 'nope'"):
        run.page(RowQuery(eval="nope", verdict="failed"))
    with pytest.raises(ValueError, match="verdict: expected one of"):
        run.page(RowQuery(verdict="bad"))
    with pytest.raises(ValueError, match="needs an eval"):
        run.page(RowQuery(verdict="scored"))


def test_a_row_in_full(scored: Scored) -> None:
    result = scored(run_name="detail")
    assert result.run is not None
    row = result.run.row(18)
    assert row is not None and row["status"] == "errored"
    assert row["item"] == {"id": 18, "question": "Where is order 18?",
                           "reference": "Please wait, order 18 ships today."}
    for label in ("is_json", "close", "polite"):
        outcome = row["outcomes"][label]
        assert outcome["verdict"] == "errored" and outcome["error"]["type"] == "TaskError"
        assert "model unavailable for row 18" in outcome["error"]["message"]
    ok = result.run.row(1)
    assert ok is not None and ok["task_output"]["tool_call"] == '{"tool": "lookup", "id": 1}'
    assert ok["outcomes"]["is_json"]["eval_id"] and ok["outcomes"]["close"]["score"] > 0.8
    assert result.run.row(60) is None


def test_store_options_are_checked_before_anything_is_sent(scored: Scored,
                                                         runs_dir: Path) -> None:
    with pytest.raises(ValueError, match="run name 'a/b'"):
        scored(run_name="a/b")
    with pytest.raises(ValueError, match="save=False keeps none"):
        scored(run_name="x", save=False)
    with pytest.raises(ValueError, match="junit: the folder"):
        scored(run_name="x", junit=runs_dir / "no" / "such" / "report.xml")
    assert not runs_dir.exists()  # nothing was started
    result = scored(runs_dir=None)  # Python keeps nothing unless asked
    assert result.run is None and not runs_dir.exists()


def test_a_run_that_stops_early_or_raises_says_so(scored: Scored, runs_dir: Path,
                                                  evaluator: Evaluator) -> None:
    stopped = scored(run_name="short", deadline=0.001)
    assert stopped.stopped == "deadline" and stopped.run is not None
    assert stopped.run.status == "stopped" and stopped.run.meta["stopped"] == "deadline"
    assert stopped.run.rows == stopped.stats.items  # what was read before the deadline

    def exits(row: dict[str, Any]) -> Any:
        raise SystemExit(3)  # a BaseException: it ends the batch itself

    with pytest.raises(SystemExit):
        evaluator.evaluate_batch([{"id": 1}], ["is_json"], key_mapping={"text": "id"}, task=exits,
                                 run_name="raised", runs_dir=runs_dir, progress=False)
    (raised,) = [r for r in RunStore(runs_dir).runs() if r.name == "raised"]
    assert raised.status == "incomplete" and "SystemExit" in raised.meta["error"]


def test_junit_report(scored: Scored, tmp_path: Path) -> None:
    path = tmp_path / "report.xml"
    result = scored(run_name="ci", junit=path, thresholds={"close": 0.99})
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites"
    suites = {s.get("name"): s for s in root.findall("testsuite")}
    assert list(suites) == ["is_json", "close", "polite", "fi-evals"]
    total_failures = 0
    for label, t in result.stats.templates.items():
        suite = suites[label]
        cases = suite.findall("testcase")
        assert len(cases) == int(suite.get("tests")) == t.total == 60
        failures = [c for c in cases if c.find("failure") is not None]
        errors = [c for c in cases if c.find("error") is not None]
        assert len(failures) == int(suite.get("failures")) == t.graded - t.passed
        assert len(errors) == int(suite.get("errors")) == t.error_count == 2
        assert {c.get("name") for c in errors} == {"row 7 id=7", "row 18 id=18"}
        assert errors[0].find("error").get("type") == "TaskError"  # type: ignore[union-attr]
        total_failures += len(failures)
    failure = suites["is_json"].find("testcase[@name='row 3 id=3']/failure")
    assert failure is not None and failure.get("type") == "Failed"
    assert '"id": 3' in (failure.text or "")  # the inputs, to find the row
    gates = {c.get("name"): c.find("failure") for c in suites["fi-evals"].findall("testcase")}
    assert gates["the batch finished"] is None
    assert gates["errors within max error rate 0.0%"] is not None  # the task errors
    assert gates["threshold close.mean >= 0.99"] is not None
    assert int(root.get("failures")) == total_failures + 2
    assert int(root.get("errors")) == result.stats.errors


def test_markdown_and_notebook_summaries(scored: Scored, tmp_path: Path) -> None:
    path = tmp_path / "summary.md"
    result = scored(run_name="md", summary_md=path, show=2)
    text = path.read_text()
    assert text == result.to_markdown()
    assert text.startswith("### fi-evals: \u274c FAIL")
    assert f"run `{result.run.id}`" in text  # type: ignore[union-attr]
    for label, t in result.stats.templates.items():
        assert f"| `{label}` | {t.output_type} | {t.scored}/{t.total} |" in text
    assert "<summary>Errored rows: 2 (first 2 shown)</summary>" in text
    assert "model unavailable for row 7" in text
    page = result._repr_html_()
    assert "FAIL" in page and "<code>close</code>" in page and "errored rows" in page
    assert "model unavailable for row 18" in page


def test_html_and_markdown_escape_what_the_rows_say() -> None:
    from fi_evals.batch.formats import _md, _x

    assert _md("a | b\n<script>") == "a \\| b &lt;script&gt;"
    assert _x("bad \x00 char & <tag>") == "bad ? char &amp; &lt;tag&gt;"


def test_runs_are_listed_resolved_and_pruned(scored: Scored, runs_dir: Path) -> None:
    first = scored(run_name="main", ids=range(5)).run
    second = scored(ids=range(5)).run
    third = scored(run_name="main", ids=range(5)).run
    assert first and second and third
    store = RunStore(runs_dir)
    assert [r.id for r in store.runs()] == [first.id, second.id, third.id]
    assert store.resolve("main").id == third.id  # a name: its newest run
    assert store.resolve("latest").id == third.id
    assert store.resolve("latest~2").id == first.id
    assert store.resolve(second.id).id == second.id
    assert store.resolve(str(first.folder)).id == first.id
    removed = store.prune(1)
    assert [r.id for r in removed] == [first.id, second.id]
    assert [r.id for r in store.runs()] == [third.id]


def test_overview_of_a_run_being_written(evaluator: Evaluator, runs_dir: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A run read while its batch runs: figures counted from the database."""
    monkeypatch.setattr("fi_evals.runs.writer.RUNS_COMMIT_SECONDS", 0.0)  # commit every row
    seen: list[dict[str, Any]] = []

    def peek(row: dict[str, Any]) -> Any:
        if row["id"] == 55:
            (running,) = [r for r in RunStore(runs_dir).runs() if r.name == "live"]
            seen.append(Run(running.folder).overview())
        return {"answer": "Please wait.", "tool_call": "{}"}

    evaluator.evaluate_batch([{"id": i, "reference": "x"} for i in range(60)],
                             EVALS, key_mapping=MAPPING, task=peek, run_name="live",
                             runs_dir=runs_dir, progress=False, chunk_size=5, max_workers=1)
    (overview,) = seen
    assert overview["status"] == "running"
    assert 0 < overview["rows"] < 60
    assert overview["evals"][0]["total"] == overview["rows"]
