"""``fi-evals diff`` and :func:`fi_evals.runs.diff.diff_runs`: two runs row by row.

BASE and NEW score the same questions with two versions of the model under test (the task):
the expected regressions and fixes are computed here from the two JSONL outputs with the
stats' own grading rule, and the diff must find exactly those. Key rules (duplicates, a key
field, runs whose evals read ``output`` from different fields) are checked on runs written
directly through the store.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fi_evals.batch import BatchResult, read_jsonl
from fi_evals.batch.output import BatchItem
from fi_evals.cli import main
from fi_evals.results import EvalResult
from fi_evals.runs import Run, RunStore
from fi_evals.runs.diff import diff_runs

from .conftest import Scored
from .test_runs_live import verdicts


def expected_changes(base: BatchResult, new: BatchResult) -> dict[str, set[tuple[int, str]]]:
    """(row id, label) pairs that regressed / were fixed, matched by the row's id."""
    b = {i.item["id"]: verdicts(base, i) for i in read_jsonl(base.output)}  # type: ignore[arg-type]
    n = {i.item["id"]: verdicts(new, i) for i in read_jsonl(new.output)}  # type: ignore[arg-type]
    out: dict[str, set[tuple[int, str]]] = {"regressed": set(), "fixed": set()}
    for ident in b.keys() & n.keys():
        for label, before in b[ident].items():
            after = n[ident][label]
            if before == "passed" and after in ("failed", "errored"):
                out["regressed"].add((ident, label))
            elif before in ("failed", "errored") and after == "passed":
                out["fixed"].add((ident, label))
    return out


def test_diff_of_two_models_on_the_same_questions(scored: Scored, runs_dir: Path) -> None:
    base = scored(run_name="main", bad_json=3, broken={7, 18}, rude=4)
    # NEW: other rows have bad JSON and rude answers, row 7 works again, row 25 breaks;
    # row 0 and 1 are gone, rows 60 and 61 are new.
    new = scored(ids=range(2, 62), run_name="pr", bad_json=4, broken={18, 25}, rude=5)
    assert base.run and new.run
    want = expected_changes(base, new)
    with diff_runs(base.run, new.run) as diff:
        assert diff.key_excluded == ["answer"]
        assert (diff.matched, diff.only_base, diff.only_new) == (58, 2, 2)
        found = {kind: {(e["new_index"] + 2, e["label"]) for e in diff.rows(kind, limit=500)}
                 for kind in ("regressed", "fixed")}
        assert found == want and want["regressed"] and want["fixed"]
        assert diff.regressed_rows == len({i for i, _ in want["regressed"]})
        assert diff.fixed_rows == len({i for i, _ in want["fixed"]})
        for e in diff.evals:
            assert e.regressed == sum(1 for _, label in want["regressed"] if label == e.label)
            assert e.fixed == sum(1 for _, label in want["fixed"] if label == e.label)
            t_base, t_new = base.stats.templates[e.label], new.stats.templates[e.label]
            assert e.base["pass_rate"] == t_base.pass_rate and e.new["mean"] == t_new.mean_score
            assert e.delta("pass_rate") == pytest.approx(t_new.pass_rate - t_base.pass_rate)
        assert [r["index"] for r in diff.rows("only_base")] == [0, 1]
        assert [r["index"] for r in diff.rows("only_new")] == [58, 59]
        entry = next(e for e in diff.rows("regressed") if e["new"]["verdict"] == "errored")
        assert entry["new_index"] + 2 == 25 and entry["new"]["error_type"] == "TaskError"
        data = diff.to_dict()
        assert data["regressed_rows"] == diff.regressed_rows and len(data["evals"]) == 3
        assert diff.count("regressed") == len(want["regressed"])
    # The same by the CLI: exit 1 over --max-regressions, 0 within it.
    args = ["diff", "main", "pr", "--runs-dir", str(runs_dir)]
    assert main(args) == 1
    assert main([*args, "--max-regressions", str(diff.regressed_rows)]) == 0
    assert main([*args, "--key", "id", "--max-regressions", "1000"]) == 0


