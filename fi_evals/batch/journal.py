"""The append-only journal that lets a killed batch resume without running anything twice.

One JSON object per line, written with one unbuffered ``write`` each (``O_APPEND``), so a kill
leaves at worst one torn last line, which the next run skips. The records:

``{"t": "run", ...}``
    First line: version, eval specs, chunk size, mode. A rerun must match it.
``{"t": "task", "c": CHUNK, "out": [...]}``
    The task's outputs for one chunk, written before any of its submissions: a resumed run
    sends the very same bodies instead of calling a (non-deterministic) model again.
``{"t": "sub", "c": CHUNK, "e": EVAL, "p": PART, "key": UUID, "n": N, "h": HASH, "a": ASYNC}``
    Written BEFORE the request is sent: its idempotency key and a hash of its body.
``{"t": "ids", "key": UUID, "ids": [...]}``
    Written AFTER the answer: the server's eval ids for that submission.
``{"t": "fn", "c": CHUNK, "e": EVAL, "h": HASH, "out": [...]}``
    A function metric's outcomes for one chunk (``[output, reason, runtime]``, an error
    object, or null for rows without one), once all of them are in or when the batch stops,
    with a hash of the rows it read: a rerun takes them instead of calling it again (unless
    the rows changed), and calls it on the null and retryable ones. The last record wins.

On a rerun, a submission with ids is re-attached (its results are read with bulk status, not
run again); one without ids is sent again with the SAME idempotency key, so a server that had
already received it replays its first answer instead of running it twice. A submission whose
body hash differs (other items, other task outputs) is refused for its items.

Memory: the index keeps one small entry per submission and the byte offsets of the ``ids`` and
``task`` lines, which are read back only when the rerun reaches that chunk.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from fi_evals._constants import JOURNAL_VERSION
from fi_evals.batch.errors import JournalError, JournalMismatchError

__all__ = ["Journal", "JournalEntry", "body_hash"]

_HEADER_FIELDS = ("evals", "chunk_size", "async", "task")


def body_hash(body: Mapping[str, Any]) -> str:
    """A short stable hash of a request body (what a journal entry is checked against)."""
    raw = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(raw.encode()).hexdigest()[:20]


@dataclass
class JournalEntry:
    """One journaled submission (the ids are read from disk on demand)."""

    key: str
    size: int
    hash: str
    is_async: bool
    ids_offset: int | None = None


def _dumps(record: Mapping[str, Any]) -> bytes:
    return (json.dumps(record, separators=(",", ":"), ensure_ascii=False) + "\n").encode()


class Journal:
    """An open journal: the index of a previous run plus an append handle.

    Args:
        path: the journal file; created when missing.

    Raises:
        JournalError: the file exists but its first line is not a journal header.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.header: dict[str, Any] | None = None
        self.skipped_lines = 0
        self._entries: dict[tuple[int, int, int], JournalEntry] = {}
        self._tasks: dict[int, int] = {}
        self._metrics: dict[tuple[int, int], int] = {}
        self._lock = threading.Lock()
        if self.path.exists():
            self._load()
        # Both stay open for the journal's life; close() closes them.
        self._append = open(self.path, "ab", buffering=0)  # noqa: SIM115
        self._read = open(self.path, "rb")  # noqa: SIM115
        if self._append.tell() and not self._ends_with_newline():
            self._append.write(b"\n")  # a torn last line from a kill: keep it skippable

    def __repr__(self) -> str:
        return (f"<Journal {str(self.path)!r}: {len(self._entries)} submissions, "
                f"{sum(e.ids_offset is not None for e in self._entries.values())} with ids>")

    # ------------------------------------------------------------------ reading

    def _ends_with_newline(self) -> bool:
        with open(self.path, "rb") as fh:
            fh.seek(-1, os.SEEK_END)
            return fh.read(1) == b"\n"

    def _load(self) -> None:
        ids_at: dict[str, int] = {}
        with open(self.path, "rb") as fh:
            offset = 0
            for raw in fh:
                line_offset, offset = offset, offset + len(raw)
                try:
                    record = json.loads(raw)
                    kind = record["t"]
                except (ValueError, KeyError, TypeError):
                    self.skipped_lines += 1
                    continue
                if kind == "run" and self.header is None:
                    self.header = record
                elif kind == "sub":
                    self._entries[(record["c"], record["e"], record["p"])] = JournalEntry(
                        record["key"], record["n"], record["h"], bool(record["a"]))
                elif kind == "ids":
                    ids_at[record["key"]] = line_offset
                elif kind == "task":
                    self._tasks[record["c"]] = line_offset
                elif kind == "fn":
                    self._metrics[(record["c"], record["e"])] = line_offset
        if self.header is None and (self._entries or self._tasks):
            raise JournalError(f"{self.path}: no journal header; is this a fi-evals journal?")
        if self.header is not None and self.header.get("v", 0) > JOURNAL_VERSION:
            raise JournalError(f"{self.path}: written by a newer fi-evals (journal version "
                               f"{self.header.get('v')})")
        for entry in self._entries.values():
            entry.ids_offset = ids_at.get(entry.key)

    def _line_at(self, offset: int) -> dict[str, Any]:
        with self._lock:
            self._read.seek(offset)
            return json.loads(self._read.readline())

    @property
    def submissions(self) -> int:
        """Submissions recorded by earlier runs."""
        return len(self._entries)

    def lookup(self, chunk: int, spec: int, part: int) -> JournalEntry | None:
        """The earlier submission of this request, if any."""
        return self._entries.get((chunk, spec, part))

    def eval_ids(self, entry: JournalEntry) -> list[str] | None:
        """The eval ids recorded for a submission, or None when none were."""
        if entry.ids_offset is None:
            return None
        return list(self._line_at(entry.ids_offset)["ids"])

    def task_outputs(self, chunk: int) -> list[Any] | None:
        """The task outputs recorded for a chunk, or None."""
        offset = self._tasks.get(chunk)
        return None if offset is None else list(self._line_at(offset)["out"])

    def metric_outputs(self, chunk: int, spec: int) -> tuple[str, list[Any]] | None:
        """A function metric's recorded outcomes for a chunk: ``(rows hash, outcomes)``."""
        offset = self._metrics.get((chunk, spec))
        if offset is None:
            return None
        record = self._line_at(offset)
        return str(record.get("h")), list(record["out"])

    # ------------------------------------------------------------------ writing

    def _write(self, record: Mapping[str, Any]) -> None:
        data = _dumps(record)
        with self._lock:
            if not self._append.closed:
                self._append.write(data)

    def start(self, *, evals: list[dict[str, Any]], chunk_size: int, is_async: bool,
              task: bool) -> None:
        """Write the header, or check that the journal's matches this batch.

        Raises:
            JournalMismatchError: the journal was written for other evals or settings.
        """
        wanted = {"evals": evals, "chunk_size": chunk_size, "async": is_async, "task": task}
        if self.header is None:
            self.header = {"t": "run", "v": JOURNAL_VERSION, **wanted}
            self._write(self.header)
            return
        differs = [f for f in _HEADER_FIELDS if self.header.get(f) != wanted[f]]
        if differs:
            shown = "; ".join(f"{f}: journal {self.header.get(f)!r}, now {wanted[f]!r}"
                              for f in differs)
            raise JournalMismatchError(f"{self.path} was written for another batch ({shown}). "
                                       f"Rerun with the same settings, or use a new journal.")

    def record_tasks(self, chunk: int, outputs: list[Any]) -> None:
        self._write({"t": "task", "c": chunk, "out": outputs})

    def record_metric(self, chunk: int, spec: int, rows_hash: str, outcomes: list[Any]) -> None:
        """Record a function metric's outcomes for a chunk (all of them in)."""
        self._write({"t": "fn", "c": chunk, "e": spec, "h": rows_hash, "out": outcomes})

    def record_submit(self, chunk: int, spec: int, part: int, entry: JournalEntry) -> None:
        """Record a submission; call it BEFORE sending the request."""
        self._write({"t": "sub", "c": chunk, "e": spec, "p": part, "key": entry.key,
                     "n": entry.size, "h": entry.hash, "a": entry.is_async})

    def record_ids(self, key: str, eval_ids: list[str]) -> None:
        """Record a submission's eval ids; call it AFTER its answer arrived."""
        self._write({"t": "ids", "key": key, "ids": eval_ids})

    def close(self) -> None:
        with self._lock:
            self._append.close()
            self._read.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def default_task_dump(value: Any) -> Any:
    """A task output as the journal keeps it: JSON, with values JSON cannot hold as strings."""
    return json.loads(json.dumps(value, default=str, ensure_ascii=False))
