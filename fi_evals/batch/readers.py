"""Lazy item readers: whatever the caller has becomes an iterator of dicts, one row at a time.

Accepted sources:

- a path (``str`` or ``os.PathLike``) to a file, read lazily:

  - ``.jsonl``/``.ndjson``: one JSON object per line (blank lines are skipped);
  - ``.csv``: a header row, then one row per item (empty cells are None);
  - ``.json``: a JSON array of objects (``[{...}, {...}]``), streamed element by element
    (pretty-printed or on one line). A file that is not an array fails at once with a
    ``ValueError``; one holding one object per line is told to be named ``.jsonl``;
  - ``.parquet``: read in record batches of :data:`PARQUET_BATCH_ROWS` rows with pyarrow (the
    ``pandas`` extra: ``pip install 'fi-evals[pandas]'``); nulls and NaN become None;

- the string ``"-"``: standard input, as JSON Lines, or as a JSON array when its first
  non-blank character is ``[`` (CSV is not read from stdin: save it to a file);
- a pandas ``DataFrame`` (the ``pandas`` extra), read row by row;
- a mapping of columns (``{"output": [...], "expected": [...]}``), read row by row;
- any other iterable of mappings: a list, a generator, a database cursor...

Nothing is read ahead: the batch engine pulls rows as its window has room. A row that cannot
be read (a malformed JSON line, a value that is not a mapping) becomes a :class:`BadRow`, which
the engine records as an error on that item instead of stopping the batch. A ``.json`` array
that stops parsing in the middle raises ``ValueError`` from the iterator (the rows before it
were read; a JSON array cannot be resynchronised after a syntax error).

Row locations. :func:`iter_items` returns a :class:`RowSource`: an iterator of rows that also
knows where each row came from. ``rows.describe(index)`` gives ``"item 12 (data.jsonl line
14)"`` for JSON Lines (files and stdin) and ``"item 12"`` for every other source (the index is
0-based, as ``BatchItem.index``); ``rows.line_of(index)`` gives the line alone (or None).
Line numbers are kept as runs of rows whose line is their index plus a constant (a new run
starts after a blank line only), and only the most recent :data:`LINE_RUNS_KEPT` runs are kept:
memory stays bounded on any file, and a row still in the engine's window always has its line.
A :class:`BadRow` carries its ``index`` and ``line`` too, and its ``reason`` starts with the
same location.

``limit``: ``iter_items(source, limit=N)`` stops after N rows (bad rows count: each row is one
item); :func:`source_length` and :func:`estimate_length` take the same ``limit``.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import sys
import threading
from array import array
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from fi_evals._extras import require

__all__ = ["LINE_RUNS_KEPT", "PARQUET_BATCH_ROWS", "STDIN", "BadRow", "ItemSource", "RowSource",
           "estimate_length", "iter_items", "source_length"]

ItemSource = Any
"""A path (or ``"-"`` for stdin), a DataFrame, a mapping of columns, or an iterable of mappings."""

STDIN = "-"
"""The source that means standard input."""

PARQUET_BATCH_ROWS = 1024
"""Rows decoded at a time from a Parquet file (memory: one record batch)."""

LINE_RUNS_KEPT = 1 << 16
"""Most recent line-number runs kept per source (16 bytes each; one run per blank line)."""

_JSONL_SUFFIXES = (".jsonl", ".ndjson")
_CSV_SUFFIXES = (".csv",)
_JSON_SUFFIXES = (".json",)
_PARQUET_SUFFIXES = (".parquet",)

_STDIN_NAME = "<stdin>"
_READ_CHARS = 1 << 20  # text read at a time from a .json file
_RAW_CHARS = 200  # text of a bad row kept in BadRow.raw
_WHITESPACE = re.compile(r"[ \t\n\r]*")


@dataclass(frozen=True)
class BadRow:
    """A row that could not be read; it still gets one outcome (an error) per eval.

    Attributes:
        reason: what is wrong, starting with where (``"item 3 (d.jsonl line 5): not JSON"``).
        raw: the start of the row's text, when there is one.
        index: the row's position in the input (0-based, as ``BatchItem.index``).
        line: its line in the file (JSON Lines and CSV files), else None.
    """

    reason: str
    raw: str = ""
    index: int | None = None
    line: int | None = None

    def __repr__(self) -> str:
        return f"BadRow({self.reason!r})"


Row = Mapping[str, Any] | BadRow


# --------------------------------------------------------------------------- locations


def _where(index: int, name: str | None = None, line: int | None = None) -> str:
    """``item 3`` or ``item 3 (d.jsonl line 5)``."""
    return f"item {index}" if line is None else f"item {index} ({name} line {line})"


class _LineIndex:
    """index -> line for the rows read so far, in bounded memory.

    Stored as runs: from row ``starts[k]`` on, ``line = index + offsets[k]``. A file without
    blank lines is one run. Only the last :data:`LINE_RUNS_KEPT` runs are kept (older rows then
    have no known line).
    """

    def __init__(self) -> None:
        self._starts = array("q")
        self._offsets = array("q")
        self._lock = threading.Lock()

    def start_run(self, index: int, offset: int) -> None:
        """From row ``index`` on, ``line = index + offset`` (until the next run)."""
        with self._lock:
            self._starts.append(index)
            self._offsets.append(offset)
            if len(self._starts) > 2 * LINE_RUNS_KEPT:
                del self._starts[:LINE_RUNS_KEPT]
                del self._offsets[:LINE_RUNS_KEPT]

    def line_of(self, index: int) -> int | None:
        """The line of row ``index`` (a row already read), or None when forgotten."""
        with self._lock:
            if not self._starts or index < self._starts[0]:
                return None
            k = bisect_right(self._starts, index) - 1
            return index + self._offsets[k]


class RowSource(Iterator[Row]):
    """The rows of a source, in order, with where each one came from (see the module doc).

    Attributes:
        name: the file name, ``"<stdin>"``, or the source's type name.
        limit: the most rows it yields (None: all of them).
        rows_read: rows yielded so far (the next row's index).
    """

    def __init__(self, rows: Iterator[Row], name: str, *, lines: _LineIndex | None = None,
                 limit: int | None = None) -> None:
        self._rows = rows
        self._lines = lines
        self.name = name
        self.limit = limit
        self.rows_read = 0

    def __iter__(self) -> RowSource:
        return self

    def __next__(self) -> Row:
        if self.limit is not None and self.rows_read >= self.limit:
            self.close()
            raise StopIteration
        row = next(self._rows)
        self.rows_read += 1
        return row

    def line_of(self, index: int) -> int | None:
        """The line row ``index`` started on (JSON Lines files and stdin), else None.

        None too for a row not read yet, or read so long ago that its line was forgotten.
        """
        if self._lines is None or not 0 <= index < self.rows_read:
            return None
        return self._lines.line_of(index)

    def describe(self, index: int) -> str:
        """``"item 12 (data.jsonl line 14)"`` when the line is known, else ``"item 12"``."""
        return _where(index, self.name, self.line_of(index))

    def close(self) -> None:
        """Stop reading and close the file (also done when the rows or the limit run out)."""
        close = getattr(self._rows, "close", None)
        if close is not None:
            close()

    def __repr__(self) -> str:
        limit = f", limit={self.limit}" if self.limit is not None else ""
        return f"<RowSource {self.name!r}: {self.rows_read} read{limit}>"


# --------------------------------------------------------------------------- kinds of sources


def _is_dataframe(source: object) -> bool:
    # Checked by name so that pandas is imported only by callers who already use it.
    return type(source).__name__ == "DataFrame" and type(source).__module__.startswith("pandas")


def _is_stdin(source: object) -> bool:
    return isinstance(source, str) and source == STDIN


def _is_path(source: object) -> bool:
    return isinstance(source, (str, os.PathLike)) and not _is_stdin(source)


def _check_limit(limit: int | None) -> int | None:
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise ValueError(f"limit must be a whole number of rows (0 or more), not {limit!r}")
    return limit


def _capped(n: int | None, limit: int | None) -> int | None:
    return n if n is None or limit is None else min(n, limit)


def source_length(source: ItemSource, limit: int | None = None) -> int | None:
    """Number of items when it is known without reading them, at most ``limit``.

    Known for sequences, DataFrames, mappings of columns and Parquet files (their metadata);
    None for other files, stdin and generators.
    """
    limit = _check_limit(limit)
    if _is_stdin(source):
        return None
    if _is_path(source):
        if Path(source).suffix.lower() in _PARQUET_SUFFIXES:
            return _capped(_parquet_rows(Path(source)), limit)
        return None
    if _is_dataframe(source):
        return _capped(len(source), limit)
    if isinstance(source, Mapping):
        lengths = {len(v) for v in source.values() if isinstance(v, (list, tuple))}
        return _capped(lengths.pop(), limit) if len(lengths) == 1 else None
    try:
        return _capped(len(source), limit)
    except TypeError:
        return None


def estimate_length(source: ItemSource, limit: int | None = None) -> int | None:
    """:func:`source_length`, or for JSONL/CSV files a count of their lines (for progress bars).

    A CSV's header is not counted; quoted cells spanning lines make the count approximate.
    ``.json`` files and stdin have no estimate (None), whatever the limit.
    """
    known = source_length(source, limit)
    if known is not None or not _is_path(source):
        return known
    path = Path(source)
    if not path.is_file() or path.suffix.lower() not in (*_JSONL_SUFFIXES, *_CSV_SUFFIXES):
        return None
    lines, last = 0, b"\n"
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            lines += block.count(b"\n")
            last = block[-1:]
    lines += last != b"\n"  # a last line without a newline
    return _capped(max(0, lines - (path.suffix.lower() in _CSV_SUFFIXES)), limit)


def _clean(value: Any) -> Any:
    """pandas' missing values (NaN, NaT, None) become None, so mapping treats them as absent."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if type(value).__name__ in ("NaTType", "NAType"):
        return None
    if hasattr(value, "item") and type(value).__module__ == "numpy":
        return value.item()  # numpy scalars -> Python scalars (JSON-serialisable)
    if hasattr(value, "tolist") and type(value).__module__ == "numpy":
        return value.tolist()
    return value


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return {dict: "object", list: "array", str: "string",
            type(None): "null"}.get(type(value), "value")


# --------------------------------------------------------------------------- JSON Lines, CSV


def _jsonl_rows(lines: Iterable[str], name: str, index: _LineIndex,
                first_line: int = 1) -> Iterator[Row]:
    n, offset, loads = 0, None, json.loads
    for lineno, line in enumerate(lines, first_line):
        try:
            row = loads(line)
        except ValueError as exc:
            if not line.strip():
                continue
            row = BadRow(f"{_where(n, name, lineno)}: not JSON ({exc})", line[:_RAW_CHARS], n,
                         lineno)
        if lineno - n != offset:  # a new run of lines (after blank lines)
            offset = lineno - n
            index.start_run(n, offset)
        if isinstance(row, (Mapping, BadRow)):
            yield row
        else:
            yield BadRow(f"{_where(n, name, lineno)}: a JSON {_json_type(row)}, not an object",
                         line[:_RAW_CHARS], n, lineno)
        n += 1


def _read_jsonl(path: Path, index: _LineIndex) -> Iterator[Row]:
    with path.open("r", encoding="utf-8") as fh:
        yield from _jsonl_rows(fh, path.name, index)


def _read_csv(path: Path) -> Iterator[Row]:
    with path.open("r", encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        for n, row in enumerate(reader):
            if None in row:  # more cells than header columns
                yield BadRow(f"{_where(n, path.name, reader.line_num)}: more cells than the "
                             f"{len(reader.fieldnames or ())} columns of the header",
                             index=n, line=reader.line_num)
                continue
            yield {k: (v if v != "" else None) for k, v in row.items()}


# --------------------------------------------------------------------------- JSON arrays


class _JsonStream:
    """JSON values read one at a time from a text stream, holding about one value in memory."""

    def __init__(self, fh: IO[str], name: str, prefix: str = "", first_line: int = 1) -> None:
        self._fh = fh
        self.name = name
        self._buf = prefix
        self._pos = 0
        self._eof = False
        self._lines_before = first_line - 1  # newlines in the text dropped from the buffer
        self._column_before = 0  # characters of the current line dropped from the buffer
        self._decoder = json.JSONDecoder()

    def _more(self, at_least: int = 0) -> bool:
        """Read more text (dropping what was consumed); False at the end of the stream."""
        if self._eof:
            return False
        if self._pos:
            done = self._buf[:self._pos]
            newline = done.rfind("\n")
            if newline >= 0:
                self._lines_before += done.count("\n")
                self._column_before = len(done) - newline - 1
            else:
                self._column_before += len(done)
            self._buf, self._pos = self._buf[self._pos:], 0
        data = self._fh.read(max(at_least, _READ_CHARS))
        if not data:
            self._eof = True
            return False
        self._buf += data
        return True

    def peek(self) -> str:
        """The next non-blank character (not consumed), or "" at the end."""
        while True:
            self._pos = _WHITESPACE.match(self._buf, self._pos).end()  # type: ignore[union-attr]
            if self._pos < len(self._buf):
                return self._buf[self._pos]
            if not self._more():
                return ""

    def take(self) -> None:
        """Consume the character :meth:`peek` returned."""
        self._pos += 1

    def value(self) -> Any:
        """Decode the value at the current position (after :meth:`peek`)."""
        while True:
            try:
                value, end = self._decoder.raw_decode(self._buf, self._pos)
            except json.JSONDecodeError as exc:
                truncated = exc.msg.startswith("Unterminated") or exc.pos >= len(self._buf) - 16
                offset = exc.pos - self._pos  # _more() moves the buffer
                if truncated and self._more(len(self._buf) - self._pos):  # grow geometrically
                    continue
                raise self.error(exc.msg, self._pos + offset) from None
            if (end == len(self._buf) and isinstance(value, (int, float))
                    and self._more()):  # a number cut by the read: it may go on
                continue
            self._pos = end
            return value

    def error(self, message: str, pos: int | None = None) -> ValueError:
        """``NAME line L column C: not valid JSON (message)`` at ``pos`` (default: here)."""
        pos = self._pos if pos is None else pos
        newline = self._buf.rfind("\n", 0, pos)
        line = self._lines_before + self._buf.count("\n", 0, pos) + 1
        column = pos - newline if newline >= 0 else self._column_before + pos + 1
        return ValueError(f"{self.name} line {line} column {column}: not valid JSON ({message})")


def _array_rows(stream: _JsonStream) -> Iterator[Row]:
    """The elements of the JSON array ``stream`` holds, as rows (non-objects: BadRow)."""
    if stream.peek() != "[":
        raise stream.error("expected '[', the start of an array of objects")
    stream.take()
    n = 0
    if stream.peek() == "]":
        stream.take()
    else:
        while True:
            if stream.peek() == "":
                raise stream.error(f"the array is not closed after {n} element(s)")
            value = stream.value()
            if isinstance(value, Mapping):
                yield value
            else:
                yield BadRow(f"{_where(n)} of {stream.name}: a JSON {_json_type(value)}, "
                             f"not an object", json.dumps(value)[:_RAW_CHARS], n)
            n += 1
            after = stream.peek()
            if after == "":
                raise stream.error(f"the array is not closed after {n} element(s)")
            stream.take()
            if after == ",":
                if stream.peek() == "]":
                    raise stream.error("a comma before ']'")
                continue
            if after == "]":
                break
            raise stream.error(f"expected ',' or ']' after element {n - 1}")
    if stream.peek() != "":
        raise stream.error("more data after the array")


def _check_json_array(path: Path) -> None:
    """Raise ValueError now when ``path`` does not hold a JSON array (reads little)."""
    with path.open("r", encoding="utf-8-sig") as fh:
        stream = _JsonStream(fh, path.name)
        first = stream.peek()
        if first == "[":
            return
        expected = f"{path.name}: expected a JSON array of objects ([{{...}}, {{...}}])"
        if first == "":
            raise ValueError(f"{expected}, but the file is empty")
        if first != "{":
            try:
                found = f"a JSON {_json_type(stream.value())}"
            except ValueError:
                found = "text that is not JSON"
            raise ValueError(f"{expected}, found {found}")
        try:
            stream.value()
        except ValueError as exc:
            raise ValueError(f"{expected}; it starts with '{{' but is not valid JSON: "
                             f"{exc}") from None
        if stream.peek() == "{":
            raise ValueError(f"{expected}; it holds one JSON object per line (JSON Lines): "
                             f"name it {path.stem}.jsonl")
        raise ValueError(f"{expected}, found a single JSON object (wrap the rows in [...])")


def _read_json(path: Path) -> Iterator[Row]:
    with path.open("r", encoding="utf-8-sig") as fh:
        yield from _array_rows(_JsonStream(fh, path.name))


# --------------------------------------------------------------------------- stdin


def _read_stdin(stream: IO[str], index: _LineIndex) -> Iterator[Row]:
    """JSON Lines, or a JSON array when the first non-blank character is ``[``.

    The start is read in pieces of at most ``_READ_CHARS`` (a one-line array is streamed too).
    """
    newlines = 0
    while True:
        head = stream.readline(_READ_CHARS)
        if not head:
            return
        if head.strip():
            break
        newlines += head.count("\n")
    if head.lstrip().startswith("["):
        yield from _array_rows(_JsonStream(stream, _STDIN_NAME, head, newlines + 1))
        return
    if not head.endswith("\n"):
        head += stream.readline()  # the rest of a long first line
    yield from _jsonl_rows(_chain(head, stream), _STDIN_NAME, index, newlines + 1)


def _chain(first: str, rest: Iterable[str]) -> Iterator[str]:
    yield first
    yield from rest


# --------------------------------------------------------------------------- Parquet


def _open_parquet(path: Path) -> Any:
    pa = require("pyarrow", "pandas", "reading .parquet files")
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except (pa.ArrowException, OSError, ValueError) as exc:  # ArrowInvalid: not Parquet
        raise ValueError(f"{path.name}: not a readable Parquet file ({exc})") from None


def _parquet_rows(path: Path) -> int | None:
    try:
        parquet = _open_parquet(path)
    except (ImportError, ValueError, OSError):
        return None  # iter_items reports it
    try:
        return int(parquet.metadata.num_rows)
    finally:
        _close_parquet(parquet)


def _close_parquet(parquet: Any) -> None:
    close = getattr(parquet, "close", None)
    if close is not None:
        close()


def _read_parquet(path: Path) -> Iterator[Row]:
    parquet = _open_parquet(path)
    try:
        for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS):
            for row in batch.to_pylist():
                yield {str(k): _clean(v) for k, v in row.items()}
    finally:
        _close_parquet(parquet)


# --------------------------------------------------------------------------- in-memory sources


def _read_path(path: Path) -> tuple[Iterator[Row], _LineIndex | None]:
    suffix = path.suffix.lower()
    if suffix in _JSONL_SUFFIXES:
        lines = _LineIndex()
        return _read_jsonl(path, lines), lines
    if suffix in _CSV_SUFFIXES:
        return _read_csv(path), None
    if suffix in _JSON_SUFFIXES:
        _check_json_array(path)
        return _read_json(path), None
    if suffix in _PARQUET_SUFFIXES:
        _close_parquet(_open_parquet(path))  # a missing pyarrow or a bad file: fail now
        return _read_parquet(path), None
    raise ValueError(f"cannot read {str(path)!r}: expected a .jsonl, .ndjson, .csv, .json or "
                     f".parquet file (or - for stdin)")


def _read_dataframe(frame: Any) -> Iterator[Mapping[str, Any]]:
    columns = [str(c) for c in frame.columns]
    for values in frame.itertuples(index=False, name=None):
        yield {c: _clean(v) for c, v in zip(columns, values)}


def _read_columns(columns: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    names = list(columns)
    all_lists = bool(names) and all(isinstance(v, (list, tuple)) for v in columns.values())
    if not all_lists or len({len(v) for v in columns.values()}) != 1:
        raise ValueError("a mapping of columns needs lists of equal length under every key "
                         "(pass a list of dicts for row-wise items)")
    return (dict(zip(names, values)) for values in zip(*(columns[n] for n in names)))


def _read_iterable(source: Iterable[Any]) -> Iterator[Row]:
    for position, row in enumerate(source):
        if row.__class__ is dict or isinstance(row, Mapping):  # dict first: skips the ABC check
            yield row
        else:
            yield BadRow(f"{_where(position)}: a value of type {type(row).__name__}, not a "
                         f"mapping",
                         index=position)


def iter_items(source: ItemSource, limit: int | None = None) -> RowSource:
    """Iterate the items of ``source`` lazily.

    Args:
        source: a ``.jsonl``/``.ndjson``/``.csv``/``.json``/``.parquet`` path, ``"-"`` for
            stdin, a DataFrame, a mapping of columns, or an iterable of mappings.
        limit: stop after this many rows (None: read them all).

    Returns:
        A :class:`RowSource`: an iterator of mappings, with a :class:`BadRow` in place of each
        unreadable row, that can also ``describe(index)`` where a row came from.

    Raises:
        ValueError: an unsupported file type, a ``.json`` file that is not an array, an
            unreadable Parquet file, columns of unequal lengths, a negative ``limit``.
        FileNotFoundError: the path does not exist (checked at once, not at the first read).
        ImportError: a ``.parquet`` file without pyarrow (``pip install 'fi-evals[pandas]'``).
        TypeError: ``source`` is not iterable.
    """
    limit = _check_limit(limit)
    lines: _LineIndex | None = None
    if _is_stdin(source):
        if sys.stdin is None:
            raise ValueError("cannot read items from stdin ('-'): this process has no stdin")
        lines = _LineIndex()
        return RowSource(_read_stdin(sys.stdin, lines), _STDIN_NAME, lines=lines, limit=limit)
    if _is_path(source):
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(f"no such data file: {os.fspath(source)!r}")
        rows, lines = _read_path(path)
        return RowSource(rows, path.name, lines=lines, limit=limit)
    name = type(source).__name__
    if _is_dataframe(source):
        return RowSource(_read_dataframe(source), name, limit=limit)
    if isinstance(source, Mapping):
        return RowSource(_read_columns(source), name, limit=limit)
    if isinstance(source, (bytes, bytearray)):
        raise TypeError("items cannot be bytes: pass a path, a DataFrame or an iterable of dicts")
    try:
        iterator = iter(source)
    except TypeError:
        raise TypeError(f"items must be iterable (a list, generator, DataFrame or path), not "
                        f"{type(source).__name__}") from None
    return RowSource(_read_iterable(iterator), name, limit=limit)
