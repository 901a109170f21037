"""The units of work of a batch: chunks of rows, and the requests cut from them.

Chunk ``k`` holds the rows ``[k*C, (k+1)*C)`` for a chunk size ``C`` fixed for the whole batch
(and recorded in the journal), so that a rerun cuts exactly the same chunks. For each eval spec,
a chunk's rows become one request, or a few when rows differ in which optional keys they carry
(a request's items share one key set); rows whose inputs are missing get their error at once
and are not sent.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, cast

from fi_evals._exceptions import InvalidInputError, ItemError
from fi_evals._inputs import TemplateSpec, build_body, plan_chunks
from fi_evals.batch.journal import body_hash
from fi_evals.batch.mapping import build_inputs, task_fields
from fi_evals.batch.readers import BadRow
from fi_evals.batch.specs import EvalSpec
from fi_evals.results import EvalResult

__all__ = ["ChunkState", "InFlight", "MetricCall", "PollCall", "Request", "RequestCall",
           "Settings", "TaskCall", "cut_requests", "item_verdict"]

_SCORE_TYPES = ("score", "numeric")


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything the coordinator needs, resolved by ``evaluate_batch``."""

    specs: list[tuple[EvalSpec, TemplateSpec]]
    mappings: list[dict[str, str]]
    task: Callable[[Mapping[str, Any]], Any] | None
    is_async: bool
    max_workers: int
    chunk_size: int
    window_chunks: int
    max_batch_size: int
    item_timeout: float | None
    deadline: float | None
    """Absolute ``time.monotonic()`` time, or None."""
    adaptive: bool = False
    """Sync mode: ``chunk_size`` is only the start, :class:`~fi_evals.batch.sizing.ChunkSizer`
    adapts it to how fast the requests come back (no ``chunk_size`` given, no journal)."""
    n_items: int | None = None
    """Rows in the input, when known (the adaptive size keeps every worker busy to the end)."""


@dataclass(eq=False)
class ChunkState:
    """Rows ``start .. start+len(rows)`` and their outcomes as they arrive.

    Attributes:
        number: the chunk's number ``k``.
        start: index of its first row in the input.
        rows: the rows (a :class:`BadRow` for an unreadable one).
        results: ``results[position][spec]``, None until settled.
        open: outcomes still unsettled; the chunk is emitted at 0.
        task_outputs: the task's outputs (None without a task).
        task_errors: position -> the task's error, for rows whose task failed.
        tasks_pending: tasks not finished yet.
    """

    number: int
    start: int
    rows: list[Mapping[str, Any] | BadRow]
    n_specs: int
    results: list[list[EvalResult | None]] = field(init=False)
    open: int = field(init=False)
    task_outputs: list[Any] | None = None
    task_errors: dict[int, ItemError] = field(default_factory=dict)
    tasks_pending: int = 0

    def __post_init__(self) -> None:
        self.results = [[None] * self.n_specs for _ in self.rows]
        self.open = len(self.rows) * self.n_specs

    def settle(self, position: int, spec: int, result: EvalResult) -> bool:
        """Record an outcome once; returns False when it was already settled."""
        if self.results[position][spec] is not None:
            return False
        self.results[position][spec] = result
        self.open -= 1
        return True

    def settle_many(self, positions: Sequence[int], spec: int,
                    results: Sequence[EvalResult]) -> list[EvalResult]:
        """:meth:`settle` for one spec on many positions (one request's outcomes); returns the
        results recorded (those whose position was not settled yet), in order."""
        rows = self.results
        fresh = []
        for position, result in zip(positions, results):
            row = rows[position]
            if row[spec] is None:
                row[spec] = result
                fresh.append(result)
        self.open -= len(fresh)
        return fresh

    def row(self, position: int) -> Mapping[str, Any]:
        row = self.rows[position]
        return {} if isinstance(row, BadRow) else row

    def __repr__(self) -> str:
        return f"<Chunk {self.number} rows {self.start}..{self.start + len(self.rows) - 1}, " \
               f"{self.open} open>"


@dataclass(eq=False, kw_only=True)
class Request:
    """One ``new-eval/`` request: some rows of one chunk for one spec.

    Attributes:
        chunk, spec, part: where it comes from (``part`` numbers a chunk's requests per spec).
        positions: the rows' positions in the chunk, in the order of the body's items.
        body: the request body; key: its idempotency key; hash: the body's hash (computed
            when first read: only a journal reads it).
        journaled: its submission line is already in the journal (a resumed request).
        eval_ids: the server's ids, once known.
        sent_at: ``time.monotonic()`` when it went to the pool.
    """

    chunk: ChunkState
    spec: int
    part: int
    positions: tuple[int, ...]
    body: dict[str, Any]
    key: str
    is_async: bool
    journaled: bool = False
    eval_ids: list[str] | None = None
    sent_at: float = 0.0
    future: Future[Any] | None = None

    @cached_property
    def hash(self) -> str:
        return body_hash(self.body)

    def __repr__(self) -> str:
        return (f"<Request chunk {self.chunk.number} spec {self.spec} part {self.part}: "
                f"{len(self.positions)} items, key {self.key[:8]}>")


# --------------------------------------------------------------------------- work in flight
# What the coordinator keeps for each future it waits on: one record type per kind of call.


@dataclass(frozen=True, eq=False)
class TaskCall:
    """The task of one row, running on the pool or on the batch's event loop.

    Attributes:
        chunk, pos: the row (its chunk and its position in it).
        started: ``time.monotonic()`` when it was submitted (``item_timeout`` counts from it).
    """

    chunk: ChunkState
    pos: int
    started: float


