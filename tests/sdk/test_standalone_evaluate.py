"""The standalone ``fi_evals.evaluate()`` and the raw payload of ``get_eval_result``.

Code written from the hosted service's cookbook calls ``evaluate(template, model=..., **inputs)``
on a process-wide default Evaluator and polls ``get_eval_result(eval_id)["result"]["evalStatus"]``.
Live tests run against the reference server in both modes (``sdk_server``: extended and
``--compat``) and against a stub that spells the status one way only.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest

import fi_evals
from fi_evals import (
    AuthenticationError,
    EvalFailedError,
    Evaluator,
    InvalidInputError,
    MissingCredentialsError,
    UnknownTemplateError,
    Verdict,
    _default,
    evaluate,
)
from fi_evals import _constants as C
from fi_evals.catalogue import CATALOGUE
from fi_evals.results import EvalResult
from fi_evals.server.evaluators.base import BaseEvaluator, EvaluationError, Outcome
from fi_evals.server.runner import RunningServer


@pytest.fixture
def fresh_default() -> Iterator[None]:
    """No default Evaluator before or after the test."""
    _default.close_default_evaluator()
    yield
    _default.close_default_evaluator()


@pytest.fixture
def env_server(sdk_server: RunningServer, monkeypatch: pytest.MonkeyPatch,
               fresh_default: None) -> RunningServer:
    """FI_BASE_URL, FI_API_KEY, FI_SECRET_KEY point at the module's server."""
    monkeypatch.setenv(C.ENV_BASE_URL, sdk_server.url)
    monkeypatch.setenv(C.ENV_API_KEY, sdk_server.api_key)
    monkeypatch.setenv(C.ENV_SECRET_KEY, sdk_server.secret_key)
    return sdk_server


# ---------------------------------------------------------------- evaluate(): results

def test_a_pass_fail_verdict_reads_as_a_score(env_server: RunningServer) -> None:
    good = evaluate("is_json", text='{"order": 7}')
    assert isinstance(good, Verdict) and good.output == "Passed"
    assert (good.score, good.passed, good.threshold) == (1.0, True, 1.0)
    assert uuid.UUID(good.eval_id) and good.output_type == "Pass/Fail" and good.reason
    assert good.eval_name == "is_json" and good.status == "completed" and good.error is None
    assert good.metadata == {"eval_id": good.eval_id, "output_type": "Pass/Fail"}
    assert good.latency_ms > 0 and isinstance(good.runtime, int)
    bad = evaluate("is_json", text="shipped!")
    assert (bad.output, bad.score, bad.passed) == ("Failed", 0.0, False)
    assert "Verdict(is_json: 'Failed', score=0, passed=False" in repr(bad)


def test_a_score_passes_by_the_threshold(env_server: RunningServer) -> None:
    result = evaluate("fuzzy_match", output="Your refund is on its way.",
                      expected="Your refund has been sent.")
    assert 0.5 < result.score < 0.9 and result.output == result.score
    assert result.passed is True and result.threshold == C.BATCH_SCORE_PASS_THRESHOLD
    strict = evaluate("fuzzy_match", threshold=0.9, output="Your refund is on its way.",
                      expected="Your refund has been sent.")
    assert strict.score == result.score and strict.passed is False and strict.threshold == 0.9


def test_template_parameters_go_as_keywords_or_config(env_server: RunningServer) -> None:
    assert evaluate("contains", text="Order A17 shipped", keyword="a17").passed is True
    assert evaluate("contains", text="Order A17 shipped", config={"keyword": "B2"}).passed is False

    class Short:  # a template object, as the hosted SDK's template classes
        eval_name = "length_less_than"
        config: ClassVar[dict[str, int]] = {"max_length": 5}

    assert evaluate(Short(), text="far too long").passed is False


def test_context_may_be_a_list_of_chunks(env_server: RunningServer) -> None:
    with pytest.raises(InvalidInputError, match="one item"):
        evaluate("is_json", text=["{}", "[]"])  # a batch: not what evaluate() is for
    result = evaluate("bleu_score", reference="the cat sat", hypothesis="the cat sat")
    assert result.score == pytest.approx(1.0) and result.passed


