"""What ``evaluate_batch`` returns: items in input order, stats, thresholds, a summary table.

Thresholds are written ``{"LABEL": 0.8}`` or ``{"LABEL.METRIC": 0.8}`` with METRIC one of
``pass_rate`` (the default for Pass/Fail templates), ``mean`` (the default for score
templates) and ``coverage``. Every threshold on a pass rate or a mean also requires the
spec's coverage to reach ``BATCH_THRESHOLD_MIN_COVERAGE`` (unless a ``LABEL.coverage``
threshold says otherwise): a mean over fewer scored items than inputs never passes unseen.
A batch that stopped early (deadline, Ctrl-C) fails its thresholds.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fi_evals._constants import BATCH_THRESHOLD_MIN_COVERAGE
from fi_evals._extras import require
from fi_evals.batch.output import BatchItem, open_writer, read_jsonl
from fi_evals.batch.specs import EvalSpec
from fi_evals.batch.stats import BatchStats, FailingOutcome, TemplateStats

if TYPE_CHECKING:
    from fi_evals.runs.run import Run

__all__ = ["BatchResult", "ThresholdCheck", "check_thresholds", "parse_thresholds"]

_METRICS = ("pass_rate", "mean", "coverage")


@dataclass(frozen=True)
class ThresholdCheck:
    """One threshold against the batch's figures."""

    label: str
    metric: str
    threshold: float
    value: float | None
    coverage: float | None
    min_coverage: float
    passed: bool

    def __str__(self) -> str:
        value = "n/a" if self.value is None else f"{self.value:.3f}"
        cov = "n/a" if self.coverage is None else f"{self.coverage:.1%}"
        gate = "" if self.metric == "coverage" else f", coverage {cov} >= {self.min_coverage:.0%}"
        return (f"{'PASS' if self.passed else 'FAIL'} {self.label}.{self.metric} {value} >= "
                f"{self.threshold:g}{gate}")


def parse_thresholds(thresholds: Mapping[str, float] | None,
                     stats: Mapping[str, TemplateStats]) -> list[tuple[str, str, float]]:
    """``{"LABEL[.METRIC]": value}`` -> ``(label, metric, value)``, checked against the specs.

    Raises:
        ValueError: an unknown label or metric, a value outside [0, 1], or a choice template
            without an explicit metric.
    """
    out = []
    for key, value in (thresholds or {}).items():
        label, metric = key, ""
        if key not in stats and "." in key:
            label, _, metric = key.rpartition(".")
        if label not in stats:
            raise ValueError(f"threshold {key!r}: no eval labelled {label!r} (labels: "
                             f"{', '.join(stats)})")
        if metric and metric not in _METRICS:
            raise ValueError(f"threshold {key!r}: unknown metric {metric!r} "
                             f"(one of {', '.join(_METRICS)})")
        if not metric:
            kind = stats[label].output_type
            if kind == "Pass/Fail":
                metric = "pass_rate"
            elif kind in ("score", "numeric"):
                metric = "mean"
            else:
                raise ValueError(f"threshold {key!r}: {kind} outputs have no default metric; "
                                 f"write {label}.coverage")
        number = float(value)
        if not 0.0 <= number <= 1.0:
            raise ValueError(f"threshold {key!r}: {number} is not between 0 and 1")
        out.append((label, metric, number))
    return out


def check_thresholds(parsed: list[tuple[str, str, float]],
                     stats: Mapping[str, TemplateStats], *,
                     complete: bool = True) -> list[ThresholdCheck]:
    """Compare parsed thresholds with the stats (see the module docs for the rules)."""
    explicit_cov = {label: t for label, metric, t in parsed if metric == "coverage"}
    checks = []
    for label, metric, threshold in parsed:
        s = stats[label]
        value = {"pass_rate": s.pass_rate, "mean": s.mean_score, "coverage": s.coverage}[metric]
        min_cov = explicit_cov.get(label, BATCH_THRESHOLD_MIN_COVERAGE)
        ok = complete and value is not None and value >= threshold
        if metric != "coverage":
            ok = ok and s.coverage is not None and s.coverage >= min_cov
        checks.append(ThresholdCheck(label=label, metric=metric, threshold=threshold,
                                     value=value, coverage=s.coverage, min_coverage=min_cov,
                                     passed=ok))
    return checks


