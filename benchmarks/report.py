"""From raw runs to figures: medians, same-round ratios, targets, and the files that show them.

``analyze`` turns the raw results into per-contender medians and the target table; ``write``
puts ``latest.json`` (raw runs and analysis), ``latest.md`` (``markdown.py``) and
``latest.png`` (``chart.py``) in the results folder.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import chart, markdown
from benchmarks.scenarios import P2_LATENCY_MS, P2_WORKERS

__all__ = ["analyze", "console", "crashed", "describe_external", "write"]

P1_MIN_SPEEDUP = 20.0
P1_MIN_OF_BEST_FIXED = 0.90
"""Issue 20: fi_evals sync with defaults (adaptive size) / the best fixed chunk size."""
P1_MAX_SERVER_US = 20.0
"""Issue 20: server CPU per evaluation (children included) with chunks of 500."""
P1_MIN_PIPELINE_SPEEDUP = 2.0
"""Issue 20: server pipeline in-process, this tree / the baseline worktree."""
P1_MIN_ASYNC_SHARE = 0.90
"""Issue 20: fi_evals async (is_async=True) / fi_evals sync."""
P1_MIN_BASELINE_SPEEDUP = 2.5
"""Issue 20: fi_evals sync with defaults, this tree / the baseline worktree."""
P2_IDEAL = P2_WORKERS / (P2_LATENCY_MS / 1000.0)
P2_MIN_SHARE = 0.90
P3_MAX_REQUESTS = 0.05
P4_MAX_MB = 150.0
P4_MAX_GROWTH = 0.20
""""Flat": the largest size's peak RSS at most this much above the smallest size's."""
P5_MAX_P99_US = 50.0
M_MIN_ITEMS_PER_S = 300.0
M_TARGET_LENGTH = "short"
M_TARGET_SCENARIOS = {"similarity, distinct texts": "embedding_similarity",
                      "semantic_list_contains": "semantic_list_contains"}
"""Issue 8 point 5: the offline embedding evaluators, all texts distinct (no cache help)."""
M_TARGET_WHAT = ("offline embedding evaluators, short items, distinct texts (worst of "
                 "embedding_similarity and semantic_list_contains)")
V_MAX_FIRST_PAGE_MS = 500.0
V_MAX_RSS_MB = 200.0
A_MAX_GAP_MS = 100.0
A_SHIPPED = "async (thread engine)"
"""The line of ``bench_asyncio.py`` that is the shipped design (the target is on it)."""

Run = dict[str, Any]


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _ok(run: Run) -> bool:
    return "error" not in run and bool(run.get("seconds"))


def _rate(run: Run) -> float:
    return run["outcomes"] / run["seconds"]


def _checks(run: Run) -> list[str]:
    """Why a run's figure should not be trusted (wrong counts), if anything."""
    problems = []
    if run.get("errors"):
        problems.append(f"{run['errors']} outcomes were errors")
    if "evaluations" in run and run["evaluations"] != run["outcomes"]:
        problems.append(f"the server ran {run['evaluations']} evaluations for "
                        f"{run['outcomes']} outcomes")
    if "ok" in run and run["ok"] + run.get("failed", 0) != run["outcomes"]:
        problems.append(f"{run['outcomes'] - run['ok']} outcomes without a verdict")
    if run.get("bad_answers"):
        problems.append(f"{run['bad_answers']} non-200 answers")
    return problems


