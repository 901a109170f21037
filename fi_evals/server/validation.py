"""Request validation: raw bytes -> a checked request, or an :class:`ApiError` 400 naming the field.

Validation is one pass over the body and happens before anything is stored. It is written by
hand rather than with the pydantic models of ``fi_evals.protocol`` (which document the same
shapes for OpenAPI) because a 400 must name the exact field (``inputs.text[3]``) and the batch
rule of PROTOCOL.md ("One item or a batch") depends on the template's declared input kinds.
"""

from __future__ import annotations

import difflib
import json
import re
import sys
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from jsonschema import Draft202012Validator

from fi_evals import _constants as C
from fi_evals.catalogue import CATALOGUE, InputKey, Template
from fi_evals.server.errors import ApiError
from fi_evals.server.evaluators import BaseEvaluator, EvaluationError, NotEvaluable, Registry
from fi_evals.server.limits import (
    DoorLimits,
    find_lone_surrogate,
    json_depth,
    param_problems,
    quadratic_input_problem,
)

__all__ = ["EvalRequest", "canonical_eval_id", "parse_json", "validate_bulk_status",
           "validate_new_eval"]

_MAX_DETAILS = 20  # field problems reported per answer; the rest would only be noise
_DEFAULT_LIMITS = DoorLimits()
# Only a \uD800-\uDFFF escape can put a surrogate in a str: the body itself is strict UTF-8.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")

# top-level key -> (accepted Python types, description); None is always accepted for optional keys
_OPTIONAL_FIELDS: dict[str, tuple[tuple[type, ...], str]] = {
    "model": ((str,), "a string or null"),
    "is_async": ((bool,), "true or false"),
    "config": ((dict,), "an object or null"),
    "custom_eval_name": ((str,), "a string or null"),
    "span_id": ((str,), "a string or null"),
    "trace_eval": ((bool,), "true, false or null"),
    "error_localizer": ((bool,), "true, false or null"),
}
_KNOWN_FIELDS = frozenset({"eval_name", "inputs", *_OPTIONAL_FIELDS})


@dataclass(frozen=True, slots=True)
class EvalRequest:
    """A validated ``new-eval/`` request: one dict of inputs per item, in input order."""

    template: Template
    evaluator: BaseEvaluator
    items: list[dict[str, Any]]
    params: dict[str, Any]
    model: str | None
    is_async: bool


def _type_name(value: Any) -> str:
    return "null" if value is None else {dict: "object", list: "list", str: "string",
                                         bool: "boolean"}.get(type(value), type(value).__name__)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON (numbers must be finite)")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"number {text} is out of range")
    return value


def _too_deep(max_depth: int) -> ApiError:
    return ApiError.invalid(f"request body nests arrays/objects more than {max_depth} levels "
                            f"deep (this server's max_json_depth)")


def parse_json(body: bytes, max_depth: int = C.DEFAULT_MAX_JSON_DEPTH) -> Any:
    """Strict JSON: UTF-8 only, no NaN/Infinity, not empty, at most ``max_depth`` levels of
    arrays/objects, no lone surrogate in any string.

    Raises:
        ApiError: a 400 saying what is wrong with the body.
    """
    if not body.strip():
        raise ApiError.invalid("request body is empty: expected a JSON object")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError.invalid(f"request body is not valid UTF-8 (byte {body[exc.start]:#04x} "
                               f"at offset {exc.start})") from None
    try:
        payload = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except json.JSONDecodeError as exc:
        raise ApiError.invalid(f"request body is not valid JSON: {exc.msg} at line {exc.lineno} "
                               f"column {exc.colno}") from None
    except ValueError as exc:  # from the two hooks above, or an integer of 4,300+ digits
        if "integer string conversion" in str(exc):
            limit = sys.get_int_max_str_digits()
            raise ApiError.invalid(f"request body holds an integer of more than {limit} "
                                   "digits") from None
        raise ApiError.invalid(f"request body is not valid JSON: {exc}") from None
    except RecursionError:  # ~1,000 levels: the C decoder's own limit, far past ours
        raise _too_deep(max_depth) from None
    if json_depth(payload, max_depth) > max_depth:
        raise _too_deep(max_depth)
    if "\\" in text and _SURROGATE_ESCAPE.search(text) is not None:
        where = find_lone_surrogate(payload)
        if where is not None:
            raise ApiError.invalid(f"{where} holds a lone surrogate (a \\ud800-\\udfff escape "
                                   "that is not half of a pair): it is not text and cannot be "
                                   "stored", where)
    return payload


