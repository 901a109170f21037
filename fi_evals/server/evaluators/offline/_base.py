"""What the offline evaluators share: the lazily loaded encoder and batch-first evaluation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fi_evals import _constants as C
from fi_evals.server.evaluators.base import BaseEvaluator, EvaluationError, ItemInputs, Outcome
from fi_evals.server.evaluators.offline._accuracy import ACCURACY
from fi_evals.server.evaluators.offline._model import Encoder, ModelError, get_encoder

__all__ = ["APPROXIMATION", "LOCAL_NOTE", "OfflineEvaluator", "as_list", "as_text"]

LOCAL_NOTE = "local model all-MiniLM-L6-v2, no LLM judge"
"""Ends every offline reason: the verdict came from a small local model, not a judge."""

APPROXIMATION = "local approximation (all-MiniLM-L6-v2), not an LLM judge"
"""What stands in for the judge of a model-judged template computed offline: announced in
``get-evals/`` (``config.approximation``, followed by its measured accuracy) and at the head
of every reason."""


def as_text(inputs: ItemInputs, key: str) -> str:
    value = inputs.get(key, "")
    return value if isinstance(value, str) else "\n".join(value)


def as_list(inputs: ItemInputs, key: str) -> list[str]:
    value = inputs.get(key, [])
    return [value] if isinstance(value, str) else [v for v in value if v.strip()]


class OfflineEvaluator(BaseEvaluator):
    """Base of the offline evaluators: subclasses implement :meth:`score_many`.

    Every item of a request is computed in one pass (:meth:`evaluate_many`), so the encoder
    sees all of the request's texts at once and batches them.
    """

    preferred_batch = C.DEFAULT_MAX_BATCH_SIZE  # a sync request's largest: one encoder pass

    def __init__(self, embedding_model: str | None = None,
                 precision: str | None = None) -> None:
        self.embedding_model = embedding_model
        self.precision = precision

    stand_in = APPROXIMATION
    """What this evaluator is, when it stands in for a judge (subclasses may say more)."""
    mark = "local approximation"
    """Heads every reason of a stand-in, in brackets, with its held-out accuracy."""

    @property
    def approximation(self) -> str | None:
        """Set for model-judged templates (toxicity, the opt-in groundedness heuristic...): a
        local model stands in for the LLM judge; the text ends with its measured accuracy
        (``_accuracy.py``). None for templates defined on the local model itself."""
        if self.template.family != "judge":
            return None
        accuracy = ACCURACY.get(self.template.name)
        return f"{self.stand_in}; {accuracy.describe()}" if accuracy else self.stand_in

    @property
    def reason_prefix(self) -> str:
        """``[local approximation, held-out accuracy 0.88] ``: heads every reason of a
        stand-in."""
        accuracy = ACCURACY.get(self.template.name)
        detail = f", held-out accuracy {accuracy.heldout:.2f}" if accuracy else ""
        return f"[{self.mark}{detail}] "

    def encoder(self) -> Encoder:
        """The process-wide encoder, loaded on first use.

        Raises:
            EvaluationError: the model is missing or failed its checks (the message says why).
        """
        try:
            return get_encoder(self.embedding_model, self.precision)
        except ModelError as exc:
            raise EvaluationError(f"the local model is unavailable: {exc}") from exc

    def score_many(self, items: Sequence[ItemInputs],
                   params: Mapping[str, Any]) -> list[Outcome | BaseException]:
        raise NotImplementedError

    def evaluate(self, inputs: ItemInputs, params: Mapping[str, Any],
                 model: str | None = None) -> Outcome:
        """Evaluate one item (``model`` is ignored: the local model is fixed).

        Raises:
            EvaluationError: the local model is unavailable.
        """
        result = self.evaluate_many([inputs], params, model)[0]
        if isinstance(result, BaseException):
            raise result
        return result

    def evaluate_many(self, items: Sequence[ItemInputs], params: Mapping[str, Any],
                      model: str | None = None) -> list[Outcome | BaseException]:
        """All items in one pass; a model that cannot load fails every item with its reason."""
        try:
            outcomes = self.score_many(items, params)
        except EvaluationError as exc:
            return [exc] * len(items)
        if self.approximation is None:
            return outcomes
        prefix = self.reason_prefix
        return [Outcome(o.output, prefix + o.reason) if isinstance(o, Outcome) else o
                for o in outcomes]
