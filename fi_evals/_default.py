"""The standalone :func:`evaluate`: one blocking evaluation on a process-wide default Evaluator.

Code written from the hosted service's cookbook starts with it::

    from fi_evals import evaluate

    result = evaluate("groundedness", output="The Eiffel Tower is in Paris, France.",
                      context="The Eiffel Tower is a wrought-iron lattice tower in Paris.",
                      model="turing_small")
    print(result.score, result.passed, result.reason)

The default :class:`~fi_evals.client.Evaluator` is built from the environment (``FI_API_KEY``,
``FI_SECRET_KEY``, ``FI_BASE_URL``; like ``Evaluator()``, the hosted API when ``FI_BASE_URL`` is
unset) on the first call, shared by every thread, and closed at interpreter exit. Later changes
to the environment are not seen: build an ``Evaluator`` for another server or other keys.
"""

from __future__ import annotations

import atexit
import math
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fi_evals._constants import BATCH_SCORE_PASS_THRESHOLD, OUTPUT_FAILED, OUTPUT_PASSED
from fi_evals._exceptions import EvalFailedError, FiEvalsError, InvalidInputError
from fi_evals._inputs import TemplateSpec, prepare_items, template_params
from fi_evals.protocol import EvalStatus, score_of

if TYPE_CHECKING:
    from fi_evals.client import Evaluator
    from fi_evals.results import EvalResult

__all__ = ["Verdict", "close_default_evaluator", "default_evaluator", "evaluate", "evaluate_on"]

_lock = threading.Lock()
_default: Evaluator | None = None
_atexit_registered = False

# Keyword arguments of the hosted SDK's evaluate() that this one does not take, and why.
_REFUSED = {
    "is_async": "evaluate() blocks until the result is ready; for fire-and-forget use "
                "Evaluator.evaluate(..., is_async=True) (or Evaluator.submit) and poll the eval_id",
    "engine": "fi_evals runs every template on the server: there is no local or LLM engine "
              "to choose",
    "augment": "fi_evals has no local-heuristic-plus-LLM mode",
    "fi_api_key": "the default Evaluator reads FI_API_KEY; for other keys use "
                  "Evaluator(fi_api_key=..., fi_secret_key=...).evaluate(...)",
    "fi_secret_key": "the default Evaluator reads FI_SECRET_KEY; for other keys use "
                     "Evaluator(fi_api_key=..., fi_secret_key=...).evaluate(...)",
    "fi_base_url": "the default Evaluator reads FI_BASE_URL; for another server use "
                   "Evaluator(fi_base_url=...).evaluate(...)",
}


def default_evaluator() -> Evaluator:
    """The process-wide Evaluator of :func:`evaluate`, built from the environment on first use.

    Thread-safe: concurrent first calls build one Evaluator. It is closed at interpreter exit
    (or by :func:`close_default_evaluator`; the next call then builds a fresh one).

    Raises:
        MissingCredentialsError: ``FI_API_KEY`` or ``FI_SECRET_KEY`` is not set.
    """
    global _default, _atexit_registered
    current = _default
    if current is not None:
        return current
    with _lock:
        if _default is None:
            from fi_evals.client import Evaluator

            _default = Evaluator()
            if not _atexit_registered:
                atexit.register(close_default_evaluator)
                _atexit_registered = True
        return _default


def close_default_evaluator() -> None:
    """Close the default Evaluator, if one was built (idempotent; runs at interpreter exit)."""
    global _default
    with _lock:
        current, _default = _default, None
    if current is not None:
        current.close()


@dataclass(frozen=True)
class Verdict:
    """What :func:`evaluate` returns: one finished evaluation, read as a score and a verdict.

    Attributes:
        name: the template name (also as ``eval_name``, the hosted SDK's spelling).
        output: the native output: ``"Passed"``/``"Failed"``, a float, or chosen labels.
        score: 1.0 / 0.0 for a "Passed" / "Failed" verdict, the score of score templates,
            None for choice templates.
        passed: ``score >= threshold``: the threshold given to ``evaluate()``, else 1.0 for
            Pass/Fail templates (the verdict) and ``BATCH_SCORE_PASS_THRESHOLD`` for scores.
            None for choice templates (no pass meaning).
        threshold: the threshold ``passed`` was decided by (None for choice templates).
        reason: the evaluator's explanation.
        eval_id: the server's id of this evaluation.
        output_type: ``Pass/Fail``, ``score``, ``choices`` or ``numeric``.
        runtime: the evaluator's time on the server, in milliseconds.
        latency_ms: the whole call as this process saw it, in milliseconds.
        model: the model asked for (None: the server's default judge).
        status: always ``"completed"``: an evaluation that could not run raises instead.
        metadata: ``{"eval_id", "output_type"}``, as the hosted SDK's result carries them.
    """

    name: str
    output: Any
    score: float | None
    passed: bool | None
    threshold: float | None
    reason: str
    eval_id: str | None
    output_type: str | None
    runtime: int | float | None
    latency_ms: float
    model: str | None = None
    status: str = EvalStatus.COMPLETED.value
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @property
    def eval_name(self) -> str:
        """The template name (the hosted SDK's attribute name)."""
        return self.name

    @property
    def error(self) -> None:
        """Always None (the hosted SDK's attribute; failures raise here)."""
        return None

    @classmethod
    def from_result(cls, result: EvalResult, *, threshold: float | None,
                    latency_ms: float, model: str | None = None) -> Verdict:
        """Read a completed :class:`~fi_evals.results.EvalResult` as a verdict."""
        score = score_of(result.output)
        if score is None:
            limit = None
        elif threshold is not None:
            limit = threshold
        else:
            limit = 1.0 if result.output in (OUTPUT_PASSED, OUTPUT_FAILED) \
                else BATCH_SCORE_PASS_THRESHOLD
        return cls(name=result.name, output=result.output, score=score,
                   passed=None if score is None or limit is None else score >= limit,
                   threshold=limit, reason=result.reason or "", eval_id=result.eval_id,
                   output_type=result.output_type, runtime=result.runtime,
                   latency_ms=latency_ms, model=model,
                   metadata={"eval_id": result.eval_id, "output_type": result.output_type})

    def __repr__(self) -> str:
        score = "None" if self.score is None else f"{self.score:g}"
        ident = f", eval_id={self.eval_id}" if self.eval_id else ""
        return (f"Verdict({self.name}: {self.output!r}, score={score}, passed={self.passed}"
                f"{ident})")

    __str__ = __repr__


