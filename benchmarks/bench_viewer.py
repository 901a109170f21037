"""Viewer benchmark (issue 16, point 8): open the view of a 1,000,000-row run.

1. Builds a run of ``--rows`` rows (default 1,000,000) in a run store, through the run store's
   own writer (:class:`fi_evals.runs.RunWriter`, what ``evaluate_batch`` emits its rows to),
   with synthetic outcomes: two evals (``is_json`` Pass/Fail, ``fuzzy_match`` a score), about
   30% failing rows and 1% errored ones, rows of about 200 bytes, stats recorded as the batch
   records them. ``--reuse DIR`` reuses a store built before.
2. Starts ``fi-evals view RUN --no-open`` in its own process (the process measured).
3. Times, over HTTP on loopback, what a browser asks for to open the page: the page itself,
   ``/api/runs`` (the overview) and ``/api/runs/0/rows`` (**the first page: the target**), then
   the first page of the failing rows of one eval, of the errored rows, the last page, a text
   search (its page, then its count apart, as the page asks them); each once cold (the first
   request after start) and as the median of 5 more.
4. Reads the viewer's peak RSS (``VmHWM`` in ``/proc/PID/status``) after all of that.
5. With chromium and Playwright present, also times a real browser: from ``goto`` to the
   overview drawn, and from clicking "Rows" to the first page of rows drawn.

Targets: first page served in under 500 ms; the viewer process under 200 MB RSS.

Usage::

    .venv/bin/python benchmarks/bench_viewer.py                       # 1,000,000 rows
    .venv/bin/python benchmarks/bench_viewer.py --rows 2000 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import requests

TARGET_FIRST_PAGE_MS = 500.0
TARGET_RSS_MB = 200.0
WARM_REPEATS = 5
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def build_run(root: Path, rows: int) -> tuple[str, float]:
    """Write a ``rows``-row run into the store at ``root``; returns its id and seconds."""
    from fi_evals._exceptions import ItemError
    from fi_evals.batch.output import BatchItem
    from fi_evals.batch.result import BatchResult
    from fi_evals.batch.specs import EvalSpec
    from fi_evals.batch.stats import BatchStats, TemplateStats
    from fi_evals.results import EvalResult
    from fi_evals.runs.store import RunStore

    evals = [{"label": "is_json", "template": "is_json", "output_type": "Pass/Fail",
              "pass_threshold": 0.5},
             {"label": "close", "template": "fuzzy_match", "output_type": "score",
              "pass_threshold": 0.8}]
    stats = BatchStats({e["label"]: TemplateStats(e["label"], e["template"], e["output_type"],
                                                  e["pass_threshold"]) for e in evals})
    writer = RunStore(root).create(name="bench", evals=evals, key_excluded=["answer"],
                                   config={"data": f"synthetic ({rows:,} rows)"})
    started = time.perf_counter()
    error = ItemError("ServerError", "the server answered 502 twice", 502, True)
    make = EvalResult.model_construct
    for i in range(rows):
        row = {"id": i, "question": f"Where is order {i} of customer {i % 977}?",
               "answer": f'{{"tool": "lookup", "order": {i}}}' if i % 7 else f"lookup({i}",
               "reference": f"Your order {i} ships today from warehouse {i % 13}."}
        if i % 100 == 42:
            results = {e["label"]: make(name=e["template"], output=None, reason=error.message,
                                        runtime=None, output_type=None, eval_id=None,
                                        status="error", error=error) for e in evals}
        else:
            score = ((i * 7919) % 1000) / 1000
            results = {
                "is_json": make(name="is_json", output="Passed" if i % 7 else "Failed",
                                reason="Parsed as JSON" if i % 7 else "Expecting value",
                                runtime=0, output_type="Pass/Fail",
                                eval_id=f"0190a000-0000-7000-8000-{i:012d}", status="completed",
                                error=None),
                "close": make(name="fuzzy_match", output=score,
                              reason=f"Sequence similarity {score:.3f}", runtime=1,
                              output_type="score", eval_id=f"0190a000-0000-7000-9000-{i:012d}",
                              status="completed", error=None)}
        for label, r in results.items():
            t = stats.templates[label]
            if r.status == "completed":
                t.record_result(r.output)
            else:
                t.record_error(r.error.type)  # type: ignore[union-attr]
        stats.note_item(i, results)
        writer.write(BatchItem(i, row, results, None, None))
    writer.close()
    stats.wall_time = time.perf_counter() - started
    specs = [EvalSpec("is_json"), EvalSpec("fuzzy_match", label="close", pass_threshold=0.8)]
    writer.finish(BatchResult(specs, stats, items=None, output=None, stopped=None, checks=[]))
    return writer.folder.name, time.perf_counter() - started


def _folder_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6


class Viewer:
    """``fi-evals view RUN --no-open`` in a child process."""

    def __init__(self, root: Path, run: str) -> None:
        cmd = [sys.executable, "-m", "fi_evals.cli", "view", run, "--runs-dir", str(root),
               "--no-open"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if " on http://" not in line:
            self.proc.kill()
            raise RuntimeError(f"the viewer did not start: {line!r} "
                               f"{self.proc.stderr.read() if self.proc.stderr else ''}")
        self.url = line.split(" on ")[1].split()[0]
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()

    def rss_mb(self) -> tuple[float, float]:
        """(peak, current) resident memory of the viewer process, MB."""
        fields = {}
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            fields[key] = value.strip()
        return (int(fields["VmHWM"].split()[0]) / 1024, int(fields["VmRSS"].split()[0]) / 1024)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _timed(session: requests.Session, url: str, **params: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    answer = session.get(url, params=params, timeout=60)
    elapsed = (time.perf_counter() - started) * 1000
    answer.raise_for_status()
    body = answer.json() if "json" in answer.headers.get("content-type", "") else answer.text
    return elapsed, body


def http_timings(url: str, rows: int) -> dict[str, Any]:
    """Cold and warm milliseconds of each request, and what the pages held."""
    last = max(0, (rows - 1) // 50 * 50)
    requests_to_time = [
        ("page", "", {}),
        ("overview", "api/runs", {}),
        ("first_page", "api/runs/0/rows", {}),
        ("failing_is_json", "api/runs/0/rows", {"eval": "is_json", "verdict": "failed"}),
        ("errored", "api/runs/0/rows", {"verdict": "errored"}),
        ("last_page", "api/runs/0/rows", {"offset": last}),
        ("text_search", "api/runs/0/rows", {"q": "customer 976?", "count": "false"}),
        ("text_count", "api/runs/0/count", {"q": "customer 976?"}),
    ]
    out: dict[str, Any] = {}
    with requests.Session() as session:
        for name, path, params in requests_to_time:
            cold, body = _timed(session, url + path, **params)
            warm = [_timed(session, url + path, **params)[0] for _ in range(WARM_REPEATS)]
            entry: dict[str, Any] = {"cold_ms": round(cold, 1),
                                     "warm_ms": round(statistics.median(warm), 1)}
            if isinstance(body, dict) and "total" in body:
                entry.update(total=body["total"], capped=body["total_capped"])
                if "rows" in body:
                    entry["rows"] = len(body["rows"])
            out[name] = entry
    return out


def browser_timings(url: str) -> dict[str, Any] | None:
    """A real browser opening the page, or None when chromium or Playwright is missing."""
    if not Path(CHROMIUM).exists():
        return None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            started = time.perf_counter()
            page.goto(url)
            page.wait_for_selector("body[data-ready] .eval-card", timeout=30_000)
            overview = (time.perf_counter() - started) * 1000
            in_page = float(page.locator("body").get_attribute("data-ready-ms") or "nan")
            started = time.perf_counter()
            page.click("nav button[data-tab=rows]")
            page.wait_for_selector("#rows-table[data-ms]", timeout=30_000)
            first_rows = (time.perf_counter() - started) * 1000
            rows_in_page = float(page.locator("#rows-table").get_attribute("data-ms") or "nan")
            count = page.locator("#count").inner_text()
            rendered = page.locator("#rows-table tbody tr").count()
        finally:
            browser.close()
    # In-page figures come from the page's own performance.now() marks; the outer ones add
    # Playwright's round trips and polling.
    return {"overview_ms": in_page, "overview_outer_ms": round(overview, 1),
            "first_rows_ms": rows_in_page, "first_rows_outer_ms": round(first_rows, 1),
            "rows_rendered": rendered, "count_text": count}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--reuse", metavar="DIR",
                        help="a run store built by an earlier run of this script (kept)")
    parser.add_argument("--keep", metavar="DIR", help="build the store here and keep it")
    parser.add_argument("--no-browser", action="store_true", help="HTTP timings only")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)
    temp = None
    if args.reuse:
        root = Path(args.reuse)
        from fi_evals.runs.store import RunStore

        run_id = RunStore(root).resolve("latest").id
        rows, build_seconds = RunStore(root).resolve(run_id).rows, None
    else:
        root = Path(args.keep) if args.keep else Path(
            temp := tempfile.mkdtemp(prefix="fi-evals-bench-view-"))
        run_id, build_seconds = build_run(root, args.rows)
        rows = args.rows
        print(f"built a {rows:,}-row run in {build_seconds:.1f} s "
              f"({rows / build_seconds:,.0f} rows/s), {_folder_mb(root):,.0f} MB on disk",
              flush=True)
    viewer = Viewer(root, run_id)
    try:
        timings = http_timings(viewer.url, rows)
        browser = None if args.no_browser else browser_timings(viewer.url)
        peak, current = viewer.rss_mb()
    finally:
        viewer.stop()
        if temp:
            shutil.rmtree(temp, ignore_errors=True)
    first = timings["first_page"]["cold_ms"]
    passed = first <= TARGET_FIRST_PAGE_MS and peak <= TARGET_RSS_MB
    for name, t in timings.items():
        total = "?" if t.get("total") is None else f"{t['total']:,}{'+' if t['capped'] else ''}"
        held = (f"  {t['rows']} rows of {total}" if "rows" in t
                else f"  counted {total}" if "total" in t else "")

        print(f"{name:<16} cold {t['cold_ms']:8.1f} ms   warm {t['warm_ms']:8.1f} ms{held}")
    if browser:
        print(f"chromium: overview drawn {browser['overview_ms']:.0f} ms after navigation "
              f"({browser['overview_outer_ms']:.0f} ms seen by Playwright); first page of rows "
              f"fetched and drawn {browser['first_rows_ms']:.0f} ms after clicking Rows "
              f"({browser['first_rows_outer_ms']:.0f} ms seen by Playwright; "
              f"{browser['rows_rendered']} rows, \"{browser['count_text']}\")")
    print(f"viewer RSS: peak {peak:.1f} MB, now {current:.1f} MB")
    print(f"{'PASS' if passed else 'FAIL'}: first page {first:.1f} ms (target <= "
          f"{TARGET_FIRST_PAGE_MS:.0f} ms), viewer peak RSS {peak:.1f} MB (target <= "
          f"{TARGET_RSS_MB:.0f} MB)")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "rows": rows, "build_seconds": build_seconds, "timings": timings,
            "browser": browser, "viewer_peak_rss_mb": round(peak, 1),
            "viewer_rss_mb": round(current, 1),
            "targets": {"first_page_ms": TARGET_FIRST_PAGE_MS, "rss_mb": TARGET_RSS_MB},
            "passed": passed}, indent=2))
    return 0 if passed else 1


if __name__ == "__main__":
    os.environ.pop("FI_BASE_URL", None)
    sys.exit(main())
