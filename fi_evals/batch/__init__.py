"""The batch engine: score many items with several templates, in order, in bounded memory.

Use it through ``Evaluator.evaluate_batch(...)`` or ``fi-evals run``::

    from fi_evals import Evaluator

    with Evaluator() as ev:
        result = ev.evaluate_batch(
            "answers.jsonl",
            ["is_json", "fuzzy_match", "length_less_than:max_length=400"],
            key_mapping={"text": "answer", "output": "answer", "expected": "reference"},
            journal="answers.journal", output="scored.jsonl", thresholds={"is_json": 0.95})
        print(result)  # the summary table

Modules: :mod:`~fi_evals.batch.readers` (lazy inputs), :mod:`~fi_evals.batch.specs` (eval
specs), :mod:`~fi_evals.batch.mapping` (key mapping), :mod:`~fi_evals.batch.plan` (chunks and
requests), :mod:`~fi_evals.batch.engine` (the coordinator), :mod:`~fi_evals.batch.concurrency`
(AIMD), :mod:`~fi_evals.batch.journal` (resume), :mod:`~fi_evals.batch.stats`,
:mod:`~fi_evals.batch.result` and :mod:`~fi_evals.batch.output` (what comes back).
"""

from __future__ import annotations

from fi_evals._loading import ImportTargetError
from fi_evals.batch.api import KeyMapping, evaluate_batch
from fi_evals.batch.errors import (
    BatchInterruptedError,
    BatchStoppedError,
    DeadlineExceededError,
    JournalError,
    JournalMismatchError,
    MetricError,
    MetricResultError,
    MetricTimeoutError,
    TaskError,
    TaskTimeoutError,
)
from fi_evals.batch.metrics import FunctionMetric, load_metric, metric
from fi_evals.batch.output import BatchItem, read_jsonl
from fi_evals.batch.result import BatchResult, ThresholdCheck
from fi_evals.batch.specs import EvalSpec, parse_eval_spec
from fi_evals.batch.stats import BatchStats, ConcurrencyChange, TemplateStats

__all__ = [
    "BatchInterruptedError",
    "BatchItem",
    "BatchResult",
    "BatchStats",
    "BatchStoppedError",
    "ConcurrencyChange",
    "DeadlineExceededError",
    "EvalSpec",
    "FunctionMetric",
    "ImportTargetError",
    "JournalError",
    "JournalMismatchError",
    "KeyMapping",
    "MetricError",
    "MetricResultError",
    "MetricTimeoutError",
    "TaskError",
    "TaskTimeoutError",
    "TemplateStats",
    "ThresholdCheck",
    "evaluate_batch",
    "load_metric",
    "metric",
    "parse_eval_spec",
    "read_jsonl",
]
