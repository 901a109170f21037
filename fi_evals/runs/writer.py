"""Writing a run as its rows finish: the sink the batch engine emits to.

The engine emits finished rows in input order to one sink (``Coordinator(writer=...)``); with
``output=`` as well, a :class:`~fi_evals.batch.output.TeeWriter` feeds both. The writer turns
each row into one ``rows`` row and one ``outcomes`` row per eval, buffers at most
``RUNS_COMMIT_ROWS`` rows, and commits them in one SQLite transaction (at least every
``RUNS_COMMIT_SECONDS``, so that ``fi-evals view`` of a running run sees it grow). Everything
else it keeps is O(evals): verdict counts, a score histogram and a runtime reservoir per eval.
Memory does not grow with the number of rows.

The database is in WAL mode while it is written (a viewer can read it meanwhile) and is turned
back into a single file when the run ends.

A run store that cannot write (disk full, folder removed) must not cost the batch: the first
error is logged, the run is marked ``incomplete`` with the error, and the batch goes on.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fi_evals._constants import RUNS_COMMIT_ROWS, RUNS_COMMIT_SECONDS, RUNS_HISTOGRAM_BINS
from fi_evals.batch.stats import LatencyReservoir, TemplateStats
from fi_evals.runs.schema import (
    ERRORED,
    FAILED,
    PASSED,
    ROWS_FILE,
    SCHEMA,
    SCORED,
    dump_json,
    row_key,
    write_meta,
)

if TYPE_CHECKING:
    from fi_evals.batch.output import BatchItem
    from fi_evals.batch.result import BatchResult

__all__ = ["RunWriter", "now_iso"]

log = logging.getLogger("fi_evals.runs")

_SCORE_TYPES = ("score", "numeric")


def now_iso() -> str:
    """The current time, ISO 8601 with the local UTC offset (what meta.json records)."""
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")  # noqa: UP017


class _Histogram:
    """Scores counted into ``RUNS_HISTOGRAM_BINS`` bins over [0, 1], plus the outliers."""

    def __init__(self, bins: int = RUNS_HISTOGRAM_BINS) -> None:
        self.counts = [0] * bins
        self.below = 0
        self.above = 0

    def add(self, score: float) -> None:
        if score < 0.0:
            self.below += 1
        elif score > 1.0:
            self.above += 1
        else:
            self.counts[min(len(self.counts) - 1, int(score * len(self.counts)))] += 1

    def to_dict(self) -> dict[str, Any]:
        return {"bins": self.counts, "below": self.below, "above": self.above}


class _Reservoir(LatencyReservoir):
    """The batch's latency reservoir, with a cheaper draw (one per row and eval here)."""

    def add(self, seconds: float) -> None:
        self.count += 1
        if len(self._sample) < self.size:
            self._sample.append(seconds)
            return
        slot = int(self._rng.random() * self.count)
        if slot < self.size:
            self._sample[slot] = seconds


