"""Every cookbook runs, as a user would run it: its own process, its own local server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fi_evals import _constants as C

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models"))
from fake_judge import FakeJudge  # tests/models is not a package

COOKBOOKS = Path(__file__).resolve().parents[2] / "cookbooks"
SCRIPTS = sorted(p.name for p in COOKBOOKS.glob("[0-9][0-9]_*.py"))

# A line each cookbook prints when it did its job (its asserts guard the rest).
EXPECTED = {
    "01_sync_baseline.py": "answers are JSON",
    "02_fire_and_forget.py": "done later: EvalResult(fuzzy_match",
    "03_poll_result.py": "raw payload: eval_status=completed",
    "04_parallel_with_progress.py": "120 items x 3 evals",
    "05_submit_then_poll.py": "by hand: 300 results",
    "06_error_handling.py": "errors by type",
    "07_chunking_10k.py": "12,000 items x 2 evals",
    "08_resume.py": "re-attached to",
    "10_pytest_gate.py": ("release gate: 7 passed", "release gate (-n 2): 7 passed",
                          "fuzzy_match did not pass: verdict Failed, score 0.44 < threshold 0.8"),
    "11_asyncio.py": ("one evaluation: Passed", "batch: 2000 rows scored", "streamed: 270/300",
                      "async task: 50/50", "cancelled: the batch stopped sending",
                      "logged score: is_json completed Failed (req-42)"),
    "12_opentelemetry.py": ("evaluate: Passed, Failed", "logged score: is_json completed Failed",
                            "handle_request: eval.is_json.passed=False, eval.is_json.score=0.0",
                            "fi_evals.server.evaluate x2", "in the request's trace: "),
    # The hosted cookbook's documented lines, and the extra ungrounded case.
    "09_hosted_async_cookbook.py": (
        "Score: 1.0  Passed: True", "Score: 0.0  Passed: False", "Submitted async eval",
        "✅ Evaluation complete!", "  Metric:  groundedness", "  Value:   Passed",
        "Progress: 50/50", "Scored: 50/50", "Sample (name: groundedness, output: Passed",
        "Submitted 50 async evaluations", "50/50 completed", "All 50 evaluations complete!",
        "  Item 0: groundedness = Passed", "Succeeded: 50, Failed: 0"),
}
JUDGE_MODEL = "judge-small"
# Cookbooks that need a judge: a fake OpenAI-compatible provider that serves JUDGE_MODEL only
# (any other name is a 404 model_not_found) and judges groundedness from the words.
JUDGED = {"09_hosted_async_cookbook.py"}


def test_every_cookbook_is_checked() -> None:
    assert SCRIPTS == sorted(EXPECTED)


@pytest.mark.parametrize("script", SCRIPTS)
def test_cookbook_runs(script: str) -> None:
    env = {k: v for k, v in os.environ.items()  # always offline
           if k != C.ENV_BASE_URL and not k.startswith("OTEL_EXPORTER_OTLP")}
    with FakeJudge(known_models=[JUDGE_MODEL], judge_content=True) as judge:
        if script in JUDGED:
            env.update({C.ENV_JUDGE_BASE_URL: judge.url, C.ENV_JUDGE_MODEL: JUDGE_MODEL})
        done = subprocess.run([sys.executable, script], cwd=COOKBOOKS, capture_output=True,
                              text=True, env=env, timeout=120)
    assert done.returncode == 0, f"{script} failed:\n{done.stdout}\n{done.stderr}"
    expected = EXPECTED[script]
    for line in (expected,) if isinstance(expected, str) else expected:
        assert line in done.stdout, f"{script}: {line!r} not printed:\n{done.stdout}"
    if script in JUDGED:  # hosted model names never reach the provider; its model judged all
        assert judge.requests and set(judge.models) == {JUDGE_MODEL}
        assert "Timed out" not in done.stdout and "failed:" not in done.stdout


def test_opentelemetry_cookbook_exports_to_the_suites_receiver() -> None:
    """Recipe 12 with OTEL_EXPORTER_OTLP_ENDPOINT pointing at a receiver this test runs: the
    spans arrive over OTLP/HTTP (protobuf), one trace from the handler's span to the server's
    evaluation, the verdict on the handler's span, no keys and no inputs."""
    sys.path.insert(0, str(COOKBOOKS))
    try:
        from _otlp_receiver import OtlpReceiver
    finally:
        sys.path.remove(str(COOKBOOKS))
    env = {k: v for k, v in os.environ.items()
           if k != C.ENV_BASE_URL and not k.startswith("OTEL_EXPORTER_OTLP")}
    with OtlpReceiver() as receiver:
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = receiver.url
        done = subprocess.run([sys.executable, "12_opentelemetry.py"], cwd=COOKBOOKS,
                              capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"exported to {receiver.url}" in done.stdout
    assert receiver.requests >= 1
    names = receiver.names()
    assert names["handle_request"] == 1 and names["fi_evals.evaluate"] == 1
    assert names["fi_evals.server.request"] >= 2 and names["fi_evals.server.evaluate"] == 2
    (handled,) = [s for s in receiver.spans if s.name == "handle_request"]
    assert handled.service == "checkout-service"
    assert handled.attributes["eval.is_json.score"] == 0.0
    assert handled.attributes["eval.is_json.passed"] is False
    trace = {s.name for s in receiver.spans if s.trace_id == handled.trace_id}
    assert {"fi_evals.evaluate", "fi_evals.request", "fi_evals.server.request",
            "fi_evals.server.evaluate"} <= trace
    evaluate = next(s for s in receiver.spans if s.name == "fi_evals.evaluate")
    assert evaluate.parent_span_id == handled.span_id
    assert f"trace {handled.trace_id}, span {handled.span_id}" in done.stdout  # the score's ids
    for span in receiver.spans:  # the inputs the recipe sent never left in a span
        assert "not json" not in repr(span.attributes) and '{"ok": true}' not in repr(
            span.attributes)
