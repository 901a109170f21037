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
import platform
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union
from urllib.parse import urlsplit

from fi_evals import _otel
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
from fi_evals._version import __version__
from fi_evals.batch.engine import Coordinator, Settings
from fi_evals.batch.journal import Journal
from fi_evals.batch.mapping import resolve_mapping
from fi_evals.batch.output import ItemSink, ItemWriter, TeeWriter, open_writer
from fi_evals.batch.preflight import check_available, check_first_row
from fi_evals.batch.progress import Progress
from fi_evals.batch.readers import ItemSource, estimate_length, iter_items, source_length
from fi_evals.batch.result import BatchResult, check_thresholds, parse_thresholds
from fi_evals.batch.specs import EvalSpec, SpecLike, resolve_specs
from fi_evals.protocol import Capabilities

if TYPE_CHECKING:
    from fi_evals.client import Evaluator
    from fi_evals.runs.store import RunStore
    from fi_evals.runs.writer import RunWriter

__all__ = ["KeyMapping", "evaluate_batch"]

KeyMapping = Mapping[str, str | Mapping[str, str]]
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
                   limit: int | None = None, run_name: str | None = None,
                   runs_dir: PathLike | None = None, save: bool | None = None,
                   junit: PathLike | None = None,
                   summary_md: PathLike | None = None,
                   cancel: threading.Event | None = None,
                   sink: ItemSink | None = None) -> BatchResult:
    """Score every item with every eval, in bounded memory; see ``Evaluator.evaluate_batch``.

    Args:
        evaluator: the client whose transport, pool and poll schedule do the work
            (:attr:`Evaluator.context <fi_evals.Evaluator.context>`).
        items: a list, generator, DataFrame, mapping of columns, or a JSONL/CSV path (lazy).
        evals: eval specs: ``"NAME[:param=value,...]"``, mappings or :class:`EvalSpec`, and
            Python functions (function metrics, :mod:`fi_evals.batch.metrics`): called on
            the pool with each row, they return a bool, a 0-1 score or ``(value, reason)``.
        task: called with each row before its evals (the model under test): a plain function
            runs on the pool, an ``async def`` one on one event loop the batch owns (up to
            ``max_workers`` at once); its return value (a mapping, or a value known as
            ``output``) feeds the key mapping.
        key_mapping: template key -> row/task field (see :mod:`fi_evals.batch.mapping`).
        is_async: submit everything in chunks; results the server finished at submit
            (cheap templates) come back with their ids, the rest are polled with bulk
            status.
        max_workers: the most requests in flight (default and ceiling: the Evaluator's).
        chunk_size: rows per request (see ``BATCH_CHUNK_SIZE``, ``BATCH_ASYNC_CHUNK_SIZE``).
            None (sync, no journal): the size adapts, starting from the fixed rule's choice,
            doubling while requests come back fast (up to the server's ``max_batch_size``),
            halving near the read timeout or when the server slows (``fi_evals.batch.sizing``).
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
        run_name: keep this run in the run store under this name (see
            :mod:`fi_evals.runs.store`; ``fi-evals view NAME`` shows it).
        runs_dir: the run store's folder (default ``$FI_EVALS_HOME/runs``, else
            ``.fi-evals/runs``); giving it keeps the run too.
        save: keep the run (True), never (False); None (the default) keeps it only when
            ``run_name`` or ``runs_dir`` is given. A kept run streams its rows to the store
            as they finish: without ``output=``, the result reads its items back from there
            instead of holding them in memory.
        junit: also write a JUnit XML report here (``BatchResult.to_junit``).
        summary_md: also write a Markdown summary here (``BatchResult.to_markdown``).
        cancel: an event another thread may set to stop the batch as Ctrl-C does (stops
            sending; settles unfinished items with an error that keeps their eval ids;
            ``stopped == "cancelled"``). :class:`fi_evals.aio.AsyncEvaluator` uses it.
        sink: also emit each finished item here, in input order (``write``/``close``); the
            result then keeps no items in memory unless ``output`` or the run store has them.

    Returns:
        A :class:`BatchResult`: items in input order, stats, threshold checks, and
        ``passed``: True only when the batch finished, its error rate is within
        ``max_error_rate`` and every threshold holds; ``run`` is the kept run, if any.

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
    context = evaluator.context
    transport = context.transport
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
    store = _run_store(save, run_name, runs_dir)
    for name, path in (("junit", junit), ("summary_md", summary_md)):
        _check_report_path(name, path)
    if (junit is not None and store is None and output is not None
            and Path(output).suffix.lower() == ".csv"):
        raise ValueError("junit needs the rows back after the batch: a .csv output cannot give "
                         "them; stream to .jsonl, or keep the run (run_name=...)")
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
    run: RunWriter | None = None
    bar: Progress | None = None
    try:
        size = _chunk_size(chunk_size, opened_journal, is_async, n_items, workers, max_batch)
        if opened_journal is not None:
            opened_journal.start(evals=[s.to_dict() for s, _ in specs], chunk_size=size,
                                 is_async=is_async, task=task is not None)
        window = (math.ceil(BATCH_ASYNC_WINDOW_ITEMS / size) if is_async
                  else workers * BATCH_WINDOW_CHUNKS_PER_WORKER)
        settings = Settings(specs=specs, mappings=mappings, task=task, is_async=is_async,
                            max_workers=workers, chunk_size=size, window_chunks=max(2, window),
                            max_batch_size=max_batch, item_timeout=item_timeout,
                            deadline=None if deadline is None else started + deadline,
                            # A journal maps chunk numbers to rows, so its chunks keep one size.
                            adaptive=chunk_size is None and opened_journal is None,
                            n_items=n_items)
        labels = [s.label or s.name for s, _ in specs]
        total = estimate_length(items, limit) if progress else None
        bar = Progress(progress, total * len(specs) if total is not None else None)
        writer = open_writer(output, labels) if output is not None else None
        coordinator = Coordinator(settings, context, journal=opened_journal, writer=writer,
                                  progress=bar, cancel=cancel)
        coordinator.stats.failures.limit = show
        coordinator.stats.failures.describe = source.describe
        parsed = parse_thresholds(thresholds, coordinator.stats.templates)
        if store is not None:
            run = _start_run(store, run_name, specs, mappings, approximations, transport,
                             caps, config={
                                 "data": _describe_source(items), "task": _task_name(task),
                                 "evals": [s.to_dict() for s, _ in specs],
                                 "key_mapping": dict(key_mapping or {}),
                                 "thresholds": dict(thresholds or {}), "is_async": is_async,
                                 "max_workers": workers, "chunk_size": size,
                                 "item_timeout": item_timeout, "deadline": deadline,
                                 "limit": limit, "max_error_rate": max_error_rate,
                                 "show": show, "journal": _text(journal),
                                 "output": _text(output)})
            # Created once the thresholds parsed (a mistake leaves no run behind); the store
            # keeps the items, so the result reads them back from it: memory stays flat.
            coordinator.writer = run if writer is None else TeeWriter([writer, run])
            coordinator.items = None
        if sink is not None:
            sinks = [coordinator.writer] if coordinator.writer is not None else []
            coordinator.writer = TeeWriter([*sinks, sink])
            coordinator.items = None
        span_attributes: dict[str, Any] = {
            "fi_evals.evals": [s.label or s.name for s, _ in specs],
            "fi_evals.chunk_size": size, "fi_evals.is_async": is_async}
        with _otel.span("fi_evals.evaluate_batch", **span_attributes) as current:
            coordinator.run(rows)
            _otel.set_attributes(current, **{
                "fi_evals.items": coordinator.stats.items,
                "fi_evals.requests": coordinator.stats.requests,
                "fi_evals.retries": coordinator.stats.retries,
                "fi_evals.stopped": coordinator.stopped})
            if coordinator.stopped is not None:
                _otel.set_error(current, f"the batch stopped: {coordinator.stopped}")
    except BaseException as exc:
        if run is not None:
            run.abandon(f"{type(exc).__name__}: {exc}")
        raise
    finally:
        if writer is not None:
            writer.close()
        if run is not None:
            run.close()
        if bar is not None:
            bar.close()
        if opened_journal is not None:
            opened_journal.close()
    checks = check_thresholds(parsed, coordinator.stats.templates,
                              complete=coordinator.stopped is None)
    result = BatchResult([s for s, _ in specs], coordinator.stats, items=coordinator.items,
                         output=output, stopped=coordinator.stopped, checks=checks,
                         input_error=coordinator.input_error, max_error_rate=max_error_rate,
                         approximations=approximations)
    if run is not None:
        run.finish(result)
        from fi_evals.runs.run import Run

        result.run = Run(run.folder)
    if junit is not None:
        result.to_junit(junit)
    if summary_md is not None:
        Path(summary_md).write_text(result.to_markdown(), "utf-8")
    return result


# --------------------------------------------------------------------------- the run store


def _run_store(save: bool | None, run_name: str | None,
               runs_dir: PathLike | None) -> RunStore | None:
    """The store this batch is kept in, or None; a bad name raises before anything is sent."""
    if save is False:
        if run_name is not None:
            raise ValueError("run_name names a kept run, and save=False keeps none: drop one")
        return None
    if save is None and run_name is None and runs_dir is None:
        return None
    from fi_evals.runs.store import RunStore, check_name

    if run_name is not None:
        check_name(run_name)
    return RunStore(runs_dir)


def _check_report_path(name: str, path: PathLike | None) -> None:
    if path is None:
        return
    folder = Path(path).parent
    if not folder.is_dir():
        raise ValueError(f"{name}: the folder {str(folder)!r} of {os.fspath(path)!r} does not "
                         f"exist")


def _text(value: PathLike | None) -> str | None:
    return None if value is None else os.fspath(value)


def _describe_source(items: ItemSource) -> str:
    """The data source as the run store records it (a path, stdin, or the kind of object)."""
    if isinstance(items, (str, os.PathLike)):
        text = os.fspath(items)
        return "stdin" if text == "-" else str(Path(text).resolve())
    kind = type(items).__name__
    try:
        return f"{kind} of {len(items):,} rows"
    except TypeError:
        return kind


def _task_name(task: Callable[..., Any] | None) -> str | None:
    if task is None:
        return None
    name = getattr(task, "__qualname__", None) or type(task).__qualname__
    return f"{getattr(task, '__module__', '?')}.{name}"


def _start_run(store: RunStore, name: str | None, specs: list[tuple[EvalSpec, Any]],
               mappings: list[dict[str, str]], approximations: Mapping[str, str],
               transport: Transport, caps: Capabilities | None,
               config: dict[str, Any]) -> RunWriter:
    from fi_evals.runs.schema import key_fields
    from fi_evals.runs.store import RECORDED_COMMAND

    evals = [{"label": spec.label or spec.name, "template": spec.name,
              "output_type": template.output_type, "pass_threshold": spec.score_threshold,
              "approximation": approximations.get(spec.label or spec.name)}
             for spec, template in specs]
    url = urlsplit(transport.base_url)
    host = url.hostname or ""
    host = f"[{host}]" if ":" in host else host
    shown = url._replace(netloc=host + (f":{url.port}" if url.port else "")).geturl()
    config["command"] = RECORDED_COMMAND.get()
    return store.create(name=name, evals=evals, key_excluded=key_fields(mappings),
                        config=config, extra={
                            "versions": {"fi_evals": __version__,
                                         "python": platform.python_version(),
                                         "sqlite": sqlite3.sqlite_version,
                                         "platform": platform.platform(terse=True)},
                            "server": {"url": shown,  # no credentials, if the URL had any
                                       "protocol": caps.protocol if caps else None,
                                       "max_batch_size": caps.max_batch_size if caps else None}})
