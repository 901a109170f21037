"""The :class:`Evaluator`: the SDK's entry point, call-compatible with ``fi.evals.Evaluator``.

One Evaluator owns one :class:`~fi_evals._transport.Transport` (one ``requests.Session``
whose pool holds ``max_workers`` connections) and one long-lived ``ThreadPoolExecutor`` of
``max_workers`` threads. ``evaluate()`` checks everything it can before any request, cuts the
items into chunks of the server's ``max_batch_size`` (3 against servers without
capabilities), runs the chunks in parallel on the pool and returns one result per item in
input order: a chunk that fails after its retries records a typed error on its items.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any, Self, TypeVar, cast

from fi_evals import _otel
from fi_evals._constants import (
    BATCH_SHOW_FAILURES,
    COMPAT_MAX_BATCH_SIZE,
    DEFAULT_BASE_URL,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_MAX_WORKERS,
    DEFAULT_READ_TIMEOUT,
    DEFAULT_TIMEOUT,
    DEFAULT_WAIT_TIMEOUT,
    ENV_API_KEY,
    ENV_BASE_URL,
    ENV_SECRET_KEY,
)
from fi_evals._context import ClientContext
from fi_evals._eventloop import warn_if_in_event_loop
from fi_evals._exceptions import (
    APIError,
    AuthenticationError,
    FiEvalsError,
    MissingCredentialsError,
    PermissionDeniedError,
)
from fi_evals._inputs import (
    Chunk,
    TemplateSpec,
    WireItem,
    build_body,
    check_params,
    plan_chunks,
    prepare_items,
    resolve_template,
    template_name,
    template_params,
)
from fi_evals._polling import Poller
from fi_evals._retry import PollBackoff, RetryPolicy
from fi_evals._transport import Transport, TransportStats
from fi_evals.handles import EvalHandle, Submission, Waitable, flatten_waitables
from fi_evals.protocol import Capabilities, with_status_alias
from fi_evals.results import BatchRunResult, EvalResult

if TYPE_CHECKING:
    from fi_evals.batch import BatchResult
    from fi_evals.logger import ScoreLogger

__all__ = ["Evaluator"]

T = TypeVar("T")
R = TypeVar("R")

# Errors that no other chunk can escape: stop everything and raise.
_FATAL = (AuthenticationError, PermissionDeniedError)
# Keyword arguments of the official client that have no meaning here (accepted, ignored).
_IGNORED_INIT_KWARGS = frozenset({"max_queue", "max_queue_bound", "langfuse_secret_key",
                                  "langfuse_public_key", "langfuse_host"})


class Evaluator:
    """Client of an fi-evals (or hosted) evaluation server.

    Args:
        fi_api_key: the API key; defaults to the ``FI_API_KEY`` environment variable.
        fi_secret_key: the secret key; defaults to ``FI_SECRET_KEY``.
        fi_base_url: the server; defaults to ``FI_BASE_URL``, then ``DEFAULT_BASE_URL``.
        max_workers: threads of the pool and connections of the HTTP pool
            (``DEFAULT_MAX_WORKERS``).
        timeout: seconds one ``evaluate()`` call may take in all (``DEFAULT_TIMEOUT``).
        retry: the HTTP retry policy (``RetryPolicy()``; ``RetryPolicy.none()`` disables).
        poll: the poll schedule of waits (``PollBackoff()``).
        connect_timeout: seconds to connect (``DEFAULT_CONNECT_TIMEOUT``).
        read_timeout: seconds one answer may take (``DEFAULT_READ_TIMEOUT``).

    Raises:
        MissingCredentialsError: no API key or secret key, here or in the environment.
    """

    def __init__(self, fi_api_key: str | None = None, fi_secret_key: str | None = None,
                 fi_base_url: str | None = None, *, max_workers: int = DEFAULT_MAX_WORKERS,
                 timeout: float = DEFAULT_TIMEOUT, retry: RetryPolicy | None = None,
                 poll: PollBackoff | None = None,
                 connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
                 read_timeout: float = DEFAULT_READ_TIMEOUT, **kwargs: Any) -> None:
        unknown = set(kwargs) - _IGNORED_INIT_KWARGS
        if unknown:
            raise TypeError(f"Evaluator() got unexpected keyword argument(s): "
                            f"{', '.join(sorted(unknown))}")
        api_key = fi_api_key or os.environ.get(ENV_API_KEY)
        secret_key = fi_secret_key or os.environ.get(ENV_SECRET_KEY)
        if not api_key or not secret_key:
            missing = [f"{arg} (or ${env})" for arg, env, v in (
                ("fi_api_key", ENV_API_KEY, api_key), ("fi_secret_key", ENV_SECRET_KEY,
                                                      secret_key)) if not v]
            raise MissingCredentialsError(f"missing credentials: pass {' and '.join(missing)}")
        base_url = (fi_base_url or os.environ.get(ENV_BASE_URL) or DEFAULT_BASE_URL).rstrip("/")
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base URL {base_url!r} must start with http:// or https://")
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        self.max_workers = max_workers
        self.timeout = float(timeout)
        self._transport = Transport(base_url, api_key, secret_key, pool_size=max_workers,
                                    retry=retry, connect_timeout=connect_timeout,
                                    read_timeout=read_timeout)
        self._local = threading.local()
        self._executor = ThreadPoolExecutor(max_workers, thread_name_prefix="fi-evals-client",
                                            initializer=self._mark_worker)
        self._context = ClientContext(transport=self._transport, executor=self._executor,
                                      poll=poll if poll is not None else PollBackoff(),
                                      retry=self._transport.retry)
        self._poller = Poller(self._transport, self._context.poll, map_fn=self._parallel_map)
        self._closed = False

    # ------------------------------------------------------------------ life cycle

    @property
    def base_url(self) -> str:
        return self._transport.base_url

    @property
    def context(self) -> ClientContext:
        """What the batch engine and the score logger work through: this Evaluator's
        transport, thread pool, poll schedule and retry policy, as one frozen value."""
        return self._context

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<Evaluator {self.base_url} max_workers={self.max_workers} {state}>"

    def close(self) -> None:
        """Stop the pool (queued chunks are cancelled) and close the HTTP connections."""
        if self._closed:
            return
        self._closed = True
        self._transport.close()
        self._executor.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def stats(self) -> TransportStats:
        """Requests, retries, throttled answers, failures and replays so far."""
        return self._transport.stats()

    def score_logger(self, **options: Any) -> ScoreLogger:
        """A background :class:`~fi_evals.logger.ScoreLogger` on this Evaluator's server and keys.

        ``log()`` on it returns at once and never raises; see ``fi_evals.logger`` for the
        options (``sink``, ``overflow``, ``spool``, ``queue_size``...). The logger opens its
        own HTTP session; close it when done (at interpreter exit it is flushed and closed).
        """
        from fi_evals.logger import ScoreLogger

        return ScoreLogger(self, **options)

    @property
    def capabilities(self) -> Capabilities | None:
        """The server's extensions (fetched once), or None for a server without them.

        Raises:
            AuthenticationError: bad keys. APIConnectionError: the server is unreachable.
        """
        return self._transport.capabilities()

    def max_batch_size(self) -> int:
        """Items per request: the server's ``max_batch_size``, or 3 without capabilities.

        Raises:
            AuthenticationError: bad keys. APIConnectionError: the server is unreachable.
        """
        caps = self._transport.capabilities_or_none()
        return caps.max_batch_size if caps is not None else COMPAT_MAX_BATCH_SIZE

    # ------------------------------------------------------------------ templates

    def list_evaluations(self) -> list[dict[str, Any]]:
        """The server's templates (``get-evals/``), as dicts."""
        return [t.model_dump() for t in self._transport.templates()]

    def resolve_template(self, template: Any) -> TemplateSpec:
        """The spec of a template name or object: local catalogue, else the server's list.

        Raises:
            UnknownTemplateError: neither knows it (the message lists close names).
            TypeError: ``template`` is neither a name nor has an ``eval_name``.
        """
        return resolve_template(template_name(template),
                                server_templates=self._transport.templates)

    # ------------------------------------------------------------------ evaluate

    def evaluate(self, eval_templates: Any, inputs: Any, *, timeout: float | None = None,
                 model_name: str | None = None, is_async: bool = False,
                 eval_config: Mapping[str, Any] | None = None,
                 custom_eval_name: str | None = None, trace_eval: bool | None = False,
                 error_localizer: bool | None = False, span_id: str | None = None,
                 platform: str | None = None, chunk_size: int | None = None,
                 skip_input_mapping: bool | None = None) -> BatchRunResult:
        """Evaluate one item or many with one template (or several).

        Args:
            eval_templates: a template name, an object or class with ``eval_name``, or a
                list of them (results then come template by template, items in order).
            inputs: one dict, a dict of lists (a batch), a list of dicts, or a DataFrame.
            timeout: seconds for the whole call (the Evaluator's ``timeout`` by default).
            model_name: judge model for model-based templates.
            is_async: store the evaluations and return at once: each result is ``pending``
                with its ``eval_id`` (see :meth:`wait_all`, :meth:`get_result`).
            eval_config: template parameters (sent as ``config.params``); a template
                instance's ``config`` is used when this is None.
            custom_eval_name, trace_eval, error_localizer, span_id: passed through for
                compatibility with the hosted API.
            platform: not supported (the official client's platform configuration).
            chunk_size: items per request, at most the server's ``max_batch_size``.
            skip_input_mapping: accepted for compatibility; inputs are never remapped.

        Returns:
            A :class:`BatchRunResult`: one :class:`EvalResult` per item, in input order;
            items of a chunk that failed carry ``status="error"`` and a typed ``error``.

        Raises:
            UnknownTemplateError, InvalidInputError: before any evaluation request.
            AuthenticationError, PermissionDeniedError: bad keys (at once).
            APIError, APIConnectionError: when no item could be evaluated at all (every
                chunk failed; the first failure is raised).
        """
        del skip_input_mapping
        if platform:
            raise ValueError("platform= (configuring evaluations on a tracing platform) is "
                             "not supported by fi-evals")
        self._check_open()
        warn_if_in_event_loop("evaluate")
        deadline = time.monotonic() + (self.timeout if timeout is None else float(timeout))
        templates = (list(eval_templates) if isinstance(eval_templates, (list, tuple))
                     else [eval_templates])
        plans = []
        for template in templates:  # every client-side check before any request
            spec = self.resolve_template(template)
            params = dict(eval_config) if eval_config is not None else template_params(template)
            check_params(params, spec)
            plans.append((spec, params, prepare_items(inputs, spec)))
        size = self.max_batch_size()
        if chunk_size is not None:
            size = max(1, min(size, chunk_size))
        extra = {"custom_eval_name": custom_eval_name, "span_id": span_id,
                 "trace_eval": trace_eval or None, "error_localizer": error_localizer or None}
        jobs: list[tuple[int, TemplateSpec, Chunk, dict[str, Any] | None]] = []
        total = 0
        for spec, params, items in plans:
            jobs += [(total, spec, c, params) for c in plan_chunks(items, spec, size)]
            total += len(items)
        results: list[EvalResult | None] = [None] * total

        def run(job: tuple[int, TemplateSpec, Chunk, dict[str, Any] | None]) -> list[EvalResult]:
            _, spec, chunk, params = job
            return self.send_chunk(spec, chunk.items, model=model_name, is_async=is_async,
                                   params=params, extra=extra, deadline=deadline)

        span_attributes: dict[str, Any] = {
            "fi_evals.templates": [spec.name for spec, _, _ in plans],
            "fi_evals.items": total, "fi_evals.is_async": is_async,
            "fi_evals.model": model_name}
        with _otel.span("fi_evals.evaluate", **span_attributes) as current:
            self._run_jobs(jobs, run, results, deadline)
            if current is not None:
                errors = sum(1 for r in results if r is None or r.status == "error")
                _otel.set_attributes(current, **{
                    "fi_evals.eval_ids": _otel.eval_ids(r.eval_id for r in results if r),
                    "fi_evals.errors": errors, "fi_evals.inputs": _otel.inputs_text(inputs)})
                if errors:
                    _otel.set_error(current, f"{errors} of {total} items errored")
        return BatchRunResult(eval_results=results)

    def send_chunk(self, spec: TemplateSpec, items: Sequence[WireItem], *,
                   model: str | None = None, is_async: bool = False,
                   params: Mapping[str, Any] | None = None,
                   extra: Mapping[str, Any] | None = None, deadline: float | None = None,
                   idempotency_key: str | None = None) -> list[EvalResult]:
        """Send one chunk (one request, with retries) in the calling thread.

        The building block of ``evaluate()`` and the batch engine: ``items`` come from
        ``fi_evals._inputs.encode_item`` and share one key set.

        Returns:
            One result per item, in order (``pending`` with ``eval_id`` when ``is_async``).

        Raises:
            APIError, APIConnectionError, APITimeoutError: after the retries.
        """
        body = build_body(items, spec, model=model, is_async=is_async, params=params,
                          extra=extra)
        answer = self._transport.new_eval(body, idempotency_key=idempotency_key,
                                          deadline=deadline)
        if len(answer.value) != len(items):
            raise APIError(f"the server answered {len(answer.value)} evaluations for "
                           f"{len(items)} items", status_code=200, request_id=answer.request_id,
                           body=answer.body)
        out = []
        for evaluation in answer.value:
            result = EvalResult.from_item(evaluation, pending=is_async)
            result.name = result.name or spec.name
            out.append(result)
        return out

    def _run_jobs(self, jobs: Sequence[Any], run: Callable[[Any], list[EvalResult]],
                  results: list[EvalResult | None], deadline: float) -> None:
        """Run chunk jobs on the pool; fill ``results``; fail fast on fatal errors."""
        failures: list[tuple[int, BaseException]] = []
        succeeded = 0
        if self._on_worker():  # called from our own pool: run inline, never wait on it
            outcomes = [self._attempt(run, job) for job in jobs]
            pairs = list(zip(jobs, outcomes))
        else:
            pairs = []
            futures: dict[Future[Any], Any] = {
                self._executor.submit(_otel.in_context(self._attempt), run, job): job
                for job in jobs}
            pending = set(futures)
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    outcome = future.result()
                    if isinstance(outcome, _FATAL):
                        for f in pending:
                            f.cancel()
                        raise outcome
                    pairs.append((futures[future], outcome))
        for (offset, spec, chunk, _params), outcome in pairs:
            if isinstance(outcome, BaseException):
                if isinstance(outcome, _FATAL):
                    raise outcome
                failures.append((offset + chunk.indices[0], outcome))
                for i in chunk.indices:
                    results[offset + i] = EvalResult.from_error(spec.name, outcome)
            else:
                succeeded += 1
                for i, result in zip(chunk.indices, outcome):
                    results[offset + i] = result
        if failures and not succeeded:
            # Nothing could be evaluated: one typed exception says more than N errors.
            raise min(failures, key=lambda f: f[0])[1]

    @staticmethod
    def _attempt(run: Callable[[Any], T], job: Any) -> T | BaseException:
        try:
            return run(job)
        except Exception as exc:  # noqa: BLE001 - stored per chunk, like a Future's exception
            return exc

    # ------------------------------------------------------------------ batch (fi_evals.batch)

    def evaluate_batch(self, items: Any, evals: Any, *, task: Callable[..., Any] | None = None,
                       key_mapping: Mapping[str, Any] | None = None, is_async: bool = False,
                       max_workers: int | None = None, chunk_size: int | None = None,
                       item_timeout: float | None = None, deadline: float | None = None,
                       progress: bool = True, journal: str | os.PathLike[str] | None = None,
                       output: str | os.PathLike[str] | None = None,
                       thresholds: Mapping[str, float] | None = None,
                       max_error_rate: float = 0.0, show: int = BATCH_SHOW_FAILURES,
                       limit: int | None = None, run_name: str | None = None,
                       runs_dir: str | os.PathLike[str] | None = None,
                       save: bool | None = None, junit: str | os.PathLike[str] | None = None,
                       summary_md: str | os.PathLike[str] | None = None) -> BatchResult:
        """Score every item with every eval, in input order and in bounded memory.

        A thin entry point to :func:`fi_evals.batch.evaluate_batch`, which documents every
        option in full (task, key mapping, async mode, journal, output, thresholds).

        Args:
            items: a list, generator, DataFrame, mapping of columns, or a path (JSONL, CSV,
                a JSON array, Parquet; ``"-"`` for stdin).
            evals: eval specs: ``"NAME[:param=value,...]"``, mappings, ``EvalSpec``s, or
                Python functions (:mod:`fi_evals.batch.metrics`, run on this client's pool).
            max_error_rate: share of errored outcomes ``result.passed`` tolerates (0.0).
            show: failing or errored rows the summary lists.
            limit: score the first ``limit`` rows only.
            run_name, runs_dir, save: keep the run in the run store (``fi-evals view``);
                kept when ``run_name`` or ``runs_dir`` is given, or ``save=True``.
            junit, summary_md: also write a JUnit XML report / a Markdown summary there.

        Returns:
            A :class:`~fi_evals.batch.BatchResult` (one outcome per item and eval);
            ``result.passed`` is True only when every outcome is a verdict (within
            ``max_error_rate``) and every threshold holds.

        Raises:
            UnknownTemplateError, InvalidInputError, ValueError, AuthenticationError,
            APIConnectionError, JournalMismatchError: before anything is sent.
            TemplateUnavailableError: the server cannot run an eval (no judge...).
            KeyMappingError: a key's field is absent from the first row.
        """
        self._check_open()
        warn_if_in_event_loop("evaluate_batch")
        from fi_evals.batch import evaluate_batch

        return evaluate_batch(self, items, evals, task=task, key_mapping=key_mapping,
                              is_async=is_async, max_workers=max_workers,
                              chunk_size=chunk_size, item_timeout=item_timeout,
                              deadline=deadline, progress=progress, journal=journal,
                              output=output, thresholds=thresholds,
                              max_error_rate=max_error_rate, show=show, limit=limit,
                              run_name=run_name, runs_dir=runs_dir, save=save, junit=junit,
                              summary_md=summary_md)

    # ------------------------------------------------------------------ async

    def submit(self, eval_templates: Any, inputs: Any, *, model_name: str | None = None,
               timeout: float | None = None, eval_config: Mapping[str, Any] | None = None,
               custom_eval_name: str | None = None, trace_eval: bool = False,
               error_localizer: bool = False, span_id: str | None = None) -> Submission:
        """Submit evaluations and return at once with a handle for every item.

        Args: as :meth:`evaluate` (``is_async`` is always true).

        Returns:
            A :class:`Submission` (a sequence of :class:`EvalHandle`, in input order; with
            one item it also behaves as that handle).

        Raises:
            as :meth:`evaluate`.
        """
        batch = self.evaluate(eval_templates, inputs, timeout=timeout, model_name=model_name,
                              is_async=True, eval_config=eval_config,
                              custom_eval_name=custom_eval_name, trace_eval=trace_eval,
                              error_localizer=error_localizer, span_id=span_id)
        return Submission(self, [EvalHandle(self, r) for r in batch.eval_results if r])

    def get_execution(self, execution_id: str) -> EvalHandle:
        """A handle on an evaluation submitted earlier, by id (from any process).

        Raises:
            NotFoundError (BadRequestError from hosted servers): unknown id.
        """
        return EvalHandle(self, self._fetch_one(execution_id))

    def get_eval_result(self, eval_id: str) -> dict[str, Any]:
        """The raw ``GET new-eval/?eval_id=`` answer, as the official client returns it.

        Its ``result`` carries the status as both ``eval_status`` and ``evalStatus``, whichever
        the server sent (PROTOCOL.md B, "Status alias"), so code written from the hosted
        service's cookbook (``poll["result"].get("evalStatus") == "completed"``) works against
        any server.

        Raises:
            NotFoundError (BadRequestError from hosted servers): unknown id.
        """
        self._check_open()
        warn_if_in_event_loop("get_eval_result")
        body = self._transport.get_eval(eval_id).body
        if isinstance(body, dict):
            with_status_alias(body.get("result"))
        return body

    def get_result(self, eval_id: str, *, name: str = "") -> EvalResult:
        """The typed current state of one evaluation (``pending`` until finished).

        Raises:
            NotFoundError (BadRequestError from hosted servers): unknown id.
        """
        return self._fetch_one(eval_id, name)

    def wait_for_result(self, eval_id: str, timeout: float = DEFAULT_WAIT_TIMEOUT) -> EvalResult:
        """Poll one evaluation until finished (see :meth:`wait_all`)."""
        return self.wait_all([eval_id], timeout=timeout)[0]

    def wait_all(self, handles_or_ids: Waitable | Iterable[Waitable],
                 timeout: float = DEFAULT_WAIT_TIMEOUT) -> list[EvalResult]:
        """Poll until every evaluation is finished; bulk status when the server offers it.

        Args:
            handles_or_ids: what ``evaluate(..., is_async=True)`` or ``submit()`` returned (a
                :class:`BatchRunResult`, a :class:`Submission`, an :class:`EvalHandle`), an
                ``EvalResult`` with an ``eval_id``, an id, or an iterable mixing these
                (BatchRunResults and Submissions in it are opened). Handles are updated in
                place.
            timeout: seconds to wait at most (``DEFAULT_WAIT_TIMEOUT``).

        Returns:
            One result per evaluation, in the order given (items whose submission failed keep
            their error).

        Raises:
            TypeError: anything else (an int, a dict, None, bytes...), before any request.
            WaitTimeoutError: names the ids still unfinished; ``.results`` holds the rest.
        """
        self._check_open()
        entries = flatten_waitables(handles_or_ids)
        warn_if_in_event_loop("wait_all")
        known: dict[str, EvalResult] = {}
        ids: list[str] = []
        for entry in entries:
            result = _result_of(entry)
            if result is not None and result.eval_id:
                ids.append(result.eval_id)
                known[result.eval_id] = result
            elif isinstance(entry, str):
                ids.append(entry)
        names = {i: r.name for i, r in known.items()}
        try:
            fetched = self._poller.wait(ids, timeout=timeout, names=names, known=known)
        except FiEvalsError as exc:
            partial = getattr(exc, "results", None)
            if partial is not None:
                self._update(entries, dict(zip(ids, partial)))
            raise
        # A complete wait found a result for every entry: no None is left in the list.
        return cast("list[EvalResult]", self._update(entries, dict(zip(ids, fetched))))

    def refresh_all(self, handles: Sequence[EvalHandle]) -> None:
        """One poll round for the unfinished handles (bulk status when offered)."""
        todo = [h for h in handles if h.id and not h.is_done()]
        if todo:
            round_ = self._poller.fetch([h.id for h in todo if h.id],
                                        names={h.id: h.name for h in todo if h.id})
            for h in todo:
                if h.id in round_.results:
                    h.result = round_.results[h.id]

    # ------------------------------------------------------------------ internals

    def _fetch_one(self, eval_id: str, name: str = "") -> EvalResult:
        self._check_open()
        warn_if_in_event_loop("get_result")
        answer = self._transport.get_eval(eval_id)
        return EvalResult.from_payload(eval_id, answer.value, name)

    @staticmethod
    def _update(entries: Sequence[Any],
                by_id: Mapping[str, EvalResult]) -> list[EvalResult | None]:
        out: list[EvalResult | None] = []
        for entry in entries:
            result = _result_of(entry)
            key = result.eval_id if result is not None else entry
            new = by_id.get(key) if isinstance(key, str) else None
            if isinstance(entry, EvalHandle) and new is not None:
                entry.result = new
            out.append(new if new is not None else result)
        return out

    def _check_open(self) -> None:
        if self._closed:
            raise FiEvalsError("this Evaluator is closed")

    def _mark_worker(self) -> None:
        self._local.worker = True

    def _on_worker(self) -> bool:
        return getattr(self._local, "worker", False)

    def _parallel_map(self, fn: Callable[[T], R], values: Sequence[T]) -> list[R]:
        """``map`` on the pool, or inline when few values or already on a pool thread."""
        if len(values) <= 1 or self._on_worker() or self._closed:
            return [fn(v) for v in values]
        return list(self._executor.map(fn, values))


def _result_of(entry: Any) -> EvalResult | None:
    if isinstance(entry, EvalHandle):
        return entry.result
    if isinstance(entry, EvalResult):
        return entry
    return None

