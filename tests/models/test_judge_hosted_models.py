"""The hosted service's model names, and model names the judge provider does not know.

Requests written for the hosted service say ``model="turing_small"``; a reference server serves
them with its configured judge model, and a name its provider refuses as unknown falls back to
the configured model once (then is remembered). The provider here is the loopback fake judge in
its realistic mode: it serves ``judge-small`` only (anything else is OpenAI's 404
``model_not_found``) and judges groundedness from the words, so a "Failed" verdict is possible.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fake_judge import FakeJudge, model_not_found
from model_helpers import Client

from fi_evals import EvalFailedError, Evaluator, _default, evaluate
from fi_evals import _constants as C
from fi_evals.server.evaluators.judge import (
    JudgeClient,
    JudgeSettings,
    is_hosted_model,
    refuses_model,
)

CONTEXT = "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris."
GROUNDED = {"output": "The Eiffel Tower is in Paris, France.", "context": [CONTEXT]}
UNGROUNDED = {"output": "The Eiffel Tower is in Rome, Italy.", "context": [CONTEXT]}


@pytest.fixture
def provider() -> Iterator[FakeJudge]:
    with FakeJudge(known_models=["judge-small"], judge_content=True) as fake:
        yield fake


def _server(server_factory: Any, judge: FakeJudge, model: str | None = "judge-small") -> Any:
    return server_factory(judge_url=judge.url, judge_model=model, judge_timeout=5.0)


# ------------------------------------------------------------------ units (no network)

@pytest.mark.parametrize("name", ["turing_flash", "turing_small", "turing_large", "TURING_SMALL",
                                  "protect", "protect_flash"])
def test_hosted_model_names(name: str) -> None:
    assert is_hosted_model(name)


@pytest.mark.parametrize("name", [None, "", "gpt-4o-mini", "llama3.1:8b", "judge-small"])
def test_other_model_names(name: str | None) -> None:
    assert not is_hosted_model(name)


@pytest.mark.parametrize("status, body", [
    (404, model_not_found("gpt-x").decode()),  # OpenAI
    (404, ('{"object": "error", "message": "The model `gpt-x` does not exist.", '
           '"type": "NotFoundError", "param": null, "code": 404}')),  # vLLM
    (404, '{"error": {"message": "model \\"gpt-x\\" not found, try pulling it first"}}'),  # Ollama
    (400, '{"error": {"message": "Invalid model name passed in model=gpt-x"}}'),  # LiteLLM
])
def test_provider_refusals_of_an_unknown_model(status: int, body: str) -> None:
    assert refuses_model(status, body, "gpt-x")


@pytest.mark.parametrize("status, body", [
    (400, ('{"error": {"message": "This model\'s maximum context length is 8192 tokens", '
           '"type": "invalid_request_error"}}')),  # another 400: does not name the model
    (404, "404 page not found"),  # a wrong base URL
    (401, model_not_found("gpt-x").decode()),  # not a refusal status for this
])
def test_other_refusals_are_not_about_the_model(status: int, body: str) -> None:
    assert not refuses_model(status, body, "gpt-x")


def test_the_model_asked_for() -> None:
    client = JudgeClient(JudgeSettings(base_url="http://127.0.0.1:9/v1", model="judge-small"))
    try:
        assert client.model_for(None) == "judge-small"
        assert client.model_for("turing_small") == "judge-small"
        assert client.model_for("gpt-x") == "gpt-x"
        client.remember_refused("gpt-x")
        assert client.model_for("gpt-x") == "judge-small"
    finally:
        client.close()
    bare = JudgeClient(JudgeSettings(base_url="http://127.0.0.1:9/v1"))
    try:
        assert bare.model_for("turing_small") is None and bare.model_for("gpt-x") == "gpt-x"
    finally:
        bare.close()


# ------------------------------------------------------------------ end to end

@pytest.mark.parametrize("model", ["turing_flash", "turing_small", "turing_large"])
def test_hosted_model_names_are_served_by_the_configured_judge(
        server_factory: Any, provider: FakeJudge, model: str) -> None:
    api = Client(_server(server_factory, provider))
    item = api.items("groundedness", GROUNDED, model=model)[0]
    assert item["eval_status"] == "completed" and item["output"] == "Passed"
    assert f"[judge judge-small for {model}, prompt groundedness@" in item["reason"]
    assert provider.models == ["judge-small"]  # the hosted name never reaches the provider


def test_the_content_judge_fails_an_ungrounded_answer(server_factory: Any,
                                                      provider: FakeJudge) -> None:
    api = Client(_server(server_factory, provider))
    failed = api.items("groundedness", UNGROUNDED, model="turing_small")[0]
    assert failed["eval_status"] == "completed" and failed["output"] == "Failed"
    assert "rome, italy" in failed["reason"]
    score = api.items("context_adherence", UNGROUNDED, model="turing_large")[0]
    assert score["output"] == 0.5


def test_an_unknown_model_falls_back_once_then_is_remembered(server_factory: Any,
                                                             provider: FakeJudge) -> None:
    api = Client(_server(server_factory, provider))
    first = api.items("groundedness", GROUNDED, model="gpt-4o-mini")[0]
    assert first["output"] == "Passed" and "[judge judge-small for gpt-4o-mini" in first["reason"]
    assert provider.models == ["gpt-4o-mini", "judge-small"]
    again = api.items("groundedness", {"output": ["The Eiffel Tower is in Paris."] * 3,
                                       "context": [[CONTEXT, f"({n})"] for n in range(3)]},
                      model="gpt-4o-mini")  # three different items: no judge cache hit
    assert [i["output"] for i in again] == ["Passed"] * 3
    assert provider.models[2:] == ["judge-small"] * 3  # no second try of the unknown name


def test_a_model_the_provider_knows_is_used(server_factory: Any) -> None:
    with FakeJudge(known_models=["judge-small", "judge-large"], judge_content=True) as judge:
        api = Client(_server(server_factory, judge))
        item = api.items("groundedness", GROUNDED, model="judge-large")[0]
        assert item["output"] == "Passed" and "[judge judge-large, prompt" in item["reason"]
        assert judge.models == ["judge-large"]


def test_without_a_configured_model_there_is_nothing_to_fall_back_to(
        server_factory: Any, provider: FakeJudge) -> None:
    api = Client(_server(server_factory, provider, model=None))
    hosted = api.items("groundedness", GROUNDED, model="turing_small")[0]
    assert hosted["eval_status"] == "failed" and "--judge-model" in hosted["error_message"]
    assert "'turing_small'" in hosted["error_message"] and provider.requests == []
    unknown = api.items("groundedness", GROUNDED, model="gpt-x")[0]
    assert unknown["eval_status"] == "failed" and "HTTP 404" in unknown["error_message"]
    assert "model_not_found" in unknown["error_message"] and provider.models == ["gpt-x"]


def test_a_configured_model_the_provider_refuses_fails_once(server_factory: Any,
                                                           provider: FakeJudge) -> None:
    api = Client(_server(server_factory, provider, model="judge-gone"))
    item = api.items("groundedness", GROUNDED, model="turing_small")[0]
    assert item["eval_status"] == "failed" and "judge-gone" in item["error_message"]
    assert provider.models == ["judge-gone"]


def test_the_sdk_with_hosted_model_names(server_factory: Any, provider: FakeJudge,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    server = _server(server_factory, provider)
    for name, value in ((C.ENV_BASE_URL, server.url), (C.ENV_API_KEY, server.api_key),
                        (C.ENV_SECRET_KEY, server.secret_key)):
        monkeypatch.setenv(name, value)
    _default.close_default_evaluator()
    try:
        good = evaluate("groundedness", model="turing_small", **GROUNDED)
        bad = evaluate("groundedness", model="turing_small", **UNGROUNDED)
        assert (good.score, good.passed, bad.score, bad.passed) == (1.0, True, 0.0, False)
        with Evaluator() as ev:
            eval_id = ev.evaluate("groundedness", UNGROUNDED, model_name="turing_flash",
                                  is_async=True).eval_results[0].eval_id
            ev.wait_all([eval_id], timeout=30)
            inner = ev.get_eval_result(eval_id)["result"]
        assert inner["evalStatus"] == "completed" and inner["result"]["value"] == "Failed"
        assert inner["result"]["model"] == "turing_flash"  # what was asked is kept
    finally:
        _default.close_default_evaluator()
    with FakeJudge() as gone:
        url = gone.url
    down = server_factory(judge_url=url, judge_model="m", judge_timeout=1.0)
    monkeypatch.setenv(C.ENV_BASE_URL, down.url)
    monkeypatch.setenv(C.ENV_API_KEY, down.api_key)
    monkeypatch.setenv(C.ENV_SECRET_KEY, down.secret_key)
    try:
        with pytest.raises(EvalFailedError, match="unreachable"):
            evaluate("groundedness", model="turing_small", **GROUNDED)
    finally:
        _default.close_default_evaluator()
