"""What the endpoints do, free of HTTP framework details: bytes in, (status, bytes, headers) out.

The FastAPI routes in ``app.py`` only unwrap the request and call :class:`EvalService`; the
service talks to the store, the executor and the registry through their interfaces.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fi_evals import _constants as C
from fi_evals.catalogue import CATALOGUE, output_type_for
from fi_evals.protocol import FINISHED_STATUSES, STATUS_ALIAS, EvalStatus
from fi_evals.server.config import ServerConfig
from fi_evals.server.errors import ApiError, json_bytes
from fi_evals.server.evalids import MAX_BATCH_ITEMS, new_batch_ids, new_eval_ids
from fi_evals.server.evaluators import BaseEvaluator, Registry
from fi_evals.server.evaluators.base import from_cache
from fi_evals.server.evaluators.deterministic import DeterministicEvaluator
from fi_evals.server.executor import ItemResult, JobExecutor, evaluate_items
from fi_evals.server.isolation import SizeRoutedEvaluator, text_size
from fi_evals.server.jsonenc import compact_encoder, encode_string
from fi_evals.server.limits import DoorLimits
from fi_evals.server.metrics import ServerMetrics
from fi_evals.server.store import (
    IdempotencyAnswer,
    JobStore,
    NewJob,
    ResultBatch,
    StoredEval,
)
from fi_evals.server.validation import (
    EvalRequest,
    canonical_eval_id,
    parse_json,
    validate_bulk_status,
    validate_new_eval,
)

__all__ = ["EvalService", "ServiceAnswer", "new_eval_ids"]

_IDEMPOTENCY_POLL = 0.05  # seconds between looks at a duplicate's first request
_HOSTED_CONFIG_KEYS = ("required_keys", "optional_keys", "output", "eval_type_id")
_STATUS_READ_CHUNK = 100  # ids read from the store at once by bulk status (bounds its memory)
_STATUS_TEXT_CHUNK = 1000  # the same when the store hands out JSON text (no objects built)
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")


@dataclass(frozen=True, slots=True)
class ServiceAnswer:
    """An endpoint's answer: status code, JSON body bytes, extra headers."""

    status: int
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)


def canonical_hash(payload: Any) -> str:
    """SHA-256 of the payload's canonical JSON (sorted keys, compact): equal for two bodies
    that differ only in key order or spacing."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False,
                                     separators=(",", ":")).encode()).hexdigest()


_ANSWER_ENCODE = compact_encoder(allow_nan=False)  # as json_bytes: an answer is strict JSON
_INF = float("inf")
_float_repr = float.__repr__  # what the JSON encoder writes for a finite float


def sync_answer(name: str, output_type: str | None, eval_ids: Sequence[str],
                results: Sequence[ItemResult], compat: bool
                ) -> tuple[bytes, list[str | None], int]:
    """A sync ``new-eval/`` answer's bytes, each evaluation's output as JSON text (None for
    null; the store writes the same text), and how many failed.

    Byte for byte what ``json_bytes`` makes of the answer's dicts (``test_server_units``
    checks it), written in one pass without building them: this runs once per evaluation.
    ``eval_ids`` are the server's own (canonical UUID strings: nothing to escape).
    """
    enc, string = _ANSWER_ENCODE, encode_string
    head = '{"name":' + enc(name) + ',"output":'
    middle = ',"output_type":' + enc(output_type) + ',"eval_id":"'
    texts: dict[Any, str] = {}  # str outputs and statuses repeat ("Passed"): encoded once
    parts: list[str] = []
    outputs: list[str | None] = []
    failed = 0
    for eval_id, r in zip(eval_ids, results, strict=True):
        error = r.error_message
        value = r.output
        cls = value.__class__
        if value is None:
            output = None
        elif cls is str:
            output = texts.get(value) or texts.setdefault(value, string(value))
        elif cls is float and -_INF < value < _INF:  # finite (NaN fails both): its repr
            output = _float_repr(value)
        else:
            output = enc(value)
        outputs.append(output)
        reason = r.reason if error is None else error
        runtime = r.runtime
        entry = (f'{head}{output or "null"},"reason":'
                 f'{"null" if reason is None else string(reason) if reason.__class__ is str else enc(reason)}'  # noqa: E501
                 f',"runtime":{runtime if runtime.__class__ is int else enc(runtime)}'
                 f'{middle}{eval_id}"')
        if compat:
            parts.append(entry + "}")
        else:
            status = r.status
            # A judge outcome answered from the judge cache says so (additive; absent otherwise).
            cached = (',"cached":true' if r.reason and "cached" in r.reason
                      and from_cache(r.reason) else "")
            parts.append(f'{entry},"eval_status":'
                         f'{texts.get(status) or texts.setdefault(status, string(status))}'
                         f',"error_message":{"null" if error is None else string(error)}'
                         f'{cached}}}')
        if error is not None:
            failed += 1
    body = '{"status":true,"result":[{"evaluations":[' + ",".join(parts) + "]}]}"
    return body.encode(), outputs, failed


def async_answer(name: str, output_type: str | None, eval_ids: Sequence[str]) -> bytes:
    """An async ``new-eval/`` answer's bytes: ``{name, output_type, eval_id}`` per item."""
    head = '{"name":' + _ANSWER_ENCODE(name) + ',"output_type":' + _ANSWER_ENCODE(output_type) \
        + ',"eval_id":"'
    return ('{"status":true,"result":[{"evaluations":['
            + ",".join([f'{head}{i}"}}' for i in eval_ids]) + "]}]}").encode()


