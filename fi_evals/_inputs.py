"""From what users pass to what the wire carries: templates, items, values, request bodies.

The steps, all before any request (PROTOCOL.md section A, "One item or a batch"):

1. :func:`template_name` reads a template argument: a name, or an object or class with an
   ``eval_name`` attribute (the official client's ``EvalTemplate`` classes and instances).
2. :func:`resolve_template` finds its :class:`TemplateSpec` in the local catalogue, else in
   the server's ``get-evals/`` list (so templates only the server knows still work); an
   unknown name raises :class:`UnknownTemplateError` with the closest valid names.
3. :func:`split_items` turns ``inputs`` (one dict, a dict of lists, a list of dicts, or a
   DataFrame) into one mapping per item. Whether a dict is one item or a batch is decided from
   the template's input *kinds*, never from key order: it is a batch of N when every
   string-kind key holds a list of N values. A list of dicts under a string-kind key is one
   value (a conversation), as in the official client; give one dict per item to batch those.
4. :func:`encode_item` checks one item (missing or unexpected keys raise
   :class:`InvalidInputError`; nothing is renamed or dropped silently) and encodes its values:
   dicts and lists as JSON strings, numbers as strings, booleans as ``"true"``/``"false"``,
   list-kind keys (``context``) as ``list[str]``. ``None`` means "absent": allowed for an
   optional key only.
5. :func:`plan_chunks` groups items with the same key set and cuts each group into chunks of
   at most ``max_batch_size``; :func:`build_body` turns one chunk into a request body (a dict
   of lists, or plain values for one item).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import numbers
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

from fi_evals._exceptions import InvalidInputError, UnknownTemplateError
from fi_evals.catalogue import CATALOGUE, InputKey, Template
from fi_evals.protocol import TemplateInfo

__all__ = [
    "Chunk",
    "TemplateSpec",
    "WireItem",
    "WireValue",
    "build_body",
    "check_params",
    "encode_item",
    "item_signature",
    "plan_chunks",
    "prepare_items",
    "resolve_template",
    "split_items",
    "template_name",
    "template_params",
]

WireValue = str | list[str]
"""One item's encoded value: a string, or a list of strings for list-kind keys."""
WireItem = dict[str, WireValue]

Kind = Literal["string", "list"]

# Keys some catalogue template reads as lists; the kind of a key a server-only template
# does not describe (hosted get-evals/ has no input_kinds).
_LIST_KEYS = frozenset(k.name for t in CATALOGUE.values() for k in t.keys if k.kind == "list")

# Names the official client silently renamed. We never rename; we only suggest.
_ALIASES = {
    "response": ("output", "text", "hypothesis", "generated_value"),
    "answer": ("output", "generated_value"),
    "generated": ("output",),
    "query": ("input",),
    "question": ("input",),
    "expected_output": ("expected", "expected_value", "reference"),
    "expected_response": ("expected", "expected_value", "reference"),
    "ground_truth": ("expected", "expected_value", "reference"),
    "messages": ("conversation",),
    "contexts": ("context",),
    "content": ("text",),
    "instructions": ("prompt", "system_prompt"),
}


