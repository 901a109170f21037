"""What an evaluator is, for the reference server.

An evaluator computes one template for one or many items. Items arrive already validated
against the catalogue (every mandatory key present, values of the declared kind) and with
``params`` already validated against the template's parameter schema.

An evaluator either returns an :class:`Outcome` (a verdict: "Passed", "Failed", a score...) or
raises :class:`EvaluationError` when it could not evaluate at all (a judge that stays
unreachable, a malformed model answer). Any other exception is a bug in the evaluator; the
server records it on the item as a failed evaluation and keeps going.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from fi_evals.catalogue import Template

ItemInputs = Mapping[str, str | list[str]]
"""One item's inputs: key -> string, or list of strings for list-kind keys."""

Output = str | float | list[str]

Isolation = Literal["always", "large"]
"""Where the server runs an evaluator (``fi_evals.server.isolation``): ``"always"`` in an
isolated child process (its parameters are programs: patterns, schemas), ``"large"`` in-process
up to the inline size cap and isolated above it (quadratic cost in the text length)."""


CACHED_TAG = ", cached]"
"""How a judge outcome answered from the judge cache ends its reason (``[judge M, prompt P,
cached]``): the record keeps no other trace of it, through SQLite and Redis alike."""


_CACHED_JUDGE_TAG = re.compile(r"\[judge [^\[\]]*, prompt [^\[\],]+" + re.escape(CACHED_TAG) + "$")


def from_cache(reason: str | None) -> bool:
    """True when ``reason`` is a judge outcome's answered from the judge cache (its tag is
    ``[judge M, prompt P, cached]``): the wire's ``cached: true`` (additive; absent
    otherwise)."""
    return bool(reason) and _CACHED_JUDGE_TAG.search(reason or "") is not None


@dataclass(frozen=True, init=False)
class Outcome:
    """A verdict: ``output`` is "Passed"/"Failed", a float in [0, 1], or the chosen labels.

    Model-judged outcomes also say what they cost: ``prompt_tokens`` and ``completion_tokens``
    (the judge's ``usage``, summed over the calls of this evaluation; None when the judge
    reported none), ``cost`` (only when the server was given prices) and ``cached`` (answered
    from the judge cache: no judge call, no tokens spent).
    """

    output: Output
    reason: str
    cached: bool = False
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost: float | None = None

    def __init__(self, output: Output, reason: str, cached: bool = False,
                 prompt_tokens: int | None = None, completion_tokens: int | None = None,
                 cost: float | None = None) -> None:
        # The generated __init__ of a frozen dataclass sets each field with
        # object.__setattr__: twice this, and every evaluation builds one.
        fields = self.__dict__
        fields["output"] = output
        fields["reason"] = reason
        fields["cached"] = cached
        fields["prompt_tokens"] = prompt_tokens
        fields["completion_tokens"] = completion_tokens
        fields["cost"] = cost


class EvaluationError(Exception):
    """The evaluation could not run (the item is recorded as ``failed`` with this message)."""


class BaseEvaluator:
    """Base class: subclasses set ``template`` and implement :meth:`evaluate`.

    Evaluators that gain from batching (models) override :meth:`evaluate_many`.
    Instances are shared by all worker threads: keep them free of per-call state.

    ``isolation`` (None: in-process) asks the server to run the evaluator in its isolated child
    processes, with a per-item time limit and a memory cap; such an evaluator must pickle
    (a module-level class whose state pickles), as it is sent to the children.
    """

    template: Template
    isolation: Isolation | None = None
    preferred_batch: int | None = None
    """Items one :meth:`evaluate_many` call handles best (a model batches them), or None. An
    async worker that meets such an evaluator claims that many pending items at once, so its
    call sees as many items as a sync request of that size would (issue 20)."""

    def check_params(self, params: Mapping[str, Any]) -> None:
        """Reject parameters the schema cannot judge (a bad regex, an invalid JSON schema).

        Called by the server while validating a request, so a bad parameter is a 400 before
        anything is stored. Raises :class:`EvaluationError` naming the problem.
        """

    def evaluate(self, inputs: ItemInputs, params: Mapping[str, Any],
                 model: str | None = None) -> Outcome:
        raise NotImplementedError

    def evaluate_many(self, items: Sequence[ItemInputs], params: Mapping[str, Any],
                      model: str | None = None) -> list[Outcome | BaseException]:
        """Evaluate several items; one entry per item, an exception where that item failed."""
        results: list[Outcome | BaseException] = []
        for inputs in items:
            try:
                results.append(self.evaluate(inputs, params, model))
            except Exception as exc:  # noqa: BLE001 - recorded per item: one bad item never aborts the others
                results.append(exc)
        return results

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.template.name!r}>"
