"""``evaluate_batch``: the main job, as one function over an :class:`~fi_evals.Evaluator`.

Everything that can be checked is checked before the first row is read (template names,
parameters, labels, key mappings, thresholds, the journal's header, the server's keys): a
mistake that would fail every item raises at once instead of being recorded a million times.
From then on nothing raises: every (item, eval) gets a result or a typed error.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Union

from fi_evals._constants import (
    BATCH_ASYNC_CHUNK_SIZE,
    BATCH_ASYNC_WINDOW_ITEMS,
    BATCH_CHUNK_SIZE,
    BATCH_MIN_CHUNKS_PER_WORKER,
    BATCH_SHOW_FAILURES,
    BATCH_WINDOW_CHUNKS_PER_WORKER,
    COMPAT_MAX_BATCH_SIZE,
)
from fi_evals._transport import Transport
from fi_evals.batch.engine import Coordinator, Settings
from fi_evals.batch.journal import Journal
from fi_evals.batch.mapping import resolve_mapping
from fi_evals.batch.output import ItemWriter, open_writer
from fi_evals.batch.preflight import check_available, check_first_row
from fi_evals.batch.progress import Progress
from fi_evals.batch.readers import ItemSource, estimate_length, iter_items, source_length
from fi_evals.batch.result import BatchResult, check_thresholds, parse_thresholds
from fi_evals.batch.specs import EvalSpec, SpecLike, resolve_specs
from fi_evals.protocol import Capabilities

if TYPE_CHECKING:
    from fi_evals.client import Evaluator

__all__ = ["KeyMapping", "evaluate_batch"]

KeyMapping = Mapping[str, Union[str, Mapping[str, str]]]
"""``{template_key: field}`` for every eval, or ``{label: {template_key: field}}`` for one."""

PathLike = Union[str, "os.PathLike[str]"]

log = logging.getLogger("fi_evals.batch")


def _chunk_size(requested: int | None, journal: Journal | None, is_async: bool,
                n_items: int | None, workers: int, max_batch: int) -> int:
    if requested is None and journal is not None and journal.header is not None:
        requested = int(journal.header.get("chunk_size") or 0) or None
    if requested is None:
        if is_async:
            requested = BATCH_ASYNC_CHUNK_SIZE
        elif n_items:
            # Small inputs still spread over every worker (and show progress as they go), and
            # the chunks fill whole waves of `workers` requests: a sync request evaluates its
            # rows one after the other, so 5,000 rows on 32 workers as 100 chunks of 50 leave a
            # 4th wave of 4 chunks that takes as long as a full one; 125 chunks of 40 do not.
            waves = max(BATCH_MIN_CHUNKS_PER_WORKER,
                        math.ceil(n_items / (workers * BATCH_CHUNK_SIZE)))
            requested = max(1, math.ceil(n_items / (workers * waves)))
        else:
            requested = BATCH_CHUNK_SIZE
    if requested < 1:
        raise ValueError("chunk_size must be at least 1")
    return min(requested, max_batch)


def _mappings(key_mapping: KeyMapping | None,
              specs: list[tuple[EvalSpec, Any]]) -> list[dict[str, str]]:
    flat = {k: v for k, v in (key_mapping or {}).items() if isinstance(v, str)}
    per_label = {k: v for k, v in (key_mapping or {}).items() if isinstance(v, Mapping)}
    labels = {spec.label for spec, _ in specs}
    unknown = [k for k in per_label if k not in labels]
    if unknown:
        raise ValueError(f"key_mapping has entries for unknown eval label(s) {unknown} "
                         f"(labels: {', '.join(sorted(str(x) for x in labels))})")
    return [resolve_mapping({**per_label.get(spec.label or "", {}), **spec.key_mapping},
                            flat, template) for spec, template in specs]


def _capabilities(transport: Transport) -> Capabilities | None:
    """The server's capabilities; a 5xx that outlasts the transport's own retries falls back to
    section A (3 items per request, one id per poll) with a warning."""
    return transport.capabilities_or_none()


def _positive(name: str, value: float | None) -> float | None:
    if value is not None and value <= 0:
        raise ValueError(f"{name} must be a positive number of seconds")
    return value


def evaluate_batch(evaluator: Evaluator, items: ItemSource,
                   evals: SpecLike | Iterable[SpecLike], *,
                   task: Callable[[Mapping[str, Any]], Any] | None = None,
                   key_mapping: KeyMapping | None = None, is_async: bool = False,
                   max_workers: int | None = None, chunk_size: int | None = None,
                   item_timeout: float | None = None, deadline: float | None = None,
                   progress: bool = True, journal: PathLike | None = None,
                   output: PathLike | None = None,
                   thresholds: Mapping[str, float] | None = None,
                   max_error_rate: float = 0.0, show: int = BATCH_SHOW_FAILURES,
                   limit: int | None = None) -> BatchResult:
    """Score every item with every eval, in bounded memory; see ``Evaluator.evaluate_batch``.

    Args:
        evaluator: the client whose transport and pool do the work.
        items: a list, generator, DataFrame, mapping of columns, or a JSONL/CSV path (lazy).
        evals: eval specs: ``"NAME[:param=value,...]"``, mappings or :class:`EvalSpec`.
        task: called with each row before its evals (the model under test): a plain function
            runs on the pool, an ``async def`` one on one event loop the batch owns (up to
            ``max_workers`` at once); its return value (a mapping, or a value known as
            ``output``) feeds the key mapping.
        key_mapping: template key -> row/task field (see :mod:`fi_evals.batch.mapping`).
        is_async: submit everything in chunks, then poll with bulk status.
        max_workers: the most requests in flight (default and ceiling: the Evaluator's).
        chunk_size: rows per request (see ``BATCH_CHUNK_SIZE``, ``BATCH_ASYNC_CHUNK_SIZE``).
        item_timeout: seconds an item's task, request or async evaluation may take.
        deadline: seconds the whole batch may take; unfinished items then get an error.
        progress: show a progress bar on stderr.
        journal: append-only journal file; rerunning with it resumes (see
            :mod:`fi_evals.batch.journal`).
        output: stream items to this ``.jsonl`` or ``.csv`` file instead of keeping them.
        thresholds: ``{"LABEL[.METRIC]": minimum}`` -> ``BatchResult.passed``.
        max_error_rate: the share of outcomes that may be errors (no verdict) while
            ``BatchResult.passed`` stays True; 0.0 (the default): any error fails the batch.
        show: how many failing or errored rows the summary lists (0: none).
        limit: score the first ``limit`` rows only (None: all).

    Returns:
        A :class:`BatchResult`: items in input order, stats, threshold checks, and
        ``passed``: True only when the batch finished, its error rate is within
        ``max_error_rate`` and every threshold holds.

    Raises:
        UnknownTemplateError, InvalidInputError, ValueError: bad specs, parameters, key
            mappings or thresholds (before anything is sent).
        TemplateUnavailableError: the server cannot run one of the evals (no judge
            configured...), before anything is sent.
        KeyMappingError: a key's field is absent from the first row (a typo, a missing
            ``key_mapping``), before anything is sent.
        AuthenticationError, APIConnectionError: the server refuses the keys or cannot be
            reached (before anything is sent).
        JournalMismatchError: the journal belongs to another batch.
    """
    transport = evaluator._transport
    workers = min(max_workers or evaluator.max_workers, evaluator.max_workers)
    if workers < 1:
        raise ValueError("max_workers must be at least 1")
    _positive("item_timeout", item_timeout)
    _positive("deadline", deadline)
    if not 0.0 <= max_error_rate <= 1.0:
        raise ValueError(f"max_error_rate must be between 0 and 1, not {max_error_rate!r}")
    if show < 0:
        raise ValueError(f"show must be 0 or more, not {show!r}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be at least 1, not {limit!r}")
    started = time.monotonic()
    specs = resolve_specs(evals, server_templates=transport.templates)
    mappings = _mappings(key_mapping, specs)
    source = iter_items(items, limit)  # opens files now: a missing one fails before a request
    caps = _capabilities(transport)  # bad keys or no server: raise before reading anything
    approximations = check_available(transport, specs)
    rows = check_first_row(source, specs, mappings, key_mapping, has_task=task is not None)
    max_batch = caps.max_batch_size if caps is not None else COMPAT_MAX_BATCH_SIZE
    n_items = source_length(items, limit)
    opened_journal = Journal(journal) if journal is not None else None
    writer: ItemWriter | None = None
    bar: Progress | None = None
    try:
        size = _chunk_size(chunk_size, opened_journal, is_async, n_items, workers, max_batch)
        if opened_journal is not None:
            opened_journal.start(evals=[s.to_dict() for s, _ in specs], chunk_size=size,
                                 is_async=is_async, task=task is not None)
        window = (math.ceil(BATCH_ASYNC_WINDOW_ITEMS / size) if is_async
                  else workers * BATCH_WINDOW_CHUNKS_PER_WORKER)
        settings = Settings(specs, mappings, task, is_async, workers, size, max(2, window),
                            max_batch, item_timeout,
                            None if deadline is None else started + deadline)
        labels = [s.label or s.name for s, _ in specs]
        total = estimate_length(items, limit) if progress else None
        bar = Progress(progress, total * len(specs) if total is not None else None)
        writer = open_writer(output, labels) if output is not None else None
        coordinator = Coordinator(settings, transport, evaluator._executor,
                                  journal=opened_journal, writer=writer, progress=bar)
        coordinator.stats.failures.limit = show
        coordinator.stats.failures.describe = source.describe
        parsed = parse_thresholds(thresholds, coordinator.stats.templates)
        coordinator.run(rows)
    finally:
        if writer is not None:
            writer.close()
        if bar is not None:
            bar.close()
        if opened_journal is not None:
            opened_journal.close()
    checks = check_thresholds(parsed, coordinator.stats.templates,
                              complete=coordinator.stopped is None)
    return BatchResult([s for s, _ in specs], coordinator.stats, items=coordinator.items,
                       output=output, stopped=coordinator.stopped, checks=checks,
                       input_error=coordinator.input_error, max_error_rate=max_error_rate,
                       approximations=approximations)