class BatchResult:
    """The outcome of a batch.

    Attributes:
        specs: the eval specs, in order (their labels key ``BatchItem.results``).
        stats: per-template and overall figures (:class:`~fi_evals.batch.stats.BatchStats`).
        stopped: None when every item was read and finished; ``"deadline"`` or
            ``"interrupted"`` when the batch stopped early (its items then say so);
            ``"input_error"`` when reading the input raised (the rows read before are
            finished; ``input_error`` says what happened).
        input_error: the exception the input raised, as text, or None.
        output: the streamed output file, when ``output=`` was given.
        checks: one :class:`ThresholdCheck` per threshold.
        max_error_rate: the share of errored outcomes that ``passed`` tolerates.
        approximations: label -> what stands in for the LLM judge, for the evals the server
            computed with a local approximation (marked in the summary).
        run: the run as kept in the run store (:class:`fi_evals.runs.Run`), or None when it
            was not kept (``run_name=``, ``runs_dir=``, ``save=``; ``fi-evals run`` keeps
            every run unless ``--no-save``).
    """

    def __init__(self, specs: list[EvalSpec], stats: BatchStats, *,
                 items: list[BatchItem] | None, output: str | os.PathLike[str] | None,
                 stopped: str | None, checks: list[ThresholdCheck],
                 input_error: str | None = None, max_error_rate: float = 0.0,
                 approximations: Mapping[str, str] | None = None) -> None:
        self.specs = specs
        self.input_error = input_error
        self.stats = stats
        self.stopped = stopped
        self.output = Path(output) if output is not None else None
        self.checks = checks
        self.max_error_rate = max_error_rate
        self.approximations = dict(approximations or {})
        self.run: Run | None = None
        self._items = items

    # ------------------------------------------------------------------ status

    @property
    def interrupted(self) -> bool:
        """True when Ctrl-C stopped the batch (the result is partial)."""
        return self.stopped == "interrupted"

    @property
    def complete(self) -> bool:
        """True when every input item was read and has its outcomes."""
        return self.stopped is None

    @property
    def passed(self) -> bool:
        """True only when the batch finished, its errors are within ``max_error_rate`` and
        every threshold holds (what ``fi-evals run`` turns into exit status 0)."""
        return not self.problems

    @property
    def problems(self) -> list[str]:
        """Why ``passed`` is False, one phrase each (empty when it is True)."""
        found = []
        if self.stopped is not None:
            found.append({"deadline": "the batch stopped at its deadline",
                          "interrupted": "the batch was interrupted",
                          "input_error": f"reading the input failed ({self.input_error})",
                          }.get(self.stopped, f"the batch stopped ({self.stopped})"))
        s = self.stats
        if s.errors and s.error_rate > self.max_error_rate:
            found.append(f"{s.errors:,} of {s.outcomes:,} outcomes errored "
                         f"({s.error_rate:.1%} > max error rate {self.max_error_rate:.1%})")
        failed = [c for c in self.checks if not c.passed]
        if failed:
            found.append(f"{len(failed)} of {len(self.checks)} thresholds failed")
        return found

    # ------------------------------------------------------------------ items

    @property
    def items(self) -> list[BatchItem]:
        """Every item in input order (read back from the output file when it was streamed)."""
        return list(self)

    def __iter__(self) -> Iterator[BatchItem]:
        if self._items is not None:
            return iter(self._items)
        if self.output is not None and self.output.suffix.lower() in (".jsonl", ".ndjson"):
            return read_jsonl(self.output)
        if self.run is not None:
            return self.run.iter_items()
        raise ValueError("the items were streamed to a CSV file and not kept: read "
                         f"{self.output} (or stream to a .jsonl output to iterate them)")

    def __len__(self) -> int:
        return self.stats.items

    def __getitem__(self, index: int) -> BatchItem:
        if self._items is not None:
            return self._items[index]
        if self.run is not None:  # read back from the run store, one row
            position = index + len(self) if index < 0 else index
            if not 0 <= position < len(self):
                raise IndexError(f"item {index} out of range ({len(self)} items)")
            return self.run.item(position)
        raise TypeError("the items were streamed to the output file: iterate the result")

    def passing_items(self) -> list[BatchItem]:
        """Items whose every outcome is a verdict and every graded verdict passes."""
        return [i for i in self if i.passed is True]

    def failing_items(self) -> list[BatchItem]:
        """Items scored on every spec with at least one verdict that does not pass."""
        return [i for i in self if i.passed is False]

    def failed_items(self) -> list[BatchItem]:
        """Items with at least one outcome that is an error (no verdict)."""
        return [i for i in self if not i.ok]

    # ------------------------------------------------------------------ export

    def to_jsonl(self, path: str | os.PathLike[str]) -> Path:
        """Write every item as one JSON object per line; returns the path."""
        return self._export(path, (".jsonl", ".ndjson"))

    def to_csv(self, path: str | os.PathLike[str]) -> Path:
        """Write every item as one CSV row (outcomes flattened into columns); returns the path."""
        return self._export(path, (".csv",))

    def _export(self, path: str | os.PathLike[str], suffixes: tuple[str, ...]) -> Path:
        target = Path(path)
        if target.suffix.lower() not in suffixes:
            target = target.with_suffix(suffixes[0])
        same_kind = self.output is not None and self.output.suffix.lower() in suffixes
        if self._items is None and same_kind and self.output != target:
            shutil.copyfile(self.output, target)  # type: ignore[arg-type]
            return target
        writer = open_writer(target, [s.label or s.name for s in self.specs])
        try:
            for item in self:
                writer.write(item)
        finally:
            writer.close()
        return target

    def to_junit(self, path: str | os.PathLike[str]) -> Path:
        """Write a JUnit XML report: a test case per row and eval (a failing verdict is a
        failure with its reason, an error an error), and one per threshold; returns the path.
        See :mod:`fi_evals.batch.formats`."""
        from fi_evals.batch.formats import write_junit

        return write_junit(self, path)

    def to_markdown(self) -> str:
        """A Markdown summary (verdict, table, thresholds, first failing and errored rows)
        for a pull-request comment or ``$GITHUB_STEP_SUMMARY``."""
        from fi_evals.batch.formats import render_markdown

        return render_markdown(self)

    def _repr_html_(self) -> str:
        """What a notebook shows: the summary table and the first failing rows."""
        from fi_evals.batch.formats import render_html

        return render_html(self)

    def to_dataframe(self) -> Any:
        """One row per item: its fields, then ``LABEL.output``/``.status``/``.error``...

        Raises:
            ImportError: pandas is missing (``pip install 'fi-evals[pandas]'``).
        """
        pd = require("pandas", "pandas", "BatchResult.to_dataframe()")
        rows = []
        for item in self:
            row: dict[str, Any] = {"index": item.index, **item.item}
            if item.task_output is not None:
                row["task_output"] = item.task_output
            row["passed"] = item.passed
            for label, r in item.results.items():
                row[f"{label}.output"] = r.output
                row[f"{label}.status"] = r.status
                row[f"{label}.reason"] = r.reason
                row[f"{label}.error"] = r.error.type if r.error else None
            rows.append(row)
        return pd.DataFrame(rows).set_index("index") if rows else pd.DataFrame()

    # ------------------------------------------------------------------ display

    def summary(self) -> str:
        """The summary table (also what ``print(result)`` shows)."""
        from fi_evals.batch.summary import render_summary

        return render_summary(self)

    @property
    def failures(self) -> list[FailingOutcome]:
        """The first failing or errored rows' outcomes (``show`` rows; for the summary)."""
        return list(self.stats.failures.outcomes)

    __str__ = summary

    def __repr__(self) -> str:
        state = self.stopped or "complete"
        return (f"<BatchResult {self.stats.items} items x {len(self.specs)} evals, "
                f"{self.stats.errors} errors, {state}, {'PASS' if self.passed else 'FAIL'}>")
