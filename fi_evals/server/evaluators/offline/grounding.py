"""groundedness, context_adherence and is_factually_consistent: an opt-in local heuristic.

**Not offered by default.** Measured on a held-out set of 186 hand-written items (half of them
grounded: paraphrases, entity swaps, changed numbers, negations, unsupported details, outside
knowledge, multi-passage answers, partial answers, honest refusals), it agrees with the labels
on 58% of them, barely better than a coin: it sees that an answer is on the context's topic,
not that the context supports it (it misses entity swaps and fails honest refusals). No
trustworthy entailment model ships in a package this project can install (see
``docs/models.md``), so without a judge these templates are unavailable unless the server is
started with ``--local-grounding-heuristic`` (``FI_LOCAL_GROUNDING_HEURISTIC=1``); then
``get-evals/`` and every reason say that it is this heuristic and give its held-out accuracy
(``_accuracy.py``).

No LLM reads the texts: each *claim* of the output (a sentence with at least three content
words or a number) must be supported by some unit of the context (a chunk or one of its
sentences; the optional ``input`` counts as context too, since answers restate the question).
A claim is supported when all of these hold:

1. every number it states appears in the context (digits, or small numbers spelled out);
2. it does not flip the negation of the unit closest in meaning ("are reimbursed" against
   "are never reimbursed");
3. ``SEMANTIC_WEIGHT * cosine + (1 - SEMANTIC_WEIGHT) * lexical >= SUPPORT_THRESHOLD``, where
   cosine is the best all-MiniLM-L6-v2 similarity to a unit and lexical the share of the
   claim's content words found in the context.

Short sentences next to longer ones ("Good news!", "Hope this helps.") are not judged; an
output made only of short sentences is judged sentence by sentence. The weights
and threshold were chosen on ``tests/models/data/calibration/grounding_dev.jsonl``, not on
the labelled test set. The verdicts:

* ``groundedness`` and ``is_factually_consistent``: Passed when every claim is supported (this
  approximation cannot tell "unsupported" from "contradicted", so both templates use it);
* ``context_adherence``: the share of claims supported, 0 to 1.

``reason`` names the unsupported sentences, why each failed, and that a local model decided.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fi_evals._constants import OUTPUT_FAILED, OUTPUT_PASSED
from fi_evals.catalogue import CATALOGUE
from fi_evals.server.evaluators.base import ItemInputs, Outcome
from fi_evals.server.evaluators.offline._base import (
    LOCAL_NOTE,
    OfflineEvaluator,
    as_list,
    as_text,
)
from fi_evals.server.evaluators.offline._text import (
    content_words,
    has_negation,
    numbers,
    sentences,
)

__all__ = ["GroundingEvaluator", "grounding_evaluators"]

SEMANTIC_WEIGHT = 0.5
SUPPORT_THRESHOLD = 0.62
_MIN_CLAIM_WORDS = 3
_QUOTE_CHARS = 120
_NUMBER_UNITS = 3  # closest context units whose numbers a claim may state


@dataclass(frozen=True)
class Claim:
    """One judged sentence of the output and the verdict on it."""

    text: str
    support: float
    problem: str | None

    @property
    def supported(self) -> bool:
        return self.problem is None


def _units(context: list[str], question: str) -> list[str]:
    units: dict[str, None] = {}
    for chunk in context:
        units[chunk.strip()] = None
        for sentence in sentences(chunk):
            units[sentence] = None
    for sentence in sentences(question):
        units[sentence] = None
    return [u for u in units if u]


def _claims(output: str) -> list[str]:
    claims = [s for s in sentences(output)
              if len(content_words(s)) >= _MIN_CLAIM_WORDS or numbers(s, spelled=False)]
    # A short output ("The sky is green.") is still a claim: only skip short sentences when
    # longer ones carry the content.
    return claims or [s for s in sentences(output) if content_words(s)]


def _judge_claim(claim: str, vector: Any, units: list[str], unit_vectors: Any,
                 context_words: set[str], question: str) -> Claim:
    similarities = unit_vectors @ vector
    ranked = np.argsort(-similarities)
    best = int(ranked[0])
    # A number counts only where the claim's topic is: "$30 a month" is not supported by a
    # "30 days' notice" elsewhere in the context.
    context_numbers = numbers(question).union(*(numbers(units[int(i)])
                                                for i in ranked[:_NUMBER_UNITS]))
    cosine = float(similarities[best])
    words = content_words(claim)
    lexical = len(words & context_words) / len(words) if words else 1.0
    support = SEMANTIC_WEIGHT * cosine + (1 - SEMANTIC_WEIGHT) * lexical
    missing = sorted(numbers(claim) - context_numbers)
    if missing:
        return Claim(claim, support, f"states {', '.join(missing)}, which the context does not")
    if has_negation(claim) != has_negation(units[best]):
        return Claim(claim, support, "reverses the negation of the closest context passage")
    if support < SUPPORT_THRESHOLD:
        return Claim(claim, support, f"support {support:.2f} < {SUPPORT_THRESHOLD} "
                                     f"(similarity {cosine:.2f}, words found {lexical:.0%})")
    return Claim(claim, support, None)


def _quote(text: str) -> str:
    return repr(text if len(text) <= _QUOTE_CHARS else text[:_QUOTE_CHARS - 3] + "...")


class GroundingEvaluator(OfflineEvaluator):
    """One of the three grounding templates (see the module docstring)."""

    stand_in = ("opt-in local heuristic (all-MiniLM-L6-v2 similarity + word overlap), not an "
                "LLM judge and no better than a guess on hard cases")
    mark = "local heuristic"

    def __init__(self, name: str, embedding_model: str | None = None,
                 precision: str | None = None) -> None:
        super().__init__(embedding_model, precision)
        self.template = CATALOGUE[name]
        self.scored = self.template.output_type == "score"

    def score_many(self, items: Sequence[ItemInputs],
                   params: Mapping[str, Any]) -> list[Outcome | BaseException]:
        plans = []
        texts: list[str] = []
        for inputs in items:
            context, question = as_list(inputs, "context"), as_text(inputs, "input")
            claims, units = _claims(as_text(inputs, "output")), _units(context, question)
            plans.append((claims, units, " ".join(context) + " " + question, question))
            texts.extend(claims)
            texts.extend(units)
        encoder = self.encoder()
        table = dict(zip(texts, encoder.encode(texts), strict=True)) if texts else {}
        return [self._verdict(*plan, table) for plan in plans]

    def _verdict(self, claims: list[str], units: list[str], source: str, question: str,
                 table: Mapping[str, Any]) -> Outcome:
        if not claims:
            return self._outcome(1.0, True, "the output makes no claim to check")
        if not units:
            return self._outcome(0.0, False, "the context is empty, so no claim is supported")
        unit_vectors = np.stack([table[u] for u in units])
        words = content_words(source)
        judged = [_judge_claim(c, table[c], units, unit_vectors, words, question)
                  for c in claims]
        unsupported = [c for c in judged if not c.supported]
        share = 1 - len(unsupported) / len(judged)
        if not unsupported:
            return self._outcome(1.0, True, f"all {len(judged)} claims of the output are "
                                            "supported by the context")
        listed = "; ".join(f"{_quote(c.text)} ({c.problem})" for c in unsupported)
        return self._outcome(share, False, f"{len(unsupported)} of {len(judged)} claims are not "
                                           f"supported by the context: {listed}")

    def _outcome(self, share: float, passed: bool, reason: str) -> Outcome:
        reason = f"{reason} [{LOCAL_NOTE}: sentence-level embedding similarity + word overlap]"
        if self.scored:
            return Outcome(round(share, 4), reason)
        return Outcome(OUTPUT_PASSED if passed else OUTPUT_FAILED, reason)


def grounding_evaluators(embedding_model: str | None = None,
                         precision: str | None = None) -> list[GroundingEvaluator]:
    return [GroundingEvaluator(name, embedding_model, precision)
            for name in ("groundedness", "context_adherence", "is_factually_consistent")]
