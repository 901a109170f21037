"""The SQLite job store: one file in WAL mode, safe across ``kill -9``.

Each thread gets its own connection (readers never block one another in WAL mode); writes are
serialised by one lock, so no transaction ever waits on ``SQLITE_BUSY``. ``synchronous=NORMAL``
keeps every committed transaction across a process crash (only an OS crash or power loss can
lose the last ones), which is the durability the server promises.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from fi_evals.protocol import UNFINISHED_STATUSES, EvalStatus
from fi_evals.server.evalids import split_batch_id
from fi_evals.server.jsonenc import compact_encoder
from fi_evals.server.store import (
    ClaimedJob,
    FinishedJob,
    IdempotencyAnswer,
    IdempotencyRecord,
    IdempotencyReservation,
    JobStore,
    NewJob,
    ResultBatch,
    StoredEval,
)

__all__ = ["SQLiteJobStore"]

log = logging.getLogger("fi_evals.server.store")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS evals (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    template TEXT NOT NULL,
    status TEXT NOT NULL,
    inputs TEXT NOT NULL,
    params TEXT NOT NULL,
    model TEXT,
    output TEXT,
    reason TEXT,
    runtime INTEGER NOT NULL DEFAULT 0,
    error_message TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
-- Partial indexes: finished rows (most of them, and every sync insert) stay out of both.
CREATE INDEX IF NOT EXISTS evals_pending ON evals(seq) WHERE status='pending';
CREATE INDEX IF NOT EXISTS evals_processing ON evals(seq) WHERE status='processing';
CREATE TABLE IF NOT EXISTS idempotency (
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    body_hash TEXT NOT NULL,
    state TEXT NOT NULL,
    http_status INTEGER,
    answer BLOB,
    created_at REAL NOT NULL,
    PRIMARY KEY (scope, key)
);
-- Finished evaluations stored together (a sync request's results): one row per batch, found by
-- its key (an eval id without its index digits, see evalids.py). inputs: a JSON list of the
-- items' inputs objects; results: a JSON object of columns (see _results_text).
CREATE TABLE IF NOT EXISTS batches (
    seq INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    template TEXT NOT NULL,
    params TEXT NOT NULL,
    model TEXT,
    size INTEGER NOT NULL,
    inputs TEXT NOT NULL,
    results TEXT NOT NULL,
    created_at REAL NOT NULL
);
"""

_COLUMNS = "id, template, status, inputs, model, output, reason, runtime, error_message"
_SQL_CHUNK = 900  # ids per IN (...) query, under SQLite's variable limit on old builds
_PURGE_EVERY = 1000  # idempotency reservations between purges of expired records
_DECODED_BATCHES = 32  # decoded batch rows kept for reads (each id of a batch is read alone)


# One encoder for every row: json.dumps() with options builds a new encoder per call.
_dumps = compact_encoder()
_COMPLETED = EvalStatus.COMPLETED.value


@dataclass(frozen=True, slots=True)
class _BatchRow:
    """A ``batches`` row, decoded: item ``i``'s fields are the ``i``-th of each list."""

    template: str
    model: str | None
    inputs: list[dict[str, Any]]
    outputs: list[Any]
    reasons: list[str | None]
    runtimes: list[int]
    statuses: list[str] | None  # None: every item completed
    errors: list[str | None] | None  # None: no item has an error message

    @classmethod
    def decode(cls, template: str, model: str | None, inputs: str, results: str) -> _BatchRow:
        columns = json.loads(results)
        return cls(template, model, _inputs_of(inputs), columns["output"], columns["reason"],
                   columns["runtime"], columns.get("status"), columns.get("error"))

    def stored(self, eval_id: str, i: int) -> StoredEval:
        return StoredEval(eval_id=eval_id, template=self.template,
                          status=_COMPLETED if self.statuses is None else self.statuses[i],
                          inputs=self.inputs[i], model=self.model, output=self.outputs[i],
                          reason=self.reasons[i], runtime=self.runtimes[i],
                          error_message=None if self.errors is None else self.errors[i])


