"""``custom_judge`` (issue 17, 4b): the rubric judge, through a real server and the one fake
provider (``benchmarks/fake_provider.py``, as ``FakeJudge``): the criteria reach the judge in
the versioned frame, each output type's answer is validated, an invalid answer is a recorded
failure (never a made-up verdict), bad parameters are a 400 naming the parameter, and the judge
cache and budget serve it like the other judge templates."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fake_judge import Answer, FakeJudge
from model_helpers import Client

from fi_evals import Evaluator
from fi_evals.cli import main
from fi_evals.server.evaluators.prompts import PROMPTS

CRITERIA = "The answer names a concrete next step for the customer."
ITEM = {"output": "Your refund was sent; expect it within 5 days.",
        "input": "Where is my refund?"}


def _api(server_factory: Any, judge: FakeJudge, **overrides: Any) -> Client:
    return Client(server_factory(judge_url=judge.url, judge_model="judge-small",
                                 judge_timeout=5.0, **overrides))


def _params(**params: Any) -> dict[str, Any]:
    return {"config": {"params": {"criteria": CRITERIA, **params}}}


def test_pass_fail_by_default_with_the_criteria_in_a_versioned_prompt(
        server_factory: Any, judge: FakeJudge) -> None:
    api = _api(server_factory, judge)
    judge.script(Answer('{"verdict": "Failed", "reason": "No next step is named."}'))
    item = api.items("custom_judge", ITEM, **_params())[0]
    assert item["output"] == "Failed" and item["output_type"] == "Pass/Fail"
    assert item["reason"].startswith("No next step is named. [judge judge-small, prompt "
                                     f"{PROMPTS['custom_judge'].tag}")
    system, user = (m["content"] for m in judge.requests[0]["messages"])
    assert f"<criteria>\n{CRITERIA}\n</criteria>" in system
    assert "Passed when the inputs meet the criteria" in system
    assert json.loads(user.split("\n", 1)[1]) == ITEM  # the optional keys given are shown


def test_score_and_choices(server_factory: Any, judge: FakeJudge) -> None:
    api = _api(server_factory, judge)
    judge.script(Answer('{"score": 0.8, "reason": "Mostly."}'))
    scored = api.items("custom_judge", ITEM, **_params(output_type="score"))[0]
    assert (scored["output"], scored["output_type"]) == (0.8, "score")
    judge.script(Answer('{"choices": ["Refund"], "reason": "About money."}'))
    labels = ["billing", "refund", "shipping"]
    chosen = api.items("custom_judge", ITEM, **_params(output_type="choices",
                                                       choices=labels))[0]
    assert (chosen["output"], chosen["output_type"]) == (["refund"], "choices")
    system = judge.requests[-1]["messages"][0]["content"]
    assert '"billing", "refund", "shipping"' in system and "exactly one label" in system
    # the stored record says the type too (read back by id)
    assert api.wait(scored["eval_id"])["result"]["output_type"] == "score"


@pytest.mark.parametrize(("params", "answer"), [
    ({}, '{"verdict": "Maybe", "reason": "Unsure."}'),
    ({"output_type": "score"}, '{"score": 1.7, "reason": "Very."}'),
    ({"output_type": "choices", "choices": ["a", "b"]}, '{"choices": ["c"], "reason": "C."}'),
    ({"output_type": "choices", "choices": ["a", "b"]}, '{"choices": ["a", "b"], "reason": "."}'),
])
def test_an_invalid_answer_is_a_recorded_failure(server_factory: Any, judge: FakeJudge,
                                                 params: dict[str, Any], answer: str) -> None:
    api = _api(server_factory, judge)
    judge.script(Answer(answer), Answer(answer))  # asked twice, wrong twice
    item = api.items("custom_judge", ITEM, **_params(**params))[0]
    assert item["eval_status"] == "failed" and item["output"] is None
    assert "malformed 2 times" in item["error_message"] and len(judge.requests) == 2
    # a failure is not cached: the next identical call asks the judge again
    assert api.items("custom_judge", ITEM, **_params(**params))[0]["eval_status"] == "completed"
    assert len(judge.requests) == 3


@pytest.mark.parametrize(("params", "names"), [
    ({}, "'criteria' is a required property"),
    ({"criteria": "  "}, "criteria"),
    ({"criteria": "x" * 4001}, "config.params.criteria"),
    ({"criteria": CRITERIA, "output_type": "stars"}, "config.params.output_type"),
    ({"criteria": CRITERIA, "output_type": "choices"}, "choices: required"),
    ({"criteria": CRITERIA, "output_type": "choices", "choices": ["a"]},
     "config.params.choices"),
    ({"criteria": CRITERIA, "output_type": "choices", "choices": ["A", "a "]},
     "choices: labels"),
    ({"criteria": CRITERIA, "choices": ["a", "b"]}, "choices: only with output_type choices"),
    ({"criteria": CRITERIA, "multiple": True}, "multiple: only with output_type choices"),
    ({"criteria": CRITERIA, "rubric": "x"}, "'rubric' was unexpected"),
])
def test_bad_params_are_a_400_naming_the_param(server_factory: Any, judge: FakeJudge,
                                               params: dict[str, Any], names: str) -> None:
    api = _api(server_factory, judge)
    response = api.post("custom_judge", ITEM, config={"params": params})
    assert response.status_code == 400, response.text
    assert names in response.text
    assert judge.requests == []


def test_cached_like_the_other_judge_templates(server_factory: Any, judge: FakeJudge) -> None:
    api = _api(server_factory, judge)
    first = api.items("custom_judge", ITEM, **_params())[0]
    again = api.items("custom_judge", ITEM, **_params())[0]
    assert "cached" not in first and again["cached"] is True and len(judge.requests) == 1
    other = api.items("custom_judge", ITEM, **_params(output_type="score"))[0]
    assert "cached" not in other and len(judge.requests) == 2  # other params: another key
    reworded = api.items("custom_judge", ITEM, config={"params": {"criteria": CRITERIA + "!"}})
    assert "cached" not in reworded[0] and len(judge.requests) == 3


def test_listed_and_unavailable_without_a_judge(server_factory: Any,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    server = server_factory()
    with Evaluator(server.api_key, server.secret_key, server.url) as ev:
        info = {t.name: t for t in ev.context.transport.templates()}["custom_judge"]
    assert info.config.evaluable is False
    assert "--judge-url" in (info.config.unavailable_reason or "")
    assert set(info.config.params["properties"]) == {"criteria", "output_type", "choices",
                                                     "multiple"}
    assert main(["templates"]) == 0
    listed = next(line for line in capsys.readouterr().out.splitlines()
                  if line.startswith("custom_judge "))
    assert listed.split()[1] == "output_type"  # the output type is the param's


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_evaluate_batch_counts_a_score_rubric_as_a_score(server_factory: Any, judge: FakeJudge,
                                                         tmp_path: Any, is_async: bool) -> None:
    server = server_factory(judge_url=judge.url, judge_model="judge-small", judge_timeout=5.0)
    rows = [{"answer": f"Refund {i} sent", "question": "Where is my refund?"} for i in range(4)]
    spec = {"eval": "custom_judge", "label": "next_step",
            "params": {"criteria": CRITERIA, "output_type": "score"}}
    options: dict[str, Any] = {"key_mapping": {"output": "answer", "input": "question"},
                               "progress": False, "thresholds": {"next_step": 0.4},
                               "is_async": is_async, "journal": tmp_path / "j.journal"}
    with Evaluator(server.api_key, server.secret_key, server.url, max_workers=2) as ev:
        result = ev.evaluate_batch(rows, [spec], **options)
        stats = result.stats.templates["next_step"]
        assert stats.output_type == "score" and stats.mean_score == 0.5  # the provider's score
        assert result.passed and len(judge.requests) == 4
        assert {it.results["next_step"].output_type for it in result} == {"score"}
        resumed = ev.evaluate_batch(rows, [spec], **options)  # the journal: nothing sent again
    assert resumed.complete and resumed.stats.resumed == 4  # re-attached by eval id
    assert resumed.stats.templates["next_step"].mean_score == 0.5 and len(judge.requests) == 4


def test_a_bad_output_type_fails_a_batch_before_anything_is_sent(server_factory: Any,
                                                                judge: FakeJudge) -> None:
    from fi_evals import InvalidInputError

    server = server_factory(judge_url=judge.url, judge_model="judge-small")
    spec = {"eval": "custom_judge", "params": {"criteria": CRITERIA, "output_type": "stars"}}
    with Evaluator(server.api_key, server.secret_key, server.url) as ev, \
            pytest.raises(InvalidInputError, match="'output_type' must be one of Pass/Fail"):
        ev.evaluate_batch([{"output": "x"}], [spec], progress=False)
    assert judge.requests == []
