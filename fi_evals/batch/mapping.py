"""From one row (and the task's output) to one template's inputs: ``key_mapping``.

A template reads keys (``output``, ``expected``, ``context``...); a row has fields. For each key
the field is, in order: the spec's own ``key_mapping[key]``, the batch's ``key_mapping[key]``,
else the key itself. A field is looked up:

- ``task.NAME``: in the task's output only; ``item.NAME``: in the row only;
- ``NAME``: in the task's output first, then in the row;
- a dotted ``a.b`` that is not itself a field walks nested mappings (``meta.expected``).

A task that returns a mapping contributes its fields; one that returns anything else
contributes a single field, ``output``. Fields a template does not read are not sent; a missing
or empty field for a required key is an :class:`InvalidInputError` on that item only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fi_evals._exceptions import InvalidInputError
from fi_evals._inputs import TemplateSpec, WireItem, encode_scalar

__all__ = ["TASK_OUTPUT_FIELD", "build_inputs", "has_field", "resolve_mapping", "task_fields"]

TASK_OUTPUT_FIELD = "output"
"""The field a task's non-mapping return value is known by."""

_MISSING = object()


def task_fields(task_output: Any) -> Mapping[str, Any]:
    """The fields a task's return value contributes (see the module docs)."""
    if task_output is None:
        return {}
    if isinstance(task_output, Mapping):
        return task_output
    return {TASK_OUTPUT_FIELD: task_output}


def resolve_mapping(spec_map: Mapping[str, str], batch_map: Mapping[str, str],
                    template: TemplateSpec) -> dict[str, str]:
    """Template key -> field for one spec, over every key the template reads.

    Raises:
        ValueError: the spec maps a key its template does not read.
    """
    unknown = [k for k in spec_map if k not in template.key_names]
    if unknown:
        raise ValueError(f"key_mapping for {template.name!r} names key(s) {unknown} it does "
                         f"not read; it reads {template.describe_keys()}")
    return {k: spec_map.get(k) or batch_map.get(k) or k for k in template.key_names}


def _walk(source: Mapping[str, Any], path: str) -> Any:
    if path in source:
        return source[path]
    node: Any = source
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return _MISSING
        node = node[part]
    return node


def has_field(source: Mapping[str, Any], path: str) -> bool:
    """True when ``path`` (a field, or a dotted path into nested mappings) is in ``source``."""
    return _walk(source, path) is not _MISSING


def _lookup(field: str, item: Mapping[str, Any], task: Mapping[str, Any]) -> Any:
    if field.startswith("task.") and field not in task:
        return _walk(task, field[5:])
    if field.startswith("item.") and field not in item:
        return _walk(item, field[5:])
    value = _walk(task, field) if task else _MISSING
    if value is _MISSING or value is None:
        value = _walk(item, field)
    return value


def _empty(value: Any) -> bool:
    return value is None or value is _MISSING or (isinstance(value, str) and value == "")


def build_inputs(template: TemplateSpec, mapping: Mapping[str, str], item: Mapping[str, Any],
                 task: Mapping[str, Any], index: int) -> WireItem:
    """The encoded inputs of one item for one template.

    Args:
        template: the template (keys and kinds).
        mapping: template key -> field, from :func:`resolve_mapping`.
        item: the row.
        task: the task's fields (from :func:`task_fields`), empty without a task.
        index: the item's position, for error messages.

    Returns:
        The encoded item (see :func:`fi_evals._inputs.encode_item`).

    Raises:
        InvalidInputError: a required key has no value, or a value cannot be encoded.
    """
    # The keys are the template's own, and every required one is checked here: encode each
    # value directly (what encode_item would do after checks that cannot fail here).
    out: WireItem = {}
    for key in template.keys:
        field = mapping[key.name]
        if not task and field in item and not field.startswith("task."):  # a row's field
            value = item[field]
        else:
            value = _lookup(field, item, task)
        if _empty(value):
            if key.required:
                where = "the item or the task's output" if task else "the item"
                hint = (f"; map it with key_mapping={{{key.name!r}: '<field>'}}"
                        if field == key.name else "")
                raise InvalidInputError(f"no value for required key {key.name!r}: field "
                                        f"{field!r} is missing or empty in {where}{hint}",
                                        template=template.name, item=index)
            continue
        if key.kind == "list":
            values = value if isinstance(value, (list, tuple)) else [value]
            out[key.name] = [encode_scalar(v, key.name, template, index) for v in values]
        elif value.__class__ is str:
            out[key.name] = value
        else:
            out[key.name] = encode_scalar(value, key.name, template, index)
    return out
