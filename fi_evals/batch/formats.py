"""A batch's result for CI and notebooks: JUnit XML, a Markdown summary, an HTML summary.

**JUnit** (``BatchResult.to_junit``, ``fi-evals run --junit PATH``): one ``<testsuite>`` per
eval with one ``<testcase>`` per row (``classname`` ``fi-evals.LABEL``, ``name`` ``row 12``
plus the row's ``id`` when it has one): a failing verdict is a ``<failure>`` whose message is
the verdict (``Failed``, ``score 0.31 < 0.5``) and whose text is the reason and the row's
inputs; an outcome without a verdict is an ``<error>`` of its error type. A last suite,
``fi-evals``, holds the run's own gates: the batch finished, errors within
``max_error_rate``, and one test case per threshold. The counts in each suite's attributes
come from the stats, so the file is written in one streaming pass per eval (rows are read
back from memory, the JSONL output or the run store, never all at once).

**Markdown** (``BatchResult.to_markdown``, ``--summary-md PATH``): the verdict, the summary
table, thresholds, and the first errored and failing rows (``show``) in ``<details>`` blocks:
short enough for a pull-request comment or ``$GITHUB_STEP_SUMMARY``.

**HTML** (``BatchResult._repr_html_``): the same, as a notebook shows it.
"""

from __future__ import annotations

import html
import json
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from xml.sax.saxutils import escape as xml_escape
from xml.sax.saxutils import quoteattr

from fi_evals.batch.summary import _errors, _ms, _num, _pct

if TYPE_CHECKING:
    from fi_evals.batch.output import BatchItem
    from fi_evals.batch.result import BatchResult
    from fi_evals.batch.stats import FailingOutcome, TemplateStats

__all__ = ["render_html", "render_markdown", "write_junit"]

_YES, _NO = "\u2705", "\u274c"
_INPUT_CHARS = 2_000
_MESSAGE_CHARS = 300
# Characters XML 1.0 cannot hold at all (a reason may carry any of them).
_NOT_XML = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


# --------------------------------------------------------------------------- JUnit


def _x(text: Any) -> str:
    return xml_escape(_NOT_XML.sub("?", str(text)))


def _attr(text: Any) -> str:
    return quoteattr(_NOT_XML.sub("?", str(text)))


def _one_line(text: str | None, width: int = _MESSAGE_CHARS) -> str:
    flat = " ".join((text or "").split())
    return flat if len(flat) <= width else flat[:width - 3] + "..."


def _case_name(item: BatchItem) -> str:
    ident = item.item.get("id") if isinstance(item.item, dict) else None
    return f"row {item.index}" + (f" id={ident}" if ident not in (None, "") else "")


def _inputs(item: BatchItem) -> str:
    text = json.dumps(dict(item.item), ensure_ascii=False, default=str)
    return text if len(text) <= _INPUT_CHARS else text[:_INPUT_CHARS - 3] + "..."


def _testcase(out: IO[str], item: BatchItem, label: str, stats: TemplateStats) -> None:
    result = item.results[label]
    runtime = result.runtime if isinstance(result.runtime, (int, float)) else 0
    out.write(f'    <testcase classname={_attr("fi-evals." + label)} '
              f'name={_attr(_case_name(item))} time="{runtime / 1000:.3f}"')
    body = f"\n\ninputs: {_inputs(item)}"
    if not result.ok:
        error = result.error
        kind = error.type if error else result.status
        message = error.message if error else (result.reason or result.status)
        out.write(f"><error type={_attr(kind)} message={_attr(_one_line(message))}>"
                  f"{_x(message + body)}</error></testcase>\n")
        return
    verdict = stats.verdict(result.output)
    if verdict is None:
        out.write("/>\n")
        return
    reason = result.reason or ""
    message = _one_line(f"{verdict}: {reason}")
    out.write(f"><failure type={_attr(verdict)} message={_attr(message)}>{_x(reason + body)}"
              f"</failure></testcase>\n")


