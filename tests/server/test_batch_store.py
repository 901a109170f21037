"""Sync results stored as one batch row (issue 20): batch eval ids, reading them back by GET and
bulk status beside evaluations stored one per row, after a restart, and on idempotent replay."""

from __future__ import annotations

import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from _helpers import metric_sum

from fi_evals import _constants as C
from fi_evals.protocol import EvalStatus
from fi_evals.server.evalids import (
    BATCH_KEY_LENGTH,
    MAX_BATCH_ITEMS,
    batch_eval_ids,
    new_batch_ids,
    new_batch_key,
    new_eval_ids,
    split_batch_id,
)
from fi_evals.server.executor import ItemResult
from fi_evals.server.store import NewJob, ResultBatch
from fi_evals.server.store_sqlite import SQLiteJobStore

from .conftest import Api

EVALS = "fi_evals_evaluations_total"
REPLAYS = "fi_evals_idempotent_replays_total"

# The schema of a database written before batches existed: only evals and idempotency.
_OLD_SCHEMA = """
CREATE TABLE evals (seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, template TEXT NOT NULL,
    status TEXT NOT NULL, inputs TEXT NOT NULL, params TEXT NOT NULL, model TEXT, output TEXT,
    reason TEXT, runtime INTEGER NOT NULL DEFAULT 0, error_message TEXT,
    created_at REAL NOT NULL, updated_at REAL NOT NULL);
CREATE INDEX evals_pending ON evals(seq) WHERE status='pending';
CREATE INDEX evals_processing ON evals(seq) WHERE status='processing';
CREATE TABLE idempotency (scope TEXT NOT NULL, key TEXT NOT NULL, body_hash TEXT NOT NULL,
    state TEXT NOT NULL, http_status INTEGER, answer BLOB, created_at REAL NOT NULL,
    PRIMARY KEY (scope, key));
"""


def _rows(db: Path) -> tuple[int, int]:
    """(rows of evals, rows of batches) in the file."""
    with sqlite3.connect(db) as conn:
        return (conn.execute("SELECT count(*) FROM evals").fetchone()[0],
                conn.execute("SELECT count(*) FROM batches").fetchone()[0])


def _result(status: str = EvalStatus.COMPLETED, output: Any = "Passed",
            reason: str | None = "ok", error: str | None = None) -> ItemResult:
    return ItemResult(status=status, output=output, reason=reason, runtime=3,
                      error_message=error)


# ---------------------------------------------------------------------------- ids


def test_batch_ids_split_back_to_their_key_and_index() -> None:
    key, ids = new_batch_ids(1000)
    assert len(key) == BATCH_KEY_LENGTH and len(set(ids)) == 1000
    for i, eval_id in enumerate(ids):
        parsed = uuid.UUID(eval_id)
        assert str(parsed) == eval_id  # canonical: what canonical_eval_id makes of it
        assert parsed.version == 8 and parsed.variant == uuid.RFC_4122
        assert split_batch_id(eval_id) == (key, i)
    last = batch_eval_ids(key, MAX_BATCH_ITEMS)[-1]
    assert split_batch_id(last) == (key, MAX_BATCH_ITEMS - 1)
    with pytest.raises(ValueError, match="at most"):
        batch_eval_ids(key, MAX_BATCH_ITEMS + 1)


def test_row_ids_are_not_batch_ids() -> None:
    for eval_id in [*new_eval_ids(50), *(str(uuid.uuid4()) for _ in range(50))]:
        assert split_batch_id(eval_id) is None
    keys = [new_batch_key() for _ in range(200)]
    assert len(set(keys)) == 200
    times = [k[:13] for k in keys]  # "tttttttt-tttt": the ms time comes first
    assert times == sorted(times)


def test_result_batch_refuses_ids_not_made_from_its_key() -> None:
    key, ids = new_batch_ids(3)
    other, _ = new_batch_ids(3)
    items = [{"text": "{}"}] * 3
    with pytest.raises(ValueError, match="batch_eval_ids"):
        ResultBatch("is_json", {}, None, ids, items, [_result()] * 3, batch_key=other)
    assert len(ResultBatch("is_json", {}, None, ids, items, [_result()] * 3,
                           batch_key=key)) == 3


# ---------------------------------------------------------------------------- the store


