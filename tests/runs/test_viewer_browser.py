"""``fi-evals view`` in a real browser: Debian's chromium driven by Playwright.

A run with passing, failing and errored rows (and a second run for the diff) is served by the
viewer on loopback; the test opens the overview and checks its numbers against
``result.stats``, filters to failing rows, opens a row, searches, opens the diff, and opens
the exported report from a file. Screenshots go to ``build/screenshots/`` (gitignored) for a
person to look at.

``make test`` installs chromium through apt when it is missing (the ``services`` target), so
this runs in CI; it skips, saying why, only where no chromium binary exists at all. No browser
is ever downloaded: Playwright drives the system's chromium (``executable_path``).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fi_evals.batch import BatchResult
from fi_evals.runs.diff import diff_runs
from fi_evals.runs.export import export_html
from fi_evals.runs.viewer import RunningViewer, start_viewer

from .conftest import Scored

CHROMIUM = next((p for p in ("/usr/bin/chromium", shutil.which("chromium") or "",
                             shutil.which("chromium-browser") or "") if p and Path(p).exists()),
                None)
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SHOTS = Path(__file__).resolve().parents[2] / "build" / "screenshots"
TIMEOUT_MS = 15_000

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary on this machine "
                                "(make test installs Debian's chromium: apt-get install chromium)")


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


@pytest.fixture
def browser() -> Iterator[Any]:
    """Chromium, started after the runs are scored: Playwright's sync API runs an event loop
    in this thread, and a batch started inside one warns (rightly) that it blocks it."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, timeout=TIMEOUT_MS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    pg.set_default_timeout(TIMEOUT_MS)
    pg.problems = []  # console errors and uncaught exceptions: none allowed
    pg.on("console", lambda m: pg.problems.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: pg.problems.append(str(e)))
    yield pg
    context.close()


def shot(pg: Any, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    pg.screenshot(path=str(path), full_page=True)
    return path


def pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


@pytest.fixture
def two_runs(scored: Scored) -> Iterator[tuple[RunningViewer, BatchResult, BatchResult]]:
    base = scored(run_name="main", output=None)
    new = scored(run_name="candidate", output=None, bad_json=4, broken={18, 25})
    assert base.run and new.run
    with start_viewer([base.run, new.run]) as viewer:
        yield viewer, base, new


def test_overview_rows_detail_and_diff_in_chromium(two_runs: Any, page: Any) -> None:
    viewer, base, new = two_runs
    page.goto(viewer.url)
    page.wait_for_selector("body[data-ready]")
    # Overview: every eval's figures, both runs side by side, as result.stats has them.
    for n, result in enumerate((base, new)):
        for label, t in result.stats.templates.items():
            row = page.locator(f"tr[data-run='{n}'][data-eval='{label}']")
            assert row.locator("td[data-field=scored]").inner_text() == f"{t.scored}/{t.total}"
            assert row.locator("td[data-field=coverage]").inner_text() == pct(t.coverage)
            assert row.locator("td[data-field=pass_rate]").inner_text() == pct(t.pass_rate)
            assert row.locator("td[data-field=mean]").inner_text() == f"{t.mean_score:.3f}"
            assert row.locator("td[data-field=errors]").inner_text() == \
                "\n".join(f"{k} {v}" for k, v in t.errors.items())
            assert row.locator("svg.dist").count() == 1
    assert page.locator(".run-card[data-run='0']").inner_text().count("FAIL") >= 1
    shot(page, "01-overview")

    # Rows: failing ones only, paged on the server.
    page.click("nav button[data-tab=rows]")
    page.wait_for_selector("#rows-table tbody tr")
    page.select_option("#f-verdict", "failed")
    failing = len(base.failing_items())
    expect(page.locator("#count")).to_have_text(re.compile(f"of {failing}$"))
    statuses = page.locator("#rows-table tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.status)")
    assert statuses and set(statuses) == {"failed"} and len(statuses) == min(50, failing)
    # ... of one eval.
    page.select_option("#f-eval", "is_json")
    t = base.stats.templates["is_json"]
    expect(page.locator("#count")).to_have_text(re.compile(f"of {t.graded - t.passed}$"))
    first = page.locator("#rows-table tbody tr").first
    index = int(first.get_attribute("data-index"))
    first.click()
    detail = page.locator("#row-detail")
    detail.wait_for()
    item = base[index]
    result = item.results["is_json"]
    line = detail.locator("tr[data-eval='is_json']").inner_text()
    assert "failed" in line and result.reason in line and result.eval_id in line
    assert f'"id": {item.item["id"]}' in page.locator("#detail-inputs").inner_text()
    shot(page, "02-rows-failing-is_json-detail")

    # Errored rows, and one of them in full.
    page.select_option("#f-eval", "")
    page.select_option("#f-verdict", "errored")
    expect(page.locator("#count")).to_have_text(re.compile("of 2$"))
    page.locator("#rows-table tbody tr[data-index='18']").click()
    page.wait_for_selector("#row-detail[data-index='18']")
    assert "TaskError: RuntimeError: model unavailable for row 18" in \
        page.locator("#row-detail tr[data-eval='close']").inner_text()
    shot(page, "03-rows-errored-detail")

    # Text search over inputs, outputs and reasons.
    page.select_option("#f-verdict", "")
    page.fill("#f-text", "order 42?")
    page.click("#f-search")
    expect(page.locator("#count")).to_have_text(re.compile("of 1$"))
    assert page.locator("#rows-table tbody tr").get_attribute("data-index") == "42"

    # Diff: the same numbers as fi-evals diff.
    page.click("nav button[data-tab=diff]")
    page.wait_for_selector("#diff-table")
    with diff_runs(base.run, new.run) as diff:
        summary = page.locator("#diff-summary").inner_text()
        assert f"{diff.regressed_rows} regressed" in summary
        assert f"{diff.fixed_rows} fixed" in summary and "60 matched" in summary
        for e in diff.evals:
            cells = page.locator(f"#diff-table tr[data-eval='{e.label}'] td").all_inner_texts()
            assert cells[-2:] == [str(e.regressed), str(e.fixed)]
        page.wait_for_selector("#diff-rows tbody tr")
        listed = page.locator("#diff-rows tbody tr").count()
        assert listed == min(50, diff.count("regressed"))
    shot(page, "04-diff")
    assert page.problems == []


@pytest.fixture
def report(scored: Scored, tmp_path: Path) -> tuple[BatchResult, Path]:
    base = scored(run_name="main", output=None)
    assert base.run is not None
    return base, export_html([base.run], tmp_path / "report.html", rows=20)


def test_exported_report_opens_from_a_file(report: tuple[BatchResult, Path], page: Any) -> None:
    base, report_path = report
    page.goto(report_path.as_uri())
    page.wait_for_selector("body[data-ready]")
    assert "20 of its 60 rows" in page.locator("#cap-note").inner_text()
    t = base.stats.templates["close"]
    cell = page.locator("tr[data-run='0'][data-eval='close'] td[data-field=pass_rate]")
    assert cell.inner_text() == pct(t.pass_rate)
    shot(page, "05-export-overview")
    page.click("nav button[data-tab=rows]")
    page.select_option("#f-verdict", "errored")
    expect(page.locator("#count")).to_have_text(re.compile("of 2$"))
    page.locator("#rows-table tbody tr").first.click()
    page.wait_for_selector("#row-detail")
    shot(page, "06-export-rows-errored")
    assert page.problems == []
