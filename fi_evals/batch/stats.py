"""Batch statistics kept in bounded memory, whatever the number of items.

Every counter is O(1) per template. Latency quantiles come from a uniform reservoir sample of
``BATCH_LATENCY_RESERVOIR`` values (Vitter's algorithm R, seeded): exact while there are fewer
outcomes than that, an unbiased sample of them after (the p99 of 1,000,000 latencies is then
estimated from 10,000 of them, typically within a fraction of a percentile rank). Concurrency
changes keep the last ``BATCH_CONCURRENCY_HISTORY`` entries.

Coverage is always reported next to a mean or a pass rate: ``scored/total`` says how many of
the template's items the figure is computed over.
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fi_evals._constants import BATCH_LATENCY_RESERVOIR, OUTPUT_FAILED, OUTPUT_PASSED

__all__ = ["BatchStats", "ConcurrencyChange", "FailingOutcome", "FailureSample",
           "JudgeUsage", "LatencyReservoir", "TemplateStats", "judge_usage"]

_SCORE_TYPES = frozenset({"score", "numeric"})
_COMPLETED = "completed"
_JUDGE_MARK = "[judge "
"""In every reason :data:`_JUDGE_TAG` matches: a reason without it has no tag (a substring
search, much cheaper than the regular expression on every outcome)."""
_JUDGE_TAG = re.compile(r"\[judge [^\[\]]*\]\s*$")
_TOKENS = re.compile(r"^(\d+)\+(\d+) tokens$")
_COST = re.compile(r"^cost (\S+)$")


@dataclass
class JudgeUsage:
    """What the LLM judge cost: outcomes it judged, outcomes its cache answered, tokens, cost.

    Attributes:
        judged: outcomes the judge was called for.
        cached: outcomes answered from the server's judge cache (judge calls saved).
        prompt_tokens, completion_tokens: the judge's ``usage``, summed.
        cost: summed cost (the server's ``--judge-price-in/--judge-price-out``); None when the
            server was given no prices.
    """

    judged: int = 0
    cached: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float | None = None

    def add(self, other: JudgeUsage) -> None:
        self.judged += other.judged
        self.cached += other.cached
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        if other.cost is not None:
            self.cost = (self.cost or 0.0) + other.cost

    def __bool__(self) -> bool:
        return bool(self.judged or self.cached)

    def to_dict(self) -> dict[str, Any]:
        return {"judged": self.judged, "cached": self.cached, "judge_calls_saved": self.cached,
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens, "cost": self.cost}

    def __str__(self) -> str:
        cost = "" if self.cost is None else f", cost {self.cost:.6g}"
        return (f"{self.judged:,} judged ({self.prompt_tokens:,} prompt + "
                f"{self.completion_tokens:,} completion tokens{cost}), {self.cached:,} from "
                f"the judge cache (judge calls saved)")


def judge_usage(reason: str | None) -> JudgeUsage | None:
    """The judge usage a server's reason tag states, None when the reason has no tag.

    The reference server ends a model-judged reason with ``[judge M, prompt P, 412+31
    tokens, cost 0.0012]``, or ``[judge M, prompt P, cached]`` for an outcome of its judge
    cache (``fi_evals.server.evaluators.judge``).
    """
    if not reason or _JUDGE_MARK not in reason:
        return None
    match = _JUDGE_TAG.search(reason)
    if match is None:
        return None
    usage = JudgeUsage()
    parts = [p.strip() for p in match.group(0).strip()[1:-1].split(",")]
    if "cached" in parts:
        usage.cached = 1
        return usage
    usage.judged = 1
    for part in parts:
        tokens, cost = _TOKENS.match(part), _COST.match(part)
        if tokens:
            usage.prompt_tokens, usage.completion_tokens = int(tokens[1]), int(tokens[2])
        elif cost:
            try:
                usage.cost = float(cost[1])
            except ValueError:
                pass
    return usage


class LatencyReservoir:
    """A fixed-size uniform sample of latencies (seconds) with quantiles over it."""

    def __init__(self, size: int = BATCH_LATENCY_RESERVOIR, seed: int = 0) -> None:
        self.size = size
        self.count = 0
        self._sample: list[float] = []
        self._rng = random.Random(seed)

    def add(self, seconds: float) -> None:
        self.count += 1
        if len(self._sample) < self.size:
            self._sample.append(seconds)
            return
        slot = self._rng.randrange(self.count)
        if slot < self.size:
            self._sample[slot] = seconds

    def add_many(self, seconds: float, n: int) -> None:
        """:meth:`add` ``n`` times the same latency (the outcomes of one sync request)."""
        room = min(n, self.size - len(self._sample))
        if room > 0:
            self._sample.extend([seconds] * room)
            self.count += room
            n -= room
        if n <= 0:
            return
        # Algorithm R on equal values: the k-th latency replaces a uniform slot with probability
        # size/k (what ``randrange(k) < size`` decides in add), drawn with random(), ~8x cheaper.
        rand, sample, size, first = self._rng.random, self._sample, self.size, self.count + 1
        for count in range(first, first + n):
            if rand() * count < size:
                sample[int(rand() * size)] = seconds
        self.count = first + n - 1

    @property
    def exact(self) -> bool:
        """True while every latency is in the sample (the quantiles are then exact)."""
        return self.count <= self.size

    def quantile(self, q: float) -> float | None:
        """The q-quantile (nearest rank) of the sample, or None when empty."""
        if not self._sample:
            return None
        ordered = sorted(self._sample)
        rank = max(1, math.ceil(q * len(ordered)))
        return ordered[rank - 1]

    def __repr__(self) -> str:
        return f"<LatencyReservoir {len(self._sample)}/{self.count} samples>"


@dataclass(frozen=True)
class FailingOutcome:
    """One failing or errored outcome, as the summary shows it.

    Attributes:
        index: the row's position in the input (0-based).
        where: the row as a person finds it (``item 12 (data.jsonl line 14)``).
        label: the eval's label.
        outcome: the verdict (``Failed``, ``score 0.31 < 0.5``) or the error type.
        reason: the evaluator's reason or the error message, on one line.
        errored: True for an error (no verdict), False for a failing verdict.
    """

    index: int
    where: str
    label: str
    outcome: str
    reason: str
    errored: bool


def _one_line(text: str | None, width: int = 160) -> str:
    flat = " ".join((text or "").split())
    return flat if len(flat) <= width else flat[:width - 3] + "..."


class FailureSample:
    """Counts the rows with an errored outcome and the rows with a failing verdict, and keeps
    the first ``limit`` of each for the summary (bounded memory): errors are listed even when
    failing verdicts are many, since they are what a run must fix first."""

    def __init__(self, limit: int = 5) -> None:
        self.limit = limit
        self.describe: Callable[[int], str] = lambda index: f"item {index}"
        """Names a row from its index, when it is kept (the reader knows file lines)."""
        self.errored_rows = 0
        self.failing_rows = 0
        self.errored: list[FailingOutcome] = []
        self.failing: list[FailingOutcome] = []
        self._kept = {True: 0, False: 0}

    def offer(self, index: int, results: Mapping[str, Any],
              templates: Mapping[str, TemplateStats]) -> None:
        """Look at one finished row (label -> EvalResult): count it, and keep its errored or
        failing outcomes while fewer than ``limit`` rows of that kind are kept."""
        errors: list[tuple[str, Any]] = []
        fails: list[tuple[str, Any, str]] = []
        for label, result in results.items():
            if not result.ok:
                errors.append((label, result))
                continue
            verdict = templates[label].verdict(result.output)
            if verdict is not None:
                fails.append((label, result, verdict))
        # Described (the reason on one line, where the row came from) only when kept.
        if errors:
            self.errored_rows += 1
            if self._kept[True] < self.limit:
                self._kept[True] += 1
                where = self.describe(index)
                for label, result in errors:
                    error = result.error
                    self.errored.append(FailingOutcome(
                        index, where, label, error.type if error else result.status,
                        _one_line(error.message if error else result.reason), True))
        if fails:
            self.failing_rows += 1
            if self._kept[False] < self.limit:
                self._kept[False] += 1
                where = self.describe(index)
                self.failing.extend(FailingOutcome(index, where, label, verdict,
                                                   _one_line(result.reason), False)
                                    for label, result, verdict in fails)

    @property
    def outcomes(self) -> list[FailingOutcome]:
        """The kept outcomes: errored ones first, then failing verdicts."""
        return [*self.errored, *self.failing]

    def __repr__(self) -> str:
        return (f"<FailureSample {self.errored_rows} errored rows, {self.failing_rows} failing "
                f"rows, limit {self.limit}>")


@dataclass
class TemplateStats:
    """Aggregates of one eval spec over the batch.

    Attributes:
        label: the spec's label; name: the template; output_type: its output type.
        total: outcomes recorded (one per item).
        scored: outcomes with a result (the rest are errors).
        passed: scored outcomes that pass (a "Passed" verdict, or a score at or above the
            spec's ``pass_threshold``).
        graded: scored outcomes that have a pass/fail meaning (choice templates have none).
        score_sum: sum of the scores ("Passed" counts 1, "Failed" 0).
        score_count: outcomes in ``score_sum``.
        errors: error type name -> count.
        judge: the LLM judge's usage for this spec (outcomes judged, cached, tokens, cost).
    """

    label: str
    name: str
    output_type: str
    pass_threshold: float
    total: int = 0
    scored: int = 0
    passed: int = 0
    graded: int = 0
    score_sum: float = 0.0
    score_count: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    judge: JudgeUsage = field(default_factory=JudgeUsage)

    def record_result(self, output: Any, reason: str | None = None) -> None:
        self.total += 1
        self.scored += 1
        usage = judge_usage(reason)
        if usage is not None:
            self.judge.add(usage)
        score = self._score(output)
        if score is None:
            return
        self.score_sum += score
        self.score_count += 1
        self.graded += 1
        if self.grade(output):
            self.passed += 1

    def grade(self, output: Any) -> bool | None:
        """Whether the verdict ``output`` passes this spec: a "Passed" (or true) output, or a
        score at or above ``pass_threshold``; None when it has no pass/fail meaning (choices).
        The one rule behind ``passed``, the run store's verdicts and the CI formats."""
        score = self._score(output)
        if score is None:
            return None
        if self.output_type in _SCORE_TYPES:
            return score >= self.pass_threshold
        return score == 1.0

    def score(self, output: Any) -> float | None:
        """``output`` as a number (a "Passed" verdict is 1, "Failed" 0), or None (choices)."""
        return self._score(output)

    def verdict(self, output: Any) -> str | None:
        """How ``output`` fails this spec (``Failed``, ``score 0.31 < 0.5``), None if it passes
        or has no pass/fail meaning (choices)."""
        score = self._score(output)
        if score is None:
            return None
        if self.output_type in _SCORE_TYPES:
            return None if score >= self.pass_threshold else (
                f"score {score:.3g} < {self.pass_threshold:g}")
        return None if score == 1.0 else str(output)

    def record_error(self, error_type: str) -> None:
        self.total += 1
        self.errors[error_type] += 1

    def record_outcomes(self, results: Iterable[Any]) -> int:
        """Record outcomes (:class:`~fi_evals.results.EvalResult` objects) as :meth:`record_result`
        (scored ones) and :meth:`record_error` (the others, by error type or status) would, one
        by one, in one loop; returns how many were scored."""
        total = scored = graded = passed = score_count = 0
        score_sum = self.score_sum
        is_score = self.output_type in _SCORE_TYPES
        threshold = self.pass_threshold
        isfinite = math.isfinite
        for result in results:
            total += 1
            if result.status != _COMPLETED:
                error = result.error
                self.errors[error.type if error else result.status] += 1
                continue
            scored += 1
            reason = result.reason
            if reason and _JUDGE_MARK in reason:
                usage = judge_usage(reason)
                if usage is not None:
                    self.judge.add(usage)
            output = result.output
            kind = output.__class__
            if kind is float or kind is int:  # a number (bool is neither), as _score reads it
                score = float(output) if isfinite(output) else None
            else:
                score = self._score(output)
            if score is None:
                continue
            score_sum += score
            score_count += 1
            graded += 1
            if (score >= threshold) if is_score else (score == 1.0):  # grade()
                passed += 1
        self.total += total
        self.scored += scored
        self.graded += graded
        self.passed += passed
        self.score_count += score_count
        self.score_sum = score_sum
        return scored

    def _score(self, output: Any) -> float | None:
        if output == OUTPUT_PASSED:
            return 1.0
        if output == OUTPUT_FAILED:
            return 0.0
        if isinstance(output, bool):
            return float(output)
        if isinstance(output, (int, float)) and math.isfinite(output):
            return float(output)
        return None

    @property
    def coverage(self) -> float | None:
        """Share of the template's items that got a result (None before any item)."""
        return self.scored / self.total if self.total else None

    @property
    def pass_rate(self) -> float | None:
        """Share of graded items that pass, or None when none was graded."""
        return self.passed / self.graded if self.graded else None

    @property
    def mean_score(self) -> float | None:
        return self.score_sum / self.score_count if self.score_count else None

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label, "template": self.name, "output_type": self.output_type,
            "total": self.total, "scored": self.scored, "coverage": self.coverage,
            "passed": self.passed, "graded": self.graded, "pass_rate": self.pass_rate,
            "mean_score": self.mean_score, "pass_threshold": self.pass_threshold,
            "errors": dict(self.errors),
            **({"judge": self.judge.to_dict()} if self.judge else {}),
        }

    def __repr__(self) -> str:
        cov = f"{self.scored}/{self.total}"
        rate = "n/a" if self.pass_rate is None else f"{self.pass_rate:.1%}"
        return f"<TemplateStats {self.label!r} scored {cov} pass {rate}>"


@dataclass(frozen=True)
class ConcurrencyChange:
    """One change of the in-flight request limit (adaptive concurrency)."""

    at: float
    """Seconds since the batch started."""
    limit: int
    reason: str
    """``"start"``, ``"throttled"`` (429/503: decrease) or ``"recovered"`` (increase)."""


@dataclass
class BatchStats:
    """Per-template aggregates and whole-batch figures.

    Attributes:
        templates: label -> :class:`TemplateStats`, in spec order.
        items: items with every outcome recorded.
        latency: per-outcome latency sample (seconds from sending an item's request to having
            its outcome: the request for sync runs, submission to completion for async ones).
        requests: HTTP requests sent by this batch (retries included).
        retries: of those, how many were retries.
        throttled: 429/503 answers seen (each shrinks the in-flight limit).
        wall_time: seconds from start to the end of the batch.
        concurrency: the in-flight limit's history (bounded).
        resumed: outcomes re-attached from a journal instead of being submitted again.
        failures: the first failing or errored rows (``show`` of them), for the summary.
    """

    templates: dict[str, TemplateStats]
    items: int = 0
    latency: LatencyReservoir = field(default_factory=LatencyReservoir)
    requests: int = 0
    retries: int = 0
    throttled: int = 0
    wall_time: float = 0.0
    concurrency: list[ConcurrencyChange] = field(default_factory=list)
    resumed: int = 0
    failures: FailureSample = field(default_factory=FailureSample)

    def note_item(self, index: int, results: Mapping[str, Any]) -> None:
        """Count one finished row and offer it to the failure sample."""
        self.items += 1
        self.failures.offer(index, results, self.templates)

    @property
    def error_rate(self) -> float:
        """Errored outcomes / outcomes (0.0 for an empty batch)."""
        return self.errors / self.outcomes if self.outcomes else 0.0

    @property
    def outcomes(self) -> int:
        return sum(t.total for t in self.templates.values())

    @property
    def judge(self) -> JudgeUsage:
        """The LLM judge's usage over every spec."""
        total = JudgeUsage()
        for t in self.templates.values():
            total.add(t.judge)
        return total

    @property
    def errors(self) -> int:
        return sum(t.error_count for t in self.templates.values())

    def percentiles(self) -> dict[str, float | None]:
        return {f"p{int(q * 100)}": self.latency.quantile(q) for q in (0.5, 0.95, 0.99)}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view (what ``fi-evals run`` writes next to its output)."""
        return {
            "items": self.items, "outcomes": self.outcomes, "errors": self.errors,
            "templates": {k: v.to_dict() for k, v in self.templates.items()},
            "latency_seconds": {**self.percentiles(), "samples": self.latency.count,
                                "exact": self.latency.exact},
            "requests": self.requests, "retries": self.retries, "throttled": self.throttled,
            "wall_time_seconds": self.wall_time, "resumed": self.resumed,
            "concurrency": [c.__dict__ for c in self.concurrency],
            **({"judge": self.judge.to_dict()} if self.judge else {}),
        }

    def __repr__(self) -> str:
        return (f"<BatchStats {self.items} items, {self.outcomes} outcomes, {self.errors} "
                f"errors, {self.requests} requests, {self.wall_time:.1f}s>")