def _problems_error(problems: dict[str, list[str]]) -> ApiError:
    fields = list(problems)[:_MAX_DETAILS]
    details = {f: problems[f] for f in fields}
    message = "; ".join(f"{f}: {', '.join(msgs)}" for f, msgs in details.items())
    return ApiError(400, message, details=details)


def _check_top_level(payload: Any) -> None:
    if not isinstance(payload, dict):
        raise ApiError.invalid(f"request body must be a JSON object, not {_type_name(payload)}")
    problems: dict[str, list[str]] = {}
    for key in payload:
        if key not in _KNOWN_FIELDS:
            problems[key] = [f"unknown key (allowed: {', '.join(sorted(_KNOWN_FIELDS))})"]
    name = payload.get("eval_name")
    if "eval_name" not in payload:
        problems["eval_name"] = ["is required"]
    elif not isinstance(name, str) or not name:
        problems["eval_name"] = [f"must be a non-empty string, not {_type_name(name)}"]
    if "inputs" not in payload:
        problems["inputs"] = ["is required"]
    elif not isinstance(payload["inputs"], dict):
        problems["inputs"] = [f"must be an object, not {_type_name(payload['inputs'])}"]
    for key, (types, what) in _OPTIONAL_FIELDS.items():
        value = payload.get(key)
        if value is not None and not isinstance(value, types):
            problems[key] = [f"must be {what}, not {_type_name(value)}"]
    config = payload.get("config")
    if isinstance(config, dict):
        params = config.get("params")
        if params is not None and not isinstance(params, dict):
            problems["config.params"] = [f"must be an object, not {_type_name(params)}"]
    if problems:
        raise _problems_error(problems)