# ---------------------------------------------------------------- evaluate(): refusals, errors

def test_is_async_is_refused_before_anything_else(monkeypatch: pytest.MonkeyPatch,
                                                  fresh_default: None) -> None:
    monkeypatch.delenv(C.ENV_API_KEY, raising=False)  # no keys: still the TypeError first
    with pytest.raises(TypeError, match=r"Evaluator\.evaluate\(\.\.\., is_async=True\)"):
        evaluate("groundedness", output="x", context="y", is_async=True)
    assert _default._default is None  # nothing was built


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"engine": "local"}, "engine"), ({"augment": True}, "augment"),
    ({"fi_api_key": "k"}, "Evaluator(fi_api_key="), ({"fi_base_url": "http://x"}, "fi_base_url"),
    ({"threshold": "high"}, "threshold must be a finite number"),
    ({"threshold": float("nan")}, "threshold must be a finite number"),
])
def test_hosted_only_keywords_say_what_to_use(kwargs: dict[str, Any], needle: str,
                                              fresh_default: None) -> None:
    with pytest.raises(TypeError, match="evaluate|threshold") as info:
        evaluate("is_json", text="{}", **kwargs)
    assert needle in str(info.value)
    with pytest.raises(TypeError, match="one template"):
        evaluate(["is_json", "one_line"], text="{}")


def test_mistakes_raise_typed_errors(env_server: RunningServer,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UnknownTemplateError, match="is_json"):
        evaluate("is_jsonn", text="{}")
    with pytest.raises(InvalidInputError, match="expected"):
        evaluate("fuzzy_match", output="a")
    with pytest.raises(InvalidInputError, match="response"):
        evaluate("is_json", response="{}")
    _default.close_default_evaluator()
    monkeypatch.setenv(C.ENV_SECRET_KEY, "wrong-secret")
    with pytest.raises(AuthenticationError):
        evaluate("is_json", text="{}")


class _DownJudge(BaseEvaluator):
    """Stands in for ``groundedness``: its judge is always unreachable."""

    template = CATALOGUE["groundedness"]

    def evaluate(self, inputs: Mapping[str, Any], params: Mapping[str, Any],
                 model: str | None = None) -> Outcome:
        raise EvaluationError("the judge at http://judge.invalid was unreachable")


def test_an_evaluation_that_cannot_run_raises_eval_failed(
        server_factory: Any, monkeypatch: pytest.MonkeyPatch, fresh_default: None) -> None:
    server = server_factory(evaluators=[_DownJudge()])
    for name, value in ((C.ENV_BASE_URL, server.url), (C.ENV_API_KEY, server.api_key),
                        (C.ENV_SECRET_KEY, server.secret_key)):
        monkeypatch.setenv(name, value)
    with pytest.raises(EvalFailedError, match="unreachable") as info:
        evaluate("groundedness", output="x", context="y", model="turing_small")
    assert uuid.UUID(info.value.eval_id)


# ---------------------------------------------------------------- the default Evaluator

def test_the_default_evaluator_is_built_once_for_every_thread(env_server: RunningServer) -> None:
    barrier = threading.Barrier(16)
    seen: list[Evaluator] = []
    verdicts: list[Verdict] = []

    def work(i: int) -> None:
        barrier.wait()
        seen.append(_default.default_evaluator())
        verdicts.append(evaluate("is_json", text="{}" if i % 2 else "no"))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(seen) == 16 and len({id(ev) for ev in seen}) == 1
    assert sorted(v.passed for v in verdicts) == [False] * 8 + [True] * 8
    assert seen[0].base_url == env_server.url.rstrip("/")