def _decoded_row(row: tuple[Any, ...]) -> StoredEval:
    """A :meth:`JobStore.get_many_text` row, decoded."""
    return StoredEval(eval_id=row[0], template=row[1], status=row[2], inputs=json.loads(row[3]),
                      model=row[4], output=None if row[5] is None else json.loads(row[5]),
                      reason=row[6], runtime=row[7], error_message=row[8])


def _ok(result: Any) -> bytes:
    return json_bytes({"status": True, "result": result})


def value_string(output: Any) -> str | None:
    """The record's ``value``: the output as a string ("Passed", "0.8", '["joy"]')."""
    if output is None or isinstance(output, str):
        return output
    if isinstance(output, (list, dict)):
        return json.dumps(output, ensure_ascii=False)
    return str(output)


class EvalService:
    """The endpoints' logic (PROTOCOL.md sections A and B)."""

    def __init__(self, config: ServerConfig, store: JobStore, executor: JobExecutor,
                 registry: Registry, metrics: ServerMetrics) -> None:
        self.config = config
        self.store = store
        self.executor = executor
        self.registry = registry
        self.metrics = metrics
        self.compat = config.compat
        self._templates_body = _ok(self._template_list())
        self._capabilities_body = _ok({
            "protocol": C.PROTOCOL_VERSION,
            "max_batch_size": config.max_batch_size,
            "max_status_ids": config.max_status_ids,
            "bulk_status": True,
            "idempotency": True,
            "native_output": True,
        })
        self._poll_headers = {} if self.compat else {
            C.HEADER_RETRY_AFTER: str(config.poll_retry_after)}
        self._admission = threading.Lock()
        self._flight_lock = threading.Lock()
        self._in_flight: dict[tuple[str, str], threading.Event] = {}
        self._limits = DoorLimits.of(config)
        self._max_status_answer = int(config.max_status_answer_mb * 1024 * 1024)
        # Bulk status from stored JSON text: each template's output type as JSON, where it
        # does not depend on the output (custom_judge's does: its records take the slow path).
        self._output_kinds = {
            name: _ANSWER_ENCODE(t.output_type) for name, t in CATALOGUE.items()
            if "output_type" not in t.params.get("properties", {})}
        # Async items evaluated in the submitting request (see _inline_async): only with an
        # executor in this process, and no simulated latency or fault injection to model.
        self._inline_async = (config.inline_cheap_async and executor.runs_here
                              and not config.sim_latency_ms and not config.faults)

    # ------------------------------------------------------------------ listing

    def _template_list(self) -> list[dict[str, Any]]:
        listed = []
        for template in CATALOGUE.values():
            info = template.to_info(
                evaluable=template.name in self.registry,
                unavailable_reason=self.registry.unavailable_reason(template),
                approximation=self.registry.approximation(template.name)).model_dump()
            if self.compat:  # a hosted-API-shaped listing: no fi-evals additions
                info["config"] = {k: info["config"][k] for k in _HOSTED_CONFIG_KEYS}
            listed.append(info)
        return listed

    def templates(self) -> ServiceAnswer:
        return ServiceAnswer(200, self._templates_body)

    def capabilities(self) -> ServiceAnswer:
        return ServiceAnswer(200, self._capabilities_body)

    # ------------------------------------------------------------------ new-eval

    def submit(self, body: bytes, scope: str, idempotency_key: str | None, *,
               results: bool = False) -> ServiceAnswer:
        """``POST new-eval/``: validate, then run (sync) or store (async).

        ``results``: the client sent ``Prefer: return=representation`` (RFC 7240): an async
        request whose items were evaluated here (cheap templates, see :meth:`_cheap`) is
        answered with their results, as a sync one is, instead of their ids alone; the
        answer then carries ``Preference-Applied: return=representation``. Queued items, and
        every answer in compat mode, are answered as usual.

        Raises:
            ApiError: 400 (malformed), 422 (idempotency key reused), 503 (queue full).
        """
        payload = parse_json(body, self.config.max_json_depth)
        request = validate_new_eval(payload, self.registry, self.config.max_batch_size,
                                    self._limits, body_size=len(body))
        results = results and not self.compat
        if idempotency_key is None or self.compat:
            return self._run(request, None, results=results)
        if self.store.local_idempotency:
            return self._submit_local(request, payload, body, scope, idempotency_key, results)
        replay = self._reserve(scope, idempotency_key, canonical_hash(payload))
        if replay is not None:
            return replay
        try:
            return self._run(request, (scope, idempotency_key), results=results)
        except BaseException:
            self.store.release_idempotency(scope, idempotency_key)
            raise

    def _submit_local(self, request: EvalRequest, payload: Any, body: bytes, scope: str,
                      key: str, results: bool = False) -> ServiceAnswer:
        """Idempotent submission on a store this process alone writes (``local_idempotency``):
        the key of a request in flight is held in memory (a duplicate waits for the first's
        answer), the record is read without a write transaction, and the new record goes in
        with the evaluations, in one transaction.

        The record's hash is ``raw/canonical``: a retry that resends the same bytes (what the
        SDK does) matches on the raw hash; only other bytes are compared canonically.
        """
        raw = hashlib.sha256(body).hexdigest()
        slot = (scope, key)
        deadline = time.monotonic() + self.config.idempotency_wait
        while True:
            with self._flight_lock:
                first = self._in_flight.get(slot)
                if first is None:
                    mine = self._in_flight[slot] = threading.Event()
                    break
            if not first.wait(max(0.0, deadline - time.monotonic())):
                raise ApiError(503, f"a request with {C.HEADER_IDEMPOTENCY_KEY} {key!r} is "
                                    "still in progress; retry later",
                               headers={C.HEADER_RETRY_AFTER: "1"})
        try:
            found = self.store.find_idempotency(scope, key, C.IDEMPOTENCY_TTL_SECONDS)
            if found is not None and found.answer is not None:
                stored_raw, _, stored_canonical = found.body_hash.rpartition("/")
                if stored_raw != raw and (stored_canonical or found.body_hash) \
                        != canonical_hash(payload):
                    raise ApiError(422, f"{C.HEADER_IDEMPOTENCY_KEY} {key!r} was already used "
                                        "with another request body; use a new key for a new "
                                        "request")
                self.metrics.idempotent_replays.inc()
                return ServiceAnswer(found.answer.status, found.answer.body,
                                     {C.HEADER_IDEMPOTENT_REPLAYED: "true"})
            return self._run(request, (scope, key), f"{raw}/{canonical_hash(payload)}",
                             results=results)
        finally:
            with self._flight_lock:
                del self._in_flight[slot]
            mine.set()

    def _reserve(self, scope: str, key: str, body_hash: str) -> ServiceAnswer | None:
        deadline = time.monotonic() + self.config.idempotency_wait
        while True:
            found = self.store.reserve_idempotency(scope, key, body_hash,
                                                   C.IDEMPOTENCY_TTL_SECONDS)
            if found.state == "reserved":
                return None
            if found.state == "replay" and found.answer is not None:
                self.metrics.idempotent_replays.inc()
                return ServiceAnswer(found.answer.status, found.answer.body,
                              {C.HEADER_IDEMPOTENT_REPLAYED: "true"})
            if found.state == "mismatch":
                raise ApiError(422, f"{C.HEADER_IDEMPOTENCY_KEY} {key!r} was already used with "
                                    "another request body; use a new key for a new request")
            if time.monotonic() >= deadline:  # the first request is still running
                raise ApiError(503, f"a request with {C.HEADER_IDEMPOTENCY_KEY} {key!r} is "
                                    "still in progress; retry later",
                               headers={C.HEADER_RETRY_AFTER: "1"})
            time.sleep(_IDEMPOTENCY_POLL)

    def _run(self, request: EvalRequest, idempotency: tuple[str, str] | None,
             body_hash: str | None = None, *, results: bool = False) -> ServiceAnswer:
        """Evaluate (sync) or queue (async); ``body_hash``: the record is written whole with
        the evaluations (``local_idempotency``), else the reserved one gets its answer;
        ``results``: see :meth:`submit`."""
        evaluator = request.evaluator
        if request.is_async:
            inline = self._cheap(request)
            if inline is None:
                return self._queue(request, new_eval_ids(len(request.items)), idempotency,
                                   body_hash)
            evaluator = inline
        # The results are stored as one batch: each eval id names the batch and its index
        # (cheap async items evaluated here are stored the same way).
        key: str | None = None
        if len(request.items) <= MAX_BATCH_ITEMS:
            key, ids = new_batch_ids(len(request.items))
        else:
            ids = new_eval_ids(len(request.items))
        template = request.template
        name, output_type = template.name, output_type_for(template, request.params)
        done = evaluate_items(evaluator, request.items, request.params,
                              request.model, self.config.sim_latency_ms, eval_ids=ids,
                              is_async=request.is_async)
        outputs: list[str | None] | None
        headers: dict[str, str] = {}
        if request.is_async and not results:
            # Evaluated inline: the async answer, the items stored finished.
            body, outputs = async_answer(name, output_type, ids), None  # the store encodes
            failed = sum(1 for r in done if r.error_message is not None)
        else:  # sync, or async asking for the results it already has (Prefer, see submit)
            body, outputs, failed = sync_answer(name, output_type, ids, done, self.compat)
            if request.is_async:
                headers[C.HEADER_PREFERENCE_APPLIED] = C.PREFER_RESULTS
        answer = ServiceAnswer(200, body, headers)
        jobs = ResultBatch(name, request.params, request.model, ids, request.items, done,
                           outputs, batch_key=key)
        if body_hash is None:
            self.store.insert(jobs, self._stored(idempotency, answer))
        else:
            self.store.insert(jobs, self._stored(idempotency, answer),  # type: ignore[call-arg]
                              body_hash=body_hash)
        # Counted once stored: an evaluation whose result was lost never happened.
        self.metrics.count_evaluations(name, len(done) - failed, failed)
        return answer

    def _cheap(self, request: EvalRequest) -> BaseEvaluator | None:
        """The evaluator that runs an async request's items in the request itself, or None
        (they are queued): built-in deterministic evaluators (microseconds an item, no judge,
        no model, not isolated; a size-routed one, as its in-process evaluator, only when
        every item is small enough to run in-process).

        Writing such an item pending, claiming it and writing its result costs many times
        its evaluation; stored finished at once (as a sync item, one write), it reads
        ``completed`` at the first poll and the answer is the async one (PROTOCOL.md A).
        Judges, offline models, isolated and custom evaluators stay on the queue.
        """
        if not self._inline_async:
            return None
        evaluator = request.evaluator
        if evaluator.__class__ is DeterministicEvaluator:
            return evaluator if evaluator.isolation is None else None
        if evaluator.__class__ is SizeRoutedEvaluator \
                and evaluator.inner.__class__ is DeterministicEvaluator:
            limit = evaluator.inline_chars
            small = all(text_size(item) <= limit for item in request.items)
            return evaluator.inner if small else None  # what it runs small items with
        return None

    def _queue(self, request: EvalRequest, ids: list[str],
               idempotency: tuple[str, str] | None, body_hash: str | None) -> ServiceAnswer:
        name = request.template.name
        output_type = output_type_for(request.template, request.params)
        jobs = [NewJob(eval_id=i, template=name, inputs=item, params=request.params,
                       model=request.model)
                for i, item in zip(ids, request.items, strict=True)]
        answer = ServiceAnswer(200, async_answer(name, output_type, ids))
        with self._admission:  # check and insert together, or concurrent submits overshoot
            depth = self.store.queue_depth()
            if depth + len(ids) > self.config.max_queue:
                raise ApiError(503, f"the evaluation queue is full ({depth} queued, limit "
                                    f"{self.config.max_queue}); retry later",
                               headers={C.HEADER_RETRY_AFTER:
                                        str(self.config.overload_retry_after)})
            if body_hash is None:
                self.store.insert(jobs, self._stored(idempotency, answer))
            else:
                self.store.insert(jobs, self._stored(idempotency, answer),  # type: ignore[call-arg]
                                  body_hash=body_hash)
        self.executor.notify()
        return answer

    @staticmethod
    def _stored(idempotency: tuple[str, str] | None,
                answer: ServiceAnswer) -> tuple[str, str, IdempotencyAnswer] | None:
        return (*idempotency, IdempotencyAnswer(answer.status, answer.body)) if idempotency \
            else None

    # ------------------------------------------------------------------ reading results

    def _record(self, ev: StoredEval) -> dict[str, Any]:
        template = CATALOGUE.get(ev.template)
        record = {
            "eval_id": ev.eval_id,
            "name": ev.template,
            "input_data": ev.inputs,
            "output_type": output_type_for(template, None, ev.output) if template else None,
            "value": value_string(ev.output),
            "reason": ev.reason,
            "runtime": ev.runtime,
            "model": ev.model,
            "error_message": ev.error_message,
        }
        if not self.compat:
            record["output"] = ev.output
            if from_cache(ev.reason):
                record["cached"] = True
        return record

    def _payload(self, ev: StoredEval) -> dict[str, Any]:
        # evalStatus repeats eval_status (PROTOCOL.md B, "Status alias"), in --compat too: the
        # hosted service sends it, and its published cookbook reads it.
        if ev.status in FINISHED_STATUSES:
            return {"eval_status": ev.status, STATUS_ALIAS: ev.status,
                    "result": self._record(ev), "error_message": ev.error_message}
        return {"eval_status": ev.status, STATUS_ALIAS: ev.status,
                "result": C.PROCESSING_MESSAGE, "error_message": None}

    def get_one(self, eval_id: Sequence[str]) -> ServiceAnswer:
        """``GET new-eval/?eval_id=``.

        Raises:
            ApiError: 400 (missing or non-UUID id), 404 (unknown id).
        """
        if not eval_id:
            raise ApiError.invalid("query parameter eval_id is required", "eval_id")
        if len(eval_id) > 1:
            raise ApiError.invalid("give one eval_id per request (POST new-eval/status/ reads "
                                   "many)", "eval_id")
        canonical = canonical_eval_id(eval_id[0])
        found = self.store.get_many([canonical]).get(canonical)
        if found is None:
            raise ApiError(404, f"no evaluation with eval_id {canonical}")
        headers = {} if found.status in FINISHED_STATUSES else self._poll_headers
        return ServiceAnswer(200, _ok(self._payload(found)), headers)

    def bulk_status(self, body: bytes) -> ServiceAnswer:
        """``POST new-eval/status/`` (section B): one entry per id asked, in the order asked.

        A repeated id is read and serialised once (its later entries share the bytes). The
        answer stops growing past ``max_status_answer_mb`` (at least one entry is always
        answered): the ids left out are simply absent, and a client asks for them again, as it
        does for any id a server leaves out.

        Raises:
            ApiError: 400 (malformed body, too many or non-UUID ids).
        """
        asked = validate_bulk_status(parse_json(body, self.config.max_json_depth),
                                     self.config.max_status_ids)
        parts: list[bytes] = []
        size = 0
        unfinished = False
        for part, finished in self._status_parts(asked):
            if parts and size + len(part) > self._max_status_answer:
                unfinished = True  # ids left out: the poll hint tells the client to ask again
                break
            parts.append(part)
            size += len(part) + 1
            unfinished = unfinished or not finished
        answer = b'{"status":true,"result":[' + b",".join(parts) + b"]}"
        return ServiceAnswer(200, answer, self._poll_headers if unfinished else {})

    def _status_parts(self, ids: list[str]) -> Iterator[tuple[bytes, bool]]:
        """Each asked id's serialised entry and whether it is finished. The store is read in
        chunks, each distinct id once; a stopped iteration reads no further.

        From a store that hands out its JSON text (:meth:`JobStore.get_many_text`), an entry
        is written around the stored text (:meth:`_text_entry`), byte for byte what encoding
        the decoded record gives; records it does not cover are decoded and encoded."""
        done: dict[str, tuple[bytes, bool]] = {}
        texts = True
        start = 0
        while start < len(ids):
            chunk = ids[start:start + (_STATUS_TEXT_CHUNK if texts else _STATUS_READ_CHUNK)]
            start += len(chunk)
            new = list(dict.fromkeys(i for i in chunk if i not in done))
            rows = (self.store.get_many_text(new) if new else {}) if texts else None
            if rows is None:
                texts = False
                found = self.store.get_many(new) if new else {}
                for eval_id in new:
                    done[eval_id] = self._entry_bytes(eval_id, found.get(eval_id))
            else:
                text_entry = self._text_entry
                # Ids without a text row may still be stored another way: get_many knows.
                missing = [i for i in new if i not in rows]
                found = self.store.get_many(missing) if missing else {}
                for eval_id in new:
                    row = rows.get(eval_id)
                    part = None if row is None else text_entry(eval_id, row)
                    if part is None:  # a record the text path leaves, or an unknown id
                        part = self._entry_bytes(
                            eval_id, found.get(eval_id) if row is None else _decoded_row(row))
                    done[eval_id] = part
            for eval_id in chunk:
                yield done[eval_id]

    def _entry_bytes(self, eval_id: str, ev: StoredEval | None) -> tuple[bytes, bool]:
        """``json_bytes`` of the bulk-status entry of ``ev`` and whether it is finished,
        written without building the entry's dicts (the same encoder, the same bytes)."""
        if ev is None or ev.status not in FINISHED_STATUSES:
            entry, finished = self._status_entry(eval_id, ev)
            return json_bytes(entry), finished
        enc, string = _ANSWER_ENCODE, encode_string
        output, reason, error, model = ev.output, ev.reason, ev.error_message, ev.model
        kind = self._output_kinds.get(ev.template)
        if kind is None:
            template = CATALOGUE.get(ev.template)
            kind = enc(output_type_for(template, None, output) if template else None)
        if output.__class__ is str:  # the usual outputs, written as the encoder writes them
            value = string(output)
        elif output is None:
            value = "null"
        elif (output.__class__ is float and math.isfinite(output)) or output.__class__ is int:
            value = f'"{output!r}"'  # the encoder writes a number as repr() does
        else:
            value = enc(value_string(output))
        return self._finished_entry(
            enc(eval_id), ev.eval_id, ev.template, ev.status, enc(ev.inputs), kind, value,
            reason, enc(ev.runtime), model, error,
            value if output.__class__ is str else enc(output)), True

    def _text_entry(self, eval_id: str, row: tuple[Any, ...]) -> tuple[bytes, bool] | None:
        """The bulk-status entry of a stored row (``get_many_text``) written around its JSON
        text, and whether it is finished; None when the row needs decoding (an output type
        read from the output, an output that is not a string, number or null)."""
        _, template, status, inputs, model, output, reason, runtime, error = row
        string = encode_string
        state = string(status)
        if status not in FINISHED_STATUSES:
            return (f'{{"eval_status":{state},"evalStatus":{state},"result":'
                    f'{string(C.PROCESSING_MESSAGE)},"error_message":null,'
                    f'"eval_id":{string(eval_id)}}}'.encode(), False)
        kind = self._output_kinds.get(template)
        if kind is None or runtime.__class__ is not int:
            return None
        if output is None:
            value = "null"
        elif output[0] == '"':
            value = output  # a string output is its own value
        elif _JSON_NUMBER.fullmatch(output):
            value = f'"{output}"'  # the encoder writes a number as str() does
        else:
            return None
        return self._finished_entry(string(eval_id), row[0], template, status, inputs, kind,
                                    value, reason, str(runtime), model, error,
                                    output or "null"), True

    def _finished_entry(self, entry_id: str, eval_id: str, template: str, status: str,
                        inputs: str, kind: str, value: str, reason: str | None, runtime: str,
                        model: str | None, error: str | None, output: str) -> bytes:
        """A finished bulk-status entry's bytes from its parts (``entry_id``, ``inputs``,
        ``kind``, ``value``, ``runtime`` and ``output`` already JSON text): what
        ``json_bytes`` writes for the entry (``tests/server/test_status_text.py``)."""
        string = encode_string
        state = string(status)
        error_text = "null" if error is None else string(error)
        record = (f'{{"eval_id":{string(eval_id)},"name":{string(template)},'
                  f'"input_data":{inputs},"output_type":{kind},"value":{value},"reason":'
                  f'{"null" if reason is None else string(reason)},"runtime":{runtime},'
                  f'"model":{"null" if model is None else string(model)},'
                  f'"error_message":{error_text}')
        if not self.compat:
            cached = (',"cached":true' if reason and "cached" in reason and from_cache(reason)
                      else "")
            record = f'{record},"output":{output}{cached}'
        return (f'{{"eval_status":{state},"evalStatus":{state},"result":{record}}},'
                f'"error_message":{error_text},"eval_id":{entry_id}}}'.encode())

    def _status_entry(self, eval_id: str, ev: StoredEval | None) -> tuple[dict[str, Any], bool]:
        """One bulk-status entry and whether it is finished (an unknown id is)."""
        if ev is None:
            entry = {"eval_status": EvalStatus.NOT_FOUND, STATUS_ALIAS: EvalStatus.NOT_FOUND,
                     "result": None,
                     "error_message": f"no evaluation with eval_id {eval_id}"}
            finished = True
        else:
            entry = self._payload(ev)
            finished = ev.status in FINISHED_STATUSES
        entry["eval_id"] = eval_id
        return entry, finished

    def __repr__(self) -> str:
        return f"<EvalService compat={self.compat} store={self.store!r}>"
