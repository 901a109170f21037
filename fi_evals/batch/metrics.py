"""Python functions as evals: ``evaluate_batch(..., evals=[my_metric])``, ``--metric MOD:FN``.

A function metric is called with one row (a mapping: the row's fields, with the ``task``'s
output fields over them, as the key mapping sees them) on the Evaluator's pool (an ``async
def`` one on the batch's event loop, like a task), and returns:

- a ``bool``: a Pass/Fail verdict (``"Passed"``/``"Failed"``);
- a number from 0 to 1: a score (``pass_threshold`` decides its verdict);
- ``(verdict_or_score, reason)``: the same with a reason string.

Anything else is a :class:`~fi_evals.batch.errors.MetricResultError` on that row; an exception
it raises is a :class:`~fi_evals.batch.errors.MetricError` on that row: neither stops the
batch. Its outcomes count in the stats and thresholds under its label (the function's name
unless :func:`metric` says otherwise), are journaled (a resumed run does not call it again on
rows it finished) and kept in the run store like any eval's.

Its output type is ``Pass/Fail`` when the function is annotated ``-> bool`` (or ``metric(...,
output_type="Pass/Fail")``), else ``score`` (booleans then score 1 or 0).
"""

from __future__ import annotations

import functools
import math
import numbers
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, overload

from fi_evals._loading import ImportTargetError, import_attr
from fi_evals.batch.errors import MetricResultError
from fi_evals.batch.mapping import task_fields
from fi_evals.results import EvalResult

__all__ = ["FunctionMetric", "MetricFn", "as_metric", "load_metric", "metric", "row_view"]

MetricFn = Callable[[Mapping[str, Any]], Any]
"""A function metric: one row in, a bool, a 0-1 score or ``(value, reason)`` out."""

_OUTPUT_TYPES = ("score", "Pass/Fail")
_PASSED, _FAILED = "Passed", "Failed"


def _reference(fn: Callable[..., Any]) -> str:
    """``module:qualname``: how the journal and the run store name the function."""
    target = fn.func if isinstance(fn, functools.partial) else fn
    name = getattr(target, "__qualname__", None) or type(target).__qualname__
    return f"{getattr(target, '__module__', None) or '?'}:{name}"


def _returns_bool(fn: Callable[..., Any]) -> bool:
    target = fn.func if isinstance(fn, functools.partial) else fn
    try:
        hints = typing.get_type_hints(target)
    except Exception:  # noqa: BLE001 - unresolvable annotations: no hint, default output type
        return False
    return hints.get("return") is bool


@dataclass(frozen=True, eq=False)
class FunctionMetric:
    """A Python function as an eval (see the module docs).

    Attributes:
        fn: the function, called with one row.
        name: the eval's name and default label (the function's ``__name__``).
        output_type: ``score`` or ``Pass/Fail``.
        pass_threshold: a score at or above it passes (``score`` metrics; None: 0.5).
        label: the column label (None: ``name``).
        reference: ``module:qualname`` (journal header and run store).
    """

    fn: MetricFn
    name: str
    output_type: str = "score"
    pass_threshold: float | None = None
    label: str | None = None
    reference: str = ""

    def __post_init__(self) -> None:
        if not callable(self.fn):
            raise TypeError(f"a function metric must be callable, not {type(self.fn).__name__}")
        if self.output_type not in _OUTPUT_TYPES:
            raise ValueError(f"metric {self.name!r}: output_type must be one of "
                             f"{', '.join(_OUTPUT_TYPES)}, not {self.output_type!r}")
        if not self.reference:
            object.__setattr__(self, "reference", _reference(self.fn))

    def __call__(self, row: Mapping[str, Any]) -> Any:
        return self.fn(row)

    def __repr__(self) -> str:
        return f"FunctionMetric({self.reference!r}, {self.output_type})"

    def result(self, value: Any, runtime_ms: float) -> EvalResult:
        """The row's :class:`EvalResult` for what the function returned.

        Raises:
            MetricResultError: ``value`` is not a bool, a number from 0 to 1, or a
                ``(value, reason)`` pair of those and a string.
        """
        output, reason = self._normalize(value)
        return EvalResult(name=self.name, output=output, reason=reason,
                          runtime=round(runtime_ms), output_type=self.output_type)

    def _normalize(self, value: Any) -> tuple[Any, str | None]:
        reason: str | None = None
        raw = value
        if isinstance(value, tuple):
            if len(value) != 2 or not (value[1] is None or isinstance(value[1], str)):
                raise self._bad(raw)
            value, reason = value
        if isinstance(value, bool):
            if self.output_type == "Pass/Fail":
                return (_PASSED if value else _FAILED), reason
            return float(value), reason
        if (isinstance(value, numbers.Real) and self.output_type == "score"
                and math.isfinite(float(value)) and 0.0 <= float(value) <= 1.0):
            return float(value), reason
        raise self._bad(raw)

    def _bad(self, value: Any) -> MetricResultError:
        wanted = ("a bool, or (bool, reason)" if self.output_type == "Pass/Fail" else
                  "a bool, a number from 0 to 1, or (value, reason) with a str reason")
        shown = repr(value)
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        return MetricResultError(f"metric {self.name!r} ({self.reference}) returned "
                                 f"{type(value).__name__} {shown}; a {self.output_type} "
                                 f"metric returns {wanted}")