def _contender(entry: dict[str, Any]) -> dict[str, Any]:
    runs = [r for r in entry["runs"] if _ok(r)]
    rates = [_rate(r) for r in runs]
    out: dict[str, Any] = {
        "label": entry["label"], "role": entry["role"], "items": entry["items"],
        "runs_ok": len(runs), "runs": len(entry["runs"]),
        "rate": _median(rates), "rate_min": min(rates, default=None),
        "rate_max": max(rates, default=None),
        "items_rate": _median([r["items"] / r["seconds"] for r in runs]),
        "seconds": _median([r["seconds"] for r in runs]),
        "problems": sorted({p for r in runs for p in _checks(r)}),
        "errors": [r["error"] for r in entry["runs"] if "error" in r],
    }
    with_counts = [r for r in runs if r.get("evaluations")]
    if with_counts:
        out["requests_per_evaluation"] = _median(
            [r["requests"] / r["evaluations"] for r in with_counts])
        out["requests"] = _median([r["requests"] for r in with_counts])
    for side in ("client", "server"):
        cpu = [r[f"{side}_cpu_seconds"] * 1e6 / r["outcomes"] for r in runs
               if r.get(f"{side}_cpu_seconds") is not None]
        if cpu:
            out[f"{side}_cpu_us"] = _median(cpu)
    return out


def _ratio(scenario: dict[str, Any], a: str, b: str,
           metric: Callable[[Run], float] = _rate) -> float | None:
    """Median over rounds of ``metric(a) / metric(b)``, both measured in that round."""
    ca, cb = scenario["contenders"].get(a), scenario["contenders"].get(b)
    if not ca or not cb:
        return None
    pairs = [metric(x) / metric(y) for x, y in zip(ca["runs"], cb["runs"])
             if _ok(x) and _ok(y) and metric(y)]
    return _median(pairs)


def _items_rate(run: Run) -> float:
    return run["items"] / run["seconds"]


def _target(scenario: str, what: str, achieved: float | None, text: str, target: str,
            holds: bool | None, note: str = "") -> dict[str, Any]:
    return {"scenario": scenario, "what": what, "achieved": achieved,
            "achieved_text": text if achieved is not None else "not measured",
            "target_text": target, "holds": holds if achieved is not None else None,
            "note": note}


def _fmt_x(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}x"


