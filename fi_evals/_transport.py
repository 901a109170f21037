"""The HTTP layer: one ``requests.Session`` per client, one method per protocol call.

Every call goes through :meth:`Transport._call`, which owns the retry loop of PROTOCOL.md
section C and is the only place where ``requests`` exceptions and error answers become
fi_evals exceptions (``raise ... from exc``). What to retry and how long to wait is decided by
the frozen :class:`~fi_evals._retry.RetryPolicy`, never here.

Design notes:

- **Pool size.** The adapter's ``pool_maxsize`` equals the client's ``max_workers`` and
  ``pool_block=True``: a thread beyond that waits for a free connection instead of opening
  one that urllib3 would then throw away with a "connection pool is full" warning. The
  Evaluator runs its requests on its own ``max_workers`` threads, so in practice nobody waits.
- **urllib3's own retries are off** (``Retry(total=0, read=False)``, what requests does by
  default). If urllib3 retried connect errors, those retries would escape our deadline, our
  jitter and our retry counters; one policy decides everything instead.
- **Idempotency.** ``new_eval`` creates one ``Idempotency-Key`` per logical request and sends
  it, with the same serialized body, on every attempt. GETs and bulk status are reads, so
  every transient failure of theirs is retried, 500 included. Failures of a POST that may have
  run (read timeouts, resets, 500 and other 5xx but 503) are retried only when the server
  announced ``idempotency`` in its capabilities (the retry is then answered with the stored
  answer, ``Idempotent-Replayed``); otherwise the POST might run twice, so the error is raised
  instead. 429 and 503 promise that nothing ran and are retried for every request.
- **Deadlines** are absolute ``time.monotonic()`` values: each attempt's read timeout is cut
  to what is left, and no backoff sleeps past it.
- **Throttle listeners** see every 429/503 answer (the batch engine shrinks its concurrency on
  them). A listener that raises is logged and ignored.
- **Redirects are refused, and the keys never leave their origin.** requests follows redirects
  by default and strips only ``Authorization`` when the host changes, so ``X-Api-Key`` and
  ``X-Secret-Key`` went to wherever a 307 pointed. Stripping them there would not be enough:
  the other host could still answer in the server's name, and a 301/302/303 turns a POST into
  a GET. An API call has one right URL, so every call is sent with ``allow_redirects=False``
  and a 3xx raises :class:`~fi_evals._exceptions.RedirectError` naming the ``Location`` (and the
  base URL it implies). Second line of defence, for any code that does follow a redirect on
  this session: :class:`~fi_evals._session.KeySafeSession` drops both key headers whenever
  the redirect leaves the origin (scheme, host or port), https to http and http to https
  included.
- **Answers are checked, not trusted.** A 2xx answer that is not the protocol's envelope, or
  whose ``result`` does not parse into the wire models (not JSON, no ``result``, wrong types),
  raises :class:`~fi_evals._exceptions.ProtocolError` with the body: never a pydantic
  ``ValidationError``, ``KeyError`` or ``TypeError`` from deep inside.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import requests
from pydantic import TypeAdapter
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError
from urllib3.util.retry import Retry

from fi_evals import _otel
from fi_evals._answers import (
    a_list,
    flatten_evaluations,
    parse_result,
    protocol_error,
    read_new_eval_fast,
    redirect_error,
)
from fi_evals._constants import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_READ_TIMEOUT,
    HEADER_API_KEY,
    HEADER_IDEMPOTENCY_KEY,
    HEADER_IDEMPOTENT_REPLAYED,
    HEADER_PREFER,
    HEADER_REQUEST_ID,
    HEADER_RETRY_AFTER,
    HEADER_SECRET_KEY,
    PATH_BULK_STATUS,
    PATH_CAPABILITIES,
    PATH_GET_EVALS,
    PATH_NEW_EVAL,
    PREFER_RESULTS,
    THROTTLE_STATUS_CODES,
)
from fi_evals._exceptions import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    NotFoundError,
    ProtocolError,
    ServerError,
    error_from_response,
)
from fi_evals._retry import RetryPolicy, parse_retry_after
from fi_evals._session import KeySafeSession
from fi_evals._version import __version__
from fi_evals.protocol import (
    UNFINISHED_STATUSES,
    BulkStatusEntry,
    Capabilities,
    EvalItem,
    EvalResultPayload,
    TemplateInfo,
)
from fi_evals.results import EvalResult

__all__ = ["Answer", "ThrottleEvent", "Transport", "TransportStats"]

_EVAL_ITEMS: TypeAdapter[list[EvalItem]] = TypeAdapter(list[EvalItem])
"""A new-eval answer's evaluations, validated in one call (not one call per item)."""
_STATUS_ENTRIES: TypeAdapter[list[BulkStatusEntry]] = TypeAdapter(list[BulkStatusEntry])
"""A bulk-status answer's entries, likewise."""

