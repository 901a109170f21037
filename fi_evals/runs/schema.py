"""What a run folder holds, and the few rules shared by its writer, its readers and the diff.

A run folder has two files:

- ``meta.json``: written when the run starts (``status: "running"``) and rewritten, atomically,
  when it ends: the config (data source, evals, mappings, thresholds, options, command line),
  the evals (label, template, output type, pass threshold), versions, server, timing, the
  batch's stats (``BatchStats.to_dict()``), verdict counts per eval, score histograms, runtime
  percentiles, threshold checks, the verdict (``PASS``/``FAIL``) and the problems behind it.
- ``rows.sqlite``: one ``rows`` row per input row and one ``outcomes`` row per (row, eval),
  with the indexes a viewer needs to page and filter a 1,000,000-row run without reading it all.

Verdicts (one word per outcome, the same rule as ``TemplateStats.grade``): ``passed`` and
``failed`` for graded verdicts, ``scored`` for a verdict without pass/fail meaning (choices),
``errored`` for an outcome without a verdict. A row is ``errored`` when one of its outcomes is,
else ``failed`` when one is, else ``passed``.

The diff key of a row (``rows.key``) is a hash of its *input* fields: every field except those
an eval reads as its ``output`` (the answer under test, which differs between two models), so
that the same dataset scored for two models matches row by row.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["ERRORED", "FAILED", "META_FILE", "PASSED", "ROWS_FILE", "ROW_STATUSES", "SCHEMA",
           "SCORED", "VERDICTS", "dump_json", "key_fields", "read_meta", "row_key",
           "without_fields", "write_meta"]

FORMAT = 1
"""``meta.json``'s ``format``: bumped when the layout changes incompatibly."""
META_FILE = "meta.json"
ROWS_FILE = "rows.sqlite"

PASSED, FAILED, ERRORED, SCORED = "passed", "failed", "errored", "scored"
ROW_STATUSES = (PASSED, FAILED, ERRORED)
VERDICTS = (PASSED, FAILED, ERRORED, SCORED)

# outcomes.id is idx * (number of evals) + e: a page's outcomes are a few rowid look-ups, with
# no index on idx. (e, verdict, idx) serves "failing rows of this eval" in input order, and
# (status, idx) "errored rows". The diff builds its own key index when it needs one, so
# writing a run pays for two indexes only.
SCHEMA = """
CREATE TABLE IF NOT EXISTS rows (
    idx INTEGER PRIMARY KEY,
    status TEXT NOT NULL,
    key TEXT NOT NULL,
    item TEXT NOT NULL,
    task_output TEXT
);
CREATE TABLE IF NOT EXISTS outcomes (
    id INTEGER PRIMARY KEY,
    idx INTEGER NOT NULL,
    e INTEGER NOT NULL,
    verdict TEXT NOT NULL,
    score REAL,
    output TEXT,
    reason TEXT,
    runtime REAL,
    eval_id TEXT,
    status TEXT NOT NULL,
    output_type TEXT,
    error_type TEXT,
    error_message TEXT,
    error_status INTEGER,
    error_retryable INTEGER
);
CREATE INDEX IF NOT EXISTS rows_status ON rows (status, idx);
CREATE INDEX IF NOT EXISTS outcomes_verdict ON outcomes (e, verdict, idx);
"""


# Built once: json.dumps(value, **options) builds an encoder per call, a third of the cost of
# writing a row with two evals.
_ENCODE = json.JSONEncoder(ensure_ascii=False, default=str, separators=(",", ":")).encode
_ENCODE_SORTED = json.JSONEncoder(ensure_ascii=False, default=str, sort_keys=True,
                                  separators=(",", ":")).encode


def dump_json(value: Any) -> str:
    """Compact JSON; values JSON has no type for (dates from Parquet...) become strings."""
    return _ENCODE(value)


def key_fields(mappings: Iterable[Mapping[str, str]]) -> list[str]:
    """The row fields left out of the diff key: those an eval reads as its ``output`` key.

    ``task.x`` fields come from the task, never from the row, so they leave nothing out;
    ``item.x`` names the row's field ``x``; a dotted path leaves out that nested field only.
    """
    found = set()
    for mapping in mappings:
        field = mapping.get("output")
        if not field or field.startswith("task."):
            continue
        found.add(field.removeprefix("item."))
    return sorted(found)


def _drop(node: Mapping[str, Any], parts: Sequence[str]) -> Mapping[str, Any]:
    head, rest = parts[0], parts[1:]
    if head not in node:
        return node
    out = dict(node)
    if not rest:
        del out[head]
    elif isinstance(node[head], Mapping):
        out[head] = _drop(node[head], rest)
    return out


def without_fields(item: Mapping[str, Any], paths: Sequence[str]) -> Mapping[str, Any]:
    """``item`` without the fields ``paths`` name (a field of that exact name first, else a
    dotted path into nested mappings, as key mappings read them); ``item`` is not changed."""
    out = item
    for path in paths:
        if path in out:
            out = dict(out)
            del out[path]
        elif "." in path:
            out = _drop(out, path.split("."))
    return out


def row_key(item: Mapping[str, Any], excluded: Sequence[str]) -> str:
    """The diff key of a row: 16 hex digits of a hash of its input fields, key order ignored
    (a CSV and a JSONL of the same rows give the same keys)."""
    blob = _ENCODE_SORTED(without_fields(item, excluded))
    return hashlib.blake2b(blob.encode("utf-8"), digest_size=8).hexdigest()


def read_meta(folder: Path) -> dict[str, Any]:
    """A run folder's ``meta.json``.

    Raises:
        OSError: it cannot be read; ValueError: it is not a JSON object.
    """
    data = json.loads((folder / META_FILE).read_text("utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{folder / META_FILE}: not a JSON object")
    return data


def write_meta(folder: Path, meta: Mapping[str, Any]) -> None:
    """Write ``meta.json`` atomically (a reader sees the old file or the new one, never half)."""
    fd, tmp = tempfile.mkstemp(prefix=".meta-", suffix=".json", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(meta, fh, ensure_ascii=False, indent=1, default=str)
        os.replace(tmp, folder / META_FILE)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