def test_the_default_evaluator_reads_the_environment_on_first_use(
        monkeypatch: pytest.MonkeyPatch, fresh_default: None) -> None:
    monkeypatch.delenv(C.ENV_BASE_URL, raising=False)
    monkeypatch.delenv(C.ENV_API_KEY, raising=False)
    with pytest.raises(MissingCredentialsError):
        _default.default_evaluator()
    monkeypatch.setenv(C.ENV_API_KEY, "k")
    monkeypatch.setenv(C.ENV_SECRET_KEY, "s")
    ev = _default.default_evaluator()  # a failed first try is not remembered
    assert ev.base_url == C.DEFAULT_BASE_URL  # like Evaluator(): the hosted API by default
    assert _default.default_evaluator() is ev
    _default.close_default_evaluator()
    assert "closed" in repr(ev) and _default._default is None


def test_the_default_evaluator_is_closed_at_exit(sdk_server: RunningServer) -> None:
    code = (
        "import atexit, fi_evals, fi_evals._default as d\n"
        "atexit.register(lambda: print('at exit:', d._default))\n"  # runs after d's own hook
        "print(fi_evals.evaluate('is_json', text='[1]'))\n"
        "ev = d.default_evaluator()\n"
        "atexit.register(lambda: print('closed:', ev._closed))\n"  # runs first: not closed yet
    )
    env = {C.ENV_BASE_URL: sdk_server.url, C.ENV_API_KEY: sdk_server.api_key,
           C.ENV_SECRET_KEY: sdk_server.secret_key, "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("Verdict(is_json: 'Passed', score=1, passed=True")
    assert lines[1:] == ["closed: False", "at exit: None"]


# ---------------------------------------------------------------- Verdict, offline

def test_verdict_of_a_choice_template_has_no_score() -> None:
    result = EvalResult(name="tone", output=["joy"], reason="upbeat", output_type="choices")
    verdict = Verdict.from_result(result, threshold=0.5, latency_ms=1.0)
    assert (verdict.score, verdict.passed, verdict.threshold) == (None, None, None)
    assert "score=None, passed=None" in repr(verdict)


# ---------------------------------------------------------------- get_eval_result: both spellings

def test_get_eval_result_carries_both_spellings(sdk_server: RunningServer) -> None:
    with Evaluator(sdk_server.api_key, sdk_server.secret_key, sdk_server.url) as ev:
        eval_id = ev.evaluate("is_json", {"text": "{}"}, is_async=True).eval_results[0].eval_id
        ev.wait_all([eval_id], timeout=30)
        inner = ev.get_eval_result(eval_id)["result"]
    assert inner["evalStatus"] == inner["eval_status"] == "completed"
    assert inner["result"]["value"] == "Passed"


class _OneSpellingServer:
    """A loopback server without extensions whose GET payload spells the status one way."""

    def __init__(self, spelling: str) -> None:
        self.eval_id = str(uuid.uuid4())
        record = {"eval_id": self.eval_id, "name": "is_json", "input_data": {"text": "{}"},
                  "output_type": "Pass/Fail", "value": "Passed", "reason": "parses",
                  "runtime": 3, "model": None, "error_message": None}
        payload = {spelling: "completed", "result": record, "error_message": None}

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                if self.path.startswith(C.PATH_NEW_EVAL):
                    self._send(200, {"status": True, "result": payload})
                else:  # no capabilities/: a server with section A only
                    self._send(404, {"status": False, "type": "not_found", "code": "not_found",
                                     "message": "not found", "detail": "not found"})

            def _send(self, code: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.mark.parametrize("spelling", ["eval_status", "evalStatus"])
def test_get_eval_result_adds_the_spelling_a_server_left_out(spelling: str) -> None:
    stub = _OneSpellingServer(spelling)
    try:
        with Evaluator("k", "s", stub.url) as ev:
            inner = ev.get_eval_result(stub.eval_id)["result"]
            assert inner["eval_status"] == inner["evalStatus"] == "completed"
            typed = ev.get_result(stub.eval_id)  # the typed reader accepts either spelling
            assert (typed.status, typed.output) == ("completed", "Passed")
            assert ev.wait_all([stub.eval_id], timeout=10)[0].output == "Passed"
    finally:
        stub.close()


def test_evaluate_and_verdict_are_public() -> None:
    assert fi_evals.evaluate is evaluate and "evaluate" in fi_evals.__all__
    assert "Verdict" in fi_evals.__all__
