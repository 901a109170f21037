"""What limits each missed target, with the run's own numbers (a section of ``latest.md``).

The numbers come from the run being reported; the profile findings (which code the CPU goes
to) come from ``py-spy record --gil`` on the client and the server processes of this harness's
P1 contenders on the 2-core reference machine, and are stated as such.
"""

from __future__ import annotations

from typing import Any

__all__ = ["explain", "findings"]


def _c(analysis: dict[str, Any], scenario: str, name: str) -> dict[str, Any]:
    return analysis["scenarios"].get(scenario, {}).get("contenders", {}).get(name, {})


def _missed(analysis: dict[str, Any], scenario: str, needle: str = "") -> bool:
    return any(t["holds"] is False and t["scenario"] == scenario and needle in t["what"]
               for t in analysis["targets"])


def explain(results: dict[str, Any], analysis: dict[str, Any]) -> list[str]:
    """One paragraph per missed target (or a line saying every target holds)."""
    out: list[str] = []
    if any(_missed(analysis, "P1", needle) for needle in ("best fixed", "server CPU",
                                                          "baseline", "async")):
        out += _p1_issue20(analysis)
    if _missed(analysis, "P1", "official"):
        out += _p1_official(analysis)
    if _missed(analysis, "P2"):
        out += _p2(analysis)
    if _missed(analysis, "P3"):
        out += ["- **P3**: the async batch sent more requests than the target allows; the P3 "
                "table splits them by route (submissions vs bulk polls).", ""]
    if _missed(analysis, "P4"):
        out += ["- **P4**: the batch engine's window (`BATCH_WINDOW_CHUNKS_PER_WORKER`, "
                "`BATCH_ASYNC_WINDOW_ITEMS`) or the output writer holds more than it should; "
                "see `benchmarks/bench_memory.py`.", ""]
    if _missed(analysis, "P5"):
        out += _p5(results, analysis)
    if _missed(analysis, "M"):
        out += _m(analysis)
    if _missed(analysis, "V"):
        out += ["- **V**: the viewer answers every page from SQLite indexes "
                "(`fi_evals/runs/run.py`) and reads with a pool of its own "
                "(`fi_evals/runs/viewer.py`); see `benchmarks/bench_viewer.py`'s table for "
                "which request was slow.", ""]
    return out or ["Every target holds in this run."]


def _us(c: dict[str, Any], side: str) -> str:
    value = c.get(f"{side}_cpu_us")
    return "-" if value is None else f"{value:.0f} us"


def _p1_issue20(analysis: dict[str, Any]) -> list[str]:
    """Issue 20's missed gates: where the CPU per evaluation still goes, from this run's
    figures and the py-spy profiles of /tmp/notes/issue20.md (summarised in
    docs/performance.md)."""
    fi = _c(analysis, "P1", "fi-sync")
    fixed = _c(analysis, "P1", "fi-sync@500")
    base = _c(analysis, "P1", "fi-sync@baseline")
    fi_async = _c(analysis, "P1", "fi-async")
    ceiling = _c(analysis, "P1", "http-ceiling@500")
    inproc = _c(analysis, "P1", "in-process")
    if not fi.get("rate"):
        return []
    lines = [
        "- **P1, issue 20's gates.** Client and server each have one of the two cores; the "
        "slower side per evaluation sets the rate. CPU per evaluation in this run: fi_evals "
        f"sync with defaults {_us(fi, 'client')} client / {_us(fi, 'server')} server; chunks "
        f"of 500 {_us(fixed, 'client')} / {_us(fixed, 'server')}; the baseline worktree "
        f"{_us(base, 'client')} / {_us(base, 'server')}; a bare `requests` client with chunks "
        f"of 500 {_us(ceiling, 'client')} / {_us(ceiling, 'server')}; async "
        f"{_us(fi_async, 'client')} / {_us(fi_async, 'server')}; the evaluators alone "
        f"{_us(inproc, 'client')}."]
    lines.append(
        "  - *server, per evaluation* (chunks of 500): the evaluators are the largest part "
        "(about 4 us: `is_json`'s parse, formatting each score); then the answer's JSON "
        "(~1.2 us), the request's parse and validation, and the batch's one SQLite row "
        "(~2 us for every evaluation of the request); HTTP adds about 3 us;")
    lines.append(
        "  - *client, per evaluation*: `requests`/`http.client` about 3 us, reading the "
        "answer ~1 us, building the results ~1.2 us, emitting rows in input order ~1.5 us, "
        "and the garbage collector's remaining runs (a batch keeps a few objects per row);")
    lines.append(
        "  - *async*: items of cheap templates are evaluated at submit and come back with "
        "their ids (`Prefer: return=representation`), so the work is the sync work plus the "
        "journal of ids; items that are queued (judge, models, isolation) are written "
        "pending, claimed and finished, and read back with their inputs by bulk status.")
    return [*lines, ""]