def _gates(result: BatchResult) -> list[tuple[str, str | None]]:
    """The run's own test cases: (name, failure message or None)."""
    s = result.stats
    finished = None if result.stopped is None else (result.problems[0] if result.problems
                                                     else f"stopped ({result.stopped})")
    errors = None
    if s.errors and s.error_rate > result.max_error_rate:
        errors = (f"{s.errors:,} of {s.outcomes:,} outcomes errored ({s.error_rate:.1%} > "
                  f"{result.max_error_rate:.1%})")
    gates = [("the batch finished", finished),
             (f"errors within max error rate {result.max_error_rate:.1%}", errors)]
    gates += [(f"threshold {c.label}.{c.metric} >= {c.threshold:g}",
               None if c.passed else str(c)) for c in result.checks]
    return gates


def write_junit(result: BatchResult, path: str | os.PathLike[str]) -> Path:
    """Write ``result`` as JUnit XML (see the module docs); returns the path.

    Raises:
        ValueError: the rows were streamed to a CSV file only (nothing to read them from).
    """
    target = Path(path)
    s = result.stats
    gates = _gates(result)
    failures = sum(t.graded - t.passed for t in s.templates.values())
    failures += sum(1 for _, failure in gates if failure)
    tests = s.outcomes + len(gates)
    with open(target, "w", encoding="utf-8") as out:
        out.write('<?xml version="1.0" encoding="UTF-8"?>\n')
        out.write(f'<testsuites name="fi-evals" tests="{tests}" failures="{failures}" '
                  f'errors="{s.errors}" time="{s.wall_time:.3f}">\n')
        for label, t in s.templates.items():
            out.write(f'  <testsuite name={_attr(label)} tests="{t.total}" '
                      f'failures="{t.graded - t.passed}" errors="{t.error_count}" '
                      f'skipped="0">\n')
            out.write(f'    <properties><property name="template" value={_attr(t.name)}/>'
                      f'<property name="output_type" value={_attr(t.output_type)}/>'
                      f'<property name="pass_threshold" value="{t.pass_threshold:g}"/>'
                      f'</properties>\n')
            for item in result:
                _testcase(out, item, label, t)
            out.write("  </testsuite>\n")
        failed = sum(1 for _, failure in gates if failure)
        out.write(f'  <testsuite name="fi-evals" tests="{len(gates)}" failures="{failed}" '
                  f'errors="0" skipped="0">\n')
        for name, failure in gates:
            out.write(f"    <testcase classname=\"fi-evals.run\" name={_attr(name)}")
            out.write("/>\n" if failure is None else
                      f"><failure message={_attr(_one_line(failure))}>{_x(failure)}"
                      f"</failure></testcase>\n")
        out.write("  </testsuite>\n</testsuites>\n")
    return target


# --------------------------------------------------------------------------- Markdown


def _md(text: Any) -> str:
    """A table cell: one line, pipes and angle brackets escaped."""
    flat = " ".join(str(text).split())
    return html.escape(flat, quote=False).replace("|", "\\|")


def _state(result: BatchResult) -> str:
    return {None: "complete", "deadline": "stopped at the deadline",
            "interrupted": "interrupted", "input_error": "stopped: reading the input failed",
            }.get(result.stopped, str(result.stopped))


def _rows_table(kept: Iterable[FailingOutcome]) -> list[str]:
    lines = ["| row | eval | verdict | reason |", "|:--|:--|:--|:--|"]
    lines += [f"| {_md(o.where)} | `{_md(o.label)}` | {_md(o.outcome)} | {_md(o.reason)} |"
              for o in kept]
    return lines


