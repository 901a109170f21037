"""Checks made before the first request of a batch, so that a mistake that would fail every
row stops the batch at once with a typed error instead of being recorded a million times.

- :func:`check_available`: every eval's template can run on this server (PROTOCOL.md B,
  "Template availability"): no judge configured, a missing extra... raise
  :class:`~fi_evals.TemplateUnavailableError`. It also returns which templates the server
  computes with a local approximation instead of an LLM judge.
- :func:`check_first_row`: every key of every eval can be read from the first readable row:
  a required key whose field is absent, or any key mapped explicitly to an absent field (a
  typo), raises :class:`~fi_evals.KeyMappingError` with the closest field name. A field that is
  present but empty is the row's own problem and is recorded on that row only.
"""

from __future__ import annotations

import difflib
import itertools
import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from fi_evals._exceptions import (
    APIConnectionError,
    AuthenticationError,
    KeyMappingError,
    PermissionDeniedError,
    TemplateUnavailableError,
)
from fi_evals._inputs import TemplateSpec
from fi_evals._transport import Transport
from fi_evals.batch.mapping import has_field
from fi_evals.batch.readers import BadRow
from fi_evals.batch.specs import EvalSpec

__all__ = ["check_available", "check_first_row", "closest_field"]

log = logging.getLogger("fi_evals.batch")

_PEEK_LIMIT = 100
"""Rows read ahead at most to find the first readable one (they are kept, then replayed)."""

Row = Mapping[str, Any]


def check_available(transport: Transport, specs: Sequence[tuple[EvalSpec, TemplateSpec]],
                    ) -> dict[str, str]:
    """Raise when the server says it cannot run one of the specs' templates.

    Returns:
        label -> the server's ``approximation`` note, for the specs whose template the server
        computes with a local model instead of an LLM judge.

    Raises:
        TemplateUnavailableError: the server lists the template as not ``evaluable``.
        AuthenticationError, PermissionDeniedError, APIConnectionError: from ``get-evals/``.
    """
    try:
        listed = {t.name: t for t in transport.templates()}
    except (AuthenticationError, PermissionDeniedError, APIConnectionError):
        raise
    except Exception as exc:  # noqa: BLE001 - a server without a readable list: no preflight, per-item errors
        log.warning("could not read the template list of %s (%s): availability is not "
                    "checked before sending", transport.base_url, exc)
        return {}
    approximations: dict[str, str] = {}
    for spec, _ in specs:
        if spec.function is not None:
            continue  # a Python function: the client runs it
        info = listed.get(spec.name)
        if info is None:
            continue
        if not info.config.evaluable:
            raise TemplateUnavailableError(spec.name, info.config.unavailable_reason)
        if info.config.approximation:
            approximations[spec.label or spec.name] = info.config.approximation
    return approximations


def closest_field(field: str, fields: Sequence[str]) -> str | None:
    """The row field a typo most likely meant (case-insensitive first), or None."""
    lowered = {f.lower(): f for f in fields}
    if field.lower() in lowered:
        return lowered[field.lower()]
    close = difflib.get_close_matches(field, list(fields), n=1, cutoff=0.6)
    return close[0] if close else None


def _present(row: Row, field: str) -> bool:
    if field.startswith("item.") and field not in row:
        field = field[len("item."):]
    return has_field(row, field)


def _explicit_keys(spec: EvalSpec, key_mapping: Mapping[str, Any] | None) -> set[str]:
    keys = set(spec.key_mapping)
    for key, value in (key_mapping or {}).items():
        if isinstance(value, str):
            keys.add(key)
        elif key == spec.label and isinstance(value, Mapping):
            keys.update(value)
    return keys


def check_first_row(rows: Iterator[Row | BadRow],
                    specs: Sequence[tuple[EvalSpec, TemplateSpec]],
                    mappings: Sequence[Mapping[str, str]],
                    key_mapping: Mapping[str, Any] | None, *,
                    has_task: bool) -> Iterator[Row | BadRow]:
    """Check the key mappings against the first readable row; return ``rows`` unchanged.

    With a ``task``, a field may come from the task's output, which does not exist yet: only
    fields written ``item.NAME`` are checked then.

    Returns:
        An iterator over the same rows (the ones read ahead come first again).

    Raises:
        KeyMappingError: a key's field is absent from the first readable row.
    """
    peeked: list[Row | BadRow] = []
    first: Row | None = None
    for row in itertools.islice(rows, _PEEK_LIMIT):
        peeked.append(row)
        if not isinstance(row, BadRow):
            first = row
            break
    replay = itertools.chain(peeked, rows)
    if first is None:
        return replay
    fields = [str(f) for f in first]
    for (spec, template), mapping in zip(specs, mappings):
        explicit = _explicit_keys(spec, key_mapping)
        for key in template.keys:
            field = mapping[key.name]
            if not (key.required or key.name in explicit):
                continue
            if has_task and not field.startswith("item."):
                continue
            if _present(first, field):
                continue
            raise KeyMappingError(label=spec.label or spec.name, template=spec.name,
                                  key=key.name, field=field, fields=fields,
                                  suggestion=closest_field(field, fields))
    return replay