def _p1_official(analysis: dict[str, Any]) -> list[str]:
    off = _c(analysis, "P1", "official-sync")
    return [f"- **P1, speed-up over the official pattern**: the official client sends one "
            f"request per item and template ({off.get('items', 0):,} items measured); fi_evals' "
            "default chunks of 50 make the server's per-request cost (above) the limit. "
            "Bigger requests for cheap templates (the `chunk_size=500` row) raise the ratio.",
            ""]


def _p2(analysis: dict[str, Any]) -> list[str]:
    fi = _c(analysis, "P2", "fi-sync")
    if not fi.get("items_rate"):
        return []
    return [f"- **P2, 90% of the ideal**: fi_evals got {fi['items_rate']:,.0f} items/s. A sync "
            "request evaluates its rows one after the other, so each wave of 32 requests lasts "
            "as long as its longest chunk: the chunks must fill whole waves (the SDK's rule "
            "since a48aef5; the `chunk_size=50` row is the rule before it), and each of the 4 "
            "waves also pays a round trip and the server's sleep overshoot per row (this "
            "machine was shared: see the load average above).", ""]


def _p5(results: dict[str, Any], analysis: dict[str, Any]) -> list[str]:
    scs = analysis["scenarios"].get("P5", {}).get("scenarios", {})
    worst = max(scs.items(), key=lambda kv: kv[1]["p99_us"]) if scs else None
    if worst is None:
        return []
    name, s = worst
    return [f"- **P5, log() p99**: the worst scenario is `{name}` (p50 {s['p50_us']:.1f} us, "
            f"p99 {s['p99_us']:.1f} us). The call itself is a few microseconds (p50); the tail "
            "is time spent waiting for the GIL while the logger's worker (encoding, HTTP, "
            "polling, the spool's SQLite) or another caller holds it, and for a core while the "
            "server and other processes share two. Less CPU in the worker per score shortens "
            "it; see `benchmarks/bench_logger.py`.", ""]


def _m(analysis: dict[str, Any]) -> list[str]:
    (target,) = [t for t in analysis["targets"] if t["scenario"] == "M"]
    return [f"- **M**: the offline embedding evaluators ran {target['achieved_text']} on short "
            "distinct items. The int8 encoder's integer matrix products take about two thirds "
            "of its time and run near what AVX2 allows on these cores, so the figure follows "
            "the machine's load (the load average is above); "
            "`benchmarks/bench_offline_models.py` reproduces it alone.", ""]


def findings() -> list[str]:
    """Changes made because of this benchmark (kept in the report for the record)."""
    return [
        "- issue 20 (branch s2-issue20): the gateway answers `POST new-eval/` itself (no "
        "FastAPI routing/dependencies); one SQLite transaction per request (in-flight "
        "idempotency keys held in memory, the record written with the rows; raw-body hash "
        "first); rows stored from columns; one reused C JSON encoder; adaptive request size "
        "in `evaluate_batch` (`fi_evals/batch/sizing.py`); the client validates a whole "
        "answer in one call and builds results without re-validating; async submits chunks "
        "of 500; offline model evaluators get claims of their preferred batch.",
        "- issue 20, second pass: a sync request's results are one SQLite row (eval ids are "
        "UUIDv8 batch key + index, `fi_evals/server/evalids.py`); the client reads answers "
        "from the raw body in one pydantic call, cuts inputs by column, settles a request's "
        "outcomes in one loop and raises the collector's threshold while a batch runs "
        "(`fi_evals/batch/collector.py`); cheap async items are evaluated at submit and, "
        "asked with `Prefer: return=representation`, answered with their results; bulk "
        "status is written around the stored JSON.",
        "- a48aef5 `fi_evals/batch/api.py`: `evaluate_batch`'s default chunk size now fills "
        "whole waves of workers. With 5,000 rows on 32 workers the old rule cut 100 chunks of "
        "50: three full waves and a fourth of 4 chunks that lasts as long (P2 at about 75% of "
        "the ideal); the new rule cuts 125 chunks of 40 (P2 row `chunk_size=50` vs the "
        "default).",
    ]
