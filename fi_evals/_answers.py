"""Reading a server's answers: what the transport accepts, and the errors for what it refuses.

A 2xx answer is trusted only once its ``result`` has parsed into the wire models of
``fi_evals.protocol``; anything else (not JSON, no envelope, wrong types inside) becomes a
:class:`~fi_evals._exceptions.ProtocolError` carrying the body, so that callers only ever see
``FiEvalsError`` subclasses, never a pydantic ``ValidationError`` or a ``TypeError`` from deep
inside. A 3xx answer becomes a :class:`~fi_evals._exceptions.RedirectError` naming where it
pointed and the base URL that implies.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NotRequired, TypeVar
from urllib.parse import urljoin, urlsplit

import requests
from pydantic import TypeAdapter
from typing_extensions import TypedDict  # pydantic needs this one before Python 3.12

from fi_evals._constants import HEADER_REQUEST_ID
from fi_evals._exceptions import ProtocolError, RedirectError

__all__ = ["SyncItemWire", "a_list", "flatten_evaluations", "parse_result", "protocol_error",
           "read_new_eval_fast", "redirect_error"]

T = TypeVar("T")

_DETAIL_CHARS = 500


def parse_result(result: Any, parse: Callable[[Any], T], path: str, *,
                 request_id: str | None = None, body: Any = None) -> T:
    """``parse(result)``; a result that does not parse raises :class:`ProtocolError`.

    Args:
        result: the envelope's ``result``.
        parse: builds the wire models; raises ``ValueError`` (pydantic's ``ValidationError``
            is one) or ``TypeError`` on a result of the wrong shape.
        path: the protocol path asked, for the message.
        request_id: the answer's ``X-Request-Id``.
        body: the whole decoded answer, kept on the error.
    """
    try:
        return parse(result)
    except (ValueError, TypeError) as exc:
        detail = str(exc).replace("\n", "; ")[:_DETAIL_CHARS]
        raise ProtocolError(f"the server's answer to {path} is not what the protocol says: "
                            f"{detail}", status_code=200, request_id=request_id,
                            body=body) from exc


def a_list(result: Any) -> list[Any]:
    """``result`` itself when it is a list; TypeError otherwise."""
    if not isinstance(result, list):
        raise TypeError(f"result is {type(result).__name__}, not a list")
    return result


def flatten_evaluations(result: Any) -> list[Any]:
    """``[{"evaluations": [...]}, ...]`` -> the evaluations, in order (as the official client).

    A block without ``evaluations`` is one evaluation itself. Raises TypeError for anything
    else: a block that is not an object, ``evaluations`` that is not a list.
    """
    blocks = result if isinstance(result, list) else [result]
    out: list[Any] = []
    for i, block in enumerate(blocks):
        if not isinstance(block, dict):
            raise TypeError(f"result[{i}] is {type(block).__name__}, not an object")
        if "evaluations" not in block:
            out.append(block)
            continue
        evaluations = block["evaluations"]
        if evaluations is None:
            continue
        if not isinstance(evaluations, list):
            raise TypeError(f"result[{i}].evaluations is {type(evaluations).__name__}, "
                            f"not a list")
        out.extend(evaluations)
    return out


class SyncItemWire(TypedDict):
    """One evaluation of a new-eval answer as a plain dict: the fields and types of
    :class:`~fi_evals.protocol.EvalItem` (``test_answers`` keeps them equal), absent ones
    left out (read them with ``.get``: EvalItem's defaults are all None)."""

    name: str
    output: NotRequired[Any]
    reason: NotRequired[str | None]
    runtime: NotRequired[int | float | None]
    output_type: NotRequired[str | None]
    eval_id: NotRequired[str | None]
    eval_status: NotRequired[str | None]
    error_message: NotRequired[str | None]
    cached: NotRequired[bool | None]


class _SyncBlockWire(TypedDict):
    evaluations: list[SyncItemWire]


class _NewEvalAnswerWire(TypedDict):
    status: NotRequired[Any]
    result: list[_SyncBlockWire]


_NEW_EVAL_ANSWER: TypeAdapter[_NewEvalAnswerWire] = TypeAdapter(_NewEvalAnswerWire)


def read_new_eval_fast(raw: bytes) -> list[SyncItemWire] | None:
    """A new-eval answer's evaluations, read from the raw body in one pydantic call (JSON
    parsing and validation together, no intermediate objects), when the answer has the usual
    shape: ``{"status": true, "result": [{"evaluations": [...]}, ...]}``.

    None for anything else (not UTF-8 JSON, another shape, ``"status": false``, a value of the
    wrong type): the caller then reads it the checked way (``Transport._parse`` and
    :func:`flatten_evaluations` with the ``EvalItem`` model), which accepts the same answers
    with the same values, and raises the precise :class:`ProtocolError` for the others. Unknown
    fields are ignored, as ``EvalItem`` ignores them. The batch engine's hot path: ~2x faster
    than decoding the JSON and validating the decoded objects.
    """
    try:
        envelope = _NEW_EVAL_ANSWER.validate_json(raw)
    except ValueError:
        return None
    if envelope.get("status") is False:
        return None
    blocks = envelope["result"]
    if len(blocks) == 1:
        return blocks[0]["evaluations"]
    return [item for block in blocks for item in block["evaluations"]]


def protocol_error(response: requests.Response, what: str, body: Any) -> ProtocolError:
    """The error for a 2xx answer whose body is not an envelope (``what`` says why)."""
    return ProtocolError(f"the server answered {response.status_code} with {what}: "
                         f"{response.text[:200]!r}", status_code=response.status_code,
                         request_id=response.headers.get(HEADER_REQUEST_ID), body=body)


def redirect_error(method: str, path: str, response: requests.Response) -> RedirectError:
    """The error for a 3xx answer: where it pointed, and the base URL that implies."""
    header = response.headers.get("Location")
    location = urljoin(response.url, header) if header else None
    suggested = None
    if location is not None:
        target = urlsplit(location)
        if target.path.endswith(path):
            suggested = f"{target.scheme}://{target.netloc}{target.path[:-len(path)]}"
    where = f" to {location}" if location else " without a Location"
    fix = (f"set fi_base_url (FI_BASE_URL) to {suggested!r}" if suggested
           else "check fi_base_url (FI_BASE_URL)")
    message = (f"the server answered {method} {path} with a {response.status_code} redirect"
               f"{where}; API calls never follow redirects (the keys would go along, and a "
               f"POST could become a GET): {fix}")
    return RedirectError(message, status_code=response.status_code,
                         request_id=response.headers.get(HEADER_REQUEST_ID),
                         body=response.text[:_DETAIL_CHARS] or None, location=location,
                         suggested_base_url=suggested)
