"""The benchmark harness (``make bench``) cannot rot: a tiny end-to-end run, and its arithmetic.

``make bench`` itself is not a test (timings on a 2-core machine are not assertions); this runs
``python -m benchmarks.run --smoke`` on tiny sizes, without the official client's virtualenv,
and checks that every scenario ran, every contender produced a figure whose counts add up
(the server's ``/metrics`` saw exactly the evaluations asked for), and the report was written.
M (the offline model templates) runs when the ``models`` extra is installed, and is reported as
skipped, not crashed, when it is not. A (issue 19: P2 awaited beside a 10 ms ticker, against a
native httpx prototype) reports the loop's tick rate and longest gap.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks import limits, markdown, report  # noqa: E402
from benchmarks import run as bench_run  # noqa: E402
from benchmarks.scenarios import FULL, SMOKE, scenarios  # noqa: E402
from fi_evals.batch.api import _chunk_size  # noqa: E402


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("bench")
    done = subprocess.run([sys.executable, "-m", "benchmarks.run", "--smoke", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out, done.stdout


def test_smoke_run_covers_every_scenario(smoke: tuple[Path, str]) -> None:
    out, stdout = smoke
    data = json.loads((out / "latest.json").read_text())
    results, analysis = data["results"], data["analysis"]
    assert list(results["scenarios"]) == ["P1", "P2", "P3", "P4", "P5", "M", "V", "A"]
    assert results["meta"]["smoke"] and results["meta"]["machine"]["cores"] >= 1
    for key in ("P1", "P2", "P3"):
        for name, c in analysis["scenarios"][key]["contenders"].items():
            assert c["runs_ok"] == c["runs"] == 1, (key, name, c["errors"])
            assert c["problems"] == [], (key, name, c["problems"])
            assert c["rate"] > 0
    p1 = analysis["scenarios"]["P1"]["contenders"]
    assert {"fi-sync", "fi-async", "http-ceiling", "in-process", "server-no-http"} <= set(p1)
    assert not any(name.startswith("official") for name in p1)  # no venv in make test
    assert analysis["scenarios"]["P4"]["sizes"]
    assert set(analysis["scenarios"]["P5"]["scenarios"]) == {"burst", "service"}
    assert len(analysis["targets"]) == 15  # issue 20: five P1 gates replace the in-process one
    assert "P1" in stdout and "Targets" in stdout
    v = analysis["scenarios"]["V"]
    assert v["runs_ok"] == v["runs"] == 1 and v["rows"] == SMOKE.v_rows
    assert v["timings"]["first_page"]["rows"] == 50 and v["peak_rss_mb"] > 0
    assert [t["holds"] for t in analysis["targets"] if t["scenario"] == "V"] == [True, True]
    a = analysis["scenarios"]["A"]
    assert a["runs_ok"] == a["runs"] == 1
    native = "async (httpx native prototype)"  # httpx comes with the bench extra only
    if importlib.util.find_spec("httpx") is None:
        assert set(a["clients"]) == {"sync", "async (thread engine)"}
        assert "httpx is not installed" in a["skipped_clients"][native]
    else:
        assert set(a["clients"]) == {"sync", "async (thread engine)", native}
    for name, c in a["clients"].items():
        assert c["items"] == SMOKE.a_items and c["items_per_s"] > 0, name
        if name != "sync":
            assert 0 < c["ticks_per_s"] <= 101 and c["max_gap_ms"] > 0, (name, c)
    (gap,) = [t for t in analysis["targets"] if t["scenario"] == "A"]
    assert gap["holds"] in (True, False) and "ticks/s" in gap["achieved_text"]
    assert "bench_asyncio.py run 1/1" in stdout and "longest gap" in stdout


_HAS_MODELS = all(importlib.util.find_spec(name) is not None
                  for name in ("numpy", "onnxruntime", "tokenizers"))
_M_SCENARIOS = {"similarity, distinct texts", "similarity, 50 expected reused",
                "semantic_list_contains", "toxicity", "groundedness (2 chunks)",
                "similarity, distinct texts, async"}


def test_smoke_run_covers_offline_models(smoke: tuple[Path, str]) -> None:
    out, stdout = smoke
    data = json.loads((out / "latest.json").read_text())
    m = data["analysis"]["scenarios"]["M"]
    (target,) = [t for t in data["analysis"]["targets"] if t["scenario"] == "M"]
    assert target["what"] == report.M_TARGET_WHAT
    md = (out / "latest.md").read_text()
    if not _HAS_MODELS:  # skipped with its reason, not a crash
        assert "models extra is not installed" in m["skipped"] and target["holds"] is None
        assert m["skipped"] in md
        return
    (run,) = data["results"]["scenarios"]["M"]["runs"]
    assert "error" not in run, run.get("error")
    assert m["runs_ok"] == m["runs"] == 1 and m["batch"] == SMOKE.m_batch
    assert {(r["length"], r["scenario"]) for r in m["results"]} == \
        {("short", name) for name in _M_SCENARIOS}
    for r in m["results"]:
        assert r["items"] == SMOKE.m_items and r["items_per_s"] > 0, r
    assert target["achieved"] > 0 and target["holds"] in (True, False)
    assert "| short | semantic_list_contains | semantic_list_contains | 40 |" in md
    assert "bench_offline_models.py run 1/1" in stdout


def test_smoke_report_files(smoke: tuple[Path, str]) -> None:
    out, _ = smoke
    md = (out / "latest.md").read_text()
    assert "## Targets (achieved / target)" in md
    assert "skipped in --smoke" in md  # the official client's absence is said, not hidden
    assert "cores" in md and "CPython" in md
    has_matplotlib = importlib.util.find_spec("matplotlib") is not None
    assert (out / "latest.png").exists() == has_matplotlib


def test_sdk_chunks_fill_whole_waves() -> None:
    """P2's finding: sync chunks must fill whole waves of workers (a48aef5)."""
    assert _chunk_size(None, None, False, 5_000, 32, 500) == 40  # 125 chunks = 4 full waves
    for n, workers in [(5_000, 32), (100_000, 8), (777, 5), (1_000, 8), (1, 8)]:
        size = _chunk_size(None, None, False, n, workers, 500)
        chunks = -(-n // size)
        waves = -(-chunks // workers)
        assert size <= 50 and chunks > (waves - 1) * workers, (n, workers, size)


def test_full_sizes_are_the_issues() -> None:
    assert (FULL.p1, FULL.p2, FULL.p3, FULL.p4) == (100_000, 5_000, 20_000, (10_000, 1_000_000))
    assert [s.key for s in scenarios(FULL)] == ["P1", "P2", "P3", "P4", "P5", "M", "V", "A"]
    assert FULL.a_items == FULL.p2  # A is P2, awaited
    assert FULL.v_rows == 1_000_000
    assert (FULL.m_items, FULL.m_lengths) == (3_000, ("short", "sentence"))
    (m,) = [s for s in scenarios(FULL) if s.key == "M"]
    assert bench_run._external_args(m, FULL) == ["--items", "3000", "--length", "short",
                                                  "sentence"]
    assert bench_run._external_args(m, SMOKE) == ["--items", "40", "--length", "short",
                                                   "--batch", "20"]


def _run(items: int, seconds: float, **extra: object) -> dict[str, object]:
    return {"items": items, "outcomes": items, "seconds": seconds, **extra}


def test_ratios_are_medians_of_same_round_ratios() -> None:
    def entry(role: str, runs: list[dict[str, object]]) -> dict[str, object]:
        return {"label": role, "role": role, "items": 10, "evals": "is_json", "workers": 8,
                "chunk_size": 0, "runs": runs}

    # Round 2 is slow for both sides: the per-round ratios are 10, 10, 10.
    fi = entry("fi", [_run(1000, 1.0), _run(1000, 3.0), _run(1000, 1.0)])
    official = entry("official", [_run(100, 1.0), _run(100, 3.0), _run(100, 1.0)])
    results = {"meta": {}, "scenarios": {"P1": {"title": "t", "contenders": {
        "fi-sync": fi, "official-sync": official}}}}
    analysis = report.analyze(results)
    (speedup,) = [t for t in analysis["targets"]
                  if t["what"].startswith("fi_evals sync / official")]
    assert speedup["achieved"] == pytest.approx(10.0) and speedup["holds"] is False
    assert analysis["scenarios"]["P1"]["contenders"]["fi-sync"]["rate"] == pytest.approx(1000.0)


def test_issue20_gates_are_same_round_ratios() -> None:
    def entry(runs: list[dict[str, object]], chunk: int = 0) -> dict[str, object]:
        return {"label": "x", "role": "fi", "items": 10, "evals": "is_json", "workers": 8,
                "chunk_size": chunk, "runs": runs}

    # Per round the best fixed size is @200, then @500, then @200: defaults / best = 0.9 each.
    contenders = {
        "fi-sync": entry([_run(900, 1.0), _run(900, 2.0), _run(450, 1.0)]),
        "fi-sync@200": entry([_run(1000, 1.0), _run(700, 2.0), _run(500, 1.0)], 200),
        "fi-sync@500": entry([_run(800, 1.0), _run(1000, 2.0), _run(400, 1.0)], 500),
        "fi-sync@baseline": entry([_run(300, 1.0), _run(300, 2.0), _run(150, 1.0)]),
        "fi-async": entry([_run(450, 1.0), _run(450, 2.0), _run(225, 1.0)]),
        "server-no-http@500": entry([_run(100, 1.0)] * 3, 500),
        "server-no-http@500@baseline": entry([_run(100, 2.0)] * 3, 500),
    }
    analysis = report.analyze({"meta": {}, "scenarios": {"P1": {"title": "t",
                                                               "contenders": contenders}}})
    got = {t["what"].split(" (")[0].split(":")[0]: t for t in analysis["targets"]}
    best = got["fi_evals sync with defaults"]
    assert best["achieved"] == pytest.approx(0.9) and best["holds"] is True
    assert "200, 500" in best["what"]
    assert got["end to end"]["achieved"] == pytest.approx(3.0)
    assert got["end to end"]["holds"] is True
    assert got["fi_evals async"]["achieved"] == pytest.approx(0.5)
    assert got["fi_evals async"]["holds"] is False
    assert got["server pipeline in-process, chunks of 500"]["achieved"] == pytest.approx(2.0)
    assert got["server CPU per evaluation, fi_evals sync with chunks of 500"]["holds"] is None


def test_a_run_whose_counts_do_not_add_up_is_flagged() -> None:
    runs = [_run(10, 1.0, evaluations=9, requests=1, errors=0)]
    results = {"meta": {}, "scenarios": {"P3": {"title": "t", "contenders": {"fi-async": {
        "label": "x", "role": "fi", "items": 10, "evals": "is_json", "workers": 8,
        "chunk_size": 0, "runs": runs}}}}}
    c = report.analyze(results)["scenarios"]["P3"]["contenders"]["fi-async"]
    assert c["problems"] == ["the server ran 9 evaluations for 10 outcomes"]


def _m_round(rates: dict[tuple[str, str], float]) -> dict[str, object]:
    return {"batch": 500, "model_load_seconds": 1.0, "results": [
        {"length": length, "scenario": name, "template": "t", "items": 3000,
         "seconds": 3000 / rate, "items_per_s": rate} for (length, name), rate in rates.items()]}


def test_m_target_is_the_worst_embedding_median() -> None:
    def rates(similarity: float, contains: float) -> dict[tuple[str, str], float]:
        return {("short", "similarity, distinct texts"): similarity,
                ("short", "semantic_list_contains"): contains,
                ("short", "toxicity"): 10.0,  # not part of the target
                ("sentence", "semantic_list_contains"): 5.0}

    runs = [_m_round(rates(400, 350)), _m_round(rates(100, 900)), _m_round(rates(420, 320))]
    results = {"meta": {}, "scenarios": {"M": {"title": "t", "runs": runs}}}
    analysis = report.analyze(results)
    by_key = {(r["length"], r["scenario"]): r for r in analysis["scenarios"]["M"]["results"]}
    assert by_key[("short", "similarity, distinct texts")]["items_per_s"] == 400
    assert by_key[("short", "semantic_list_contains")]["items_per_s"] == 350
    (target,) = analysis["targets"]
    assert target["achieved"] == 350 and target["holds"] is True
    runs[0] = _m_round(rates(400, 250))
    runs[2] = _m_round(rates(420, 280))
    analysis = report.analyze(results)
    (target,) = analysis["targets"]
    assert target["achieved"] == 280 and target["holds"] is False
    page = markdown.tables(results, analysis)
    assert "| short | semantic_list_contains | t | 3,000 | 280.0 | 250-900 |" in page
    explained = limits.explain(results, analysis)
    assert explained[0].startswith("- **M**: ") and "280 items/s" in explained[0]


def test_m_without_the_models_extra_is_skipped_not_crashed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    reason = "skipped: the models extra is not installed (No module named 'onnxruntime')"
    monkeypatch.setattr(bench_run, "models_missing", lambda: reason)
    (m,) = [s for s in scenarios(SMOKE) if s.key == "M"]
    entry = bench_run.run_external(m, SMOKE, 1, True)
    assert entry["skipped"] == reason and entry["runs"] == []
    results = {"meta": {}, "scenarios": {"M": entry}}
    analysis = report.analyze(results)
    (target,) = analysis["targets"]
    assert target["holds"] is None and target["note"] == reason
    assert report.crashed(results) == []
    text = report.console(results, analysis)
    assert text.count(reason) == 2  # the target's note and the M section


def _a_round(gap: float, ticks: float, httpx_rate: float | None) -> dict[str, object]:
    results: list[dict[str, object]] = [
        {"client": "sync", "items": 5000, "items_per_s": 580.0},
        {"client": "async (thread engine)", "items": 5000, "items_per_s": 590.0,
         "ticks_per_s": ticks, "max_gap_ms": gap, "p99_gap_ms": 14.0}]
    results.append({"client": "async (httpx native prototype)", "skipped": "no httpx"}
                   if httpx_rate is None else
                   {"client": "async (httpx native prototype)", "items": 5000,
                    "items_per_s": httpx_rate, "ticks_per_s": 97.0, "max_gap_ms": 20.0,
                    "p99_gap_ms": 13.0})
    return {"results": results}


def test_a_target_is_the_worst_rounds_longest_gap() -> None:
    runs = [_a_round(30.0, 96.0, 600.0), _a_round(120.0, 90.0, 610.0),
            _a_round(40.0, 95.0, 605.0)]
    results = {"meta": {}, "scenarios": {"A": {"title": "t", "runs": runs}}}
    analysis = report.analyze(results)
    (target,) = analysis["targets"]
    assert target["achieved"] == 120.0 and target["holds"] is False
    assert "95.0 of 100 ticks/s" in target["achieved_text"]  # the median tick rate
    clients = analysis["scenarios"]["A"]["clients"]
    assert clients["async (httpx native prototype)"]["items_per_s"] == 605.0
    runs[1] = _a_round(35.0, 96.0, None)  # without httpx: said, and the target still holds
    analysis = report.analyze(results)
    assert analysis["targets"][0]["holds"] is True
    assert analysis["scenarios"]["A"]["skipped_clients"] == {
        "async (httpx native prototype)": "no httpx"}
    page = markdown.tables(results, analysis)
    assert "| async (thread engine) | 5,000 | 590.0 | 96.0 | 40.0 | 14.0 | 3 |" in page
    assert "async (httpx native prototype): no httpx" in page