def test_cli_diff_prints_changes_and_counts(scored: Scored, runs_dir: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    scored(run_name="main", broken=set())
    scored(run_name="pr", broken={5})
    assert main(["diff", "main", "latest", "--runs-dir", str(runs_dir), "--show", "1"]) == 1
    out = capsys.readouterr().out
    assert "rows matched by a hash of the input fields (all but answer): 60 matched" in out
    assert "regressed rows: 1 (a verdict went from passed to failed or errored; all shown)" in out
    assert "row 5 -> 5  is_json  passed -> errored  TaskError" in out
    assert out.rstrip().endswith("exit 1: FAIL: 1 regressed rows > --max-regressions 0")
    assert main(["diff", "main", "latest", "--runs-dir", str(runs_dir), "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["regressed_rows"] == 1 and data["passed"] is False
    assert main(["diff", "main", "nope", "--runs-dir", str(runs_dir)]) == 2
    assert "no run 'nope'" in capsys.readouterr().err
    assert main(["diff", "main", "main", "--runs-dir", str(runs_dir)]) == 2


# --------------------------------------------------------------------------- key rules


def _write(store: RunStore, name: str, rows: list[dict[str, Any]], passed: list[bool],
           key_excluded: list[str]) -> Run:
    """A run written straight through the store (one Pass/Fail eval)."""
    writer = store.create(name=name, evals=[{"label": "ok", "template": "is_json",
                                            "output_type": "Pass/Fail", "pass_threshold": 0.5}],
                          key_excluded=key_excluded, config={})
    for index, (row, ok) in enumerate(zip(rows, passed)):
        result = EvalResult(name="is_json", output="Passed" if ok else "Failed")
        writer.write(BatchItem(index, row, {"ok": result}, None, ok))
    writer.close()
    return Run(writer.folder)


def test_duplicate_rows_pair_up_in_order(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    rows = [{"q": "same"}, {"q": "other"}, {"q": "same"}]
    base = _write(store, "b", rows, [True, True, False], [])
    new = _write(store, "n", [rows[1], rows[0], rows[2]], [True, False, True], [])
    with diff_runs(base, new) as diff:
        assert (diff.matched, diff.only_base, diff.only_new) == (3, 0, 0)
        # base 0 ("same", 1st) <-> new 1; base 2 ("same", 2nd) <-> new 2
        assert [(e["base_index"], e["new_index"]) for e in diff.rows("regressed")] == [(0, 1)]
        assert [(e["base_index"], e["new_index"]) for e in diff.rows("fixed")] == [(2, 2)]


def test_a_key_field_and_runs_that_read_output_from_different_fields(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    base = _write(store, "b", [{"id": 1, "q": "x", "a": "1"}, {"id": 2, "q": "y", "a": "2"}],
                  [True, True], ["a"])
    # NEW's evals read their output from "b": a row's key then leaves out both a and b.
    new = _write(store, "n", [{"id": 2, "q": "y", "b": "2"}, {"id": 1, "q": "x!", "b": "1"}],
                 [False, True], ["b"])
    with diff_runs(base, new) as diff:
        assert diff.key_excluded == ["a", "b"]
        assert (diff.matched, diff.only_base, diff.only_new) == (1, 1, 1)  # "x" != "x!"
        assert [(e["base_index"], e["new_index"]) for e in diff.rows("regressed")] == [(1, 0)]
    with diff_runs(base, new, key="id") as diff:
        assert diff.key_text == "field 'id'"
        assert (diff.matched, diff.only_base, diff.only_new) == (2, 0, 0)
    nested = _write(store, "m", [{"meta": {"id": 2}}, {"meta": {"id": 1}}], [True, True], [])
    flat = _write(store, "f", [{"meta.id": 1}, {"meta.id": 2}], [True, False], [])
    with diff_runs(nested, flat, key="meta.id") as diff:  # a dotted path, or the field itself
        assert diff.matched == 2 and diff.regressed_rows == 1