def test_store_reads_batch_items_beside_rows_and_after_reopening(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    with sqlite3.connect(db) as conn:  # a database from before batches, with one result
        conn.executescript(_OLD_SCHEMA)
        old_id = str(uuid.uuid4())
        conn.execute("INSERT INTO evals (id, template, status, inputs, params, model, output,"
                     " reason, runtime, error_message, created_at, updated_at) VALUES"
                     " (?, 'is_json', 'completed', '{\"text\":\"{}\"}', '{}', NULL, '\"Passed\"',"
                     " 'old', 4, NULL, 0, 0)", (old_id,))
    store = SQLiteJobStore(db, idempotency_ttl=60)
    pending_id = new_eval_ids(1)[0]
    store.insert([NewJob(eval_id=pending_id, template="is_json", inputs={"text": "x"},
                         params={}, model=None)])
    key, ids = new_batch_ids(4)
    items = [{"text": "{}"}, {"text": "x"}, {"text": "[1]"}, {"text": "é"}]
    results = [_result(), _result(output="Failed", reason="not json"),
               _result(output=None, reason=None, status=EvalStatus.FAILED, error="boom"),
               _result(output=0.5, reason=None)]
    store.insert(ResultBatch("is_json", {}, "m1", ids, items, results, batch_key=key))
    assert _rows(db) == (2, 1)
    unknown = [str(uuid.uuid4()), new_batch_ids(1)[1][0], batch_eval_ids(key, 5)[4]]
    for reopened in (False, True):
        if reopened:  # a restart on the same file: nothing decoded in memory
            store.close()
            store = SQLiteJobStore(db, idempotency_ttl=60)
        found = store.get_many([*unknown, ids[3], old_id, *ids, pending_id, ids[0]])
        assert set(found) == {old_id, pending_id, *ids}
        assert (found[old_id].status, found[old_id].output, found[old_id].reason) == (
            "completed", "Passed", "old")
        assert found[pending_id].status == "pending"
        got = [(f.eval_id, f.template, f.status, f.inputs, f.model, f.output, f.reason,
                f.runtime, f.error_message) for f in (found[i] for i in ids)]
        assert got == [(i, "is_json", r.status, item, "m1", r.output, r.reason, 3,
                        r.error_message) for i, item, r in zip(ids, items, results, strict=True)]
    assert store.queue_depth() == 1  # only the pending row: a batch is finished work
    store.close()


@pytest.mark.parametrize("items", [
    [{"output": "a", "expected": "b"}, {"output": "c", "expected": "d"}],  # stored as columns
    [{"output": "a", "expected": "b"}, {"output": "c"}],  # other keys: stored item by item
    [{"output": "a", "expected": "b"}, {"output": "c", "other": "d"}],
    [{"text": ["chunk 1", "chunk 2"]}, {"text": []}],
])
def test_batch_inputs_read_back_as_given(tmp_path: Path, items: list[dict[str, Any]]) -> None:
    store = SQLiteJobStore(tmp_path / "inputs.db", idempotency_ttl=60)
    key, ids = new_batch_ids(len(items))
    store.insert(ResultBatch("fuzzy_match", {}, None, ids, items, [_result(output=1.0)] * 2,
                             batch_key=key))
    store.close()
    store = SQLiteJobStore(tmp_path / "inputs.db", idempotency_ttl=60)
    found = store.get_many(ids)
    assert [found[i].inputs for i in ids] == items
    store.close()


def test_a_batch_is_decoded_once_for_all_its_ids(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from fi_evals.server import store_sqlite

    store = SQLiteJobStore(tmp_path / "decode.db", idempotency_ttl=60)
    key, ids = new_batch_ids(500)
    store.insert(ResultBatch("is_json", {}, None, ids, [{"text": "{}"}] * 500,
                             [_result()] * 500, batch_key=key))
    decoded: list[str] = []
    real = store_sqlite._BatchRow.decode.__func__  # type: ignore[attr-defined]

    def counting(cls: Any, *args: Any) -> Any:
        decoded.append(args[0])
        return real(cls, *args)

    monkeypatch.setattr(store_sqlite._BatchRow, "decode", classmethod(counting))
    for start in range(0, 500, 100):  # as bulk status reads: 100 ids at a time, then GETs
        assert len(store.get_many(ids[start:start + 100])) == 100
    for eval_id in ids[:10]:
        assert store.get_many([eval_id])[eval_id].output == "Passed"
    assert decoded == ["is_json"]
    store.close()


def test_batches_without_a_key_are_stored_as_rows(tmp_path: Path) -> None:
    store = SQLiteJobStore(tmp_path / "rows.db", idempotency_ttl=60)
    ids = new_eval_ids(2)
    store.insert(ResultBatch("is_json", {}, None, ids, [{"text": "{}"}] * 2, [_result()] * 2))
    assert _rows(tmp_path / "rows.db") == (2, 0)
    assert {e.output for e in store.get_many(ids).values()} == {"Passed"}
    store.close()


# ---------------------------------------------------------------------------- over HTTP


def _ids(answer: Any) -> list[str]:
    return [i["eval_id"] for i in answer.json()["result"][0]["evaluations"]]


def test_get_and_bulk_status_read_sync_batches_rows_and_unknown_ids(server_factory: Any
                                                                    ) -> None:
    server = server_factory(inline_cheap_async=False)  # the async items queued: evals rows
    db = Path(server.config.db_path)
    api = Api(server)
    texts = ['{"a": 1}', "nope", "[]", '"s"', "{"]
    sync = api.evaluate("is_json", {"text": texts})
    single = api.evaluate("fuzzy_match", {"output": "kitten", "expected": "sitting"})
    queued = api.evaluate("is_json", {"text": ["{}", "x"]}, is_async=True)
    sync_ids, single_ids, async_ids = _ids(sync), _ids(single), _ids(queued)
    assert all(split_batch_id(i) for i in sync_ids + single_ids)
    assert not any(split_batch_id(i) for i in async_ids)
    assert _rows(db) == (2, 2)  # the async items are rows; each sync request one batch row
    unknown = [str(uuid.uuid4()), batch_eval_ids(split_batch_id(sync_ids[0])[0], 9)[8]]
    asked = [unknown[0], *sync_ids, *async_ids, single_ids[0], unknown[1], sync_ids[2]]
    answered: dict[str, Any] = {}
    entries: list[dict[str, Any]] = []
    for _ in range(200):  # the async items finish in the background (10 s at most)
        r = api.post(C.PATH_BULK_STATUS, {"eval_ids": asked})
        assert r.status_code == 200, r.text
        entries = r.json()["result"]
        if all(e["eval_status"] != "pending" and e["eval_status"] != "processing"
               for e in entries):
            answered = dict(zip(asked, entries, strict=True))
            break
        time.sleep(0.05)
    assert answered, "the async items did not finish"
    assert [e["eval_id"] for e in entries] == asked  # one entry per id asked, in order
    for eval_id in unknown:
        assert answered[eval_id]["eval_status"] == "not_found"
        assert api.result(eval_id).status_code == 404
    sync_items = sync.json()["result"][0]["evaluations"]
    for eval_id, text, item in zip(sync_ids, texts, sync_items, strict=True):
        entry = answered[eval_id]
        got = api.result(eval_id).json()["result"]
        assert {k: v for k, v in entry.items() if k != "eval_id"} == got
        record = got["result"]
        assert got["eval_status"] == got["evalStatus"] == "completed"
        assert record["input_data"] == {"text": text}
        assert (record["output"], record["reason"], record["runtime"]) == (
            item["output"], item["reason"], item["runtime"])
        assert record["value"] == item["output"] and record["name"] == "is_json"
    fuzzy = answered[single_ids[0]]["result"]
    assert fuzzy["input_data"] == {"output": "kitten", "expected": "sitting"}
    assert fuzzy["output"] == single.json()["result"][0]["evaluations"][0]["output"]
    assert {answered[i]["result"]["name"] for i in async_ids} == {"is_json"}


def test_a_restarted_server_finds_sync_results_in_the_same_file(server_factory: Any) -> None:
    first = server_factory()
    db_path = first.config.db_path
    sync = Api(first).evaluate("is_json", {"text": ["{}", "x", "[]"]})
    ids = _ids(sync)
    before = {i: Api(first).result(i).json() for i in ids}
    first.stop()
    again = Api(server_factory(db_path=db_path))
    assert {i: again.result(i).json() for i in ids} == before
    r = again.post(C.PATH_BULK_STATUS, {"eval_ids": ids})
    assert [e["result"]["output"] for e in r.json()["result"]] == ["Passed", "Failed", "Passed"]


def test_idempotent_replay_of_a_sync_batch_runs_and_stores_nothing(server_factory: Any) -> None:
    server = server_factory()
    db = Path(server.config.db_path)
    api = Api(server)
    headers = {C.HEADER_IDEMPOTENCY_KEY: str(uuid.uuid4())}
    body = {"eval_name": "is_json", "inputs": {"text": ["{}", "x", "[]"]}}
    first = api.post(C.PATH_NEW_EVAL, body, headers=headers)
    rows, evals = _rows(db), metric_sum(server, EVALS)
    replays = metric_sum(server, REPLAYS)
    again = api.post(C.PATH_NEW_EVAL, body, headers=headers)
    assert again.headers[C.HEADER_IDEMPOTENT_REPLAYED] == "true"
    assert again.content == first.content
    assert _rows(db) == rows and metric_sum(server, EVALS) == evals
    assert metric_sum(server, REPLAYS) == replays + 1
    outputs = [api.result(i).json()["result"]["result"]["output"] for i in _ids(again)]
    assert outputs == ["Passed", "Failed", "Passed"]