def _fmt_pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _p1_p3_targets(sc: dict[str, Any], an: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    if "P1" in sc:
        p1 = sc["P1"]
        for mode in ("sync", "async"):
            r = _ratio(p1, f"fi-{mode}", f"official-{mode}", _items_rate)
            sample = p1["contenders"].get(f"official-{mode}", {}).get("items")
            out.append(_target("P1", f"fi_evals {mode} / official {mode} pattern (items/s; "
                               f"official on {sample or 0:,} items)", r, _fmt_x(r),
                               f">= {P1_MIN_SPEEDUP:g}x",
                               r is not None and r >= P1_MIN_SPEEDUP))
        out += _issue20_targets(p1, an["P1"]["contenders"])
    if "P2" in sc:
        fi = an["P2"]["contenders"].get("fi-sync", {})
        rate = fi.get("items_rate")
        share = rate / P2_IDEAL if rate else None
        out.append(_target("P2", f"fi_evals sync / ideal {P2_WORKERS} / "
                           f"{P2_LATENCY_MS / 1000:g} s = {P2_IDEAL:.0f} items/s", share,
                           f"{_fmt_pct(share)} ({rate or 0:.0f}/s)", f">= {P2_MIN_SHARE:.0%}",
                           share is not None and share >= P2_MIN_SHARE))
    if "P3" in sc:
        fi = an["P3"]["contenders"].get("fi-async", {})
        off = an["P3"]["contenders"].get("official-async", {})
        value = fi.get("requests_per_evaluation")
        note = (f"official pattern: {off['requests_per_evaluation']:.2f} on "
                f"{off['items']:,} items" if off.get("requests_per_evaluation") else
                "official pattern not measured")
        out.append(_target("P3", f"HTTP requests per evaluation, fi_evals async, "
                           f"{fi.get('items', 0):,} items", value,
                           f"{value:.4f}" if value is not None else "",
                           f"<= {P3_MAX_REQUESTS:g}",
                           value is not None and value <= P3_MAX_REQUESTS, note))
    return out


def _best_fixed_ratio(p1: dict[str, Any]) -> tuple[float | None, str]:
    """Median over rounds of fi-sync (defaults) / the fastest fixed-chunk fi-sync that round."""
    fixed = [n for n in p1["contenders"] if n.startswith("fi-sync@") and "baseline" not in n]
    default = p1["contenders"].get("fi-sync")
    if not fixed or not default:
        return None, ""
    ratios, winners = [], []
    for i, run in enumerate(default["runs"]):
        same_round = [(n, p1["contenders"][n]["runs"][i]) for n in fixed
                      if i < len(p1["contenders"][n]["runs"])]
        same_round = [(n, r) for n, r in same_round if _ok(r)]
        if not _ok(run) or not same_round:
            continue
        name, best = max(same_round, key=lambda nr: _rate(nr[1]))
        ratios.append(_rate(run) / _rate(best))
        winners.append(name.removeprefix("fi-sync@"))
    return _median(ratios), ", ".join(dict.fromkeys(winners))


def _issue20_targets(p1: dict[str, Any], cs: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 20's gates, each a ratio within this run (or the server's CPU per evaluation)."""
    out = []
    r, winners = _best_fixed_ratio(p1)
    out.append(_target("P1", "fi_evals sync with defaults (adaptive request size) / best fixed "
                       f"chunk size of the round (best: {winners or '-'})", r, _fmt_pct(r),
                       f">= {P1_MIN_OF_BEST_FIXED:.0%}",
                       r is not None and r >= P1_MIN_OF_BEST_FIXED))
    us = (cs.get("fi-sync@500") or {}).get("server_cpu_us")
    out.append(_target("P1", "server CPU per evaluation, fi_evals sync with chunks of 500 "
                       "(child processes included)", us, f"{us or 0:.1f} us",
                       f"<= {P1_MAX_SERVER_US:g} us", us is not None and us <= P1_MAX_SERVER_US,
                       "baseline: " + _n_us((cs.get("fi-sync@500@baseline") or {})
                                            .get("server_cpu_us"))
                       if "fi-sync@500@baseline" in cs else ""))
    r = _ratio(p1, "server-no-http@500", "server-no-http@500@baseline")
    out.append(_target("P1", "server pipeline in-process, chunks of 500 (fi_evals' request "
                       "size with defaults now): this tree / baseline worktree", r,
                       _fmt_x(r), f">= {P1_MIN_PIPELINE_SPEEDUP:g}x",
                       r is not None and r >= P1_MIN_PIPELINE_SPEEDUP))
    r = _ratio(p1, "fi-async", "fi-sync")
    out.append(_target("P1", "fi_evals async (is_async=True) / fi_evals sync", r,
                       _fmt_pct(r), f">= {P1_MIN_ASYNC_SHARE:.0%}",
                       r is not None and r >= P1_MIN_ASYNC_SHARE))
    r = _ratio(p1, "fi-sync", "fi-sync@baseline")
    out.append(_target("P1", "end to end: fi_evals sync with defaults, this tree / baseline "
                       "worktree (same run)", r, _fmt_x(r), f">= {P1_MIN_BASELINE_SPEEDUP:g}x",
                       r is not None and r >= P1_MIN_BASELINE_SPEEDUP))
    return out


def _n_us(value: float | None) -> str:
    return "not measured" if value is None else f"{value:.1f} us"


def _p4(entry: dict[str, Any]) -> dict[str, Any]:
    by_size: dict[int, list[dict[str, Any]]] = {}
    for run in entry.get("runs", []):
        for r in run.get("results", []):
            by_size.setdefault(r["items"], []).append(r)
    sizes = {}
    for n, rs in sorted(by_size.items()):
        sizes[n] = {"peak_rss_mb": _median([r["peak_rss_mb"] for r in rs]),
                    "rss_before_mb": _median([r["rss_before_mb"] for r in rs]),
                    "outcomes_per_second": _median([r["outcomes_per_second"] for r in rs]),
                    "wall_seconds": _median([r["wall_seconds"] for r in rs]),
                    "errors": max(r["errors"] for r in rs), "runs": len(rs)}
    return {"sizes": sizes}


def _p5(entry: dict[str, Any]) -> dict[str, Any]:
    by_name: dict[str, list[dict[str, Any]]] = {}
    for run in entry.get("runs", []):
        for r in run.get("results", []):
            by_name.setdefault(r["scenario"], []).append(r)
    out = {}
    for name, rs in by_name.items():
        out[name] = {k: _median([r[k] for r in rs]) for k in
                     ("p50_us", "p90_us", "p99_us", "p999_us", "max_us", "calls", "calls_per_s")}
        out[name].update(threads=rs[0]["threads"], runs=len(rs))
    return {"scenarios": out}


def _m(entry: dict[str, Any]) -> dict[str, Any]:
    """M: median items/s per (length, scenario) over the rounds."""
    by_key: dict[tuple[str, str], list[dict[str, Any]]] = {}
    ok_runs = [run for run in entry.get("runs", []) if "error" not in run]
    for run in ok_runs:
        for r in run.get("results", []):
            by_key.setdefault((r["length"], r["scenario"]), []).append(r)
    results = []
    for (length, scenario), rs in by_key.items():
        rates = [r["items_per_s"] for r in rs]
        results.append({"length": length, "scenario": scenario, "template": rs[0]["template"],
                        "items": rs[0]["items"], "items_per_s": _median(rates),
                        "items_per_s_min": min(rates), "items_per_s_max": max(rates),
                        "seconds": _median([r["seconds"] for r in rs]), "runs": len(rs)})
    out: dict[str, Any] = {
        "results": results, "runs": len(entry.get("runs", [])), "runs_ok": len(ok_runs),
        "batch": next((r.get("batch") for r in ok_runs), None),
        "model_load_seconds": _median([r["model_load_seconds"] for r in ok_runs
                                       if r.get("model_load_seconds") is not None])}
    for key in ("skipped", "missing"):
        if key in entry:
            out[key] = entry[key]
    return out


def _m_target(an: dict[str, Any]) -> dict[str, Any]:
    m = an["M"]
    rates = {r["scenario"]: r["items_per_s"] for r in m["results"]
             if r["length"] == M_TARGET_LENGTH and r["scenario"] in M_TARGET_SCENARIOS}
    worst = min(rates.values()) if len(rates) == len(M_TARGET_SCENARIOS) else None
    text = f"{worst or 0:,.0f} items/s (" + ", ".join(
        f"{M_TARGET_SCENARIOS[k]} {v:,.0f}" for k, v in rates.items()) + ")"
    note = m.get("skipped") or m.get("missing") or (
        "" if worst is not None else "not every embedding scenario produced a figure")
    return _target("M", M_TARGET_WHAT, worst, text, f">= {M_MIN_ITEMS_PER_S:g} items/s",
                   worst is not None and worst >= M_MIN_ITEMS_PER_S, note)


def _v(entry: dict[str, Any]) -> dict[str, Any]:
    """V: the one round of ``bench_viewer.py`` (its own cold and warm figures)."""
    ok = [run for run in entry.get("runs", []) if "error" not in run]
    out: dict[str, Any] = {"runs": len(entry.get("runs", [])), "runs_ok": len(ok)}
    if ok:
        run = ok[-1]
        out.update(rows=run["rows"], build_seconds=run.get("build_seconds"),
                   timings=run["timings"], browser=run.get("browser"),
                   peak_rss_mb=run["viewer_peak_rss_mb"])
    for key in ("skipped", "missing"):
        if key in entry:
            out[key] = entry[key]
    return out


def _v_targets(an: dict[str, Any]) -> list[dict[str, Any]]:
    v = an["V"]
    note = v.get("missing", "")
    rows = f"{v['rows']:,}-row run" if v.get("rows") else "the run"
    first = v["timings"]["first_page"]["cold_ms"] if v.get("timings") else None
    peak = v.get("peak_rss_mb")
    return [
        _target("V", f"fi-evals view of a {rows}: first page of rows served (cold)", first,
                f"{first or 0:.1f} ms", f"<= {V_MAX_FIRST_PAGE_MS:g} ms",
                first is not None and first <= V_MAX_FIRST_PAGE_MS, note),
        _target("V", f"fi-evals view of a {rows}: viewer peak RSS", peak,
                f"{peak or 0:.1f} MB", f"<= {V_MAX_RSS_MB:g} MB",
                peak is not None and peak <= V_MAX_RSS_MB, note)]


def _a(entry: dict[str, Any]) -> dict[str, Any]:
    """A: per client of ``bench_asyncio.py``, medians over the rounds; the longest gap is the
    worst round's (the target is a bound, not a typical value)."""
    by_client: dict[str, list[dict[str, Any]]] = {}
    skipped: dict[str, str] = {}
    ok = [run for run in entry.get("runs", []) if "error" not in run]
    for run in ok:
        for r in run.get("results", []):
            if "skipped" in r:
                skipped[r["client"]] = r["skipped"]
            else:
                by_client.setdefault(r["client"], []).append(r)
    clients = {}
    for name, rs in by_client.items():
        row: dict[str, Any] = {"items": rs[0]["items"], "runs": len(rs),
                               "items_per_s": _median([r["items_per_s"] for r in rs])}
        if "max_gap_ms" in rs[0]:
            row.update(ticks_per_s=_median([r["ticks_per_s"] for r in rs]),
                       max_gap_ms=max(r["max_gap_ms"] for r in rs),
                       p99_gap_ms=_median([r["p99_gap_ms"] for r in rs]))
        clients[name] = row
    out: dict[str, Any] = {"clients": clients, "skipped_clients": skipped,
                           "runs": len(entry.get("runs", [])), "runs_ok": len(ok)}
    for key in ("skipped", "missing"):
        if key in entry:
            out[key] = entry[key]
    return out


def _a_target(an: dict[str, Any]) -> dict[str, Any]:
    shipped = an["A"]["clients"].get(A_SHIPPED)
    gap = shipped["max_gap_ms"] if shipped else None
    text = (f"{gap:.1f} ms, {shipped['ticks_per_s']:.1f} of 100 ticks/s kept" if shipped
            else "")
    return _target("A", "asyncio: longest gap of a 10 ms ticker while P2 is awaited through "
                   "AsyncEvaluator (worst round)", gap, text, f"< {A_MAX_GAP_MS:g} ms",
                   None if gap is None else gap < A_MAX_GAP_MS,
                   an["A"].get("missing", "") or ("" if shipped else "no round finished"))


def _p4_p5_targets(an: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    if "P4" in an:
        sizes = an["P4"].get("sizes", {})
        if sizes:
            small, large = sizes[min(sizes)], sizes[max(sizes)]
            peak = max(s["peak_rss_mb"] for s in sizes.values())
            growth = large["peak_rss_mb"] / small["peak_rss_mb"] - 1
            text = (f"{small['peak_rss_mb']:.1f} MB at {min(sizes):,}, "
                    f"{large['peak_rss_mb']:.1f} MB at {max(sizes):,} ({growth:+.0%})")
            out.append(_target("P4", "client peak RSS, items streamed to JSONL", peak, text,
                               f"<= {P4_MAX_MB:g} MB and flat (<= +{P4_MAX_GROWTH:.0%})",
                               peak <= P4_MAX_MB and growth <= P4_MAX_GROWTH))
        else:
            out.append(_target("P4", "client peak RSS", None, "", f"<= {P4_MAX_MB:g} MB", None,
                               an["P4"].get("missing", "")))
    if "P5" in an:
        scs = an["P5"].get("scenarios", {})
        worst = max((s["p99_us"] for s in scs.values()), default=None)
        text = ", ".join(f"{k} {v['p99_us']:.1f} us" for k, v in scs.items())
        out.append(_target("P5", "ScoreLogger.log() p99, worst scenario", worst,
                           f"{worst or 0:.1f} us ({text})", f"<= {P5_MAX_P99_US:g} us",
                           worst is not None and worst <= P5_MAX_P99_US,
                           an["P5"].get("missing", "")))
    return out


def analyze(results: dict[str, Any]) -> dict[str, Any]:
    """Medians per contender, same-round ratios and the target table."""
    sc = results["scenarios"]
    an: dict[str, Any] = {}
    for key, entry in sc.items():
        if key == "M":
            an[key] = _m(entry)
            continue
        if key == "V":
            an[key] = _v(entry)
            continue
        if key == "A":
            an[key] = _a(entry)
            continue
        if key in ("P4", "P5"):
            an[key] = _p4(entry) if key == "P4" else _p5(entry)
            if "missing" in entry:
                an[key]["missing"] = entry["missing"]
            continue
        an[key] = {"contenders": {n: _contender(e) for n, e in entry["contenders"].items()}}
    if "P1" in sc:
        an["P1"]["ratios"] = {f"{a} / {b}": _ratio(sc["P1"], a, b) for a, b in (
            ("fi-sync", "official-sync"), ("fi-async", "official-async"),
            ("fi-sync", "in-process"), ("fi-sync", "http-ceiling"),
            ("fi-sync", "server-no-http"), ("fi-sync@500", "http-ceiling@500"),
            ("fi-sync", "fi-sync@baseline"), ("fi-async", "fi-sync"),
            ("server-no-http", "server-no-http@baseline"),
            ("server-no-http@500", "server-no-http@500@baseline"))}
    targets = _p1_p3_targets(sc, an) + _p4_p5_targets(an)
    if "M" in an:
        targets.append(_m_target(an))
    if "V" in an:
        targets += _v_targets(an)
    if "A" in an:
        targets.append(_a_target(an))
    return {"scenarios": an, "targets": targets}


def write(results: dict[str, Any], analysis: dict[str, Any], folder: Path) -> list[Path]:
    """``latest.json``, ``latest.md`` and (with matplotlib) ``latest.png`` in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    png = folder / "latest.png"
    problem = chart.draw(results, analysis, png)
    if problem is not None:
        results["meta"]["chart_note"] = problem
    paths = [folder / "latest.json", folder / "latest.md"]
    paths[0].write_text(json.dumps({"results": results, "analysis": analysis}, indent=1,
                                   default=str) + "\n")
    paths[1].write_text(markdown.render(results, analysis, None if problem else png.name))
    return paths if problem else [*paths, png]


def console(results: dict[str, Any], analysis: dict[str, Any]) -> str:
    return markdown.tables(results, analysis)


def crashed(results: dict[str, Any]) -> list[str]:
    out = []
    for key, entry in results["scenarios"].items():
        for name, c in entry.get("contenders", {}).items():
            if any("error" in r for r in c["runs"]):
                out.append(f"{key} {name}")
        if any("error" in r for r in entry.get("runs", [])):
            out.append(f"{key} {entry.get('script')}")
    return out


def describe_external(key: str, result: dict[str, Any]) -> str:
    if "error" in result:
        return f"FAILED: {result['error'].splitlines()[-1] if result['error'] else ''}"
    if key == "P4":
        return ", ".join(f"{r['items']:,} items: peak RSS {r['peak_rss_mb']:.1f} MB "
                         f"({r['outcomes_per_second']:,} outcomes/s)" for r in result["results"])
    if key == "M":
        return ", ".join(f"{r['length']} {r['scenario']} {r['items_per_s']:,.0f}/s"
                         for r in result["results"])
    if key == "A":
        return "; ".join(
            f"{r['client']} {r['skipped']}" if "skipped" in r else
            f"{r['client']} {r['items_per_s']:,.0f} items/s" + (
                f" (loop {r['ticks_per_s']} ticks/s, longest gap {r['max_gap_ms']} ms)"
                if "max_gap_ms" in r else "") for r in result["results"])
    if key == "V":
        return (f"{result['rows']:,} rows: first page {result['timings']['first_page']['cold_ms']}"
                f" ms, viewer peak RSS {result['viewer_peak_rss_mb']} MB")
    return ", ".join(f"{r['scenario']} p99 {r['p99_us']:.1f} us" for r in result["results"])
