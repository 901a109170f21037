"""The on-disk spool of the score logger: one SQLite file, shared by every process that uses it.

Why SQLite and not append-only JSONL segments: the spool must survive a process that exits at
any instant (``os._exit``, ``kill -9``, an OOM kill) and it must let several processes (the
pre-forked workers of one gunicorn) append and replay the same backlog.

- Every write is one transaction: a crash leaves the file as it was before or after it, never
  with a torn half line that a JSONL reader would have to detect and skip. WAL mode with
  ``synchronous=NORMAL`` makes a committed transaction durable against the death of the process
  (the data is in the OS page cache); only a power cut may lose the last few commits, and even
  then the file stays consistent.
- Replay must delete what was acknowledged. With segments that needs a second "offset" file
  updated atomically next to them and a compaction pass; here it is a ``DELETE``.
- Several processes append and claim at once under SQLite's own file locks
  (``BEGIN IMMEDIATE``); segments would need a lock file of their own.
- Rows are replayed in log order, ``ORDER BY gen, lseq`` (logger generation, then the score's
  sequence number in that logger), through an index.

Exactly once across processes. Before a batch of spooled scores is first sent, the
``Idempotency-Key`` and the exact body are written next to its rows (:meth:`Spool.bind`).
Whoever replays those rows later (this process after an outage, or the next process after a
crash) sends that same body with that same key, so the server runs each score once even when
the first attempt did reach it. A row is deleted only once the server has accepted its batch.

A process claims rows before it sends them (``claimed_by``, ``claimed_at``) so that two live
processes do not send the same batch twice; a claim held by a process that is gone (same host,
pid no longer alive) or older than ``LOGGER_SPOOL_LEASE`` may be taken over.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from fi_evals._constants import LOGGER_SPOOL_LEASE

__all__ = ["Spool", "SpoolRow", "SpooledBatch"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS entries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    gen INTEGER NOT NULL,
    lseq INTEGER NOT NULL,
    grp TEXT NOT NULL,
    eval_name TEXT NOT NULL,
    record TEXT NOT NULL,
    batch_key TEXT,
    batch_pos INTEGER,
    claimed_by TEXT,
    claimed_at REAL
);
CREATE INDEX IF NOT EXISTS entries_order ON entries (gen, lseq);
CREATE INDEX IF NOT EXISTS entries_batch ON entries (batch_key);
CREATE TABLE IF NOT EXISTS batches (key TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS submitted (
    eval_id TEXT PRIMARY KEY,
    gen INTEGER NOT NULL,
    lseq INTEGER NOT NULL,
    eval_name TEXT NOT NULL,
    record TEXT NOT NULL
);
"""

_BUSY_TIMEOUT_S = 30.0
# Rows read at the head of the spool to find one batch's worth of the head's group.
_WINDOW_FACTOR = 4


@dataclass(frozen=True, kw_only=True)
class SpoolRow:
    """One spooled score: where it stands in log order, its batch group and its record.

    ``record`` holds the wire-ready inputs and everything needed to send them again and
    rebuild the result (``inputs``, ``metadata``, ``model``, ``params``, ``batchable``);
    ``id`` is None until written.
    """

    gen: int
    lseq: int
    grp: str
    eval_name: str
    record: dict[str, Any]
    id: int | None = None
    batch_key: str | None = None


@dataclass(frozen=True)
class SpooledBatch:
    """Rows claimed for one submission. ``key``/``body`` are set when already bound."""

    rows: tuple[SpoolRow, ...]
    key: str | None = None
    body: dict[str, Any] | None = None

    @property
    def ids(self) -> list[int]:
        return [r.id for r in self.rows if r.id is not None]


def _dumps(value: Any) -> str:
    # default=str: metadata is the caller's and may hold datetimes or ids of any type; the
    # spool keeps a faithful-enough text rather than losing the score.
    return json.dumps(value, separators=(",", ":"), default=str)


def _host() -> str:
    return socket.gethostname()


