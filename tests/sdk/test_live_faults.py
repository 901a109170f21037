"""The SDK against ``fi-evals serve --faults 500:0.05,429:0.02,reset:0.01``.

Every item must end with its verdict (the server announces idempotency, so 500s are retried
too), and ``/metrics`` must show that each evaluation ran exactly once: throttled requests ran
nothing, and a request whose connection was reset after the work was done is retried with its
Idempotency-Key and replayed, not run again. ``test_live_idempotent_retries.py`` runs the same
faults, plus 500s answered after the work, over 20 seeds in process.
"""

from __future__ import annotations

import json
from collections import Counter

import pytest
from _helpers import ServeProcess, metric_sum

from fi_evals import Evaluator, RetryPolicy

FAULTS = "500:0.05,429:0.02,reset:0.01"
EVALS = "fi_evals_evaluations_total"
N_SYNC = 5_000
N_ASYNC = 2_000

pytestmark = pytest.mark.slow


@pytest.fixture
def faulty_server(tmp_path):
    with ServeProcess(tmp_path / "faults.db", "--faults", FAULTS, "--fault-seed", "20240611",
                      "--no-access-log", "--log-level", "warning") as server:
        yield server


def texts(n: int) -> tuple[list[str], list[str]]:
    values = [json.dumps({"i": i}) if i % 4 else f"not json {i}" for i in range(n)]
    return values, ["Passed" if i % 4 else "Failed" for i in range(n)]


def check_outcomes(results, expected) -> int:
    """Every item has its verdict, and the verdicts are right (no errors: 500s are retried)."""
    assert len(results) == len(expected)
    kinds = Counter(result.status for result in results)
    assert kinds == {"completed": len(expected)}, [r.error for r in results if r.error][:5]
    assert [result.output for result in results] == expected
    return kinds["completed"]


def test_5000_items_each_evaluated_exactly_once(faulty_server):
    values, expected = texts(N_SYNC)
    # Generous attempts: this test is about losing nothing and running nothing twice.
    with Evaluator(faulty_server.api_key, faulty_server.secret_key, faulty_server.url,
                   max_workers=8, timeout=240, retry=RetryPolicy(max_attempts=8)) as ev:
        result = ev.evaluate("is_json", {"text": values}, chunk_size=25)
        stats = ev.stats()
    completed = check_outcomes(result.eval_results, expected)
    assert metric_sum(faulty_server, EVALS) == completed
    assert len({r.eval_id for r in result.eval_results if r.eval_id}) == completed
    assert stats.retries > 0  # 429s and resets happened and were retried
    assert metric_sum(faulty_server, "fi_evals_faults_injected_total") > 0


def test_async_submissions_and_bulk_polls_under_faults(faulty_server):
    values, expected = texts(N_ASYNC)
    with Evaluator(faulty_server.api_key, faulty_server.secret_key, faulty_server.url,
                   max_workers=8, timeout=240, retry=RetryPolicy(max_attempts=8)) as ev:
        submitted = ev.evaluate("is_json", {"text": values}, chunk_size=50, is_async=True)
        assert all(r.status in ("pending", "error") for r in submitted.eval_results)
        done = ev.wait_all(submitted.eval_results, timeout=120)
    completed = check_outcomes(done, expected)
    assert metric_sum(faulty_server, EVALS) == completed