@overload
def metric(fn: MetricFn, *, name: str | None = ..., label: str | None = ...,
           pass_threshold: float | None = ..., output_type: str | None = ...) -> FunctionMetric:
    ...


@overload
def metric(fn: None = ..., *, name: str | None = ..., label: str | None = ...,
           pass_threshold: float | None = ..., output_type: str | None = ...,
           ) -> Callable[[MetricFn], FunctionMetric]:
    ...


def metric(fn: MetricFn | None = None, *, name: str | None = None, label: str | None = None,
           pass_threshold: float | None = None, output_type: str | None = None,
           ) -> FunctionMetric | Callable[[MetricFn], FunctionMetric]:
    """Make a function an eval with settings; also a decorator (``@metric(pass_threshold=.8)``).

    A bare function in ``evals=[...]`` needs none of this: ``metric`` gives it a
    ``pass_threshold``, another name or label, or an explicit ``output_type``.

    Args:
        fn: the function (omitted when used as ``@metric(...)``).
        name: the eval's name (default: the function's ``__name__``).
        label: its column label in outputs, stats and thresholds (default: the name).
        pass_threshold: a score at or above it passes (default 0.5).
        output_type: ``"score"`` or ``"Pass/Fail"`` (default: ``Pass/Fail`` for a function
            annotated ``-> bool``, else ``score``).
    """
    from fi_evals.batch.specs import check_threshold

    threshold = check_threshold(pass_threshold, f"metric {name or fn!r}")

    def wrap(function: MetricFn) -> FunctionMetric:
        if isinstance(function, FunctionMetric):
            function = function.fn
        kind = output_type or ("Pass/Fail" if _returns_bool(function) else "score")
        title = name or getattr(function, "__name__", None) or type(function).__name__
        return FunctionMetric(function, title, kind, threshold, label)

    return wrap if fn is None else wrap(fn)


def as_metric(value: Any) -> FunctionMetric | None:
    """``value`` as a :class:`FunctionMetric` when it is one or a plain callable, else None."""
    if isinstance(value, FunctionMetric):
        return value
    if callable(value) and not isinstance(value, (str, Mapping, type)):
        return metric(value)
    return None


def load_metric(text: str) -> FunctionMetric:
    """A ``--metric`` value: ``[LABEL=]MODULE:FUNCTION[:pass_threshold=X]``.

    Raises:
        ImportTargetError: malformed, or the module or function cannot be imported.
        ValueError: a bad ``pass_threshold`` or an unknown setting.
    """
    label: str | None = None
    ref = text.strip()
    head = ref.partition(":")[0]
    if "=" in head:
        label, _, ref = ref.partition("=")
        label = label.strip() or None
    module, _, rest = ref.partition(":")
    attr, _, settings = rest.partition(":")
    threshold: float | None = None
    if settings:
        key, eq, value = settings.partition("=")
        if key.strip() != "pass_threshold" or not eq:
            raise ValueError(f"--metric {text!r}: after MODULE:FUNCTION only "
                             f":pass_threshold=X may follow, not {settings!r}")
        threshold = value  # type: ignore[assignment]  # checked by metric()
    value_ = import_attr(f"{module}:{attr}", flag="--metric")
    if not callable(value_):
        raise ImportTargetError(f"--metric {text!r}: {attr!r} is a {type(value_).__name__}, "
                                f"not a function")
    found = as_metric(value_)
    assert found is not None
    return metric(found.fn, name=found.name, label=label or found.label,
                  pass_threshold=threshold if settings else found.pass_threshold,
                  output_type=found.output_type)


def row_view(row: Mapping[str, Any], task_output: Any) -> dict[str, Any]:
    """What a function metric is called with: the row's fields, the task's over them."""
    return {**row, **task_fields(task_output)}