@dataclass(frozen=True)
class TemplateSpec:
    """What the client needs to know about a template to check and encode inputs.

    Attributes:
        name: the template name sent as ``eval_name``.
        keys: every input key it reads, in a stable order, with kind and whether it is required.
        output_type: ``Pass/Fail``, ``score``, ``choices`` or ``numeric``.
        params: JSON schema of ``config.params`` (may be empty).
        source: ``"catalogue"``, ``"server"``, or ``"function"`` (a Python function metric,
            run by the client: :mod:`fi_evals.batch.metrics`).
    """

    name: str
    keys: tuple[InputKey, ...]
    output_type: str = ""
    params: Mapping[str, Any] = field(default_factory=dict)
    source: Literal["catalogue", "server", "function"] = "catalogue"

    @classmethod
    def from_template(cls, template: Template) -> TemplateSpec:
        return cls(template.name, template.keys, template.output_type, template.params)

    @classmethod
    def from_info(cls, info: TemplateInfo) -> TemplateSpec:
        """From a ``get-evals/`` entry: ``required_keys`` lists every key (hosted meaning)."""
        cfg = info.config
        optional = set(cfg.optional_keys)
        names = list(dict.fromkeys([*cfg.required_keys, *cfg.optional_keys]))
        keys = tuple(
            InputKey(n, kind=cfg.input_kinds.get(n) or ("list" if n in _LIST_KEYS else "string"),
                     required=n not in optional)
            for n in names)
        return cls(info.name, keys, cfg.output, cfg.params, "server")

    def for_params(self, params: Mapping[str, Any] | None) -> TemplateSpec:
        """This template as these parameters run it: a template with an ``output_type``
        parameter (``custom_judge``) outputs the type they give.

        Raises:
            InvalidInputError: ``output_type`` is not one its schema lists (checked here, as
                every row would fail on it).
        """
        schema = (self.params or {}).get("properties", {}).get("output_type")
        if schema is None or params is None or "output_type" not in params:
            return self
        chosen = params["output_type"]
        allowed = list(schema.get("enum") or [])
        if chosen not in allowed:
            raise InvalidInputError(f"parameter 'output_type' must be one of "
                                    f"{', '.join(allowed)}, not {chosen!r}", template=self.name)
        return self if chosen == self.output_type else dataclasses.replace(self,
                                                                           output_type=chosen)

    @cached_property  # read per item on the hot path; the spec is immutable
    def key_names(self) -> tuple[str, ...]:
        return tuple(k.name for k in self.keys)

    @cached_property
    def mandatory(self) -> tuple[str, ...]:
        return tuple(k.name for k in self.keys if k.required)

    def kind(self, key: str) -> Kind:
        for k in self.keys:
            if k.name == key:
                return k.kind
        return "list" if key in _LIST_KEYS else "string"

    def describe_keys(self) -> str:
        return ", ".join(k.name + ("" if k.required else " (optional)") +
                         (" (list)" if k.kind == "list" else "") for k in self.keys)


@dataclass(frozen=True)
class Chunk:
    """Items sent in one request: their positions in the input and their encoded values."""

    indices: tuple[int, ...]
    items: tuple[WireItem, ...]

    def __len__(self) -> int:
        return len(self.indices)

    def __repr__(self) -> str:
        span = f"{self.indices[0]}..{self.indices[-1]}" if self.indices else "-"
        return f"Chunk({len(self)} items, indices {span})"


# ---------------------------------------------------------------------- templates


def template_name(template: Any) -> str:
    """The name of a template argument: a string, or anything with a string ``eval_name``.

    Raises:
        TypeError: for anything else.
    """
    if isinstance(template, str):
        if not template.strip():
            raise TypeError("the template name is empty")
        return template
    name = getattr(template, "eval_name", None)
    if isinstance(name, str) and name:
        return name
    raise TypeError(f"unsupported template {template!r}: pass a template name (str) or an "
                    f"object or class with an `eval_name` attribute")


def template_params(template: Any) -> dict[str, Any] | None:
    """Parameters carried by a template *instance* (``EvalTemplate(config={...})``), if any."""
    if isinstance(template, (str, type)):
        return None
    config = getattr(template, "config", None)
    return dict(config) if isinstance(config, Mapping) and config else None


def resolve_template(name: str, *,
                     server_templates: Callable[[], Sequence[TemplateInfo]] | None = None,
                     ) -> TemplateSpec:
    """The spec of template ``name``: local catalogue first, then the server's list.

    Args:
        name: the template name.
        server_templates: returns the server's ``get-evals/`` list (cached by the caller);
            consulted only when the local catalogue does not know the name.

    Raises:
        UnknownTemplateError: neither knows it; lists the closest names.
    """
    template = CATALOGUE.get(name)
    if template is not None:
        return TemplateSpec.from_template(template)
    known: list[str] = list(CATALOGUE)
    if server_templates is not None:
        infos = server_templates()
        for info in infos:
            if info.name == name:
                return TemplateSpec.from_info(info)
        known = list(dict.fromkeys([*known, *(i.name for i in infos)]))
    by_lower = {k.lower(): k for k in known}
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=5, cutoff=0.6)
    raise UnknownTemplateError(name, [by_lower[c] for c in close], known=len(known))


