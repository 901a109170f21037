"""The readable summary of a batch: one line per eval spec, then the run's figures.

::

    240 items x 6 evals = 1,440 outcomes in 2.1s (complete)
    eval            type        scored    coverage  pass rate  mean   errors
    is_json         Pass/Fail   240/240   100.0%    87.9%      0.879  -
    ...
    latency p50 14ms  p95 41ms  p99 60ms (exact, 1,440 samples)
    requests 36 (retries 0, throttled 0)  concurrency 8 (limit 8, 0 changes)
    thresholds: PASS is_json.pass_rate 0.879 >= 0.8, coverage 100.0% >= 100%

Coverage sits next to every pass rate and mean: a figure over fewer scored items than inputs
is visible at a glance.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fi_evals.batch.result import BatchResult
    from fi_evals.batch.stats import FailingOutcome, TemplateStats
    from fi_evals.runs.run import Run

__all__ = ["render_summary"]

_HEADERS = ("eval", "type", "scored", "coverage", "pass rate", "mean", "errors")
_MARK = "~"
"""Marks an eval computed by a local approximation instead of an LLM judge (with a footnote)."""


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 1000:.0f}ms"


def _errors(stats: TemplateStats) -> str:
    if not stats.errors:
        return "-"
    return ", ".join(f"{name} {count:,}" for name, count in stats.errors.most_common(3)) + (
        " ..." if len(stats.errors) > 3 else "")


def _table(rows: Sequence[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]


def _rows_section(title: str, total: int, kept: list[FailingOutcome], more: str) -> list[str]:
    if not total:
        return []
    if not kept:
        return [f"{title}: {total:,} ({more} lists them)"]
    shown = len({o.index for o in kept})
    note = "all shown" if shown == total else f"the first {shown} shown; {more} for more"
    rows = [(o.where, o.label, o.outcome, o.reason) for o in kept]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return [f"{title}: {total:,} ({note})"] + [
        "  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[3] for r in rows]


def _failures(result: BatchResult, cli: bool) -> list[str]:
    sample = result.stats.failures
    more = "--show N" if cli else "show=N"
    return (_rows_section("errored rows", sample.errored_rows, sample.errored, more)
            + _rows_section("failing rows", sample.failing_rows, sample.failing, more))


def _verdict_line(result: BatchResult, cli: bool) -> str:
    problems = result.problems
    if cli:
        head = "exit 0: PASS" if not problems else "exit 1: FAIL"
    else:
        head = "PASS" if not problems else "FAIL"
    if not problems:
        return (f"{head}: every outcome is a verdict"
                + (" and every threshold holds" if result.checks else ""))
    text = "; ".join(problems)
    if result.stats.errors and result.stats.error_rate > result.max_error_rate:
        allow = "--max-error-rate R" if cli else "max_error_rate=R"
        text += f" (the reasons are listed above; {allow} tolerates a share of errors)"
    return f"{head}: {text}"


def _run_line(run: Run, cli: bool) -> str:
    if not cli:
        return f"run: {run.id} ({run.folder})"
    from fi_evals.runs.store import default_runs_dir

    in_default = run.folder.parent.resolve() == default_runs_dir().resolve()
    ref = run.id if in_default else str(run.folder)
    return f"run: {run.id}  (fi-evals view {ref})"


def render_summary(result: BatchResult, *, cli: bool = False) -> str:
    """The summary table of ``result`` as text.

    Args:
        result: the batch's result.
        cli: speak the command line's language (``--show N``, exit statuses) instead of
            Python's (``show=N``).
    """
    s = result.stats
    state = {None: "complete", "deadline": "STOPPED at the deadline",
             "interrupted": "INTERRUPTED: partial result",
             "input_error": f"STOPPED: reading the input failed: {result.input_error}",
             }.get(result.stopped, result.stopped)
    lines = [f"{s.items:,} items x {len(result.specs)} evals = {s.outcomes:,} outcomes in "
             f"{s.wall_time:.1f}s ({state})"]
    rows = [_HEADERS]
    marked = result.approximations
    for t in s.templates.values():
        label = t.label + (_MARK if t.label in marked else "")
        rows.append((label, t.output_type, f"{t.scored:,}/{t.total:,}", _pct(t.coverage),
                     _pct(t.pass_rate), _num(t.mean_score), _errors(t)))
    lines += _table(rows)
    for label, note in marked.items():
        judge = "--judge-url URL --judge-model NAME" if cli else "a judge on the server"
        lines.append(f"{_MARK} {label}: {note}; for a judge's verdict, run with {judge}")
    p = s.percentiles()
    sample = "exact" if s.latency.exact else "sampled"
    lines.append(f"latency p50 {_ms(p['p50'])}  p95 {_ms(p['p95'])}  p99 {_ms(p['p99'])} "
                 f"({sample}, {s.latency.count:,} samples)")
    limits = [c.limit for c in s.concurrency]
    changes = max(0, len(s.concurrency) - 1)
    conc = (f"concurrency {limits[-1]} (min {min(limits)}, max {max(limits)}, {changes} "
            f"changes)" if limits else "")
    resumed = f"  resumed {s.resumed:,} outcomes from the journal" if s.resumed else ""
    lines.append(f"requests {s.requests:,} (retries {s.retries:,}, throttled {s.throttled:,})"
                 f"  {conc}{resumed}".rstrip())
    judged = [t for t in s.templates.values() if t.judge]
    if judged:
        lines += [f"judge {t.label}: {t.judge}" for t in judged]
        if len(judged) > 1:
            lines.append(f"judge total: {s.judge}")
    if result.output is not None:
        lines.append(f"output: {result.output}")
    if result.run is not None:
        lines.append(_run_line(result.run, cli))
    if result.checks:
        verdict = "PASS" if all(c.passed for c in result.checks) else "FAIL"
        lines.append(f"thresholds: {verdict}")
        lines += [f"  {c}" for c in result.checks]
        if not result.complete:
            lines.append("  (the batch did not finish: thresholds cannot hold)")
    lines += _failures(result, cli)
    lines.append(_verdict_line(result, cli))
    return "\n".join(lines)