class RunWriter:
    """One run being written; created by :meth:`fi_evals.runs.RunStore.create`.

    Use: :meth:`write` each finished row (in input order), :meth:`close` when the engine is
    done (commits), then :meth:`finish` with the batch's result (final ``meta.json``), or
    :meth:`abandon` when the batch raised.
    """

    def __init__(self, folder: Path, meta: dict[str, Any], graders: Sequence[TemplateStats],
                 key_excluded: Sequence[str]) -> None:
        self.folder = folder
        self.meta = meta
        self._graders = list(graders)
        self._labels = [g.label for g in self._graders]
        self._key_excluded = list(key_excluded)
        self._n = len(self._graders)
        self._rows: list[tuple[Any, ...]] = []
        self._outcomes: list[tuple[Any, ...]] = []
        self._last_commit = time.monotonic()
        self.count = 0
        self.row_counts: Counter[str] = Counter()
        self.verdicts = [Counter[str]() for _ in self._graders]
        self.histograms = [_Histogram() if g.output_type in _SCORE_TYPES else None
                           for g in self._graders]
        self.runtimes = [_Reservoir() for _ in self._graders]
        self.error: str | None = None
        self.finished = False
        write_meta(folder, meta)
        self._db: sqlite3.Connection | None = sqlite3.connect(folder / ROWS_FILE)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)

    def __repr__(self) -> str:
        return f"<RunWriter {self.folder.name}: {self.count} rows>"

    @property
    def path(self) -> Path:
        return self.folder

    # ------------------------------------------------------------------ rows

    def write(self, item: BatchItem) -> None:
        """Add one finished row (never raises: a store error is logged and ends the store)."""
        if self._db is None:
            return
        try:
            self._add(item)
            if (len(self._rows) >= RUNS_COMMIT_ROWS
                    or time.monotonic() - self._last_commit >= RUNS_COMMIT_SECONDS):
                self._commit()
        except (sqlite3.Error, OSError, ValueError, TypeError) as exc:
            self._fail(exc)

    def _add(self, item: BatchItem) -> None:
        base = item.index * self._n
        row_status = PASSED
        for e, (grader, result) in enumerate(zip(self._graders, item.results.values())):
            error = result.error
            score = None
            if result.ok:
                graded = grader.grade(result.output)
                verdict = SCORED if graded is None else PASSED if graded else FAILED
                score = grader.score(result.output)
                histogram = self.histograms[e]
                if histogram is not None and score is not None:
                    histogram.add(score)
                if isinstance(result.runtime, (int, float)):
                    self.runtimes[e].add(float(result.runtime))
            else:
                verdict = ERRORED
            if verdict == ERRORED or (verdict == FAILED and row_status == PASSED):
                row_status = verdict
            self.verdicts[e][verdict] += 1
            self._outcomes.append((
                base + e, item.index, e, verdict, score,
                None if result.output is None else dump_json(result.output), result.reason,
                result.runtime, result.eval_id, result.status, result.output_type,
                error.type if error else None, error.message if error else None,
                error.status_code if error else None, error.retryable if error else None))
        task = None if item.task_output is None else dump_json(item.task_output)
        self._rows.append((item.index, row_status, row_key(item.item, self._key_excluded),
                           dump_json(dict(item.item)), task))
        self.row_counts[row_status] += 1
        self.count += 1

    def _commit(self) -> None:
        assert self._db is not None
        with self._db:  # one transaction
            self._db.executemany("INSERT OR REPLACE INTO rows VALUES (?, ?, ?, ?, ?)",
                                 self._rows)
            self._db.executemany("INSERT OR REPLACE INTO outcomes VALUES "
                                 "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", self._outcomes)
        self._rows.clear()
        self._outcomes.clear()
        self._last_commit = time.monotonic()

    def _fail(self, exc: BaseException) -> None:
        self.error = f"{type(exc).__name__}: {exc}"
        log.warning("the run store stopped writing %s (%s); the batch goes on without it",
                    self.folder, self.error)
        self._rows.clear()
        self._outcomes.clear()
        self._disconnect()
        try:
            self.meta.update(status="incomplete", error=self.error, rows=self.count)
            write_meta(self.folder, self.meta)
        except OSError:
            pass

    def _disconnect(self, *, single_file: bool = False) -> None:
        if self._db is None:
            return
        try:
            if single_file:
                self._db.execute("PRAGMA journal_mode=DELETE")  # checkpoint, drop the WAL
        except sqlite3.Error:
            pass
        finally:
            self._db.close()
            self._db = None

    def close(self) -> None:
        """Commit what is buffered (the engine is done); idempotent."""
        if self._db is None:
            return
        try:
            if self._rows:
                self._commit()
        except (sqlite3.Error, OSError) as exc:
            self._fail(exc)

    # ------------------------------------------------------------------ the end

    def abandon(self, reason: str) -> None:
        """The batch raised: record that this run did not finish."""
        self.close()
        self._disconnect(single_file=True)
        self.meta.update(status="incomplete", error=self.error or reason, rows=self.count,
                         finished=now_iso())
        try:
            write_meta(self.folder, self.meta)
        except OSError:
            pass

    def finish(self, result: BatchResult) -> None:
        """Write the final ``meta.json`` from the batch's result and close the database."""
        self.close()
        self._disconnect(single_file=True)
        self.finished = True
        self.meta.update(self.summary(result))
        try:
            write_meta(self.folder, self.meta)
        except OSError as exc:
            log.warning("could not write %s: %s", self.folder, exc)

    def summary(self, result: BatchResult) -> dict[str, Any]:
        """What ``finish`` adds to ``meta.json``."""
        stats = result.stats
        if self.error is not None:
            status = "incomplete"
        else:
            status = "complete" if result.stopped is None else "stopped"
        evals = []
        for e, grader in enumerate(self._graders):
            histogram = self.histograms[e]
            runtime = self.runtimes[e]
            evals.append({
                "label": grader.label, "counts": {v: self.verdicts[e][v] for v in
                                                  (PASSED, FAILED, ERRORED, SCORED)},
                "histogram": histogram.to_dict() if histogram is not None else None,
                "runtime_ms": {f"p{int(q * 100)}": runtime.quantile(q)
                               for q in (0.5, 0.95, 0.99)} | {"samples": runtime.count}})
        return {
            "status": status, "stopped": result.stopped, "input_error": result.input_error,
            "error": self.error, "finished": now_iso(), "pid": None,
            "wall_time_seconds": stats.wall_time, "rows": self.count,
            "row_counts": {s: self.row_counts[s] for s in (PASSED, FAILED, ERRORED)},
            "passed": result.passed, "verdict": "PASS" if result.passed else "FAIL",
            "problems": result.problems, "checks": [c.__dict__ for c in result.checks],
            "max_error_rate": result.max_error_rate, "stats": stats.to_dict(),
            "eval_results": evals,
        }


def graders(evals: Sequence[Mapping[str, Any]]) -> list[TemplateStats]:
    """One grader (a :class:`TemplateStats` used for its ``grade``) per eval of ``meta``."""
    return [TemplateStats(e["label"], e["template"], e["output_type"], e["pass_threshold"])
            for e in evals]


def process_alive(pid: int | None) -> bool:
    """True when a process with this id runs on this machine (a running run's writer)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
