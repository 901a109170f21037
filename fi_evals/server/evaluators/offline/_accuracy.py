"""Measured accuracy of the offline stand-ins for model-judged templates.

Every place that offers one of them reports these figures: ``get-evals/``
(``config.approximation``), ``fi-evals templates``, the run summaries' footnotes and the head
of every reason. They are measurements, not claims: ``tests/models/test_models_offline.py``
measures both sets through a live server (default int8 encoder) and fails when a figure here
differs from what it measures, so they cannot go stale.

* ``heldout``: labelled items written apart from the evaluator and never used to tune it
  (``tests/models/data/heldout/``): the honest estimate.
* ``tuned``: the labelled set the evaluator was developed on (``tests/models/data/``): what
  it does on data like the data it was fitted to; always the rosier figure.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ACCURACY", "Accuracy"]


@dataclass(frozen=True)
class Accuracy:
    """Share of labelled items on which the evaluator agrees with the label."""

    heldout: float
    heldout_items: int
    tuned: float
    tuned_items: int

    def describe(self) -> str:
        """``held-out accuracy 0.58 (186 items never used to tune it; 0.93 on the 40 it was
        tuned on)``."""
        return (f"held-out accuracy {self.heldout:.2f} ({self.heldout_items} items never used "
                f"to tune it; {self.tuned:.2f} on the {self.tuned_items} it was tuned on)")


ACCURACY = {
    # groundedness family: tests/models/data/heldout/groundedness_hard.jsonl (186 hand-written
    # items, half grounded; paraphrases, entity swaps, changed numbers, negations, refusals...)
    # against tests/models/data/grounding.jsonl.
    "groundedness": Accuracy(0.581, 186, 0.925, 40),
    "is_factually_consistent": Accuracy(0.581, 186, 0.925, 40),
    "context_adherence": Accuracy(0.608, 186, 0.925, 40),  # a score: < 0.5 counts as "not"
    # tests/models/data/heldout/safety.jsonl against tests/models/data/safety.jsonl.
    "toxicity": Accuracy(0.875, 40, 0.917, 60),
    "content_moderation": Accuracy(0.825, 40, 0.900, 60),
}
"""Template name -> its measured accuracy (see the module docstring)."""