class Spool:
    """A thread-safe handle on one spool file (one SQLite connection behind a lock).

    Args:
        path: the SQLite file; its folder is created when missing.
        lease: seconds after which another process may take over a claim.
    """

    def __init__(self, path: str | os.PathLike[str], *, lease: float = LOGGER_SPOOL_LEASE) -> None:
        self.path = os.fspath(path)
        self.lease = lease
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._new_owner()
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        with self._lock:
            self._connect()

    def __repr__(self) -> str:
        return f"<Spool {self.path!r} owner={self.owner!r}>"

    # ------------------------------------------------------------------ connection

    def _new_owner(self) -> None:
        self.owner = f"{_host()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_S, isolation_level=None,
                                   check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(_SCHEMA)
            self._conn = conn
        return self._conn

    # SQLite forbids carrying a connection across fork(): the child would inherit the
    # library's in-process lock bookkeeping of the parent's connection (even a new connection
    # in the child then waits on locks nobody holds). So no connection is open at the fork:
    # the hook takes the lock (no transaction is under way), closes the connection, and both
    # processes reopen lazily afterwards.

    def before_fork(self) -> None:
        self._lock.acquire()
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def after_fork_in_parent(self) -> None:
        self._lock.release()

    def after_fork_in_child(self) -> None:
        """A fresh lock (the parent's copy is held) and a new owner id for claims."""
        self._conn = None
        self._lock = threading.Lock()
        self._new_owner()

    def close(self) -> None:
        """Close the connection (the file stays; a later call reopens it)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _txn(self, read_only: bool = False) -> _Txn:
        return _Txn(self, read_only)

    # ------------------------------------------------------------------ writes

    def next_generation(self) -> int:
        """A new generation number: every logger gets one, so log order spans processes."""
        with self._txn() as conn:
            row = conn.execute("SELECT v FROM meta WHERE k='gen'").fetchone()
            gen = (row[0] if row else 0) + 1
            conn.execute("INSERT OR REPLACE INTO meta (k, v) VALUES ('gen', ?)", (gen,))
        return gen

    def append(self, rows: Iterable[SpoolRow]) -> int:
        """Write new, never-sent rows. Returns how many were written."""
        values = [(r.gen, r.lseq, r.grp, r.eval_name, _dumps(r.record)) for r in rows]
        if not values:
            return 0
        with self._txn() as conn:
            conn.executemany("INSERT INTO entries (gen, lseq, grp, eval_name, record) "
                             "VALUES (?, ?, ?, ?, ?)", values)
        return len(values)

    def append_bound(self, key: str, body: dict[str, Any], rows: Sequence[SpoolRow]) -> None:
        """Write the rows of a batch that was (maybe) sent with ``key``: they replay as one."""
        with self._txn() as conn:
            conn.execute("INSERT OR REPLACE INTO batches (key, body) VALUES (?, ?)",
                         (key, _dumps(body)))
            conn.executemany(
                "INSERT INTO entries (gen, lseq, grp, eval_name, record, batch_key, batch_pos) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(r.gen, r.lseq, r.grp, r.eval_name, _dumps(r.record), key, i)
                 for i, r in enumerate(rows)])

    def bind(self, batch: SpooledBatch, key: str, body: dict[str, Any]) -> SpooledBatch:
        """Record the key and body of claimed rows before they are first sent."""
        ids = batch.ids
        with self._txn() as conn:
            conn.execute("INSERT OR REPLACE INTO batches (key, body) VALUES (?, ?)",
                         (key, _dumps(body)))
            conn.executemany("UPDATE entries SET batch_key=?, batch_pos=? WHERE id=?",
                             [(key, pos, row_id) for pos, row_id in enumerate(ids)])
        return SpooledBatch(batch.rows, key, body)

    def delete(self, ids: Sequence[int], key: str | None = None) -> None:
        """Forget rows (accepted by the server, or rejected for good) and their batch."""
        with self._txn() as conn:
            conn.executemany("DELETE FROM entries WHERE id=?", [(i,) for i in ids])
            if key is not None:
                conn.execute("DELETE FROM batches WHERE key=? AND NOT EXISTS "
                             "(SELECT 1 FROM entries WHERE batch_key=?)", (key, key))

    def release(self, ids: Sequence[int]) -> None:
        """Give up a claim (the server is unreachable): the rows stay, any process may retry."""
        with self._txn() as conn:
            conn.executemany("UPDATE entries SET claimed_by=NULL, claimed_at=NULL WHERE id=?",
                             [(i,) for i in ids])

    def release_all_mine(self) -> None:
        with self._txn() as conn:
            conn.execute("UPDATE entries SET claimed_by=NULL, claimed_at=NULL "
                         "WHERE claimed_by=?", (self.owner,))

    # ------------------------------------------------------------------ claims

    def claim_next(self, max_rows: int) -> SpooledBatch | None:
        """Claim the head of the spool: a bound batch whole, or up to ``max_rows`` new rows of
        the head row's group (in log order). None when nothing is claimable."""
        now = time.time()
        with self._txn() as conn:
            head = self._head(conn, max_rows * _WINDOW_FACTOR, now)
            if not head:
                return None
            first = head[0]
            if first[6] is not None:  # batch_key: replay that batch exactly as first sent
                key = first[6]
                rows = conn.execute(
                    "SELECT id, gen, lseq, grp, eval_name, record, batch_key FROM entries "
                    "WHERE batch_key=? ORDER BY batch_pos", (key,)).fetchall()
                body_row = conn.execute("SELECT body FROM batches WHERE key=?",
                                        (key,)).fetchone()
                body = json.loads(body_row[0]) if body_row else None
            else:
                key, body = None, None
                rows = [r for r in head if r[6] is None and r[3] == first[3]][:max_rows]
            self._claim(conn, [r[0] for r in rows], now)
        parsed = tuple(SpoolRow(gen=r[1], lseq=r[2], grp=r[3], eval_name=r[4],
                                record=json.loads(r[5]), id=r[0], batch_key=r[6])
                       for r in rows)
        if key is not None and body is None:
            # The batch's body is gone (should not happen): send its rows again as new ones.
            return SpooledBatch(parsed)
        return SpooledBatch(parsed, key, body)

    def _head(self, conn: sqlite3.Connection, window: int, now: float) -> list[tuple[Any, ...]]:
        rows = conn.execute(
            "SELECT id, gen, lseq, grp, eval_name, record, batch_key, claimed_by, claimed_at "
            "FROM entries ORDER BY gen, lseq LIMIT ?", (window,)).fetchall()
        return [r for r in rows if self._claimable(r[7], r[8], now)]

    def _claimable(self, owner: str | None, claimed_at: float | None, now: float) -> bool:
        if owner is None or owner == self.owner:
            return True
        if claimed_at is None or now - claimed_at > self.lease:
            return True
        host, _, rest = owner.partition(":")
        pid_text = rest.partition(":")[0]
        if host != _host() or not pid_text.isdigit():
            return False
        return not _pid_alive(int(pid_text))

    def _claim(self, conn: sqlite3.Connection, ids: Sequence[int], now: float) -> None:
        conn.executemany("UPDATE entries SET claimed_by=?, claimed_at=? WHERE id=?",
                         [(self.owner, now, i) for i in ids])

    # ------------------------------------------------------------------ submitted, unfinished

    def save_submitted(self, items: Iterable[tuple[str, int, int, str, dict[str, Any]]]) -> int:
        """Keep (eval_id, gen, lseq, eval_name, record) of accepted but unfinished scores, so
        that the next logger on this spool fetches their results."""
        values = [(eid, gen, lseq, name, _dumps(rec)) for eid, gen, lseq, name, rec in items]
        if values:
            with self._txn() as conn:
                conn.executemany("INSERT OR REPLACE INTO submitted VALUES (?, ?, ?, ?, ?)",
                                 values)
        return len(values)

    def take_submitted(self, limit: int) -> list[tuple[str, int, int, str, dict[str, Any]]]:
        """Remove and return up to ``limit`` saved unfinished scores (oldest first)."""
        with self._txn() as conn:
            rows = conn.execute("SELECT eval_id, gen, lseq, eval_name, record FROM submitted "
                                "ORDER BY gen, lseq LIMIT ?", (limit,)).fetchall()
            conn.executemany("DELETE FROM submitted WHERE eval_id=?", [(r[0],) for r in rows])
        return [(r[0], r[1], r[2], r[3], json.loads(r[4])) for r in rows]

    # ------------------------------------------------------------------ reads

    def count(self) -> int:
        """Spooled scores not yet accepted by a server."""
        with self._txn(read_only=True) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM entries").fetchone()[0])

    def count_before_gen(self, gen: int) -> int:
        """Spooled scores of earlier loggers (generations before ``gen``), not yet accepted."""
        with self._txn(read_only=True) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM entries WHERE gen<?",
                                    (gen,)).fetchone()[0])

    def count_submitted(self) -> int:
        """Accepted scores whose results the next logger on this spool is to fetch."""
        with self._txn(read_only=True) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM submitted").fetchone()[0])


class _Txn:
    """``with spool._txn() as conn``: the spool's lock, then one transaction (committed, or
    rolled back on an exception).

    A writing transaction is IMMEDIATE: it takes SQLite's write lock at BEGIN, so two processes
    claiming the head never both read it before either updates it. A ``read_only`` one is a
    plain (deferred) BEGIN.
    """

    def __init__(self, spool: Spool, read_only: bool = False) -> None:
        self.spool = spool
        self.read_only = read_only

    def __enter__(self) -> sqlite3.Connection:
        self.spool._lock.acquire()
        try:
            conn = self.spool._connect()
            conn.execute("BEGIN" if self.read_only else "BEGIN IMMEDIATE")
        except BaseException:
            self.spool._lock.release()
            raise
        self.conn = conn
        return conn

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            self.conn.execute("ROLLBACK" if exc_type is not None else "COMMIT")
        finally:
            self.spool._lock.release()


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