@dataclass(frozen=True, eq=False)
class MetricCall:
    """A function metric (spec ``spec``) on one row, on the pool or the batch's event loop.

    Attributes:
        chunk, pos: the row.
        spec: the spec's index.
        started: ``time.monotonic()`` when it was submitted.
    """

    chunk: ChunkState
    pos: int
    spec: int
    started: float


@dataclass(frozen=True, eq=False)
class RequestCall:
    """One ``new-eval/`` request on the pool."""

    request: Request


@dataclass(frozen=True, eq=False)
class PollCall:
    """One status request on the pool, for ``ids`` (at most the server's ``max_status_ids``)."""

    ids: list[str]


InFlight = TaskCall | MetricCall | RequestCall | PollCall
"""A call the coordinator waits on."""


def cut_requests(chunk: ChunkState, specs: Sequence[tuple[EvalSpec, TemplateSpec]],
                 mappings: Sequence[Mapping[str, str]], *, is_async: bool,
                 max_batch_size: int) -> tuple[list[Request], list[tuple[int, int, ItemError]]]:
    """The requests of a chunk, and the ``(position, spec, error)`` of rows that cannot go.

    Positions already settled (unreadable rows, failed tasks) are skipped.
    """
    requests: list[Request] = []
    errors: list[tuple[int, int, ItemError]] = []
    for e, (spec, template) in enumerate(specs):
        if spec.function is not None:
            continue  # a function metric runs on the client (the coordinator calls it)
        columns = _columns(chunk, e, template, mappings[e])
        if columns is not None:
            requests.extend(_column_requests(chunk, e, spec, template, *columns,
                                             is_async=is_async, max_batch_size=max_batch_size))
            continue
        wire, positions = [], []
        for pos in range(len(chunk.rows)):
            if chunk.results[pos][e] is not None or pos in chunk.task_errors:
                continue
            task = task_fields(chunk.task_outputs[pos]) if chunk.task_outputs else {}
            try:
                wire.append(build_inputs(template, mappings[e], chunk.row(pos), task,
                                         chunk.start + pos))
            except InvalidInputError as exc:
                errors.append((pos, e, ItemError.from_exception(exc)))
                continue
            positions.append(pos)
        for part, planned in enumerate(plan_chunks(wire, template, max_batch_size)):
            body = build_body(list(planned.items), template, model=spec.model,
                              is_async=is_async, params=spec.params)
            requests.append(Request(chunk=chunk, spec=e, part=part,
                                    positions=tuple(positions[i] for i in planned.indices),
                                    body=body, key=str(uuid.uuid4()), is_async=is_async))
    return requests, errors


def _columns(chunk: ChunkState, e: int, template: TemplateSpec, mapping: Mapping[str, str]
             ) -> tuple[list[int], dict[str, list[str]]] | None:
    """The open positions of a chunk for spec ``e`` and the template's inputs as columns
    (key -> one value per position), when every row is a plain dict without a task whose
    mapped fields are all there as non-empty strings of string keys (or, for an optional key,
    in none of them): the common case, where :func:`~fi_evals.batch.mapping.build_inputs` would
    just copy them, and every row has the same key set. None otherwise (the rows are then built
    one by one, which finds the errors).
    """
    if chunk.task_outputs is not None or chunk.task_errors or not template.keys:
        return None
    rows = chunk.rows
    results = chunk.results
    positions = [pos for pos in range(len(rows)) if results[pos][e] is None]
    if not positions:
        return None
    picked = cast("list[dict[str, Any]]",
                  rows if len(positions) == len(rows) else [rows[pos] for pos in positions])
    if any(row.__class__ is not dict for row in picked):
        return None  # BadRow, or another Mapping: looked up the general way
    columns: dict[str, list[str]] = {}
    for key in template.keys:
        field = mapping[key.name]
        if key.kind != "string" or field.startswith("task."):
            return None
        try:
            column = [row[field] for row in picked]
        except KeyError:
            # A dotted path, an ``item.`` prefix, a missing field: looked up the general way,
            # unless an optional key's plain field is in no row (it is then left out).
            if key.required or "." in field or any(field in row for row in picked):
                return None
            continue
        if set(map(type, column)) != {str} or "" in column:
            return None  # values to encode, or empty ones (an error, or an optional key)
        columns[key.name] = column
    return (positions, columns) if columns else None


def _column_requests(chunk: ChunkState, e: int, spec: EvalSpec, template: TemplateSpec,
                     positions: list[int], columns: dict[str, list[str]], *, is_async: bool,
                     max_batch_size: int) -> list[Request]:
    """The requests of :func:`cut_requests` from :func:`_columns`' columns: the same bodies
    (``build_body``'s envelope, the inputs cut column by column), without an item per row."""
    out = []
    for part, start in enumerate(range(0, len(positions), max_batch_size)):
        end = min(start + max_batch_size, len(positions))
        body = build_body([{k: column[start] for k, column in columns.items()}], template,
                          model=spec.model, is_async=is_async, params=spec.params)
        if end - start > 1:
            body["inputs"] = {k: column[start:end] for k, column in columns.items()}
        out.append(Request(chunk=chunk, spec=e, part=part, positions=tuple(positions[start:end]),
                           body=body, key=str(uuid.uuid4()), is_async=is_async))
    return out


def item_verdict(specs: Sequence[tuple[EvalSpec, TemplateSpec]],
                 results: Sequence[EvalResult]) -> bool | None:
    """An item passes when every graded outcome passes; None when one has no verdict."""
    passed = True
    for (spec, template), r in zip(specs, results):
        if not r.ok:
            return None
        if r.passed is False or (template.output_type in _SCORE_TYPES and r.score is not None
                                 and r.score < spec.score_threshold):
            passed = False
    return passed
