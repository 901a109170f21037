"""Batch items and how they are written: one JSON object per item, or one CSV row per item.

A :class:`BatchItem` is one input row with one :class:`~fi_evals.results.EvalResult` per eval
spec (a verdict, or an error value). JSONL keeps everything and can be read back
(:func:`read_jsonl`); CSV flattens each spec into ``LABEL.output``, ``LABEL.status``,
``LABEL.reason`` and ``LABEL.error`` columns next to the row's own fields (taken from the first
item: fields that only later rows have are left out of a CSV).
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

from fi_evals._exceptions import ItemError
from fi_evals.results import EvalResult

__all__ = ["BatchItem", "ItemSink", "ItemWriter", "TeeWriter", "open_writer", "read_jsonl"]

_RESULT_FIELDS = ("name", "output", "reason", "runtime", "output_type", "eval_id", "status")


@dataclass
class BatchItem:
    """One input row and its outcomes.

    Attributes:
        index: position in the input (0-based).
        item: the row as read (an unreadable row is ``{}``; its outcomes say why).
        results: spec label -> outcome, in spec order; one per spec, always.
        task_output: what the ``task`` returned for this row (None without a task).
        passed: True when every graded outcome passes, False when one does not, None when
            an outcome has no verdict (an error) -- see ``BatchResult.failed_items()``.
    """

    index: int
    item: Mapping[str, Any]
    results: dict[str, EvalResult]
    task_output: Any = None
    passed: bool | None = None

    @property
    def ok(self) -> bool:
        """True when every spec produced a verdict."""
        return all(r.ok for r in self.results.values())

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form written to JSONL outputs."""
        row: dict[str, Any] = {"index": self.index, "item": dict(self.item)}
        if self.task_output is not None:
            row["task_output"] = self.task_output
        row["passed"] = self.passed
        row["results"] = {label: _result_dict(r) for label, r in self.results.items()}
        return row

    @classmethod
    def from_dict(cls, row: Mapping[str, Any]) -> BatchItem:
        """Rebuild an item from its JSONL form."""
        results = {}
        for label, data in row.get("results", {}).items():
            data = dict(data)
            error = data.pop("error", None)
            results[label] = EvalResult(**data, error=ItemError(**error) if error else None)
        return cls(int(row["index"]), row.get("item") or {}, results, row.get("task_output"),
                   row.get("passed"))

    def __repr__(self) -> str:
        verdicts = ", ".join(f"{k}={_short(r)}" for k, r in self.results.items())
        return f"BatchItem({self.index}: {verdicts})"


def _short(result: EvalResult) -> str:
    if result.ok:
        return repr(result.output)
    return result.error.type if result.error else result.status


def _result_dict(result: EvalResult) -> dict[str, Any]:
    data = {k: getattr(result, k) for k in _RESULT_FIELDS}
    if result.cached:  # only when true: outputs of servers without a judge cache stay as they were
        data["cached"] = True
    if result.error is not None:
        e = result.error
        data["error"] = {"type": e.type, "message": e.message, "status_code": e.status_code,
                         "retryable": e.retryable}
    return data


# --------------------------------------------------------------------------- writers


class ItemSink(Protocol):
    """Where the engine emits finished items, in input order: an output file, the run store
    (:class:`fi_evals.runs.RunWriter`), or both through a :class:`TeeWriter`."""

    def write(self, item: BatchItem) -> None: ...

    def close(self) -> None: ...


class TeeWriter:
    """Emits every item to several sinks (``output=`` and the run store), in order."""

    def __init__(self, sinks: Sequence[ItemSink]) -> None:
        self.sinks = list(sinks)

    def write(self, item: BatchItem) -> None:
        for sink in self.sinks:
            sink.write(item)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()

    def __repr__(self) -> str:
        return f"<TeeWriter {self.sinks!r}>"


class ItemWriter:
    """Writes items as they are finished, in order, and flushes so a kill loses little."""

    def __init__(self, path: str | os.PathLike[str], labels: Sequence[str]) -> None:
        self.path = Path(path)
        self.labels = list(labels)
        self.count = 0
        self._fh: IO[str] = open(self.path, "w", encoding="utf-8", newline="")  # noqa: SIM115 - closed by close()

    def write(self, item: BatchItem) -> None:
        raise NotImplementedError

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {str(self.path)!r}: {self.count} items>"


class JsonlWriter(ItemWriter):
    def write(self, item: BatchItem) -> None:
        line = json.dumps(item.to_dict(), ensure_ascii=False, default=str)
        self._fh.write(line + "\n")
        self.count += 1


class CsvWriter(ItemWriter):
    def __init__(self, path: str | os.PathLike[str], labels: Sequence[str]) -> None:
        super().__init__(path, labels)
        self._writer: csv.DictWriter[str] | None = None

    def _columns(self, item: BatchItem) -> list[str]:
        cols = ["index", *[str(k) for k in item.item]]
        if item.task_output is not None:
            cols.append("task_output")
        cols.append("passed")
        for label in self.labels:
            cols += [f"{label}.{f}" for f in ("output", "status", "reason", "error")]
        return list(dict.fromkeys(cols))

    def write(self, item: BatchItem) -> None:
        if self._writer is None:
            self._writer = csv.DictWriter(self._fh, self._columns(item), extrasaction="ignore")
            self._writer.writeheader()
        row: dict[str, Any] = {"index": item.index, "passed": item.passed,
                               "task_output": _cell(item.task_output)}
        row.update({str(k): _cell(v) for k, v in item.item.items()})
        for label, r in item.results.items():
            row[f"{label}.output"] = _cell(r.output)
            row[f"{label}.status"] = r.status
            row[f"{label}.reason"] = r.reason
            row[f"{label}.error"] = str(r.error) if r.error else None
        self._writer.writerow(row)
        self.count += 1


def _cell(value: Any) -> Any:
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, ensure_ascii=False, default=str)
    return value


def open_writer(path: str | os.PathLike[str], labels: Sequence[str]) -> ItemWriter:
    """A writer for ``path`` chosen by its suffix: ``.jsonl``/``.ndjson`` or ``.csv``.

    Raises:
        ValueError: another suffix.
    """
    suffix = Path(path).suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return JsonlWriter(path, labels)
    if suffix == ".csv":
        return CsvWriter(path, labels)
    raise ValueError(f"cannot write {os.fspath(path)!r}: the output must end in .jsonl, "
                     f".ndjson or .csv")


def read_jsonl(path: str | os.PathLike[str]) -> Iterator[BatchItem]:
    """Read items back from a JSONL output, one at a time."""
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield BatchItem.from_dict(json.loads(line))
