"""Turning logged entries into wire-ready items, and items into request bodies.

Runs on the logger's threads, never on the caller's. It reuses the SDK's own checks and
encoding (:mod:`fi_evals._inputs`): the template is looked up in the local catalogue (no I/O),
and only a name the catalogue does not know is looked up in the server's ``get-evals/`` list.
When that list cannot be fetched (server unreachable), the item is encoded from its own keys
and the server has the last word when it is replayed.

Items that can share one request have the same *group*: template, model, parameters and key
set. The group is a JSON string so that it can be stored in the spool and compared there.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fi_evals._exceptions import (
    APIConnectionError,
    FiEvalsError,
    InvalidInputError,
    UnknownTemplateError,
)
from fi_evals._inputs import (
    TemplateSpec,
    WireItem,
    build_body,
    check_params,
    encode_item,
    resolve_template,
    template_name,
)
from fi_evals._otel import hex_ids
from fi_evals.catalogue import InputKey
from fi_evals.logger._queue import Entry
from fi_evals.logger._spool import SpoolRow
from fi_evals.protocol import TemplateInfo

__all__ = ["Item", "Preparer", "trace_of"]


@dataclass(slots=True, kw_only=True)
class Item:
    """One checked, encoded score on its way through the worker.

    ``own`` is True for scores logged by this logger (they count for ``flush()``); scores
    replayed from another process's spool have ``own`` False and no callback.
    """

    gen: int
    lseq: int
    eval_name: str
    grp: str
    batchable: bool
    wire: WireItem
    model: str | None
    params: dict[str, Any] | None
    metadata: Any
    callback: Callable[..., Any] | None
    own: bool
    row_id: int | None = None
    trace: tuple[str, str] | None = None
    """The hex trace and span ids of the span current at ``log()``, when there was one."""

    def record(self) -> dict[str, Any]:
        """What the spool keeps of it (everything but the callback)."""
        out = {"inputs": self.wire, "metadata": self.metadata, "model": self.model,
               "params": self.params, "batchable": self.batchable}
        if self.trace is not None:
            out["trace"] = list(self.trace)
        return out

    def row(self) -> SpoolRow:
        return SpoolRow(gen=self.gen, lseq=self.lseq, grp=self.grp, eval_name=self.eval_name,
                        record=self.record())


class Preparer:
    """Checks and encodes entries; caches template lookups.

    Args:
        server_templates: the server's template list (the transport caches it); consulted
            only for names the local catalogue does not know.
    """

    def __init__(self, server_templates: Callable[[], Sequence[TemplateInfo]] | None) -> None:
        self._server_templates = server_templates
        self._specs: dict[str, TemplateSpec | FiEvalsError] = {}
        self._groups: dict[tuple[Any, ...], tuple[str, bool]] = {}

    def __repr__(self) -> str:
        return f"<Preparer {len(self._specs)} templates seen>"

    def prepare(self, entry: Entry, gen: int) -> Item:
        """Check and encode one entry.

        Raises:
            FiEvalsError, TypeError or ValueError: the score is unusable (rejected).
        """
        name = template_name(entry.eval_name)
        if not isinstance(entry.inputs, Mapping):
            raise InvalidInputError(f"inputs must be a dict of one item's values, not "
                                    f"{type(entry.inputs).__name__}", template=name)
        if entry.model is not None and not isinstance(entry.model, str):
            raise TypeError(f"model must be a string, not {type(entry.model).__name__}")
        spec = self._spec(name, entry.inputs)
        params = dict(entry.params) if entry.params else None
        if spec.source != "provisional":
            check_params(params, spec)
        wire = encode_item(entry.inputs, spec)
        params_text = _canonical(params) if params else None
        grp, batchable = self._group(name, entry.model, params_text, tuple(wire), spec)
        return Item(gen=gen, lseq=entry.lseq, eval_name=name, grp=grp, batchable=batchable,
                    wire=wire, model=entry.model, params=params, metadata=entry.metadata,
                    callback=entry.callback, own=True, trace=hex_ids(entry.trace))

    def _group(self, name: str, model: str | None, params_text: str | None,
               keys: tuple[str, ...], spec: TemplateSpec) -> tuple[str, bool]:
        """The group string of items with these traits (cached: a service logs few kinds)."""
        trait = (name, model, params_text, keys)
        known = self._groups.get(trait)
        if known is None:
            batchable = any(spec.kind(k) == "string" for k in keys)
            text = _canonical([name, model, params_text, list(keys), batchable])
            known = self._groups[trait] = (text, batchable)
        return known

    def _spec(self, name: str, inputs: Mapping[str, Any]) -> TemplateSpec:
        known = self._specs.get(name)
        if isinstance(known, TemplateSpec):
            return known
        if known is not None:
            raise known  # the same misuse, reported again without another lookup
        try:
            spec = resolve_template(name, server_templates=self._server_templates)
        except UnknownTemplateError as exc:
            self._specs[name] = exc
            raise
        except (APIConnectionError, FiEvalsError):
            # The server's list is out of reach: encode from the item's own keys; the server
            # checks the name and keys when the score is sent.
            return _provisional(name, inputs)
        self._specs[name] = spec
        return spec

    @staticmethod
    def from_row(row: SpoolRow, own_gen: int,
                 callbacks: Mapping[int, Callable[..., Any]]) -> Item:
        """An item read back from the spool (its callback only if this logger logged it)."""
        rec = row.record
        own = row.gen == own_gen
        return Item(gen=row.gen, lseq=row.lseq, eval_name=row.eval_name, grp=row.grp,
                    batchable=bool(rec.get("batchable", True)),
                    wire=dict(rec.get("inputs") or {}), model=rec.get("model"),
                    params=rec.get("params"), metadata=rec.get("metadata"),
                    callback=callbacks.get(row.lseq) if own else None, own=own,
                    row_id=row.id, trace=trace_of(rec))

    @staticmethod
    def body(items: Sequence[Item]) -> dict[str, Any]:
        """The async ``new-eval/`` body of items of one group."""
        first = items[0]
        spec = TemplateSpec(first.eval_name, ())
        return build_body([it.wire for it in items], spec, model=first.model, is_async=True,
                          params=first.params)


def trace_of(record: Mapping[str, Any]) -> tuple[str, str] | None:
    """The trace ids a spooled record kept (a pair of strings), if any."""
    ids = record.get("trace")
    if isinstance(ids, (list, tuple)) and len(ids) == 2:
        return str(ids[0]), str(ids[1])
    return None


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _provisional(name: str, inputs: Mapping[str, Any]) -> TemplateSpec:
    probe = TemplateSpec(name, ())
    keys = tuple(InputKey(str(k), kind=probe.kind(str(k)), required=False) for k in inputs)
    return TemplateSpec(name, keys, source="provisional")  # type: ignore[arg-type]