def _inputs_text(items: Sequence[Mapping[str, Any]]) -> str:
    """The ``inputs`` column of a batch: ``{"key": [one value per item], ...}`` when every item
    has the same keys (a request's items do; half the encoding time of one object per item),
    else a list of the items' objects."""
    first = items[0]
    width = len(first)
    if width and all(len(item) == width for item in items):
        try:
            return _dumps({key: [item[key] for item in items] for key in first})
        except KeyError:  # same number of keys, other names
            pass
    return _dumps(items if isinstance(items, (list, tuple)) else list(items))


def _inputs_of(text: str) -> list[dict[str, Any]]:
    """The items of an ``inputs`` column (see :func:`_inputs_text`)."""
    inputs = json.loads(text)
    if isinstance(inputs, dict):
        keys = list(inputs)
        return [dict(zip(keys, values, strict=True)) for values in zip(*inputs.values(),
                                                                      strict=True)]
    return inputs


def _results_text(batch: ResultBatch) -> str:
    """The ``results`` column of a batch: ``{"output": [...], "reason": [...], "runtime":
    [...]}`` plus ``"status"`` unless every item completed and ``"error"`` unless no item has
    an error message. The outputs' JSON texts made for the answer are joined, not re-encoded."""
    results = batch.results
    outputs = batch.outputs or [None if r.output is None else _dumps(r.output) for r in results]
    statuses = [r.status for r in results]
    errors = [r.error_message for r in results]
    text = (f'{{"output":[{",".join([o or "null" for o in outputs])}],'
            f'"reason":{_dumps([r.reason for r in results])},'
            f'"runtime":{_dumps([r.runtime for r in results])}')
    if statuses.count(_COMPLETED) != len(statuses):
        text += f',"status":{_dumps(statuses)}'
    if errors.count(None) != len(errors):
        text += f',"error":{_dumps(errors)}'
    return text + "}"


def _split_ids(eval_ids: Sequence[str]) -> tuple[list[str], dict[str, list[tuple[str, int]]]]:
    """The distinct ``eval_ids`` as (row ids, batch key -> [(batch id, index), ...])."""
    rows: list[str] = []
    batches: dict[str, list[tuple[str, int]]] = {}
    for eval_id in dict.fromkeys(eval_ids):
        split = split_batch_id(eval_id)
        if split is None:
            rows.append(eval_id)
        else:
            batches.setdefault(split[0], []).append((eval_id, split[1]))
    return rows, batches