log = logging.getLogger("fi_evals.transport")

T = TypeVar("T")


@dataclass(frozen=True)
class Answer(Generic[T]):
    """A successful answer: the parsed ``value`` plus what the headers said.

    Attributes:
        value: the envelope's ``result``, parsed into wire models.
        body: the whole decoded JSON answer (what ``get_eval_result`` returns raw); None for
            an answer read by a call's fast reader (:meth:`Transport.new_eval_results`).
        retry_after: the ``Retry-After`` hint in seconds (polls of unfinished work), or None.
        request_id: the ``X-Request-Id`` header, or None.
        replayed: True when the server replayed an earlier answer for the same idempotency key.
        attempts: how many attempts this call took (1 = no retry).
    """

    value: T
    body: Any
    retry_after: float | None = None
    request_id: str | None = None
    replayed: bool = False
    attempts: int = 1


@dataclass(frozen=True)
class ThrottleEvent:
    """A 429 or 503 answer, as seen by throttle listeners (before any retry sleep)."""

    status_code: int
    retry_after: float | None
    path: str


@dataclass(frozen=True)
class TransportStats:
    """Counters since the transport was built (a snapshot; the live counters keep moving).

    Attributes:
        requests: HTTP attempts sent (retries included).
        retries: attempts that were retries.
        throttled: 429/503 answers seen.
        failures: calls that ended in an exception after their retries.
        replayed: answers the server replayed for a reused idempotency key.
    """

    requests: int = 0
    retries: int = 0
    throttled: int = 0
    failures: int = 0
    replayed: int = 0