def check_params(params: Mapping[str, Any] | None, spec: TemplateSpec) -> None:
    """Check parameter *names* against the template's schema (values are the server's job).

    Raises:
        InvalidInputError: a required parameter is missing or an unknown one is given.
    """
    schema = spec.params or {}
    props = schema.get("properties") or {}
    given = dict(params or {})
    missing = [p for p in schema.get("required") or [] if p not in given]
    if missing:
        raise InvalidInputError(
            f"missing template parameter(s) {', '.join(map(repr, missing))}; pass them as "
            f"eval_config={{{', '.join(f'{p!r}: ...' for p in missing)}}}", template=spec.name)
    if schema.get("additionalProperties") is False:
        unknown = [p for p in given if p not in props]
        if unknown:
            valid = ", ".join(props) or "none"
            raise InvalidInputError(f"unknown template parameter(s) "
                                    f"{', '.join(map(repr, unknown))} (valid: {valid})",
                                    template=spec.name)


# ---------------------------------------------------------------------- items


def _is_column(value: Any) -> bool:
    """A list holding one value per item (a list of dicts is one conversation value)."""
    if not isinstance(value, (list, tuple)):
        return False
    return not (value and all(isinstance(v, Mapping) for v in value))


def _is_list_column(value: Any) -> bool:
    """A list-kind key's batch column: a list of lists (or of None, for absent values)."""
    return (isinstance(value, (list, tuple)) and bool(value)
            and all(isinstance(v, (list, tuple)) or v is None for v in value))


def split_items(inputs: Any, spec: TemplateSpec) -> list[Mapping[str, Any]]:
    """One mapping per item, from one dict, a dict of lists, a list of dicts or a DataFrame.

    Raises:
        InvalidInputError: unequal column lengths, a mix of one-item values and columns, or
            an ``inputs`` of an unsupported type.
    """
    if hasattr(inputs, "to_dict") and hasattr(inputs, "columns"):  # a pandas DataFrame
        return list(inputs.to_dict(orient="records"))
    if isinstance(inputs, Mapping):
        return _split_mapping(inputs, spec)
    if isinstance(inputs, (str, bytes)) or not isinstance(inputs, Iterable):
        raise InvalidInputError(f"inputs must be a dict, a dict of lists or a list of dicts, "
                                f"not {type(inputs).__name__}", template=spec.name)
    items = list(inputs)
    for i, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise InvalidInputError(f"inputs[{i}] is a {type(item).__name__}, not a dict",
                                    template=spec.name, item=i)
    return items


def _split_mapping(inputs: Mapping[str, Any], spec: TemplateSpec) -> list[Mapping[str, Any]]:
    _check_keys(inputs.keys(), spec, item=None)
    present = [k for k in inputs if inputs[k] is not None]
    string_keys = [k for k in present if spec.kind(k) == "string"]
    if string_keys:
        columns = [k for k in string_keys if _is_column(inputs[k])]
        if not columns:
            return [inputs]
        if len(columns) != len(string_keys):
            single = [k for k in string_keys if k not in columns]
            raise InvalidInputError(
                f"keys {columns} hold lists (a batch) but {single} hold single values: give "
                f"every key a list with one value per item, or pass a list of dicts",
                template=spec.name)
    else:  # only list-kind keys: a batch when each holds a list of lists
        columns = [k for k in present if _is_list_column(inputs[k])]
        if not columns:
            return [inputs]
        if len(columns) != len(present):
            raise InvalidInputError("list-kind keys mix one item's list with per-item lists",
                                    template=spec.name)
    lengths = {k: len(inputs[k]) for k in present}
    if len(set(lengths.values())) > 1:
        raise InvalidInputError(f"batch lists have unequal lengths: {lengths}",
                                template=spec.name)
    n = next(iter(lengths.values()))
    # Absent (None) keys stay absent in every item.
    return [{k: inputs[k][i] for k in present} for i in range(n)]


def _check_keys(keys: Iterable[str], spec: TemplateSpec, item: int | None) -> None:
    unexpected = [k for k in keys if k not in spec.key_names]
    if not unexpected:
        return
    hints = []
    for k in unexpected:
        targets = [t for t in _ALIASES.get(k, ()) if t in spec.key_names]
        targets += difflib.get_close_matches(k, spec.key_names, n=1, cutoff=0.7)
        if targets:
            hints.append(f"{k!r} -> {targets[0]!r}?")
    hint = f" Did you mean: {', '.join(hints)}" if hints else ""
    raise InvalidInputError(
        f"unexpected input key(s) {', '.join(map(repr, unexpected))}: {spec.name!r} reads "
        f"{spec.describe_keys()}. Nothing is renamed or dropped: rename or remove "
        f"{'it' if len(unexpected) == 1 else 'them'}.{hint}", template=spec.name, item=item)


