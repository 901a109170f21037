"""fi_evals: run LLM evaluations at scale against an fi-evals or hosted evaluation server.

Quick start::

    from fi_evals import Evaluator

    with Evaluator() as ev:  # FI_API_KEY, FI_SECRET_KEY, FI_BASE_URL from the environment
        result = ev.evaluate("is_json", {"text": ['{"a": 1}', "not json"]})
        print(result.eval_results)

One evaluation with no Evaluator to manage (a process-wide default one, from the environment)::

    from fi_evals import evaluate

    print(evaluate("is_json", text='{"a": 1}').passed)  # True

The public names load lazily (PEP 562): ``import fi_evals.protocol`` in the server does not
pull in the client (requests, the transport), which keeps the layering of the package real.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from fi_evals._version import __version__

# public name -> module that defines it
_EXPORTS = {
    **dict.fromkeys([
        "APIConnectionError", "APIError", "APITimeoutError", "AuthenticationError",
        "BadRequestError", "ConflictError", "EvalFailedError", "FiEvalsError",
        "IdempotencyError", "InvalidInputError", "ItemError", "KeyMappingError",
        "MissingCredentialsError", "NotFoundError", "OverloadedError", "PermissionDeniedError",
        "ProtocolError", "RateLimitError", "RedirectError", "RequestTooLargeError",
        "ServerError", "TemplateUnavailableError",
        "UnknownTemplateError", "WaitTimeoutError",
    ], "fi_evals._exceptions"),
    "PollBackoff": "fi_evals._retry",
    "RetryPolicy": "fi_evals._retry",
    "TransportStats": "fi_evals._transport",
    "Evaluator": "fi_evals.client",
    **dict.fromkeys(["AsyncEvaluator", "AsyncScoreLogger"], "fi_evals.aio"),
    "evaluate": "fi_evals._default",
    "Verdict": "fi_evals._default",
    "EvalHandle": "fi_evals.handles",
    "Submission": "fi_evals.handles",
    "BatchRunResult": "fi_evals.results",
    "EvalResult": "fi_evals.results",
    **dict.fromkeys(["BatchItem", "BatchResult", "EvalSpec", "FunctionMetric", "metric"],
                    "fi_evals.batch"),
    **dict.fromkeys(["LoggedScore", "LoggerStats", "OverflowPolicy", "ScoreLogger"],
                    "fi_evals.logger"),
}

__all__ = sorted([*_EXPORTS, "__version__"])


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'fi_evals' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from fi_evals._default import Verdict, evaluate
    from fi_evals._exceptions import (
        APIConnectionError,
        APIError,
        APITimeoutError,
        AuthenticationError,
        BadRequestError,
        ConflictError,
        EvalFailedError,
        FiEvalsError,
        IdempotencyError,
        InvalidInputError,
        ItemError,
        KeyMappingError,
        MissingCredentialsError,
        NotFoundError,
        OverloadedError,
        PermissionDeniedError,
        ProtocolError,
        RateLimitError,
        RedirectError,
        RequestTooLargeError,
        ServerError,
        TemplateUnavailableError,
        UnknownTemplateError,
        WaitTimeoutError,
    )
    from fi_evals._retry import PollBackoff, RetryPolicy
    from fi_evals._transport import TransportStats
    from fi_evals.aio import AsyncEvaluator, AsyncScoreLogger
    from fi_evals.batch import BatchItem, BatchResult, EvalSpec
    from fi_evals.client import Evaluator
    from fi_evals.handles import EvalHandle, Submission
    from fi_evals.logger import LoggedScore, LoggerStats, OverflowPolicy, ScoreLogger
    from fi_evals.results import BatchRunResult, EvalResult
