"""``fi-evals view RUN --export report.html``: the viewer's page as one self-contained file.

The file is the viewer's own page with the data embedded (a JSON ``<script>`` element): no
server, no network, fit for a CI artifact. It holds every run's overview in full and at most
``rows`` rows per run, chosen so that a failing run shows why: its errored rows first, then
its failing rows, then passing ones, shown in input order; the page says how many it holds
of how many. With two runs or more, the diff of the first two (default key) is embedded with
its lists capped the same way. Nothing needs the server extra.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fi_evals._constants import VIEW_EXPORT_ROWS
from fi_evals.runs.diff import CHANGE_KINDS, diff_runs
from fi_evals.runs.run import RowQuery, Run
from fi_evals.runs.schema import ERRORED, FAILED, PASSED

__all__ = ["export_html"]

_MARKER = '<script id="fi-data" type="application/json">null</script>'


def _rows(run: Run, cap: int) -> list[dict[str, Any]]:
    chosen: list[dict[str, Any]] = []
    for status in (ERRORED, FAILED, PASSED):
        room = cap - len(chosen)
        if room <= 0:
            break
        page = run.page(RowQuery(verdict=status), limit=room, preview=False, count=False)
        chosen += page["rows"]
    return sorted(chosen, key=lambda r: r["index"])


def _embedded_diff(runs: Sequence[Run], cap: int) -> dict[str, Any] | None:
    if len(runs) < 2:
        return None
    with diff_runs(runs[0], runs[1]) as diff:
        summary = diff.to_dict()
        summary["counts"] = {kind: diff.count(kind) for kind in CHANGE_KINDS}
        lists = {kind: diff.rows(kind, limit=cap) for kind in CHANGE_KINDS}
    return {"base_n": 0, "new_n": 1, "summary": summary, "lists": lists}


def export_html(runs: Sequence[Run], path: str | os.PathLike[str], *,
                rows: int = VIEW_EXPORT_ROWS) -> Path:
    """Write the report of ``runs`` to ``path``; returns the path.

    Args:
        runs: the runs, as ``fi-evals view`` would show them.
        path: the HTML file to write.
        rows: the most rows embedded per run (errored, then failing, then passing).

    Raises:
        ValueError: no runs, or ``rows`` below 0.
    """
    from fi_evals.runs.viewer import page_html  # the page only: no FastAPI needed

    if not runs:
        raise ValueError("export: no run to export")
    if rows < 0:
        raise ValueError(f"rows must be 0 or more, not {rows}")
    embedded = {str(n): _rows(run, rows) for n, run in enumerate(runs)}
    notes = []
    for n, run in enumerate(runs):
        held, total = len(embedded[str(n)]), run.rows
        if held < total:
            notes.append(f"run {n} ({run.id}): {held:,} of its {total:,} rows (errored and "
                         f"failing first)")
    note = ("This report holds " + "; ".join(notes) + f". The cap is {rows:,} rows per run "
            "(--export-rows); `fi-evals view` shows every row.") if notes else None
    data = {"runs": [run.overview() for run in runs], "rows": embedded, "note": note,
            "diff": _embedded_diff(runs, rows)}
    # "</" could close the script element early and "<!--" confuse the HTML parser: both can
    # only occur inside JSON strings, where "<\/" and "<\u0021--" mean the same text.
    blob = json.dumps(data, ensure_ascii=False, default=str).replace("</", "<\\/")
    blob = blob.replace("<!--", "<\\u0021--")
    page = page_html()
    if _MARKER not in page:
        raise RuntimeError("the viewer's page has no data element to fill")
    html = page.replace(_MARKER, f'<script id="fi-data" type="application/json">{blob}'
                                 f"</script>")
    target = Path(path)
    target.write_text(html, "utf-8")
    return target