def evaluate(template: Any, *, model: str | None = None, timeout: float | None = None,
             threshold: float | None = None, **inputs: Any) -> Verdict:
    """Run one evaluation and wait for it, on the default Evaluator (see the module docstring).

    Args:
        template: a template name (``"groundedness"``), or an object or class with
            ``eval_name``; one template per call.
        model: the judge model for model-judged templates. The hosted service's names
            (``turing_flash``, ``turing_small``, ``turing_large``) are served by a reference
            server's configured judge; None lets the server choose.
        timeout: seconds the call may take in all (the Evaluator's ``timeout`` by default).
        threshold: ``passed`` is ``score >= threshold`` (see :class:`Verdict` for defaults).
        **inputs: the template's input keys (``output=``, ``context=``...; ``context`` may be a
            list of chunks). Keywords naming a template parameter (``keyword=`` for
            ``contains``) and a ``config={...}`` mapping are sent as its parameters.

    Returns:
        A :class:`Verdict` with ``score``, ``passed``, ``reason``, ``output`` and ``eval_id``.

    Raises:
        TypeError: ``is_async`` or another hosted-SDK-only keyword (the message says what to
            use instead), a list of templates, or a threshold that is not a number.
        MissingCredentialsError: ``FI_API_KEY`` / ``FI_SECRET_KEY`` not set.
        UnknownTemplateError, InvalidInputError: before any evaluation request (also when the
            inputs hold more than one item).
        AuthenticationError, BadRequestError, APIConnectionError, APITimeoutError...: the
            request failed after its retries (see ``fi_evals._exceptions``).
        EvalFailedError: the server could not run the evaluation (e.g. its judge was
            unreachable); a "Failed" verdict is a result, never an error.
    """
    _refuse_hosted_only(template, inputs)  # before the default Evaluator is built
    _check_threshold(threshold)
    return evaluate_on(default_evaluator(), template, model=model, timeout=timeout,
                       threshold=threshold, **inputs)


def evaluate_on(ev: Evaluator, template: Any, *, model: str | None = None,
                timeout: float | None = None, threshold: float | None = None,
                **inputs: Any) -> Verdict:
    """:func:`evaluate` on a given Evaluator (the pytest plugin's ``assert_eval`` uses it)."""
    _refuse_hosted_only(template, inputs)
    limit = _check_threshold(threshold)
    spec = ev.resolve_template(template)
    params, item = _split_params(template, spec, inputs)
    if len(prepare_items(item, spec)) != 1:
        raise InvalidInputError("evaluate() scores one item, and these inputs hold several "
                                "(a list where the template reads one string); use "
                                "Evaluator.evaluate(...) or Evaluator.evaluate_batch(...)",
                                template=spec.name)
    started = time.perf_counter()
    batch = ev.evaluate(template, item, timeout=timeout, model_name=model, eval_config=params)
    latency_ms = (time.perf_counter() - started) * 1000
    result = batch.eval_results[0]
    if result is None or result.status != EvalStatus.COMPLETED:
        raise _failure(spec.name, result)
    return Verdict.from_result(result, threshold=limit, latency_ms=latency_ms, model=model)


def _refuse_hosted_only(template: Any, inputs: Mapping[str, Any]) -> None:
    for name, why in _REFUSED.items():
        if name in inputs:
            raise TypeError(f"evaluate() got an unexpected keyword argument {name!r}: {why}")
    if isinstance(template, (list, tuple)):
        raise TypeError("evaluate() runs one template; for several, call it once per template "
                        "or use Evaluator.evaluate([...], inputs)")


def _check_threshold(threshold: Any) -> float | None:
    if threshold is None:
        return None
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) \
            or not math.isfinite(threshold):
        raise TypeError(f"threshold must be a finite number, not {threshold!r}")
    return float(threshold)


def _split_params(template: Any, spec: TemplateSpec,
                  inputs: Mapping[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """(template parameters, input keys) from ``evaluate()``'s keywords.

    Input keys win: a keyword is a parameter only when the template has no input key of that
    name and its parameter schema lists it (or it is the ``config`` mapping).
    """
    keys = set(spec.key_names)
    props = (spec.params or {}).get("properties") or {}
    params = dict(template_params(template) or {})
    item: dict[str, Any] = {}
    for name, value in inputs.items():
        if name in keys:
            item[name] = value
        elif name == "config" and isinstance(value, Mapping):
            params.update(value)
        elif name in props:
            params[name] = value
        else:
            item[name] = value  # an unexpected key: prepare_items names it and the valid ones
    return (params or None), item


def _failure(name: str, result: EvalResult | None) -> FiEvalsError:
    if result is None:
        return FiEvalsError(f"the server answered no evaluation for template {name!r}")
    message = result.error.message if result.error is not None else result.reason
    if result.status == EvalStatus.FAILED:
        return EvalFailedError(result.eval_id or "(no id)", message)
    return FiEvalsError(f"template {name!r}: {message or result.status}")
