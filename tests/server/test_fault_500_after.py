"""The ``500-after`` fault: the request runs and is stored, then its answer becomes a 500."""

from __future__ import annotations

import uuid
from typing import Any

from _helpers import metric_sum

from fi_evals import _constants as C
from fi_evals.server.faults import FAULT_KINDS, FaultPlan

from .conftest import Api, assert_error

BODY = {"eval_name": "is_json", "inputs": {"text": ["{}", "x", "[]"]}}
EVALS = "fi_evals_evaluations_total"


def test_500_after_is_a_fault_kind() -> None:
    assert "500-after" in FAULT_KINDS
    plan = FaultPlan.parse("500-after:1, 500:0", seed=1)
    assert plan.probabilities == (("500-after", 1.0), ("500", 0.0))
    assert {plan.draw() for _ in range(20)} == {"500-after"}


def test_500_after_runs_and_stores_then_the_retry_is_replayed(server_factory: Any) -> None:
    server = server_factory(faults="500-after:1")
    api = Api(server)
    headers = {C.HEADER_IDEMPOTENCY_KEY: str(uuid.uuid4())}
    first = api.post(C.PATH_NEW_EVAL, BODY, headers=headers)
    assert_error(first, 500, "server_error", "server_error", "500-after")
    assert C.HEADER_IDEMPOTENT_REPLAYED not in first.headers
    assert metric_sum(server, EVALS) == 3  # the work was done before the answer was lost
    assert metric_sum(server, "fi_evals_faults_injected_total", kind="500-after") == 1
    assert metric_sum(server, "fi_evals_http_requests_total", route=C.PATH_NEW_EVAL,
                      status="500") == 1

    # Every answer of this server is lost the same way; the replay happens all the same.
    second = api.post(C.PATH_NEW_EVAL, BODY, headers=headers)
    assert second.status_code == 500
    assert metric_sum(server, "fi_evals_idempotent_replays_total") == 1
    assert metric_sum(server, EVALS) == 3  # replayed, not run again


def test_500_after_then_a_clean_retry_gets_the_stored_answer(server_factory: Any) -> None:
    spec = "500-after:0.5"
    # A seed whose first request loses its answer and whose second does not.
    seed = next(s for s in range(100) if _draws(spec, s, 2) == ["500-after", None])
    server = server_factory(faults=spec, fault_seed=seed)
    api = Api(server)
    headers = {C.HEADER_IDEMPOTENCY_KEY: str(uuid.uuid4())}
    answers = [api.post(C.PATH_NEW_EVAL, BODY, headers=headers) for _ in range(2)]
    codes = [a.status_code for a in answers]
    assert codes == [500, 200], codes
    assert answers[1].headers[C.HEADER_IDEMPOTENT_REPLAYED] == "true"
    evaluations = answers[1].json()["result"][0]["evaluations"]
    assert [e["output"] for e in evaluations] == ["Passed", "Failed", "Passed"]
    assert metric_sum(server, EVALS) == 3


def _draws(spec: str, seed: int, n: int) -> list[str | None]:
    plan = FaultPlan.parse(spec, seed)
    return [plan.draw() for _ in range(n)]