class _Counters:
    """Thread-safe counters behind :class:`TransportStats`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values = dict.fromkeys(TransportStats.__dataclass_fields__, 0)

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._values[name] += n

    def snapshot(self) -> TransportStats:
        with self._lock:
            return TransportStats(**self._values)


_UNSET: Any = object()


class Transport:
    """One HTTP client for one set of credentials and one base URL.

    Args:
        base_url: the server, e.g. ``http://127.0.0.1:8765`` (no trailing slash needed).
        api_key: sent as ``X-Api-Key``.
        secret_key: sent as ``X-Secret-Key``.
        pool_size: connections kept per host; the Evaluator passes its ``max_workers``.
        retry: the retry policy (default ``RetryPolicy()``).
        connect_timeout: seconds to connect (``DEFAULT_CONNECT_TIMEOUT``).
        read_timeout: seconds one answer may take (``DEFAULT_READ_TIMEOUT``), cut to the
            caller's deadline.
    """

    def __init__(self, base_url: str, api_key: str, secret_key: str, *, pool_size: int,
                 retry: RetryPolicy | None = None,
                 connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
                 read_timeout: float = DEFAULT_READ_TIMEOUT) -> None:
        self.base_url = base_url.rstrip("/")
        self.retry = retry if retry is not None else RetryPolicy()
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.pool_size = pool_size
        self._session = KeySafeSession()
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool_size, pool_block=True,
                              max_retries=Retry(total=0, read=False))
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._session.headers.update({
            HEADER_API_KEY: api_key,
            HEADER_SECRET_KEY: secret_key,
            "User-Agent": f"fi-evals/{__version__} python-requests/{requests.__version__}",
            "Accept": "application/json",
        })
        self._api_key_hint = f"{api_key[:4]}..." if len(api_key) > 8 else "***"
        self._counters = _Counters()
        self._listeners: list[Callable[[ThrottleEvent], None]] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._capabilities: Capabilities | None = _UNSET
        self._templates: list[TemplateInfo] | None = None

    def __repr__(self) -> str:
        state = "closed" if self._closed.is_set() else "open"
        return (f"<Transport {self.base_url} key={self._api_key_hint} "
                f"pool={self.pool_size} {state}>")

    # ------------------------------------------------------------------ life cycle

    def clone(self, *, pool_size: int | None = None, retry: RetryPolicy | None = None,
              read_timeout: float | None = None) -> Transport:
        """A new transport (its own Session) with the same server, keys and timeouts.

        For components that need their own connections: the score logger's worker, and a
        forked child process, which must never use connections inherited from its parent.
        """
        return Transport(self.base_url, self._session.headers[HEADER_API_KEY],
                         self._session.headers[HEADER_SECRET_KEY],
                         pool_size=self.pool_size if pool_size is None else pool_size,
                         retry=self.retry if retry is None else retry,
                         connect_timeout=self.connect_timeout,
                         read_timeout=self.read_timeout if read_timeout is None else read_timeout)

    def close(self) -> None:
        """Close the pooled connections; sleeping retries wake up and fail."""
        self._closed.set()
        self._session.close()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    @property
    def api_key(self) -> str:
        """The API key this transport sends (the score logger names its spool file after it)."""
        return str(self._session.headers[HEADER_API_KEY])

    def stats(self) -> TransportStats:
        """A snapshot of the request, retry and throttle counters."""
        return self._counters.snapshot()

    def add_throttle_listener(self, listener: Callable[[ThrottleEvent], None]) -> None:
        """Call ``listener`` (from the requesting thread) on every 429/503 answer."""
        with self._lock:
            self._listeners = [*self._listeners, listener]

    def remove_throttle_listener(self, listener: Callable[[ThrottleEvent], None]) -> None:
        with self._lock:
            self._listeners = [f for f in self._listeners if f is not listener]

    # ------------------------------------------------------------------ protocol calls

    def capabilities(self, *, deadline: float | None = None) -> Capabilities | None:
        """The server's extensions (section B), or None for a server without them (404).

        Fetched once and cached; errors other than 404 are raised and not cached.

        Raises:
            AuthenticationError: bad keys. APIConnectionError: server unreachable.
        """
        if self._capabilities is not _UNSET:
            return self._capabilities
        with self._lock:  # one fetch even when many threads ask at once
            if self._capabilities is not _UNSET:
                return self._capabilities
            try:
                answer = self._call("GET", PATH_CAPABILITIES, deadline=deadline,
                                    expected_statuses=frozenset({404}))
                caps: Capabilities | None = _parsed(answer, Capabilities.model_validate,
                                                    PATH_CAPABILITIES).value
            except NotFoundError:
                caps = None
            self._capabilities = caps
            log.debug("capabilities of %s: %s", self.base_url, caps)
            return caps

    def capabilities_or_none(self, *, deadline: float | None = None) -> Capabilities | None:
        """:meth:`capabilities`, but a server error (5xx) that outlasted the retries, or an
        answer that is not a capabilities object, reads as "no extensions" for now.

        Used where falling back to section A is safe (it is the conservative choice: small
        chunks, no ambiguous POST retries, per-id polls); the failure is not cached, so a
        later call asks again. Bad keys and an unreachable server still raise.
        """
        try:
            return self.capabilities(deadline=deadline)
        except (ServerError, ProtocolError) as exc:
            log.warning("could not read the capabilities of %s (%s); using section A only "
                        "for now", self.base_url, exc)
            return None

    def templates(self, *, refresh: bool = False,
                  deadline: float | None = None) -> list[TemplateInfo]:
        """The server's template list (``get-evals/``), cached after the first call.

        Entries this client cannot read are skipped with a warning.

        Raises:
            ProtocolError: the answer's ``result`` is not a list.
        """
        if self._templates is not None and not refresh:
            return self._templates
        answer = self._call("GET", PATH_GET_EVALS, deadline=deadline)
        entries = _parsed(answer, a_list, PATH_GET_EVALS).value
        parsed: list[TemplateInfo] = []
        for entry in entries:
            try:
                parsed.append(TemplateInfo.model_validate(entry))
            except ValueError as exc:
                log.warning("skipping unreadable template entry %r: %s",
                            entry.get("name") if isinstance(entry, dict) else entry, exc)
        self._templates = parsed
        return parsed

    def new_eval(self, body: Mapping[str, Any], *, idempotency_key: str | None = None,
                 deadline: float | None = None) -> Answer[list[EvalItem]]:
        """``POST new-eval/``: run (or, with ``is_async``, store) one item or a batch.

        Args:
            body: the request body (``NewEvalRequest`` fields), already encoded.
            idempotency_key: reuse a key (e.g. from a journal); a new UUID by default. The
                same key and body go out on every retry.
            deadline: absolute ``time.monotonic()`` time after which to give up.

        Returns:
            The evaluations in input order (async answers carry ``eval_id``s only).

        Raises:
            APIError subclasses, APIConnectionError, APITimeoutError (see the module docs);
            ProtocolError for an answer that is not a list of evaluations.
        """
        answer = self._post_new_eval(body, idempotency_key, deadline, None)
        return _parsed(answer, _eval_items, PATH_NEW_EVAL)

    def new_eval_results(self, body: Mapping[str, Any], *, idempotency_key: str | None = None,
                         deadline: float | None = None,
                         pending: bool = False) -> Answer[list[EvalResult]]:
        """:meth:`new_eval`, with one :class:`EvalResult` per evaluation
        (``EvalResult.from_item(item, pending=pending)``): the batch engine's call.

        The same request, retries and errors; the answer is read by
        :func:`~fi_evals._answers.read_new_eval_fast` when it has the usual shape (the
        results are then built from the validated fields without a second validation, and
        ``body`` is None), else exactly as :meth:`new_eval` reads it.
        """
        answer = self._post_new_eval(body, idempotency_key, deadline, read_new_eval_fast)
        if answer.body is None:  # read by the fast reader
            build = EvalResult.pending_from_wire if pending else EvalResult.from_wire
            return _with_value(answer, [build(item) for item in answer.value])
        items = _parsed(answer, _eval_items, PATH_NEW_EVAL)
        return _with_value(items, [EvalResult.from_item(item, pending=pending)
                                   for item in items.value])

    def new_eval_ids(self, body: Mapping[str, Any], *, idempotency_key: str | None = None,
                     deadline: float | None = None) -> Answer[list[str | None]]:
        """:meth:`new_eval` for an async submission: the eval id of each evaluation, in
        order (None where one carries none), read like :meth:`new_eval_results` reads the
        answer, without building a result per evaluation: the async batch's call."""
        answer = self._post_new_eval(body, idempotency_key, deadline, read_new_eval_fast)
        if answer.body is None:  # read by the fast reader
            return _with_value(answer, [item.get("eval_id") for item in answer.value])
        items = _parsed(answer, _eval_items, PATH_NEW_EVAL)
        return _with_value(items, [item.eval_id for item in items.value])

    def new_eval_submit(self, body: Mapping[str, Any], *, idempotency_key: str | None = None,
                        deadline: float | None = None) -> Answer[list[str | EvalResult | None]]:
        """:meth:`new_eval_ids`, asking for the results the server already has: the async
        batch's call.

        The request carries ``Prefer: return=representation`` (RFC 7240). A fi-evals server
        evaluates cheap templates at submit and then answers their items as a sync answer
        does; each such finished item comes back as its :class:`EvalResult`, every other one
        (queued work, servers that ignore the preference) as its eval id (None where it
        carries none). Each item is read on its own: an idempotent replay carries no
        ``Preference-Applied`` header, and the ids and results read the same either way.
        """
        answer = self._post_new_eval(body, idempotency_key, deadline, read_new_eval_fast,
                                     prefer_results=True)
        out: list[str | EvalResult | None] = []
        if answer.body is None:  # read by the fast reader
            for wire in answer.value:
                status = wire["eval_status"]
                out.append(EvalResult.from_wire(wire) if status is not None
                           and status not in UNFINISHED_STATUSES else wire["eval_id"])
            return _with_value(answer, out)
        items = _parsed(answer, _eval_items, PATH_NEW_EVAL)
        for item in items.value:
            status = item.eval_status
            out.append(EvalResult.from_item(item) if status is not None
                       and status not in UNFINISHED_STATUSES else item.eval_id)
        return _with_value(items, out)

    def _post_new_eval(self, body: Mapping[str, Any], idempotency_key: str | None,
                       deadline: float | None, fast: Callable[[bytes], Any] | None, *,
                       prefer_results: bool = False) -> Answer[Any]:
        caps = self.capabilities_or_none(deadline=deadline)
        key = idempotency_key or str(uuid.uuid4())
        headers = {HEADER_IDEMPOTENCY_KEY: key}
        if prefer_results:
            headers[HEADER_PREFER] = PREFER_RESULTS
        # The key goes out either way; only a server that announced it is trusted to honour it.
        return self._call("POST", PATH_NEW_EVAL, json_body=body, deadline=deadline,
                          headers=headers, idempotent=bool(caps and caps.idempotency),
                          fast=fast)

    def get_eval(self, eval_id: str, *,
                 deadline: float | None = None) -> Answer[EvalResultPayload]:
        """``GET new-eval/?eval_id=``: one evaluation's status and, when finished, its record.

        Raises:
            NotFoundError (or BadRequestError from hosted servers) for an unknown id.
            ProtocolError: the answer is not an evaluation's status.
        """
        answer = self._call("GET", PATH_NEW_EVAL, params={"eval_id": eval_id},
                            deadline=deadline)
        return _parsed(answer, EvalResultPayload.model_validate, PATH_NEW_EVAL)

    def bulk_status(self, eval_ids: Sequence[str], *,
                    deadline: float | None = None) -> Answer[list[BulkStatusEntry]]:
        """``POST new-eval/status/`` (section B): many statuses, in the order asked.

        The caller keeps ``len(eval_ids)`` within the capabilities' ``max_status_ids``. A read,
        so it is retried like a GET.

        Raises:
            ProtocolError: the answer is not a list of statuses.
        """
        return self.bulk_status_read(
            eval_ids, lambda result: _STATUS_ENTRIES.validate_python(a_list(result)),
            deadline=deadline)

    def bulk_status_read(self, eval_ids: Sequence[str], read: Callable[[Any], T], *,
                         deadline: float | None = None,
                         fast: Callable[[bytes], T | None] | None = None) -> Answer[T]:
        """:meth:`bulk_status` with the answer's ``result`` read by ``read`` (which raises
        ``ValueError`` or ``TypeError`` for a result that is not what the protocol says):
        the poller's call, which reads the usual entries without building models. ``fast``
        reads the raw body when it can (None: ``read`` reads the decoded result).

        Raises:
            ProtocolError: ``read`` refused the result.
        """
        answer = self._call("POST", PATH_BULK_STATUS, json_body={"eval_ids": list(eval_ids)},
                            deadline=deadline, fast=fast)
        if answer.body is None:  # read by ``fast``
            return answer
        return _parsed(answer, read, PATH_BULK_STATUS)

    # ------------------------------------------------------------------ the retry loop

    def _call(self, method: str, path: str, *, params: Mapping[str, str] | None = None,
              json_body: Any = None, headers: Mapping[str, str] | None = None,
              deadline: float | None = None, idempotent: bool = True,
              expected_statuses: frozenset[int] = frozenset(),
              fast: Callable[[bytes], Any] | None = None) -> Answer[Any]:
        """Send one logical request, retrying as the policy decides.

        ``idempotent`` says whether repeating the request cannot run it twice (reads, and a
        POST whose key the server honours): only then are 500s and failures that may have run
        retried. ``expected_statuses`` are answers the caller handles (not counted as failures).
        ``fast`` reads a 2xx answer's raw body into the call's value, or returns None to have
        it read the usual way (see :meth:`_parse`).
        """
        with _otel.span("fi_evals.request", client=True, **{
                "http.request.method": method, "url.path": path,
                "server.address": self.base_url}) as current:
            try:
                answer = self._call_with_retries(method, path, params=params,
                                                 json_body=json_body, headers=headers,
                                                 deadline=deadline, idempotent=idempotent,
                                                 expected_statuses=expected_statuses,
                                                 fast=fast)
            except (APIError, APIConnectionError) as error:
                _otel.set_attributes(current, **{
                    "http.response.status_code": getattr(error, "status_code", None),
                    "error.type": type(error).__name__})
                raise
            _otel.set_attributes(current, **{
                "fi_evals.attempts": answer.attempts,
                "fi_evals.retries": answer.attempts - 1,
                "fi_evals.replayed": answer.replayed,
                "fi_evals.request_id": answer.request_id})
            return answer

    def _call_with_retries(self, method: str, path: str, *,
                           params: Mapping[str, str] | None, json_body: Any,
                           headers: Mapping[str, str] | None, deadline: float | None,
                           idempotent: bool, expected_statuses: frozenset[int],
                           fast: Callable[[bytes], Any] | None = None) -> Answer[Any]:
        url = self.base_url + path
        data = None
        send_headers = dict(headers or {})
        _otel.inject(send_headers)  # traceparent: the server's spans join this request's trace
        if json_body is not None:
            # Serialized once: every retry sends the very same bytes with the same key.
            data = json.dumps(json_body, separators=(",", ":"), ensure_ascii=False).encode()
            send_headers["Content-Type"] = "application/json"
        attempt = 0
        while True:
            attempt += 1
            try:
                return self._attempt(method, url, path, params, data, send_headers,
                                     deadline, attempt, fast)
            except (APIError, APIConnectionError) as error:
                status = error.status_code if isinstance(error, APIError) else None
                decision = self.retry.decide(
                    attempt, status=status,
                    error=None if status is not None else error,
                    retry_after=getattr(error, "retry_after", None),
                    remaining=_remaining(deadline), idempotent=idempotent)
                if not decision.retry:
                    if status not in expected_statuses:
                        self._counters.add("failures")
                    log.debug("%s %s failed for good: %s (%s)", method, path, error,
                              decision.reason)
                    raise
                log.debug("%s %s attempt %d failed (%s); retrying in %.2fs", method, path,
                          attempt, error, decision.delay)
                if self._closed.wait(decision.delay):
                    raise APIConnectionError("the client was closed while waiting to retry",
                                             request_sent=False) from error
                self._counters.add("retries")

    def _attempt(self, method: str, url: str, path: str, params: Mapping[str, str] | None,
                 data: bytes | None, headers: Mapping[str, str], deadline: float | None,
                 attempt: int, fast: Callable[[bytes], Any] | None = None) -> Answer[Any]:
        if self._closed.is_set():
            raise APIConnectionError("the client is closed", request_sent=False)
        remaining = _remaining(deadline)
        if remaining is not None and remaining <= 0:
            raise APITimeoutError("the deadline passed before the request was sent",
                                  request_sent=False)
        read = self.read_timeout if remaining is None else max(0.001, min(self.read_timeout,
                                                                          remaining))
        self._counters.add("requests")
        try:
            response = self._session.request(method, url, params=params, data=data,
                                             headers=headers, allow_redirects=False,
                                             timeout=(self.connect_timeout, read))
        except requests.RequestException as exc:
            mapped = _connection_error(exc)
            if mapped is None:
                raise  # InvalidURL, MissingSchema...: a configuration mistake, never retried
            raise mapped from exc
        if response.status_code >= 400:
            error = error_from_response(response.status_code, response.text, response.headers)
            if response.status_code in THROTTLE_STATUS_CODES:
                self._counters.add("throttled")
                self._notify(ThrottleEvent(response.status_code, error.retry_after, path))
            raise error
        if 300 <= response.status_code < 400:
            raise redirect_error(method, path, response)
        return self._parse(response, attempt, fast)

    def _parse(self, response: requests.Response, attempt: int,
               fast: Callable[[bytes], Any] | None = None) -> Answer[Any]:
        """The envelope of a 2xx answer; its ``result`` is parsed by the protocol call.

        With ``fast``: its reading of the raw body when not None (``body`` is then None),
        else the usual reading.
        """
        if fast is not None:
            value = fast(response.content)
            if value is not None:
                return self._answer(response, attempt, value, None)
        try:
            body = response.json()
        except (ValueError, RecursionError) as exc:
            raise protocol_error(response, "a body that is not JSON", response.text) from exc
        if isinstance(body, dict) and body.get("status") is False:
            # Some servers put an error envelope in a 200 answer: an error all the same.
            raise error_from_response(400, response.text, response.headers)
        if not isinstance(body, dict) or "result" not in body:
            raise protocol_error(response, "a body without the envelope's \"result\"", body)
        return self._answer(response, attempt, body["result"], body)

    def _answer(self, response: requests.Response, attempt: int, value: Any,
                body: Any) -> Answer[Any]:
        replayed = response.headers.get(HEADER_IDEMPOTENT_REPLAYED, "").lower() == "true"
        if replayed:
            self._counters.add("replayed")
        return Answer(value=value, body=body,
                      retry_after=parse_retry_after(response.headers.get(HEADER_RETRY_AFTER)),
                      request_id=response.headers.get(HEADER_REQUEST_ID),
                      replayed=replayed, attempts=attempt)

    def _notify(self, event: ThrottleEvent) -> None:
        for listener in self._listeners:  # a copy-on-write list: no lock needed to read
            try:
                listener(event)
            except Exception:  # a listener must never break a request
                log.exception("throttle listener %r failed", listener)


