"""The run store's own rules, without a server: keys, names, references, failures, pruning."""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path

import pytest

from fi_evals.batch.output import BatchItem
from fi_evals.results import EvalResult
from fi_evals.runs import Run, RunNotFoundError, RunStore
from fi_evals.runs.schema import key_fields, read_meta, row_key, without_fields
from fi_evals.runs.store import check_name

pytestmark = pytest.mark.unit  # no server, no model: `make unit` runs this file


EVALS = [{"label": "ok", "template": "is_json", "output_type": "Pass/Fail",
          "pass_threshold": 0.5},
         {"label": "sim", "template": "fuzzy_match", "output_type": "score",
          "pass_threshold": 0.8}]


def item(index: int, ok: bool = True, score: float = 0.9) -> BatchItem:
    return BatchItem(index, {"id": index, "q": f"question {index}"}, {
        "ok": EvalResult(name="is_json", output="Passed" if ok else "Failed"),
        "sim": EvalResult(name="fuzzy_match", output=score, output_type="score")}, None,
        ok and score >= 0.8)


def test_the_diff_key_ignores_field_order_and_the_answer_under_test() -> None:
    a = {"q": "where?", "answer": "here", "meta": {"lang": "en", "gold": "x"}}
    b = {"meta": {"gold": "x", "lang": "en"}, "answer": "there", "q": "where?"}
    assert row_key(a, ["answer"]) == row_key(b, ["answer"])
    assert row_key(a, []) != row_key(b, [])
    assert row_key(a, ["answer", "meta.gold"]) == row_key({**b, "meta": {"lang": "en"}},
                                                          ["answer"])
    assert without_fields(a, ["meta.gold"]) == {"q": "where?", "answer": "here",
                                                "meta": {"lang": "en"}}
    assert a["meta"] == {"lang": "en", "gold": "x"}  # the row itself is left alone
    assert len(row_key(a, [])) == 16


def test_key_fields_are_what_evals_read_as_output() -> None:
    mappings = [{"text": "tool_call"}, {"output": "answer", "expected": "reference"},
                {"output": "task.reply"}, {"output": "item.draft"}, {"output": "answer"}]
    assert key_fields(mappings) == ["answer", "draft"]


def test_run_names() -> None:
    assert check_name("nightly main") == "nightly-main"
    for bad in ("", "a/b", "../x", ".hidden", "x" * 65, "latest", "latest~2"):
        with pytest.raises(ValueError):
            check_name(bad)


def test_a_run_written_and_read_back(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    writer = store.create(name="unit", evals=EVALS, key_excluded=[], config={"x": 1})
    assert read_meta(writer.folder)["status"] == "running"
    for i in range(10):
        writer.write(item(i, ok=i % 3 != 0, score=i / 10))
    writer.close()
    run = Run(writer.folder)
    assert run.status == "running" and run.rows == 10  # its writer (this process) is alive
    overview = run.overview()
    assert overview["evals"][0]["counts"] == {"passed": 6, "failed": 4, "errored": 0,
                                              "scored": 0}
    assert overview["evals"][1]["passed"] == 2 and overview["evals"][1]["mean"] == \
        pytest.approx(0.45)
    assert [i.to_dict() for i in run.iter_items()] == [item(i, i % 3 != 0, i / 10).to_dict()
                                                       for i in range(10)]
    # A writer whose process is gone: the run is incomplete, not running forever.
    meta = read_meta(writer.folder)
    meta["pid"] = 2 ** 22 + 12345
    (writer.folder / "meta.json").write_text(json.dumps(meta))
    assert Run(writer.folder).status == "incomplete"


def test_a_store_that_cannot_write_costs_the_batch_nothing(
        tmp_path: Path, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    writer = RunStore(tmp_path).create(name=None, evals=EVALS, key_excluded=[], config={})

    def broken() -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(writer, "_commit", broken)
    with caplog.at_level(logging.WARNING, logger="fi_evals.runs"):
        for i in range(3):
            writer.write(item(i))  # never raises
        writer.close()
    assert "the run store stopped writing" in caplog.text
    meta = read_meta(writer.folder)
    assert meta["status"] == "incomplete" and "disk is full" in meta["error"]


def test_references_and_pruning(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    with pytest.raises(RunNotFoundError, match="no runs in"):
        store.resolve("latest")
    folders = []
    for name in ("alpha", "beta", None):
        w = store.create(name=name, evals=EVALS, key_excluded=[], config={})
        w.close()
        folders.append(w.folder)
    assert (tmp_path / ".gitignore").read_text().endswith("*\n")
    with pytest.raises(RunNotFoundError, match=r"no run 'gamma'.*alpha, beta"):
        store.resolve("gamma")
    prefix = folders[0].name[:8]  # every run of this test starts with the same date
    with pytest.raises(RunNotFoundError, match="matches 3 runs"):
        store.resolve(prefix)
    assert store.resolve("latest~1").name == "beta"
    with pytest.raises(RunNotFoundError, match="only 3 runs"):
        store.resolve("latest~3")
    # These runs' writer (this process) still runs: pruning keeps them.
    assert store.prune(0) == []
    for folder in folders:
        meta = read_meta(folder)
        meta["status"] = "complete"
        (folder / "meta.json").write_text(json.dumps(meta))
    assert [r.name for r in store.prune(1)] == ["alpha", "beta"]
    with pytest.raises(ValueError):
        store.prune(-1)
