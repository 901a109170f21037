"""Eval specs: which template to run on every item, with which parameters, under which label.

A spec is written three ways, all ending as an :class:`EvalSpec`:

- a string ``[LABEL=]NAME[:param=value,...]``, as on the command line:
  ``contains_any:keywords=["refund","return"]``, ``short=length_less_than:max_length=400``.
  A value is read as JSON when it parses (numbers, booleans, lists, objects) and as a plain
  string otherwise; commas inside brackets, braces or quotes do not split parameters.
  Two names are not template parameters but the spec's own settings: ``pass_threshold``
  (``fuzzy_match:pass_threshold=0.8``: a number from 0 to 1) and ``model`` (the judge model,
  ``answer_relevance:model=gpt-4o-mini``). A template parameter with one of these names can
  still be given in the mapping form's ``"params"``;
- a mapping ``{"eval": NAME, "params": {...}, "label": ..., "map": {...}, "pass_threshold": ...}``
  (the ``--config`` file's form);
- an :class:`EvalSpec`;
- a Python function (or :func:`fi_evals.batch.metrics.metric` around one): a function metric,
  run on the client's pool (see :mod:`fi_evals.batch.metrics`).

The label names the spec's column in outputs, stats and thresholds. It defaults to the template
name, and to ``NAME:params`` when the same template runs twice with different parameters.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fi_evals._constants import BATCH_SCORE_PASS_THRESHOLD
from fi_evals._inputs import TemplateSpec, check_params, resolve_template
from fi_evals.batch.metrics import FunctionMetric, MetricFn, as_metric
from fi_evals.protocol import TemplateInfo

__all__ = ["EvalSpec", "SpecLike", "parse_eval_spec", "resolve_specs"]

_SPEC_KEYS = frozenset({"eval", "name", "params", "label", "map", "key_mapping", "model",
                        "pass_threshold"})
_SETTINGS = ("pass_threshold", "model")  # NAME:k=v keys that are spec settings, not params


def check_threshold(value: Any, where: str) -> float | None:
    """``pass_threshold`` as a float in [0, 1] (None stays None); ValueError otherwise."""
    if value is None:
        return None
    number = value
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            number = None
    if (isinstance(number, bool) or not isinstance(number, (int, float))
            or not 0 <= number <= 1):  # NaN fails the comparison too
        raise ValueError(f"{where}: pass_threshold must be a number from 0 to 1 "
                         f"(a score at or above it passes), not {value!r}")
    return float(number)


def _check_model(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{where}: model must be a model name (a non-empty string), "
                         f"not {value!r}")
    return value.strip()


@dataclass(frozen=True, eq=False)
class EvalSpec:
    """One template to run on every item.

    Attributes:
        name: the template name (see ``fi-evals templates``).
        params: the template's parameters (``config.params`` on the wire).
        label: the column name in outputs, stats and thresholds; None for the default.
        key_mapping: template key -> item or task field, for this spec only (overrides the
            batch's ``key_mapping``).
        model: judge model for model-based templates.
        pass_threshold: a score at or above it passes (score templates only;
            ``BATCH_SCORE_PASS_THRESHOLD`` when None).
        function: the Python function of a function metric (``name`` is then its name and
            nothing is sent to the server); None for a template.
    """

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)
    label: str | None = None
    key_mapping: Mapping[str, str] = field(default_factory=dict)
    model: str | None = None
    pass_threshold: float | None = None
    function: FunctionMetric | None = None

    def __post_init__(self) -> None:
        where = f"eval spec {self.name!r}"
        object.__setattr__(self, "pass_threshold", check_threshold(self.pass_threshold, where))
        object.__setattr__(self, "model", _check_model(self.model, where))

    @property
    def display(self) -> str:
        """``NAME`` or ``NAME:k=v,...``: the spec written the way it is parsed.

        ``pass_threshold`` and ``model`` come after the parameters when set, so that
        ``parse_eval_spec(spec.display)`` gives the same spec back (label aside). A template
        parameter named like one of them is not written (it has no string form).
        """
        pairs = [(k, v) for k, v in self.params.items() if k not in _SETTINGS]
        pairs += [(k, v) for k, v in (("pass_threshold", self.pass_threshold),
                                      ("model", self.model)) if v is not None]
        if not pairs:
            return self.name
        return self.name + ":" + ",".join(f"{k}={_written(v)}" for k, v in pairs)

    @property
    def score_threshold(self) -> float:
        return BATCH_SCORE_PASS_THRESHOLD if self.pass_threshold is None else self.pass_threshold

    def to_dict(self) -> dict[str, Any]:
        """The mapping form (for journals and config files)."""
        out: dict[str, Any] = {"eval": self.name}
        for key, value in (("params", dict(self.params)), ("label", self.label),
                           ("map", dict(self.key_mapping)), ("model", self.model)):
            if value:
                out[key] = value
        if self.pass_threshold is not None:  # 0.0 is a threshold too
            out["pass_threshold"] = self.pass_threshold
        if self.function is not None:
            out["function"] = self.function.reference
        return out

    def __repr__(self) -> str:
        label = f" as {self.label!r}" if self.label and self.label != self.name else ""
        return f"EvalSpec({self.display!r}{label})"


SpecLike = str | EvalSpec | Mapping[str, Any] | FunctionMetric | MetricFn


# --------------------------------------------------------------------------- parsing


def _split_top_level(text: str, sep: str) -> list[str]:
    """Split on ``sep`` outside brackets, braces and double quotes."""
    parts, depth, quoted, start, i = [], 0, False, 0, 0
    while i < len(text):
        ch = text[i]
        if quoted:
            if ch == "\\":
                i += 1
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    parts.append(text[start:])
    return parts


def _param_value(raw: str) -> Any:
    raw = raw.strip()
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _written(value: Any) -> str:
    """A parameter value as written in ``NAME:k=v``: plain when it reads back the same."""
    if isinstance(value, str) and _split_top_level(value + ",", ",") == [value, ""] \
            and _param_value(value) == value:
        return value
    return json.dumps(value, separators=(",", ":"))


def parse_eval_spec(text: str) -> EvalSpec:
    """Parse ``[LABEL=]NAME[:param=value,...]``.

    Args:
        text: the spec as written on the command line.

    ``pass_threshold=X`` and ``model=NAME`` set the spec's ``pass_threshold`` and ``model``
    instead of template parameters.

    Returns:
        The :class:`EvalSpec` (the template name is not checked here: see
        :func:`resolve_specs`).

    Raises:
        ValueError: empty name, a parameter without ``=``, a parameter given twice, a
            ``pass_threshold`` that is not a number from 0 to 1, an empty ``model``.
    """
    head, _, tail = text.strip().partition(":")
    label: str | None = None
    if "=" in head:
        label, _, head = head.partition("=")
        label = label.strip() or None
    name = head.strip()
    if not name:
        raise ValueError(f"eval spec {text!r} has no template name (expected NAME[:p=v,...])")
    params: dict[str, Any] = {}
    if tail.strip():
        for part in _split_top_level(tail, ","):
            if not part.strip():
                continue
            key, eq, value = part.partition("=")
            if not eq or not key.strip():
                raise ValueError(f"eval spec {text!r}: parameter {part.strip()!r} is not "
                                 f"written key=value")
            if key.strip() in params:
                raise ValueError(f"eval spec {text!r}: parameter {key.strip()!r} is given twice")
            params[key.strip()] = _param_value(value)
    where = f"eval spec {text!r}"
    threshold = check_threshold(params.pop("pass_threshold", None), where)
    model = _check_model(params.pop("model", None), where)
    return EvalSpec(name, params, label, model=model, pass_threshold=threshold)


def _merged(key: str, from_mapping: Any, from_string: Any, data: Mapping[str, Any]) -> Any:
    """A setting given by the mapping's key or inside its ``eval`` string (not both, unless
    equal)."""
    if from_mapping is None:
        return from_string
    if from_string is not None and from_string != from_mapping:
        raise ValueError(f"eval spec {dict(data)!r}: {key} is given twice, as {from_string!r} in "
                         f"'eval' and as {from_mapping!r}; keep one")
    return from_mapping


def _from_mapping(data: Mapping[str, Any]) -> EvalSpec:
    unknown = set(data) - _SPEC_KEYS
    if unknown:
        raise ValueError(f"eval spec {dict(data)!r}: unknown key(s) {sorted(unknown)}; "
                         f"expected some of {sorted(_SPEC_KEYS)}")
    raw_name = data.get("eval", data.get("name"))
    if not isinstance(raw_name, str) or not raw_name.strip():
        raise ValueError(f"eval spec {dict(data)!r} has no template name under 'eval'")
    spec = parse_eval_spec(raw_name)  # lets a config write "eval": "contains:keyword=x"
    params = {**spec.params, **dict(data.get("params") or {})}
    mapping = data.get("map", data.get("key_mapping")) or {}
    where = f"eval spec {dict(data)!r}"
    threshold = _merged("pass_threshold",
                        check_threshold(data.get("pass_threshold"), where),
                        spec.pass_threshold, data)
    model = _merged("model", _check_model(data.get("model"), where), spec.model, data)
    return EvalSpec(name=spec.name, params=params, label=data.get("label") or spec.label,
                    key_mapping=dict(mapping), model=model, pass_threshold=threshold)


def _coerce(spec: SpecLike) -> EvalSpec:
    if isinstance(spec, EvalSpec):
        return spec
    if isinstance(spec, str):
        return parse_eval_spec(spec)
    if isinstance(spec, Mapping):
        return _from_mapping(spec)
    if isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[0], str):
        return EvalSpec(spec[0], dict(spec[1] or {}))
    function = as_metric(spec)
    if function is not None:
        return EvalSpec(function.name, label=function.label,
                        pass_threshold=function.pass_threshold, function=function)
    raise TypeError(f"an eval spec is a string, a mapping, an EvalSpec or a function, not "
                    f"{type(spec).__name__}")


def function_template(function: FunctionMetric) -> TemplateSpec:
    """The template a function metric stands for: no keys (it reads the whole row)."""
    return TemplateSpec(function.name, (), function.output_type, {}, "function")


def resolve_specs(evals: SpecLike | Iterable[SpecLike], *,
                  server_templates: Callable[[], Sequence[TemplateInfo]] | None = None,
                  ) -> list[tuple[EvalSpec, TemplateSpec]]:
    """Turn the ``evals`` argument into specs with unique labels, checked before any request.

    Args:
        evals: one spec or several (strings, mappings, :class:`EvalSpec`).
        server_templates: the server's template list, consulted for names the local catalogue
            does not know.

    Returns:
        ``(spec, template)`` pairs in the order given; every spec has its final ``label``.

    Raises:
        UnknownTemplateError: a name neither the catalogue nor the server knows.
        InvalidInputError: missing or unknown template parameters.
        ValueError: no spec, a malformed spec, or two specs with the same label.
    """
    if isinstance(evals, (str, EvalSpec, Mapping)) or callable(evals):
        evals = [evals]
    specs = [_coerce(s) for s in evals]
    if not specs:
        raise ValueError("evaluate_batch needs at least one eval spec")
    names = [s.name for s in specs]
    out: list[tuple[EvalSpec, TemplateSpec]] = []
    for spec in specs:
        if spec.function is not None:
            template = function_template(spec.function)
        else:
            template = resolve_template(spec.name, server_templates=server_templates)
            check_params(spec.params, template)
            template = template.for_params(spec.params)
        label = spec.label or (spec.display if names.count(spec.name) > 1 else spec.name)
        out.append((EvalSpec(name=spec.name, params=dict(spec.params), label=label,
                             key_mapping=dict(spec.key_mapping), model=spec.model,
                             pass_threshold=spec.pass_threshold, function=spec.function),
                    template))
    labels = [s.label or s.name for s, _ in out]
    dupes = sorted({lb for lb in labels if labels.count(lb) > 1})
    if dupes:
        raise ValueError(f"two evals share the label(s) {dupes}: give one a LABEL=NAME:...")
    return out
