"""``latest.md``: the tables of one benchmark run, and what limits the targets it misses."""

from __future__ import annotations

from typing import Any

from benchmarks import limits

__all__ = ["render", "tables"]


def _n(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _table(head: list[str], rows: list[list[str]], align: str = "") -> list[str]:
    align = align or "l" + "r" * (len(head) - 1)
    marks = [":--" if a == "l" else "--:" for a in align]
    return [_row(head), _row(marks), *(_row(r) for r in rows)]


def _holds(value: bool | None) -> str:
    return {True: "**yes**", False: "**no**", None: "not measured"}[value]


def _targets(analysis: dict[str, Any]) -> list[str]:
    rows = [[t["scenario"], t["what"] + (f" ({t['note']})" if t["note"] else ""),
             t["achieved_text"], t["target_text"], _holds(t["holds"])]
            for t in analysis["targets"]]
    return _table(["", "what", "achieved", "target", "holds"], rows, "lllll")


def _range(c: dict[str, Any]) -> str:
    if c.get("rate_min") is None or c["runs_ok"] < 2:
        return "-"
    return f"{c['rate_min']:,.0f}-{c['rate_max']:,.0f}"


def _flags(c: dict[str, Any]) -> str:
    notes = list(c.get("problems", []))
    if c["runs_ok"] < c["runs"]:
        notes.append(f"{c['runs'] - c['runs_ok']} of {c['runs']} runs failed")
    return f" ({'; '.join(notes)})" if notes else ""


def _p1(an: dict[str, Any]) -> list[str]:
    cs = an["contenders"]
    base = {k: (cs.get(k) or {}).get("items_rate") for k in
            ("official-sync", "official-async", "in-process")}
    rows = []
    for name, c in cs.items():
        vs_off = None
        if c["role"] in ("fi", "tuned") and c.get("items_rate"):
            ref = base["official-async" if "async" in name else "official-sync"]
            vs_off = c["items_rate"] / ref if ref else None
        share = c["items_rate"] / base["in-process"] if base["in-process"] and \
            c.get("items_rate") else None
        rows.append([c["label"] + _flags(c), f"{c['items']:,}", _n(c["rate"]), _range(c),
                     _n(c["items_rate"]), "-" if vs_off is None else f"{vs_off:.1f}x",
                     "-" if share is None else f"{share:.1%}", _n(c.get("client_cpu_us"), 1),
                     _n(c.get("server_cpu_us"), 1), _n(c.get("requests_per_evaluation"), 3)])
    return _table(["contender", "items", "evaluations/s", "range", "items/s", "vs official",
                   "of in-process", "client CPU us/eval", "server CPU us/eval",
                   "requests/eval"], rows)


def _p2(an: dict[str, Any], ideal: float) -> list[str]:
    rows = []
    for c in an["contenders"].values():
        rate = c.get("items_rate")
        rows.append([c["label"] + _flags(c), f"{c['items']:,}", _n(rate), _range(c),
                     "-" if rate is None else f"{rate / ideal:.1%}", _n(c.get("seconds"), 2),
                     _n(c.get("requests"))])
    return _table(["contender", "items", "items/s", "range", f"of ideal {ideal:.0f}/s",
                   "seconds", "requests"], rows)


def _p3(an: dict[str, Any]) -> list[str]:
    rows = [[c["label"] + _flags(c), f"{c['items']:,}", _n(c.get("requests_per_evaluation"), 4),
             _n(c.get("requests")), _n(c["rate"]), _n(c.get("seconds"), 2)]
            for c in an["contenders"].values()]
    return _table(["contender", "items", "requests/evaluation", "requests", "evaluations/s",
                   "seconds"], rows)


def _p4(an: dict[str, Any]) -> list[str]:
    if an.get("missing"):
        return [an["missing"]]
    rows = [[f"{n:,}", _n(s["peak_rss_mb"], 1), _n(s["rss_before_mb"], 1),
             _n(s["outcomes_per_second"]), _n(s["wall_seconds"], 1), str(s["errors"]),
             str(s["runs"])] for n, s in an["sizes"].items()]
    lines = _table(["items (2 evals each)", "peak RSS MB", "RSS before MB", "outcomes/s",
                    "wall s", "errors", "runs"], rows)
    if len({s["runs"] for s in an["sizes"].values()}) > 1:
        lines += ["", "The largest size runs in one round only (`--p4-large-runs`, default 1): "
                  "it takes minutes, and three of them would not fit `make bench`'s 20-minute "
                  "budget. Peak RSS is a property of the batch engine's window, not of timing: "
                  "a trial run of `make bench` with three 1,000,000-item rounds the same day "
                  "measured 53.7, 55.1 and 53.7 MB "
                  "(see docs/batch.md for the area's own figures)."]
    return lines


def _p5(an: dict[str, Any]) -> list[str]:
    if an.get("missing"):
        return [an["missing"]]
    rows = [[name, str(s["threads"]), _n(s["calls"]), _n(s["calls_per_s"]), _n(s["p50_us"], 1),
             _n(s["p90_us"], 1), _n(s["p99_us"], 1), _n(s["p999_us"], 1), _n(s["max_us"]),
             str(s["runs"])] for name, s in an["scenarios"].items()]
    return _table(["scenario", "threads", "calls", "calls/s", "p50 us", "p90 us", "p99 us",
                   "p99.9 us", "max us", "runs"], rows)


def _m(an: dict[str, Any]) -> list[str]:
    if an.get("skipped") or an.get("missing"):
        return [an.get("skipped") or an["missing"]]
    rows = [[r["length"], r["scenario"], r["template"], _n(r["items"]), _n(r["items_per_s"], 1),
             f"{r['items_per_s_min']:,.0f}-{r['items_per_s_max']:,.0f}" if r["runs"] > 1
             else "-", _n(r["seconds"], 2), str(r["runs"])] for r in an["results"]]
    failed = an["runs"] - an["runs_ok"]
    return [*_table(["length", "scenario", "template", "items", "items/s", "range", "seconds",
                     "runs"], rows, "lllrrrrr"),
            "", f"Medians of {an['runs_ok']} round(s) of `benchmarks/bench_offline_models.py`"
            f"{f' ({failed} failed)' if failed else ''}: one in-process reference server per "
            f"round, sync requests of {an['batch'] or '?'} items one after another, items never "
            "repeated except in the \"50 expected reused\" scenario; model load and first "
            f"request {_n(an['model_load_seconds'], 2)} s (median, not in the figures)."]


_V_LABELS = {"page": "the page (HTML, JS)", "overview": "/api/runs (the overview)",
             "first_page": "first page of rows (the target)",
             "failing_is_json": "first page of is_json's failing rows",
             "errored": "first page of errored rows", "last_page": "the last page",
             "text_search": "text search: its first page",
             "text_count": "text search: its count (a scan, up to 10,000)"}


def _v_held(t: dict[str, Any]) -> str:
    if "total" not in t:
        return "-"
    total = "?" if t["total"] is None else f"{t['total']:,}{'+' if t['capped'] else ''}"
    return f"{t['rows']} of {total}" if "rows" in t else f"counted {total}"


def _v(an: dict[str, Any]) -> list[str]:
    if an.get("skipped") or an.get("missing"):
        return [an.get("skipped") or an["missing"]]
    if not an.get("timings"):
        return ["(no run finished)"]
    rows = [[_V_LABELS.get(name, name), _n(t["cold_ms"], 1), _n(t["warm_ms"], 1),
             _v_held(t)] for name, t in an["timings"].items()]
    lines = _table(["request", "cold ms", "warm ms (median of 5)", "rows"], rows, "lrrl")
    built = (f" (built in {an['build_seconds']:.0f} s through the run store's writer)"
             if an.get("build_seconds") else "")
    lines += ["", (f"A {an['rows']:,}-row run{built}, served by `fi-evals view` in its own "
                   f"process; peak RSS of that process after every request above: "
                   f"**{an['peak_rss_mb']:.1f} MB**.")]
    b = an.get("browser")
    if b:
        lines.append(f"Chromium: overview drawn {b['overview_ms']:.0f} ms after navigation; "
                     f"first page of rows fetched and drawn {b['first_rows_ms']:.0f} ms after "
                     f"clicking Rows (the page's own performance.now() marks).")
    return lines


def _a(an: dict[str, Any]) -> list[str]:
    if an.get("skipped") or an.get("missing"):
        return [an.get("skipped") or an["missing"]]
    if not an["clients"]:
        return ["(no run finished)"]
    rows = [[name, _n(c["items"]), _n(c["items_per_s"], 1), _n(c.get("ticks_per_s"), 1),
             _n(c.get("max_gap_ms"), 1), _n(c.get("p99_gap_ms"), 1), str(c["runs"])]
            for name, c in an["clients"].items()]
    rows += [[f"{name}: {reason}", "-", "-", "-", "-", "-", "0"]
             for name, reason in an.get("skipped_clients", {}).items()]
    return [*_table(["client", "items", "items/s", "loop ticks/s (100 = free)",
                     "longest gap ms (worst)", "p99 gap ms", "runs"], rows, "lrrrrrr"),
            "", "`benchmarks/bench_asyncio.py`, one server process per round (P2's flags), the "
            "clients one after another. The httpx line is a prototype of the rejected design "
            "(a native httpx.AsyncClient sending the same requests, no retries, polling or "
            "journal): see docs/asyncio.md for the choice."]


def tables(results: dict[str, Any], analysis: dict[str, Any]) -> str:
    """The target table and one table per scenario (also what the console shows)."""
    from benchmarks.report import P2_IDEAL

    sc, an = results["scenarios"], analysis["scenarios"]
    lines = ["## Targets (achieved / target)", "", *_targets(analysis)]
    for key in sc:
        lines += ["", f"## {key}: {sc[key]['title']}", ""]
        if key == "P1":
            lines += _p1(an[key])
        elif key == "P2":
            lines += _p2(an[key], P2_IDEAL)
        elif key == "P3":
            lines += _p3(an[key])
        elif key == "P4":
            lines += _p4(an[key])
        elif key == "P5":
            lines += _p5(an[key])
        elif key == "M":
            lines += _m(an[key])
        elif key == "V":
            lines += _v(an[key])
        elif key == "A":
            lines += _a(an[key])
    return "\n".join(lines)


def _header(meta: dict[str, Any]) -> list[str]:
    m = meta["machine"]
    pk = meta["packages"]
    off = meta.get("official_client")
    official = (f"ai-evaluation {off['ai-evaluation']} with litellm {off['litellm']} "
                f"(requests {off['requests']}, pydantic {off['pydantic']}) in its own "
                f"virtualenv, Python {off['python']}" if off else meta.get("official_note"))
    command = "python -m benchmarks.run --smoke" if meta["smoke"] else "make bench"
    return [
        "# fi-evals benchmarks: latest run", "",
        f"Produced by `{command}` on {meta['date']} in {meta.get('wall_seconds', 0) / 60:.1f} "
        f"minutes{' (smoke sizes: not a measurement)' if meta['smoke'] else ''}.", "",
        f"- **Machine**: {m['cores']} cores ({m['cpu']}), {m['memory_gb']} GB, {m['os']}; "
        f"load average {m['load_average_start'][0]} at the start, "
        f"{meta.get('load_average_end', ['?'])[0]} at the end.",
        f"- **Python**: {meta['python']}; fi-evals {pk.get('fi-evals', '?')} "
        f"(commit {meta.get('commit') or '?'}); "
        + ", ".join(f"{k} {v}" for k, v in pk.items() if k != "fi-evals") + ".",
        f"- **Official client**: {official}.",
        f"- **Method**: every figure is the median of {meta['runs']} runs, and every ratio the "
        "median of per-round ratios (the rounds interleave the contenders, so both sides of a "
        "ratio ran minutes apart under the same conditions). The client and the server are "
        "separate processes (they never share a GIL), and each run gets a fresh `fi-evals "
        "serve` with an empty SQLite database. Both processes share the machine's cores, as "
        "a laptop user's would. CPU columns are CPU time per evaluation of each process "
        "during the timed part (for the in-process rows, of the process doing the work); "
        "request counts come from the server's `/metrics`.",
    ]


def render(results: dict[str, Any], analysis: dict[str, Any], png: str | None) -> str:
    """The whole ``latest.md``."""
    meta = results["meta"]
    lines = _header(meta)
    if png:
        lines += ["", f"![benchmark chart]({png})"]
    elif meta.get("chart_note"):
        lines += ["", f"(No chart: {meta['chart_note']}.)"]
    lines += ["", tables(results, analysis), "", "## What limits the targets that are missed",
              ""]
    lines += limits.explain(results, analysis)
    lines += ["", "## Changes made because of this benchmark", "", *limits.findings()]
    lines += ["", "## Reproduce", "",
              "`make bench` (builds `benchmarks/.venv-official` for the official client once, "
              "installs matplotlib), or `.venv/bin/python -m benchmarks.run [--only P1,P3] "
              "[--runs N] [--no-official]`. The scale-out benchmark (Celery workers on Redis) "
              "is separate and optional: `.venv/bin/python benchmarks/bench_scaleout.py`.", ""]
    return "\n".join(lines)