def encode_scalar(value: Any, key: str, spec: TemplateSpec, item: int | None) -> str:
    """One value as the wire's string (a number, a bool, JSON for a mapping or a list)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, numbers.Number):
        return str(value)
    if isinstance(value, (Mapping, list, tuple)):
        try:
            return json.dumps(value, ensure_ascii=False)
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"value of {key!r} cannot be encoded as JSON: {exc}",
                                    template=spec.name, item=item) from exc
    raise InvalidInputError(f"value of {key!r} is a {type(value).__name__}: pass a str, a "
                            f"number, a dict or a list", template=spec.name, item=item)


def encode_item(item: Mapping[str, Any], spec: TemplateSpec,
                index: int | None = None) -> WireItem:
    """Check one item against the template and encode its values for the wire.

    Args:
        item: key -> value as the user gave it.
        spec: the template.
        index: the item's position, for error messages.

    Returns:
        The encoded item, keys in the template's order; ``None`` values (optional keys) left out.

    Raises:
        InvalidInputError: unexpected keys, missing required keys, or unencodable values.
    """
    _check_keys(item.keys(), spec, index)
    missing = [k for k in spec.mandatory if item.get(k) is None]
    if missing:
        raise InvalidInputError(
            f"missing required input key(s) {', '.join(map(repr, missing))}: {spec.name!r} "
            f"reads {spec.describe_keys()}", template=spec.name, item=index)
    out: WireItem = {}
    for key in spec.key_names:
        value = item.get(key)
        if value is None:
            continue
        if spec.kind(key) == "list":
            values = value if isinstance(value, (list, tuple)) else [value]
            out[key] = [encode_scalar(v, key, spec, index) for v in values]
        else:
            out[key] = encode_scalar(value, key, spec, index)
    return out


def prepare_items(inputs: Any, spec: TemplateSpec) -> list[WireItem]:
    """:func:`split_items` then :func:`encode_item` on each: the checked, encoded items."""
    return [encode_item(item, spec, i) for i, item in enumerate(split_items(inputs, spec))]


def item_signature(item: WireItem) -> tuple[str, ...]:
    """Items with the same signature (key set) can share a request."""
    return tuple(item)


def plan_chunks(items: Sequence[WireItem], spec: TemplateSpec,
                max_batch_size: int) -> list[Chunk]:
    """Cut items into requests of at most ``max_batch_size`` items with the same key set.

    A request is a batch only when some string-kind key is present (the protocol tells a
    batch from one item by those keys); items without one go one per request.
    """
    if max_batch_size < 1:
        raise ValueError("max_batch_size must be at least 1")
    groups: dict[tuple[str, ...], list[int]] = {}
    for i, item in enumerate(items):
        groups.setdefault(item_signature(item), []).append(i)
    chunks = []
    for signature, indices in groups.items():
        size = max_batch_size if any(spec.kind(k) == "string" for k in signature) else 1
        for start in range(0, len(indices), size):
            part = tuple(indices[start:start + size])
            chunks.append(Chunk(part, tuple(items[i] for i in part)))
    chunks.sort(key=lambda c: c.indices[0])
    return chunks


def build_body(items: Sequence[WireItem], spec: TemplateSpec, *, model: str | None = None,
               is_async: bool = False, params: Mapping[str, Any] | None = None,
               extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``new-eval/`` body for items sharing one key set.

    Args:
        items: encoded items (from :func:`encode_item`), all with the same keys.
        spec: the template.
        model: the judge model, or None.
        is_async: store and answer at once with eval ids.
        params: template parameters, sent as ``config.params``.
        extra: compatibility fields (``custom_eval_name``, ``span_id``, ``trace_eval``,
            ``error_localizer``); None values are left out.
    """
    if not items:
        raise ValueError("no items to send")
    keys = list(items[0])
    if any(list(it) != keys for it in items):
        raise ValueError("items of one request must share their key set (use plan_chunks)")
    if len(items) == 1:
        inputs: dict[str, Any] = dict(items[0])
    else:
        inputs = {k: [it[k] for it in items] for k in keys}
    body: dict[str, Any] = {"eval_name": spec.name, "inputs": inputs, "model": model,
                            "is_async": is_async}
    if params:
        body["config"] = {"params": dict(params)}
    for k, v in (extra or {}).items():
        if v is not None:
            body[k] = v
    return body
