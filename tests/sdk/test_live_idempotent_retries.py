"""500s are retried exactly when the retry cannot run anything twice (PROTOCOL.md section C).

Against real servers on loopback with ``--faults``:

- A server announcing ``idempotency``: 5,000 items per seed over 20 seeds, with 500s answered
  before the work (``500``), after it was done and stored (``500-after``), throttling (``429``)
  and resets after the work (``reset``). Every item ends with its verdict, ``/metrics`` shows
  each evaluation ran once, and every retry of a request whose work was done was answered from
  the idempotency store (``Idempotent-Replayed``), not run again.
- A ``--compat`` server (no capabilities, so no idempotency): a POST answered 500 is not retried
  (its items record the error, and the ones whose work ran were not run again), while GETs
  answered 500 are retried until they succeed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from _helpers import MetricKey, scrape

from fi_evals import Evaluator, RetryPolicy
from fi_evals import _constants as C

FAULTS = "500:0.05,429:0.02,reset:0.01,500-after:0.03"
SEEDS = range(20)
N_ITEMS = 5_000
CHUNK = 100  # 50 POSTs per seed, ~1,000 in all: every fault kind is drawn many times
EVALS = "fi_evals_evaluations_total"
FAULTS_TOTAL = "fi_evals_faults_injected_total"
HTTP = "fi_evals_http_requests_total"
REPLAYS = "fi_evals_idempotent_replays_total"
# Correctness, not patience, is tested here: short backoffs (429's Retry-After still holds) and
# enough attempts that ~10% faulty answers never exhaust them.
FAST_RETRY = RetryPolicy(max_attempts=8, backoff_base=0.05, backoff_max=0.5)


def total(metrics: dict[MetricKey, float], name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, have), v in metrics.items() if n == name and wanted <= have)


def rows(n: int) -> tuple[list[dict[str, str]], list[str]]:
    """``n`` rows for ``is_json`` (one in four is not JSON) and their expected verdicts."""
    texts = [json.dumps({"i": i}) if i % 4 else f"not json {i}" for i in range(n)]
    return [{"text": t} for t in texts], [C.OUTPUT_PASSED if i % 4 else C.OUTPUT_FAILED
                                          for i in range(n)]


def run_seed(server_factory: Callable[..., Any], seed: int) -> dict[str, float]:
    """One server with ``FAULTS`` drawn from ``seed``; 5,000 items; the checks of one run."""
    server = server_factory(faults=FAULTS, fault_seed=seed, access_log=False)
    data, expected = rows(N_ITEMS)
    with Evaluator(server.api_key, server.secret_key, server.url, max_workers=8, timeout=120,
                   retry=FAST_RETRY) as ev:
        assert ev.capabilities is not None and ev.capabilities.idempotency
        result = ev.evaluate_batch(data, ["is_json"], chunk_size=CHUNK, progress=False)
        client = ev.stats()
    metrics = scrape(server)

    # Every item ends with its verdict: no errors at all.
    assert [i.index for i in result.items] == list(range(N_ITEMS))
    outcomes = [i.results["is_json"] for i in result.items]
    assert [r.error for r in outcomes if not r.ok] == [], f"seed {seed}"
    assert [r.output for r in outcomes] == expected, f"seed {seed}"
    assert result.stats.templates["is_json"].scored == N_ITEMS and client.failures == 0

    # Each evaluation ran exactly once, and each chunk got exactly one successful answer.
    assert total(metrics, EVALS, outcome="completed") == N_ITEMS, f"seed {seed}"
    assert total(metrics, EVALS) == N_ITEMS, f"seed {seed}"
    assert len({r.eval_id for r in outcomes}) == N_ITEMS
    assert total(metrics, HTTP, route=C.PATH_NEW_EVAL, status="200") == N_ITEMS // CHUNK

    # Every fault that let the work run (500-after, reset) on a POST was followed by a retry
    # with the same key that the server answered as a replay. Those faults can also hit the
    # few GETs (capabilities, templates), where there is nothing to replay: the GETs' resets
    # are counted exactly, their 500s (injected before or after the handler) bound the rest.
    done_then_failed = (total(metrics, FAULTS_TOTAL, kind="500-after")
                        + total(metrics, FAULTS_TOTAL, kind="reset"))
    gets = [key for key in metrics if key[0] == HTTP
            and dict(key[1]).get("route") in (C.PATH_CAPABILITIES, C.PATH_GET_EVALS)]
    get_resets = sum(metrics[k] for k in gets if dict(k[1])["status"] == "reset")
    get_500s = sum(metrics[k] for k in gets if dict(k[1])["status"] == "500")
    replays = total(metrics, REPLAYS)
    assert (done_then_failed - get_resets - get_500s <= replays
            <= done_then_failed - get_resets), f"seed {seed}: {metrics}"
    # A replayed answer that reached the client says so; one whose answer was lost again was
    # replayed once more, so the server counts at least as many.
    assert client.replayed <= replays and (client.replayed > 0) == (replays > 0)
    return {"replays": replays, "client_replays": client.replayed, "retries": client.retries,
            "500": total(metrics, FAULTS_TOTAL, kind="500"),
            "500-after": total(metrics, FAULTS_TOTAL, kind="500-after"),
            "429": total(metrics, FAULTS_TOTAL, kind="429"),
            "reset": total(metrics, FAULTS_TOTAL, kind="reset")}


@pytest.mark.slow
def test_faults_end_in_verdicts_and_each_evaluation_runs_once(server_factory: Any) -> None:
    started = time.monotonic()
    sums: dict[str, float] = {}
    for seed in SEEDS:
        for name, value in run_seed(server_factory, seed).items():
            sums[name] = sums.get(name, 0.0) + value
    # Over all seeds every fault kind happened, and 500s and lost answers were retried.
    assert all(sums[kind] > 0 for kind in ("500", "500-after", "429", "reset")), sums
    assert sums["replays"] >= sums["500-after"] / 2 and sums["client_replays"] > 0, sums
    assert sums["retries"] >= sums["500"] + sums["500-after"], sums
    assert time.monotonic() - started < 120  # about a minute on 2 busy cores


def test_compat_server_posts_are_not_retried_after_500_but_gets_are(
        server_factory: Any) -> None:
    server = server_factory(compat=True, faults="500:0.1,500-after:0.1", fault_seed=3,
                            access_log=False)
    n = 3 * 100  # compat: 3 items per POST, so 100 POSTs
    data, expected = rows(n)
    with Evaluator(server.api_key, server.secret_key, server.url, max_workers=4, timeout=60,
                   retry=FAST_RETRY) as ev:
        assert ev.capabilities is None  # 404 (its injected 500s were retried)
        ev.list_evaluations()  # templates cached: the batch below sends POSTs only
        before, start = scrape(server), ev.stats()
        result = ev.evaluate_batch(data, ["is_json"], progress=False)
        after, posted = scrape(server), ev.stats()

        # POSTs: one attempt each, whatever the answer; 500s end as errors on their items.
        assert posted.requests - start.requests == n // 3
        assert posted.retries == start.retries
        lost_before = total(after, FAULTS_TOTAL, kind="500") - total(before, FAULTS_TOTAL,
                                                                      kind="500")
        lost_after = (total(after, FAULTS_TOTAL, kind="500-after")
                      - total(before, FAULTS_TOTAL, kind="500-after"))
        assert lost_before > 0 and lost_after > 0
        outcomes = [i.results["is_json"] for i in result.items]
        errors = [r.error for r in outcomes if r.error is not None]
        assert sum(not r.ok for r in outcomes) == len(errors)
        assert len(errors) == 3 * (lost_before + lost_after)
        assert {(e.type, e.status_code) for e in errors} == {("ServerError", 500)}
        verdicts = [(r, want) for r, want in zip(outcomes, expected) if r.ok]
        assert all(r.output == want for r, want in verdicts)
        # The chunks answered 500 after their work ran were not sent again: nothing ran twice.
        ran = total(after, EVALS) - total(before, EVALS)
        assert ran == len(verdicts) + 3 * lost_after

        # GETs: a 500 is retried until the answer comes.
        ids = [r.eval_id for r, _ in verdicts[:80] if r.eval_id is not None]
        assert len(ids) == 80
        fetched = [ev.get_result(i) for i in ids]
        got = ev.stats()
    assert [r.status for r in fetched] == ["completed"] * 80
    assert [r.output for r in fetched] == [r.output for r, _ in verdicts[:80]]
    final = scrape(server)
    get_faults = sum(total(final, FAULTS_TOTAL, kind=k) - total(after, FAULTS_TOTAL, kind=k)
                     for k in ("500", "500-after"))
    assert get_faults > 0
    assert got.retries - posted.retries == get_faults  # every 500 on a GET was retried
    assert got.requests - posted.requests == 80 + get_faults
    assert got.failures == posted.failures