# ---------------------------------------------------------------------- helpers


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else deadline - time.monotonic()


def _with_value(answer: Answer[Any], value: T) -> Answer[T]:
    return Answer(value=value, body=answer.body, retry_after=answer.retry_after,
                  request_id=answer.request_id, replayed=answer.replayed,
                  attempts=answer.attempts)


def _eval_items(result: Any) -> list[EvalItem]:
    """A new-eval answer's ``result`` -> its evaluations, validated in one call."""
    return _EVAL_ITEMS.validate_python(flatten_evaluations(result))


def _parsed(answer: Answer[Any], parse: Callable[[Any], T], path: str) -> Answer[T]:
    """``answer`` with its ``result`` parsed by ``parse`` (see :func:`parse_result`)."""
    return _with_value(answer, parse_result(answer.value, parse, path,
                                            request_id=answer.request_id, body=answer.body))


def _connection_error(exc: requests.RequestException) -> APIConnectionError | None:
    """Map a ``requests`` exception to ours; says whether the request may have been sent."""
    if isinstance(exc, requests.ConnectTimeout):
        return APITimeoutError(f"timed out connecting: {exc}", request_sent=False)
    if isinstance(exc, requests.ReadTimeout):
        return APITimeoutError(f"timed out waiting for the answer: {exc}", request_sent=True)
    if isinstance(exc, requests.ConnectionError):
        reason = exc.args[0] if exc.args else None
        if isinstance(reason, MaxRetryError) and isinstance(reason.reason, ConnectTimeoutError):
            # NewConnectionError is a ConnectTimeoutError: refused, DNS, unreachable.
            return APIConnectionError(f"could not connect: {reason.reason}", request_sent=False)
        return APIConnectionError(f"connection broken: {exc}", request_sent=True)
    if isinstance(exc, (requests.exceptions.ChunkedEncodingError,
                        requests.exceptions.ContentDecodingError)):
        return APIConnectionError(f"the answer was cut short: {exc}", request_sent=True)
    return None
