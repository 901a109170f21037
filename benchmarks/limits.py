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
    if _missed(analysis, "P1", "in-process"):
        out += _p1_inprocess(analysis)
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


def _p1_inprocess(analysis: dict[str, Any]) -> list[str]:
    fi = _c(analysis, "P1", "fi-sync")
    tuned = _c(analysis, "P1", "fi-sync@500")
    ceiling = _c(analysis, "P1", "http-ceiling")
    ceiling500 = _c(analysis, "P1", "http-ceiling@500")
    pipeline = _c(analysis, "P1", "server-no-http")
    inproc = _c(analysis, "P1", "in-process")
    if not (fi.get("rate") and inproc.get("rate")):
        return []
    lines = [
        f"- **P1, fi_evals at 80% of the in-process rate: out of reach over HTTP for "
        f"evaluations this cheap.** The two evaluators take {1e6 / inproc['rate']:.1f} us per "
        f"evaluation ({inproc['rate']:,.0f}/s on one core). Everything around them costs "
        f"more than ten times that:"]
    if pipeline.get("rate"):
        lines.append(
            f"  - the server's own request pipeline with no HTTP at all (validation, evaluation, "
            f"one SQLite row per evaluation with its JSON inputs and output, the idempotency "
            f"record) runs {pipeline['rate']:,.0f}/s, {1e6 / pipeline['rate']:.0f} us per "
            f"evaluation: only {pipeline['rate'] / inproc['rate']:.0%} of in-process;")
    if ceiling.get("rate"):
        lines.append(
            f"  - a bare `requests` loop sending fi_evals' own requests (chunks of 50) gets "
            f"{ceiling['rate']:,.0f}/s, the server spending "
            f"{ceiling.get('server_cpu_us', 0):.0f} us of CPU per evaluation"
            + (f"; with chunks of 500 it gets {ceiling500['rate']:,.0f}/s "
               f"({ceiling500.get('server_cpu_us', 0):.0f} us)" if ceiling500.get("rate")
               else "") + ". That is the bound for any client sending these requests;")
    lines.append(
        f"  - fi_evals gets {fi['rate']:,.0f}/s with its defaults (client CPU "
        f"{fi.get('client_cpu_us', 0):.0f} us per evaluation)"
        + (f" and {tuned['rate']:,.0f}/s with `chunk_size=500` (client "
           f"{tuned.get('client_cpu_us', 0):.0f} us)" if tuned.get("rate") else "") + ".")
    lines.append(
        "  - so 80% would need the whole round trip (JSON out and in on both sides, HTTP, "
        "storage) to cost a quarter of the evaluator, about 1 us per evaluation.")
    lines.append("")
    lines.append("  What can move, from `py-spy --gil` profiles of these contenders:")
    lines.append("")
    lines.append(
        "  - *server, per request* (about 70% of its CPU with chunks of 50): uvicorn's "
        "pure-Python h11 parser, Starlette/FastAPI's middleware stack and dependency solving, "
        "and the hop of every sync `def` route to anyio's thread pool. Serving `new-eval/` "
        "straight from the `Gateway` ASGI layer (one thread hop, no routing) would cut most of "
        "it; installing `httptools` alone made no measurable difference here;")
    lines.append(
        "  - *server, per evaluation*: two SQLite write transactions per request (idempotency "
        "reservation, then rows + answer), `json.dumps` of every row's inputs and output, the "
        "whole answer stored a second time as the idempotency record, the canonical "
        "re-serialisation of the whole body for the idempotency hash (hashing the raw bytes "
        "would do), and the answer's JSON;")
    lines.append(
        "  - *SDK, per request size*: the default chunk (50 rows) is sized for slow, "
        "latency-bound templates; for cheap ones requests of 500 rows halve the server's cost "
        "per evaluation (the `chunk_size=500` rows). Growing the request size while answers "
        "come back fast (as the server's adaptive claim does) would give both;")
    lines.append(
        "  - *SDK, per evaluation* (client CPU above): `TemplateSpec.key_names` and `.mandatory` "
        "(`fi_evals/_inputs.py`) rebuild a tuple on every access, several times per item "
        "(about 7% of the client's CPU: a `cached_property` fixes it); a pydantic "
        "`EvalItem.model_validate` per evaluation in `Transport.new_eval` and an `EvalResult` "
        "per outcome in the coordinator (about 20% together); `cut_requests`/`build_inputs` "
        "per row (about 25%). The batch coordinator does all per-row work on one thread.")
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
        "- a48aef5 `fi_evals/batch/api.py`: `evaluate_batch`'s default chunk size now fills "
        "whole waves of workers. With 5,000 rows on 32 workers the old rule cut 100 chunks of "
        "50: three full waves and a fourth of 4 chunks that lasts as long (P2 at about 75% of "
        "the ideal); the new rule cuts 125 chunks of 40 (P2 row `chunk_size=50` vs the "
        "default).",
    ]