class SQLiteJobStore(JobStore):
    """:class:`JobStore` on one SQLite file (see the module docstring for the locking)."""

    local_idempotency = True  # one server process owns the file (see recover())

    def __init__(self, path: str | os.PathLike[str], *, idempotency_ttl: float) -> None:
        self.path = os.fspath(path)
        self.idempotency_ttl = idempotency_ttl
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._conn_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._closed = False
        self._reservations = 0
        self._decoded: OrderedDict[str, _BatchRow] = OrderedDict()  # batch key -> rows, LRU
        self._decoded_lock = threading.Lock()
        parent = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(parent, exist_ok=True)
        conn = self._conn()
        conn.execute("PRAGMA journal_mode=WAL")
        conn.executescript(_SCHEMA)
        self._depth = self._count_queued(conn)

    @staticmethod
    def _count_queued(conn: sqlite3.Connection) -> int:
        # Two counts so that each uses its partial index.
        return sum(conn.execute(f"SELECT count(*) FROM evals WHERE status='{s}'").fetchone()[0]
                   for s in sorted(UNFINISHED_STATUSES))

    # ------------------------------------------------------------------ connections

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self._closed:
                raise RuntimeError("the job store is closed")
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                   timeout=30.0)
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
            with self._conn_lock:
                self._connections.append(conn)
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, serialised with every other writer of this process."""
        conn = self._conn()
        with self._write_lock:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    # ------------------------------------------------------------------ evaluations

    def insert(self, jobs: Sequence[NewJob],
               idempotency: tuple[str, str, IdempotencyAnswer] | None = None, *,
               body_hash: str | None = None) -> None:
        """See :meth:`JobStore.insert`; with ``body_hash``, the idempotency record is written
        whole (no reservation before it: ``local_idempotency``)."""
        now = time.time()
        if isinstance(jobs, ResultBatch) and jobs.batch_key is not None and len(jobs):
            self._insert_batch(jobs, idempotency, body_hash, now)  # one row for all
            return
        if isinstance(jobs, ResultBatch):  # a sync request's results: no NewJob objects
            self._insert_rows(self._result_rows(jobs, now), 0, idempotency, body_hash, now)
            return
        params_text: dict[int, str] = {}  # a batch shares one params object: encode it once
        rows = [
            (j.eval_id, j.template, j.status, _dumps(j.inputs),
             params_text.get(id(j.params)) or params_text.setdefault(id(j.params),
                                                                     _dumps(j.params)),
             j.model, None if j.output is None else _dumps(j.output), j.reason, j.runtime,
             j.error_message, now, now)
            for j in jobs
        ]
        pending = sum(1 for j in jobs if j.status in UNFINISHED_STATUSES)
        self._insert_rows(rows, pending, idempotency, body_hash, now)

    @staticmethod
    def _result_rows(batch: ResultBatch, now: float) -> list[tuple[Any, ...]]:
        dumps = _dumps
        template, params, model = batch.template, _dumps(batch.params), batch.model
        outputs = batch.outputs or [None if r.output is None else dumps(r.output)
                                    for r in batch.results]
        return [(i, template, r.status, dumps(item), params, model, output, r.reason,
                 r.runtime, r.error_message, now, now)
                for i, item, r, output in zip(batch.eval_ids, batch.items, batch.results,
                                              outputs, strict=True)]

    def _insert_batch(self, batch: ResultBatch,
                      idempotency: tuple[str, str, IdempotencyAnswer] | None,
                      body_hash: str | None, now: float) -> None:
        row = (batch.batch_key, batch.template, _dumps(batch.params), batch.model, len(batch),
               _inputs_text(batch.items), _results_text(batch), now)
        with self._write() as conn:
            conn.execute("INSERT INTO batches (key, template, params, model, size, inputs,"
                         " results, created_at) VALUES (?,?,?,?,?,?,?,?)", row)
            self._write_idempotency(conn, idempotency, body_hash, now)

    def _insert_rows(self, rows: list[tuple[Any, ...]], pending: int,
                     idempotency: tuple[str, str, IdempotencyAnswer] | None,
                     body_hash: str | None, now: float) -> None:
        with self._write() as conn:
            conn.executemany(
                "INSERT INTO evals (id, template, status, inputs, params, model, output, reason,"
                " runtime, error_message, created_at, updated_at)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows)
            self._write_idempotency(conn, idempotency, body_hash, now)
            self._depth += pending

    def _write_idempotency(self, conn: sqlite3.Connection,
                           idempotency: tuple[str, str, IdempotencyAnswer] | None,
                           body_hash: str | None, now: float) -> None:
        """The request's idempotency record, in the caller's transaction: written whole with
        ``body_hash`` (``local_idempotency``), else the reserved record gets its answer."""
        if idempotency is not None and body_hash is not None:
                scope, key, answer = idempotency
                conn.execute(
                    "INSERT OR REPLACE INTO idempotency (scope, key, body_hash, state,"
                    " http_status, answer, created_at) VALUES (?,?,?,'done',?,?,?)",
                    (scope, key, body_hash, answer.status, answer.body, now))
                self._count_reservation(conn, now, self.idempotency_ttl)
        elif idempotency is not None:
            self._set_answer(conn, *idempotency)

    def claim(self, limit: int) -> list[ClaimedJob]:
        with self._write() as conn:
            rows = conn.execute(
                "UPDATE evals SET status='processing', updated_at=? WHERE seq IN"
                " (SELECT seq FROM evals WHERE status='pending' ORDER BY seq LIMIT ?)"
                " RETURNING seq, id, template, inputs, params, model",
                (time.time(), limit)).fetchall()
        rows.sort()  # RETURNING order is unspecified; keep FIFO
        return [ClaimedJob(eval_id=r[1], template=r[2], inputs=json.loads(r[3]),
                           params=json.loads(r[4]), model=r[5]) for r in rows]

    def finish(self, results: Sequence[FinishedJob]) -> None:
        now = time.time()
        rows = [
            (r.status, None if r.output is None else _dumps(r.output), r.reason, r.runtime,
             r.error_message, now, r.eval_id)
            for r in results
        ]
        with self._write() as conn:
            changed = conn.executemany(
                "UPDATE evals SET status=?, output=?, reason=?, runtime=?, error_message=?,"
                " updated_at=? WHERE id=? AND status IN ('pending','processing')", rows).rowcount
            self._depth -= max(changed, 0)

    def release(self, eval_ids: Sequence[str]) -> None:
        if not eval_ids:
            return
        with self._write() as conn:
            conn.executemany(
                "UPDATE evals SET status='pending', updated_at=? WHERE id=? AND"
                " status='processing'", [(time.time(), i) for i in eval_ids])

    def get_many(self, eval_ids: Sequence[str]) -> dict[str, StoredEval]:
        """See :meth:`JobStore.get_many`: batch ids (``evalids.split_batch_id``) are read from
        their batch row, each batch decoded once (and kept for the next reads); every other
        id, and a batch id whose batch is unknown, from ``evals``."""
        conn = self._conn()
        found: dict[str, StoredEval] = {}
        unique, wanted = _split_ids(eval_ids)
        batches = self._batches(conn, list(wanted))
        for key, asked in wanted.items():
            batch = batches.get(key)
            for eval_id, i in asked:
                if batch is not None and i < len(batch.inputs):
                    found[eval_id] = batch.stored(eval_id, i)
                else:  # not from a batch row after all: maybe a row of evals
                    unique.append(eval_id)
        for start in range(0, len(unique), _SQL_CHUNK):
            chunk = unique[start:start + _SQL_CHUNK]
            marks = ",".join("?" * len(chunk))
            for row in conn.execute(f"SELECT {_COLUMNS} FROM evals WHERE id IN ({marks})", chunk):
                found[row[0]] = StoredEval(
                    eval_id=row[0], template=row[1], status=row[2], inputs=json.loads(row[3]),
                    model=row[4], output=None if row[5] is None else json.loads(row[5]),
                    reason=row[6], runtime=row[7], error_message=row[8])
        return found

    def get_many_text(self, eval_ids: Sequence[str]) -> dict[str, tuple[Any, ...]]:
        """See :meth:`JobStore.get_many_text`: every row is written with the compact encoder.

        One read transaction for all the chunks: the connection's page cache, emptied by any
        write in between, is filled once per call instead of once per chunk.
        """
        conn = self._conn()
        found: dict[str, tuple[Any, ...]] = {}
        unique, wanted = _split_ids(eval_ids)
        conn.execute("BEGIN")
        try:
            # An item of a batch row: its row written from the decoded batch (an id whose
            # batch is unknown is left out: get_many then looks for it in evals).
            dumps = _dumps
            for key, batch in self._batches(conn, list(wanted)).items():
                size = len(batch.inputs)
                for eval_id, i in wanted[key]:
                    if i < size:
                        output = batch.outputs[i]
                        found[eval_id] = (
                            eval_id, batch.template,
                            _COMPLETED if batch.statuses is None else batch.statuses[i],
                            dumps(batch.inputs[i]), batch.model,
                            None if output is None else dumps(output), batch.reasons[i],
                            batch.runtimes[i], None if batch.errors is None else batch.errors[i])
            for start in range(0, len(unique), _SQL_CHUNK):
                chunk = unique[start:start + _SQL_CHUNK]
                marks = ",".join("?" * len(chunk))
                for row in conn.execute(f"SELECT {_COLUMNS} FROM evals WHERE id IN ({marks})",
                                        chunk):
                    found[row[0]] = row
        finally:
            conn.execute("COMMIT")
        return found

    def _batches(self, conn: sqlite3.Connection, keys: list[str]) -> dict[str, _BatchRow]:
        """The decoded batch rows of ``keys`` (unknown keys are absent)."""
        found: dict[str, _BatchRow] = {}
        missing: list[str] = []
        with self._decoded_lock:
            for key in keys:
                batch = self._decoded.get(key)
                if batch is None:
                    missing.append(key)
                else:
                    self._decoded.move_to_end(key)
                    found[key] = batch
        for start in range(0, len(missing), _SQL_CHUNK):
            chunk = missing[start:start + _SQL_CHUNK]
            marks = ",".join("?" * len(chunk))
            for key, template, model, inputs, results in conn.execute(
                    "SELECT key, template, model, inputs, results FROM batches"
                    f" WHERE key IN ({marks})", chunk):
                batch = found[key] = _BatchRow.decode(template, model, inputs, results)
                with self._decoded_lock:  # a batch never changes: a decoded one stays right
                    self._decoded[key] = batch
                    while len(self._decoded) > _DECODED_BATCHES:
                        self._decoded.popitem(last=False)
        return found

    def queue_depth(self) -> int:
        # Kept in memory: this process is the only writer of the file (see recover()).
        return self._depth

    # ------------------------------------------------------------------ idempotency

    def reserve_idempotency(self, scope: str, key: str, body_hash: str,
                            ttl_seconds: float) -> IdempotencyReservation:
        now = time.time()
        with self._write() as conn:
            row = conn.execute(
                "SELECT body_hash, state, http_status, answer, created_at FROM idempotency"
                " WHERE scope=? AND key=?", (scope, key)).fetchone()
            if row is None or row[4] < now - ttl_seconds:
                conn.execute(
                    "INSERT OR REPLACE INTO idempotency (scope, key, body_hash, state, created_at)"
                    " VALUES (?,?,?,'reserved',?)", (scope, key, body_hash, now))
                reservation = IdempotencyReservation("reserved")
            elif row[0] != body_hash:
                reservation = IdempotencyReservation("mismatch")
            elif row[1] == "done":
                reservation = IdempotencyReservation("replay",
                                                     IdempotencyAnswer(row[2], bytes(row[3])))
            else:
                reservation = IdempotencyReservation("in_progress")
            self._count_reservation(conn, now, ttl_seconds)
        return reservation

    def _count_reservation(self, conn: sqlite3.Connection, now: float, ttl: float) -> None:
        """Every ``_PURGE_EVERY`` records, drop the expired ones (in the caller's transaction)."""
        self._reservations += 1
        if self._reservations % _PURGE_EVERY == 0:
            conn.execute("DELETE FROM idempotency WHERE created_at < ?", (now - ttl,))

    def find_idempotency(self, scope: str, key: str,
                         ttl_seconds: float) -> IdempotencyRecord | None:
        row = self._conn().execute(
            "SELECT body_hash, state, http_status, answer, created_at FROM idempotency"
            " WHERE scope=? AND key=?", (scope, key)).fetchone()
        if row is None or row[4] < time.time() - ttl_seconds:
            return None
        answer = IdempotencyAnswer(row[2], bytes(row[3])) if row[1] == "done" else None
        return IdempotencyRecord(row[0], answer)

    def store_answer(self, scope: str, key: str, answer: IdempotencyAnswer) -> None:
        with self._write() as conn:
            self._set_answer(conn, scope, key, answer)

    @staticmethod
    def _set_answer(conn: sqlite3.Connection, scope: str, key: str,
                    answer: IdempotencyAnswer) -> None:
        conn.execute(
            "UPDATE idempotency SET state='done', http_status=?, answer=? WHERE scope=? AND key=?",
            (answer.status, answer.body, scope, key))

    def release_idempotency(self, scope: str, key: str) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM idempotency WHERE scope=? AND key=? AND state='reserved'",
                         (scope, key))

    # ------------------------------------------------------------------ life cycle

    def recover(self) -> int:
        # Only valid because one server process owns the file: whatever is processing or
        # reserved now was left by a process that is gone.
        now = time.time()
        with self._write() as conn:
            requeued = conn.execute(
                "UPDATE evals SET status='pending', updated_at=? WHERE status='processing'",
                (now,)).rowcount
            conn.execute("DELETE FROM idempotency WHERE state='reserved' OR created_at < ?",
                         (now - self.idempotency_ttl,))
            self._depth = self._count_queued(conn)
        if requeued:
            log.warning("requeued %d evaluations left processing by a previous run", requeued)
        return requeued

    def close(self) -> None:
        self._closed = True
        with self._conn_lock:
            conns, self._connections = self._connections, []
        for conn in conns:
            try:
                conn.close()
            except sqlite3.Error:  # another thread's connection mid-use: nothing to save
                pass

    def __repr__(self) -> str:
        return f"<SQLiteJobStore {self.path!r} queue={self._depth}>"