def _find_template(name: str, registry: Registry) -> tuple[Template, BaseEvaluator]:
    template = CATALOGUE.get(name)
    if template is None:
        close = difflib.get_close_matches(name, list(CATALOGUE), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ApiError(400, f"unknown template {name!r}{hint} (GET /sdk/api/v1/get-evals/ lists "
                            f"all {len(CATALOGUE)})", details={"eval_name": ["unknown template"]})
    try:
        return template, registry.get(template)
    except NotEvaluable as exc:
        raise ApiError(400, str(exc), details={"eval_name": [str(exc)]}) from None


def _string_list(value: Any, field: str, problems: dict[str, list[str]]) -> list[str] | None:
    """One item's value of a list-kind key: a string (one chunk) or a list of strings."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        for i, chunk in enumerate(value):
            if not isinstance(chunk, str):
                problems[f"{field}[{i}]"] = [f"must be a string, not {_type_name(chunk)}"]
                return None
        return value
    problems[field] = [f"must be a string or a list of strings, not {_type_name(value)}"]
    return None


def _batch_size(template: Template, inputs: Mapping[str, Any]) -> int | None:
    """N for a batch of N items, None for one item (PROTOCOL.md "One item or a batch")."""
    kinds: dict[str, str] = {}
    lengths: dict[str, int] = {}
    for key in template.keys:
        if key.kind != "string" or key.name not in inputs:
            continue
        value = inputs[key.name]
        if isinstance(value, str):
            kinds[key.name] = "string"
        elif isinstance(value, list):
            kinds[key.name] = "list"
            lengths[key.name] = len(value)
        else:
            raise ApiError.invalid(f"inputs.{key.name} must be a string (one item) or a list "
                                   f"of strings (a batch), not {_type_name(value)}",
                                   f"inputs.{key.name}")
    if not lengths:
        return None
    if len(lengths) != len(kinds):
        strings = [k for k, v in kinds.items() if v == "string"]
        raise ApiError(400, f"inputs mix one item and a batch: {', '.join(strings)} hold a "
                            f"string but {', '.join(lengths)} hold a list; give every key one "
                            "item's value, or a list with one entry per item",
                       details={f"inputs.{k}": ["string where the other keys hold lists"]
                                for k in strings})
    if len(set(lengths.values())) > 1:
        shown = ", ".join(f"{k} has {n}" for k, n in lengths.items())
        raise ApiError(400, f"batch lists have unequal lengths: {shown}",
                       details={f"inputs.{k}": [f"{n} entries"] for k, n in lengths.items()})
    return next(iter(lengths.values()))


def _check_keys(template: Template, inputs: Mapping[str, Any]) -> None:
    unexpected = [k for k in inputs if template.key(k) is None]
    missing = [k for k in template.mandatory_keys if k not in inputs]
    if unexpected or missing:
        reads = ", ".join(template.required_keys)
        problems = {f"inputs.{k}": [f"unexpected input key ({template.name} reads: {reads})"]
                    for k in unexpected}
        problems.update({f"inputs.{k}": [f"missing required input key of {template.name}"]
                         for k in missing})
        raise _problems_error(problems)


def _items(template: Template, inputs: Mapping[str, Any], max_batch: int) -> list[dict[str, Any]]:
    """One inputs dict per item (list-kind values as lists of strings), in input order."""
    _check_keys(template, inputs)
    size = _batch_size(template, inputs)
    present = [k for k in template.keys if k.name in inputs]
    problems: dict[str, list[str]] = {}
    if size is None:
        item = {key.name: inputs[key.name] if key.kind == "string" else _string_list(
            inputs[key.name], f"inputs.{key.name}", problems) for key in present}
        if problems:
            raise _problems_error(problems)
        return [item]
    if size == 0:
        raise ApiError.invalid("empty batch: the input lists hold no item", "inputs")
    if size > max_batch:
        raise ApiError.invalid(f"batch of {size} items is larger than this server's "
                               f"max_batch_size {max_batch}", "inputs")
    return _rows([key.name for key in present],
                 [_column(key, inputs[key.name], size) for key in present])


def _rows(names: list[str], columns: list[list[Any]]) -> list[dict[str, Any]]:
    """One dict per item from one column per key (a dict display for the usual widths is
    several times faster than a comprehension per item: this runs once per evaluation)."""
    if len(names) == 1:
        (a,), (ca,) = names, columns
        return [{a: x} for x in ca]
    if len(names) == 2:
        (a, b), (ca, cb) = names, columns
        return [{a: x, b: y} for x, y in zip(ca, cb, strict=True)]
    if len(names) == 3:
        (a, b, c), (ca, cb, cc) = names, columns
        return [{a: x, b: y, c: z} for x, y, z in zip(ca, cb, cc, strict=True)]
    return [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)]


def _column(key: InputKey, values: Any, size: int) -> list[Any]:
    """One key's values across a batch of ``size`` items, checked."""
    field = f"inputs.{key.name}"
    if key.kind == "string":  # _batch_size saw a list of the right length
        for i, v in enumerate(values):
            if type(v) is not str:
                raise ApiError.invalid(f"{field}[{i}] must be a string, not {_type_name(v)}",
                                       f"{field}[{i}]")
        return values
    if not isinstance(values, list) or len(values) != size:
        got = f"{len(values)} entries" if isinstance(values, list) else _type_name(values)
        raise ApiError(400, f"{field} must be a list with one entry per item ({size}), "
                            f"not {got}", details={field: [f"expected {size} entries"]})
    problems: dict[str, list[str]] = {}
    column = [_string_list(v, f"{field}[{i}]", problems) for i, v in enumerate(values)]
    if problems:
        raise _problems_error(problems)
    return column


@cache
def _params_validator(template_name: str) -> Draft202012Validator:
    return Draft202012Validator(dict(CATALOGUE[template_name].params))


def _params(template: Template, config: Mapping[str, Any] | None) -> dict[str, Any]:
    params = dict((config or {}).get("params") or {})
    if not template.params:
        if params:
            raise ApiError(400, f"{template.name} takes no parameters (got "
                                f"{', '.join(sorted(params))})",
                           details={f"config.params.{k}": ["unknown parameter"] for k in params})
        return params
    problems: dict[str, list[str]] = {}
    for error in _params_validator(template.name).iter_errors(params):
        path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
        problems.setdefault(f"config.params{path}", []).append(error.message)
    if problems:
        raise _problems_error(problems)
    for name, schema in template.params.get("properties", {}).items():
        if name not in params and "default" in schema:
            params[name] = schema["default"]
    return params


def _check_limits(template: Template, inputs: Mapping[str, Any], params: dict[str, Any],
                  limits: DoorLimits, body_size: int | None) -> None:
    """The door limits of :mod:`fi_evals.server.limits` that depend on the template."""
    problems = param_problems(template.name, params, limits)
    if problems:
        raise _problems_error({field: [message] for field, message in problems.items()})
    if body_size is not None and body_size <= limits.max_quadratic_input_chars:
        return  # no string holds more characters than the body has bytes
    too_long = quadratic_input_problem(template, inputs, limits)
    if too_long is not None:
        raise ApiError.invalid(too_long[1], too_long[0])


def validate_new_eval(payload: Any, registry: Registry, max_batch_size: int,
                      limits: DoorLimits = _DEFAULT_LIMITS, *,
                      body_size: int | None = None) -> EvalRequest:
    """Check a parsed ``new-eval/`` body against the catalogue and the door limits.

    Args:
        payload: the parsed body.
        registry: the server's evaluators.
        max_batch_size: the server's batch limit.
        limits: the server's door limits.
        body_size: bytes of the raw body, when known (it lets small bodies skip a check).

    Raises:
        ApiError: a 400 naming the problem (and the field in ``details``).
    """
    _check_top_level(payload)
    template, evaluator = _find_template(payload["eval_name"], registry)
    items = _items(template, payload["inputs"], max_batch_size)
    params = _params(template, payload.get("config"))
    _check_limits(template, payload["inputs"], params, limits, body_size)
    try:
        evaluator.check_params(params)
    except EvaluationError as exc:
        raise ApiError(400, f"bad parameters for {template.name}: {exc}",
                       details={"config.params": [str(exc)]}) from None
    return EvalRequest(
        template=template,
        evaluator=evaluator,
        items=items,
        params=params,
        model=payload.get("model"),
        is_async=bool(payload.get("is_async")),
    )


_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def canonical_eval_id(value: Any, field: str = "eval_id") -> str:
    """The canonical (lower-case, hyphenated) form of an eval id.

    Raises:
        ApiError: a 400 when ``value`` is not a UUID string.
    """
    if value.__class__ is str and _CANONICAL_UUID.fullmatch(value):
        return value  # already what str(uuid.UUID(value)) gives (every id a client got)
    if isinstance(value, str) and len(value) <= 64:
        try:
            return str(uuid.UUID(value))
        except ValueError:
            pass
    shown = repr(value) if isinstance(value, str) else _type_name(value)
    raise ApiError.invalid(f"{field} must be a UUID string, not {shown[:80]}", field)


def validate_bulk_status(payload: Any, max_ids: int) -> list[str]:
    """The canonical ids of a bulk-status body, in the order asked.

    Raises:
        ApiError: a 400 naming the problem.
    """
    if not isinstance(payload, dict):
        raise ApiError.invalid(f"request body must be a JSON object, not {_type_name(payload)}")
    unknown = [k for k in payload if k != "eval_ids"]
    if unknown:
        raise ApiError(400, f"unknown key {unknown[0]!r} (allowed: eval_ids)",
                       details={k: ["unknown key"] for k in unknown})
    ids = payload.get("eval_ids")
    if not isinstance(ids, list):
        what = ("is required" if "eval_ids" not in payload
                else f"must be a list, not {_type_name(ids)}")
        raise ApiError.invalid(f"eval_ids {what}", "eval_ids")
    if len(ids) > max_ids:
        raise ApiError.invalid(f"{len(ids)} eval_ids asked, more than this server's "
                               f"max_status_ids {max_ids}", "eval_ids")
    return [canonical_eval_id(v, f"eval_ids[{i}]") for i, v in enumerate(ids)]