def render_markdown(result: BatchResult) -> str:
    """The Markdown summary of ``result`` (see the module docs)."""
    s = result.stats
    mark = f"{_YES} PASS" if result.passed else f"{_NO} FAIL"
    run = f" \u00b7 run `{result.run.id}`" if result.run is not None else ""
    head = (f"**{s.items:,} rows \u00d7 {len(result.specs)} evals** = {s.outcomes:,} outcomes "
            f"in {s.wall_time:.1f} s ({_state(result)}){run}")
    lines = [f"### fi-evals: {mark}", "", head, "",
             "| eval | type | scored | coverage | pass rate | mean | errors |",
             "|:--|:--|--:|--:|--:|--:|:--|"]
    for t in s.templates.values():
        approx = " ~" if t.label in result.approximations else ""
        lines.append(f"| `{_md(t.label)}`{approx} | {_md(t.output_type)} | "
                     f"{t.scored:,}/{t.total:,} | {_pct(t.coverage)} | {_pct(t.pass_rate)} | "
                     f"{_num(t.mean_score)} | {_md(_errors(t))} |")
    if result.approximations:
        lines += ["", "~ computed by a local approximation, not an LLM judge."]
    if result.checks:
        lines += ["", "**Thresholds**", ""]
        lines += [f"- {_YES if c.passed else _NO} `{_md(c.label)}.{c.metric}` "
                  f"{_num(c.value)} \u2265 {c.threshold:g} (coverage {_pct(c.coverage)})"
                  for c in result.checks]
    if result.problems:
        lines += ["", "**Why it fails**: " + _md("; ".join(result.problems))]
    sample = s.failures
    for title, total, kept in (("Errored rows", sample.errored_rows, sample.errored),
                               ("Failing rows", sample.failing_rows, sample.failing)):
        if not total:
            continue
        shown = len({o.index for o in kept})
        lines += ["", f"<details><summary>{title}: {total:,} (first {shown} shown)</summary>",
                  "", *_rows_table(kept), "", "</details>"]
    p = s.percentiles()
    lines += ["", (f"latency p50 {_ms(p['p50'])} \u00b7 p95 {_ms(p['p95'])} \u00b7 p99 "
                   f"{_ms(p['p99'])} \u00b7 {s.requests:,} requests ({s.retries:,} retries, "
                   f"{s.throttled:,} throttled)")]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- HTML

_STYLE = ("font-family:system-ui,sans-serif;font-size:13px;border-collapse:collapse;"
          "margin:4px 0")
_CELL = "padding:2px 8px;border-bottom:1px solid #ddd;text-align:left"


def _h(text: Any) -> str:
    return html.escape(str(text))


def _table(head: list[str], rows: list[list[str]]) -> str:
    cells = "".join(f'<th style="{_CELL}">{_h(c)}</th>' for c in head)
    body = "".join("<tr>" + "".join(f'<td style="{_CELL}">{c}</td>' for c in r) + "</tr>"
                   for r in rows)
    return f'<table style="{_STYLE}"><thead><tr>{cells}</tr></thead><tbody>{body}</tbody></table>'


def render_html(result: BatchResult) -> str:
    """The summary table and the first errored and failing rows, as HTML (notebooks)."""
    s = result.stats
    colour = "#1a7f37" if result.passed else "#cf222e"
    verdict = "PASS" if result.passed else "FAIL"
    run = f" &middot; run <code>{_h(result.run.id)}</code>" if result.run is not None else ""
    parts = [(f'<div><b style="color:{colour}">{verdict}</b> &middot; {s.items:,} rows &times; '
              f"{len(result.specs)} evals = {s.outcomes:,} outcomes in {s.wall_time:.1f} s "
              f"({_h(_state(result))}){run}</div>")]
    rows = [[f"<code>{_h(t.label)}</code>", _h(t.output_type), f"{t.scored:,}/{t.total:,}",
             _pct(t.coverage), _pct(t.pass_rate), _num(t.mean_score), _h(_errors(t))]
            for t in s.templates.values()]
    parts.append(_table(["eval", "type", "scored", "coverage", "pass rate", "mean", "errors"],
                        rows))
    if result.checks:
        parts.append("<div>" + "<br>".join(_h(str(c)) for c in result.checks) + "</div>")
    if result.problems:
        parts.append(f'<div style="color:{colour}">{_h("; ".join(result.problems))}</div>')
    sample = s.failures
    for title, total, kept in (("errored rows", sample.errored_rows, sample.errored),
                               ("failing rows", sample.failing_rows, sample.failing)):
        if total:
            shown = len({o.index for o in kept})
            parts.append(f"<div><b>{title}</b>: {total:,} (first {shown} shown)</div>")
            parts.append(_table(["row", "eval", "verdict", "reason"], [
                [_h(o.where), f"<code>{_h(o.label)}</code>", _h(o.outcome), _h(o.reason)]
                for o in kept]))
    return "<div>" + "".join(parts) + "</div>"
