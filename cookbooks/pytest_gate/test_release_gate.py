"""A release gate in pytest: `pytest cookbooks/pytest_gate` (or `-n 2` with pytest-xdist).

The fi-evals pytest plugin is loaded by pytest itself (entry point `pytest11`). With FI_BASE_URL
unset, the first test that evaluates starts an embedded reference server (127.0.0.1, temporary
state) for the session; with FI_BASE_URL, FI_API_KEY and FI_SECRET_KEY set, the gate runs
against that server instead.
"""

from fi_evals.testing import assert_eval, eval_dataset


def test_status_answer_is_json() -> None:
    # `output` fills the template's output-like key: `text` for text-only templates.
    assert_eval('{"order": "A0042", "status": "shipped"}', "is_json")


def test_greeting_names_the_shop() -> None:
    assert_eval("Welcome to Acme! How can I help?", "contains", keyword="Acme")


@eval_dataset("answers.jsonl")  # one test per row: test_answers[capital], ..., [line4]
def test_answers(row: dict) -> None:
    assert_eval(row["answer"], "fuzzy_match", threshold=0.8, expected=row["expected"])


def test_whole_batch_with_the_fixture(fi_evaluator) -> None:
    # fi_evaluator is the session's Evaluator: the whole SDK, for what assert_eval does not do.
    result = fi_evaluator.evaluate("one_line", {"text": ["ok", "fine", "also fine"]})
    assert [r.output for r in result.eval_results] == ["Passed"] * 3, result
