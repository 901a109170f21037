"""Unit tests of the deterministic evaluators (pure functions: no server, no network)."""

from __future__ import annotations

import difflib
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from fi_evals._constants import OUTPUT_FAILED, OUTPUT_PASSED
from fi_evals.catalogue import CATALOGUE, PASS_FAIL, SCORE
from fi_evals.server.evaluators.base import BaseEvaluator, EvaluationError, Outcome
from fi_evals.server.evaluators.deterministic import (
    DeterministicEvaluator,
    deterministic_evaluators,
    param_defaults,
)

EVALUATORS: dict[str, BaseEvaluator] = {e.template.name: e for e in deterministic_evaluators()}
DETERMINISTIC = [t for t in CATALOGUE.values() if t.family == "deterministic"]
SIMILARITY = ["fuzzy_match", "levenshtein_similarity", "bleu_score", "rouge_score"]


def run(name: str, params: dict[str, Any] | None = None, **inputs: Any) -> Outcome:
    return EVALUATORS[name].evaluate(inputs, params or {})


def passed(name: str, params: dict[str, Any] | None = None, **inputs: Any) -> bool:
    outcome = run(name, params, **inputs)
    assert outcome.output in (OUTPUT_PASSED, OUTPUT_FAILED)
    assert outcome.reason
    return outcome.output == OUTPUT_PASSED


def score(name: str, params: dict[str, Any] | None = None, **inputs: Any) -> float:
    outcome = run(name, params, **inputs)
    assert isinstance(outcome.output, float) and 0.0 <= outcome.output <= 1.0
    assert outcome.reason
    return outcome.output


# --------------------------------------------------------------------------- the catalogue


def test_every_deterministic_template_has_exactly_one_evaluator() -> None:
    assert [t.name for t in DETERMINISTIC] == list(EVALUATORS)
    assert len(EVALUATORS) == 20
    for template in DETERMINISTIC:
        evaluator = EVALUATORS[template.name]
        assert isinstance(evaluator, DeterministicEvaluator)
        assert evaluator.template is template
        assert template.name in repr(evaluator)


def test_catalogue_entries_are_well_formed() -> None:
    for template in DETERMINISTIC:
        assert template.output_type in (PASS_FAIL, SCORE), template.name
        assert template.keys and all(k.kind == "string" and k.required for k in template.keys)
        if template.params:
            Draft202012Validator.check_schema(template.params)
            for name in template.params["required"]:
                assert name in template.params["properties"], (template.name, name)
            # A default must itself be valid, or the evaluator starts from a bad value.
            Draft202012Validator(template.params).validate(
                {**_required_params(template.name), **param_defaults(template)})


def _required_params(name: str) -> dict[str, Any]:
    return {
        "contains": {"keyword": "x"}, "contains_any": {"keywords": ["x"]},
        "contains_all": {"keywords": ["x"]}, "regex": {"pattern": "x"},
        "starts_with": {"substring": "x"}, "ends_with": {"substring": "x"},
        "length_less_than": {"max_length": 1}, "length_greater_than": {"min_length": 1},
        "length_between": {"min_length": 1, "max_length": 2}, "json_schema": {"schema": {}},
    }.get(name, {})


def test_keys_follow_the_hosted_templates() -> None:
    keys = {t.name: t.required_keys for t in DETERMINISTIC}
    for name in ("is_json", "one_line", "is_email", "contains_valid_link"):
        assert keys[name] == ("text",)
    assert keys["fuzzy_match"] == ("output", "expected")
    assert keys["bleu_score"] == ("reference", "hypothesis")


@pytest.mark.parametrize("template", DETERMINISTIC, ids=lambda t: t.name)
def test_every_template_answers_with_its_output_type(template: Any) -> None:
    inputs = dict.fromkeys(template.required_keys, "The answer is 42")
    outcome = EVALUATORS[template.name].evaluate(inputs, _required_params(template.name))
    if template.output_type == PASS_FAIL:
        assert outcome.output in (OUTPUT_PASSED, OUTPUT_FAILED)
    else:
        assert outcome.output == 1.0  # identical texts
    assert outcome.reason and "\n" not in outcome.reason and len(outcome.reason) < 300


def test_param_defaults_come_from_the_schema() -> None:
    assert param_defaults(CATALOGUE["fuzzy_match"]) == {"case_sensitive": False}
    assert param_defaults(CATALOGUE["exact_match"]) == {"case_sensitive": True, "strip": True}
    assert param_defaults(CATALOGUE["rouge_score"]) == {"rouge_type": "rougeL"}
    assert param_defaults(CATALOGUE["is_json"]) == {}


# --------------------------------------------------------------------------- format checks


@pytest.mark.parametrize("text, reason", [
    ('{"a": 1, "b": [1, 2], "c": null}', "Parsed as JSON object with 3 keys"),
    ("[1, 2]", "Parsed as JSON array with 2 items"),
    ('  "x"\n', "Parsed as JSON string"),
    ("-1.5e3", "Parsed as JSON number"),
    ("null", "Parsed as JSON null"),
    ("true", "Parsed as JSON true"),
    ('{"ключ": "値"}', "Parsed as JSON object with 1 key"),
])
def test_is_json_passes(text: str, reason: str) -> None:
    outcome = run("is_json", text=text)
    assert outcome == Outcome(OUTPUT_PASSED, reason)


@pytest.mark.parametrize("text, reason", [
    ('{"a": 1 "b": 2}', "Expecting ',' delimiter: line 1 column 9"),
    ("", "Expecting value: line 1 column 1"),
    ("   ", "Expecting value: line 1 column 4"),
    ("{'a': 1}", "Expecting property name enclosed in double quotes: line 1 column 2"),
    ("[1, 2,]", ""),  # the wording changed in Python 3.13; both name the place
    ('{"a": 1}\n{"b": 2}', "Extra data: line 2 column 1"),
    ("NaN", "NaN is not valid JSON"),
    ("[Infinity]", "Infinity is not valid JSON"),
    ("[" * 100_000, "JSON nested too deeply to parse"),
    ("hello", "Expecting value: line 1 column 1"),
])
def test_is_json_fails_with_the_parser_message(text: str, reason: str) -> None:
    outcome = run("is_json", text=text)
    assert outcome.output == OUTPUT_FAILED
    assert outcome.reason.startswith(reason)
    if "line" in reason or not reason:
        assert " line " in outcome.reason and " column " in outcome.reason


@pytest.mark.parametrize("text, ok", [
    ("one line", True), ("", True), ("tab\tis fine", True), ("émoji 🎉 line", True),
    ("two\nlines", False), ("trailing newline\n", False), ("cr\rline", False),
    ("crlf\r\n", False), ("unicode\u2028separator", False), ("para\u2029sep", False),
    ("form\x0cfeed", False), ("next\x85line", False),
])
def test_one_line(text: str, ok: bool) -> None:
    assert passed("one_line", text=text) is ok


def test_one_line_reason_says_where() -> None:
    assert run("one_line", text="ab\ncd").reason == "Line break '\\n' at character 2"


@pytest.mark.parametrize("text", [
    "john.doe@example.com", "a+tag@sub.mail.example.co.uk", "  x_y-z@example.org\n",
    "o'brien@example.ie", "jürgen@bücher.de", "user@xn--bcher-kva.de", "1@example.museum",
])
def test_is_email_passes(text: str) -> None:
    assert passed("is_email", text=text)


@pytest.mark.parametrize("text, why", [
    ("", "no '@'"), ("plain", "no '@'"), ("a@@b.com", "more than one '@'"),
    ("a@b@c.com", "more than one '@'"), ("@example.com", "invalid local part"),
    (".a@example.com", "invalid local part"), ("a..b@example.com", "invalid local part"),
    ("a b@example.com", "invalid local part"), ("a@localhost", "invalid domain"),
    ("a@example", "invalid domain"), ("a@-example.com", "invalid domain"),
    ("a@example.c", "invalid domain"), ("a@exa_mple.com", "invalid domain"),
    ("a@example.com.", "invalid domain"), ("a@1.2.3.4", "invalid domain"),
    ("two@example.com three@example.com", "more than one"), ("x" * 65 + "@example.com", "local"),
    ("a@" + "b" * 64 + ".com", "invalid domain"),
])
def test_is_email_fails(text: str, why: str) -> None:
    outcome = run("is_email", text=text)
    assert outcome.output == OUTPUT_FAILED
    assert why in outcome.reason


@pytest.mark.parametrize("text, link", [
    ("see https://example.com", "https://example.com"),
    ("See https://example.com/a?b=1#c.", "https://example.com/a?b=1#c"),
    ("[docs](https://example.com/docs)", "https://example.com/docs"),
    ("https://en.wikipedia.org/wiki/Foo_(bar)", "https://en.wikipedia.org/wiki/Foo_(bar)"),
    ("(http://example.com)", "http://example.com"),
    ("HTTP://EXAMPLE.COM/X", "HTTP://EXAMPLE.COM/X"),
    ("http://user:pw@example.com:8080/p", "http://user:pw@example.com:8080/p"),
    ("http://127.0.0.1:8000/", "http://127.0.0.1:8000/"),
    ("http://[::1]:8080/x", "http://[::1]:8080/x"),
    ("http://localhost:3000", "http://localhost:3000"),
    ("https://münchen.de/straße", "https://münchen.de/straße"),
    ("bad http://nodot first, then <https://good.example.org>", "https://good.example.org"),
    # Nested markdown lists, the way models answer.
    ("Links:\n- Docs\n  - http://nohost\n  - [API](https://api.example.com/v1)\n    - x",
     "https://api.example.com/v1"),
])
def test_contains_valid_link_passes(text: str, link: str) -> None:
    outcome = run("contains_valid_link", text=text)
    assert outcome.output == OUTPUT_PASSED
    assert repr(link) in outcome.reason


@pytest.mark.parametrize("text, why", [
    ("", "No http(s) URL"), ("no links here", "No http(s) URL"),
    ("www.example.com", "No http(s) URL"), ("ftp://example.com/file", "No http(s) URL"),
    ("mailto:a@example.com", "No http(s) URL"), ("http://", "no host"),
    ("http://foo", "invalid host"), ("http://999.1.1.1/", "invalid host"),
    ("https://example.com:99999/", "Port out of range"), ("http://exa mple.com", "invalid host"),
    ("http://-bad-.com", "invalid host"), ("- http://a\n  - http://b", "No valid link among 2"),
])
def test_contains_valid_link_fails(text: str, why: str) -> None:
    outcome = run("contains_valid_link", text=text)
    assert outcome.output == OUTPUT_FAILED
    assert why in outcome.reason


def test_a_list_value_is_joined_instead_of_crashing() -> None:
    # Kinds are validated by the server; a nested list still gets an answer, not a TypeError.
    value = ["intro", ["- http://nohost", ["- https://example.com/x"]]]
    assert passed("contains_valid_link", text=value)
    assert passed("is_json", text=["[1,", ["2]"]])
    with pytest.raises(EvaluationError, match="type int"):
        run("is_json", text=["[", [1]])
    with pytest.raises(EvaluationError, match="must be a string"):
        run("one_line", text=42)
    with pytest.raises(EvaluationError, match="missing input 'text'"):
        EVALUATORS["one_line"].evaluate({}, {})


PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0},
                   "tags": {"type": "array", "items": {"type": "string"}}},
    "required": ["name", "age"],
}


@pytest.mark.parametrize("text, ok, reason", [
    ('{"name": "Ada", "age": 36}', True, "Valid against the schema"),
    ('{"name": "Ada", "age": 36, "tags": ["x"]}', True, "Valid against the schema"),
    ('{"name": "Ada"}', False, "At $: 'age' is a required property"),
    ('{"name": "Ada", "age": "36"}', False, "At $.age: '36' is not of type 'integer'"),
    ('{"name": "Ada", "age": -1}', False, "At $.age: -1 is less than the minimum of 0"),
    ('{"name": "Ada", "age": 1, "tags": [1]}', False, "At $.tags[0]: 1 is not of type 'string'"),
    ("[]", False, "At $: [] is not of type 'object'"),
    ("{name: 1}", False, "Not JSON: Expecting property name enclosed in double quotes"),
    ("", False, "Not JSON: Expecting value: line 1 column 1"),
])
def test_json_schema(text: str, ok: bool, reason: str) -> None:
    outcome = run("json_schema", {"schema": PERSON}, text=text)
    assert outcome.output == (OUTPUT_PASSED if ok else OUTPUT_FAILED)
    assert outcome.reason.startswith(reason)


def test_json_schema_honours_the_declared_draft_and_local_refs() -> None:
    draft4 = {"$schema": "http://json-schema.org/draft-04/schema#",
              "type": "object", "properties": {"n": {"type": "number", "maximum": 5,
                                                     "exclusiveMaximum": True}}}
    assert not passed("json_schema", {"schema": draft4}, text='{"n": 5}')
    assert passed("json_schema", {"schema": draft4}, text='{"n": 4.9}')
    with_ref = {"$defs": {"id": {"type": "integer"}}, "type": "array",
                "items": {"$ref": "#/$defs/id"}}
    assert passed("json_schema", {"schema": with_ref}, text="[1, 2]")
    assert not passed("json_schema", {"schema": with_ref}, text='[1, "2"]')


def test_json_schema_rejects_an_invalid_schema_up_front() -> None:
    evaluator = EVALUATORS["json_schema"]
    bad = {"schema": {"type": "integr"}}
    with pytest.raises(EvaluationError, match=r"invalid JSON schema at \$.type"):
        evaluator.check_params(bad)
    with pytest.raises(EvaluationError, match="invalid JSON schema"):
        evaluator.evaluate({"text": "{}"}, bad)
    evaluator.check_params({"schema": PERSON})  # a valid one passes silently


def test_json_schema_never_fetches_a_remote_ref() -> None:
    remote = {"$ref": "https://schemas.example.invalid/person.json"}
    with pytest.raises(EvaluationError, match="cannot resolve a \\$ref"):
        run("json_schema", {"schema": remote}, text="{}")


# --------------------------------------------------------------------------- text checks


@pytest.mark.parametrize("output, expected, params, ok", [
    ("Paris", "Paris", {}, True), (" Paris\n", "Paris", {}, True),
    ("Paris", "paris", {}, False), ("Paris", "paris", {"case_sensitive": False}, True),
    (" Paris", "Paris", {"strip": False}, False), ("", "", {}, True), ("", " ", {}, True),
    ("STRASSE", "straße", {"case_sensitive": False}, True), ("Paris", "Pariss", {}, False),
])
def test_exact_match(output: str, expected: str, params: dict[str, Any], ok: bool) -> None:
    assert passed("exact_match", params, output=output, expected=expected) is ok


def test_exact_match_reason_points_at_the_difference() -> None:
    assert run("exact_match", output="abcd", expected="abXd").reason.endswith("character 2")
    assert run("exact_match", output="ab", expected="abc").reason.endswith("character 2")


@pytest.mark.parametrize("text, params, ok", [
    ("Hello World", {"keyword": "world"}, True),
    ("Hello World", {"keyword": "world", "case_sensitive": True}, False),
    ("Hello World", {"keyword": "World", "case_sensitive": True}, True),
    ("", {"keyword": "x"}, False),
    ("naïve café", {"keyword": "CAFÉ"}, True),
    ("STRASSE", {"keyword": "straße"}, True),
])
def test_contains(text: str, params: dict[str, Any], ok: bool) -> None:
    assert passed("contains", params, text=text) is ok


def test_contains_any_and_all() -> None:
    text = "The quick brown fox"
    assert passed("contains_any", {"keywords": ["cat", "FOX"]}, text=text)
    assert not passed("contains_any", {"keywords": ["cat", "FOX"], "case_sensitive": True},
                      text=text)
    assert run("contains_any", {"keywords": ["cat", "fox"]}, text=text).reason == "Found 'fox'"
    assert not passed("contains_any", {"keywords": ["cat"]}, text="")
    assert passed("contains_all", {"keywords": ["quick", "BROWN"]}, text=text)
    outcome = run("contains_all", {"keywords": ["quick", "cat", "dog"]}, text=text)
    assert outcome == Outcome(OUTPUT_FAILED, "Missing 2 of 3 keywords: 'cat', 'dog'")


@pytest.mark.parametrize("pattern, text, ok", [
    (r"\d{3}-\d{4}", "call 555-1234 now", True), (r"^\d+$", "12a", False),
    (r"(?i)hello", "HELLO", True), (r"colou?r", "color", True), ("é+", "cafééé", True),
    (r"\bcat\b", "concatenate", False), (r"^$", "", True), (r"x", "", False),
    (r"(?m)^b", "a\nb", True), (r"\p{Greek}", "αβγ", True),
])
def test_regex(pattern: str, text: str, ok: bool) -> None:
    assert passed("regex", {"pattern": pattern}, text=text) is ok


def test_regex_reason_and_errors() -> None:
    assert run("regex", {"pattern": r"\d+"}, text="abc 42").reason == "Matched '42' at character 4"
    assert run("regex", {"pattern": r"\d+"}, text="abc").reason == "Pattern not found"
    evaluator = EVALUATORS["regex"]
    with pytest.raises(EvaluationError, match="invalid regular expression"):
        evaluator.check_params({"pattern": "(unclosed"})
    with pytest.raises(EvaluationError, match="invalid regular expression"):
        evaluator.evaluate({"text": "x"}, {"pattern": "[z-a]"})
    with pytest.raises(EvaluationError, match="pattern longer than"):
        evaluator.check_params({"pattern": "a" * 10_001})


def test_regex_stops_a_catastrophic_pattern() -> None:
    # Exponential backtracking: without the timeout this would never return.
    with pytest.raises(EvaluationError, match="backtrack catastrophically"):
        run("regex", {"pattern": r"(x+x+)+y"}, text="x" * 5000)


@pytest.mark.parametrize("name, text, substring, params, ok", [
    ("starts_with", "Hello world", "hello", {}, True),
    ("starts_with", "Hello world", "hello", {"case_sensitive": True}, False),
    ("starts_with", " Hello", "Hello", {}, False),
    ("starts_with", "", "a", {}, False),
    ("ends_with", "Hello world.", "WORLD.", {}, True),
    ("ends_with", "Hello world.", "world", {}, False),
    ("ends_with", "日本語テキスト", "テキスト", {}, True),
])
def test_starts_and_ends_with(name: str, text: str, substring: str, params: dict[str, Any],
                              ok: bool) -> None:
    assert passed(name, {"substring": substring, **params}, text=text) is ok


@pytest.mark.parametrize("name, params, text, ok", [
    ("length_less_than", {"max_length": 5}, "abcd", True),
    ("length_less_than", {"max_length": 5}, "abcde", False),
    ("length_less_than", {"max_length": 0}, "", False),
    ("length_less_than", {"max_length": 4}, "🎉🎉🎉", True),  # code points, not bytes
    ("length_greater_than", {"min_length": 3}, "abcd", True),
    ("length_greater_than", {"min_length": 4}, "abcd", False),
    ("length_greater_than", {"min_length": 0}, "", False),
    ("length_between", {"min_length": 2, "max_length": 4}, "ab", True),
    ("length_between", {"min_length": 2, "max_length": 4}, "abcd", True),
    ("length_between", {"min_length": 2, "max_length": 4}, "abcde", False),
    ("length_between", {"min_length": 0, "max_length": 0}, "", True),
])
def test_lengths(name: str, params: dict[str, Any], text: str, ok: bool) -> None:
    assert passed(name, params, text=text) is ok


def test_length_reasons_and_bad_bounds() -> None:
    assert run("length_less_than", {"max_length": 3}, text="abcd").reason == "Length 4 >= 3"
    assert run("length_between", {"min_length": 1, "max_length": 2},
               text="a").reason == "Length 1 within [1, 2]"
    with pytest.raises(EvaluationError, match="min_length 5 is greater than max_length 2"):
        EVALUATORS["length_between"].check_params({"min_length": 5, "max_length": 2})
    with pytest.raises(EvaluationError, match="min_length 5"):
        run("length_between", {"min_length": 5, "max_length": 2}, text="abc")


# --------------------------------------------------------------------------- similarity


@pytest.mark.parametrize("a, b", [
    ("The quick brown fox", "the quick brown dog!"), ("kitten", "sitting"),
    ("abc", "xyz"), ("hello", "hello world"),
])
def test_fuzzy_match_agrees_with_difflib_on_short_strings(a: str, b: str) -> None:
    expected = difflib.SequenceMatcher(None, a.lower(), b.lower()).ratio()
    assert score("fuzzy_match", output=a, expected=b) == pytest.approx(expected)


def test_fuzzy_match_cases() -> None:
    assert score("fuzzy_match", output="HELLO", expected="hello") == 1.0
    assert score("fuzzy_match", {"case_sensitive": True}, output="HELLO", expected="hello") == 0.0
    assert score("fuzzy_match", output="", expected="") == 1.0
    assert score("fuzzy_match", output="", expected="x") == 0.0
    assert score("fuzzy_match", output="café", expected="cafe") == pytest.approx(0.75)
    assert "case-insensitive" in run("fuzzy_match", output="a", expected="b").reason


def test_levenshtein_similarity() -> None:
    assert score("levenshtein_similarity", output="kitten", expected="sitting") == \
        pytest.approx(1 - 3 / 7)
    assert run("levenshtein_similarity", output="kitten",
               expected="sitting").reason == "Edit distance 3 over 7 characters"
    assert score("levenshtein_similarity", output="ABC", expected="abc") == 0.0
    assert score("levenshtein_similarity", {"case_sensitive": False}, output="ABC",
                 expected="abc") == 1.0
    assert score("levenshtein_similarity", output="", expected="") == 1.0
    assert score("levenshtein_similarity", output="", expected="abc") == 0.0


def test_bleu_score_by_hand() -> None:
    # hyp: the cat sat on the mat / ref: the cat is on the mat
    # p1 = 5/6, p2 = 3/5, p3 = 1/4, p4 = 0 matches -> smoothed 1/(2*3); lengths equal: BP = 1.
    expected = math.exp((math.log(5 / 6) + math.log(3 / 5) + math.log(1 / 4) + math.log(1 / 6))
                        / 4)
    got = score("bleu_score", reference="the cat is on the mat",
                hypothesis="the cat sat on the mat")
    assert got == pytest.approx(expected)
    two = score("bleu_score", {"max_n": 2}, reference="the cat is on the mat",
                hypothesis="the cat sat on the mat")
    assert two == pytest.approx(math.sqrt(5 / 6 * 3 / 5))


def test_bleu_score_edges() -> None:
    assert score("bleu_score", reference="a b c d", hypothesis="a b c d") == 1.0
    # Brevity penalty: a correct but short hypothesis loses.
    short = score("bleu_score", reference="a b c d", hypothesis="a b")
    assert short == pytest.approx(math.exp(1 - 4 / 2))
    assert "BLEU-2" in run("bleu_score", reference="a b c d", hypothesis="a b").reason
    assert score("bleu_score", reference="", hypothesis="") == 1.0
    assert score("bleu_score", reference="a", hypothesis="") == 0.0
    assert score("bleu_score", reference="", hypothesis="a") == 0.0
    assert score("bleu_score", reference="x y z", hypothesis="a b c") < 0.2
    assert score("bleu_score", reference="The cat", hypothesis="the cat") < 1.0  # case matters


@pytest.mark.parametrize("rouge_type, expected", [
    ("rouge1", 5 / 6), ("rouge2", 3 / 5), ("rougeL", 5 / 6),
])
def test_rouge_score(rouge_type: str, expected: float) -> None:
    got = score("rouge_score", {"rouge_type": rouge_type}, reference="the cat is on the mat",
                hypothesis="The cat sat on the mat.")
    assert got == pytest.approx(expected)


def test_rouge_score_edges() -> None:
    # rougeL is the default; recall and precision differ when lengths do.
    outcome = run("rouge_score", reference="a b c d", hypothesis="a c")
    assert outcome.output == pytest.approx(2 * 1.0 * 0.5 / 1.5)
    assert outcome.reason == "rougeL F 0.667 (precision 1.000, recall 0.500)"
    assert score("rouge_score", reference="", hypothesis="") == 1.0
    assert score("rouge_score", reference="abc", hypothesis="") == 0.0
    rouge2 = {"rouge_type": "rouge2"}
    assert score("rouge_score", rouge2, reference="word", hypothesis="word") == 1.0
    assert score("rouge_score", {"rouge_type": "rouge2"}, reference="one", hypothesis="two") == 0.0
    assert score("rouge_score", {"rouge_type": "rouge2"}, reference="a b", hypothesis="a") == 0.0
    assert score("rouge_score", reference="Ünïcödé wörds", hypothesis="ünïcödé WÖRDS") == 1.0


@pytest.mark.parametrize("output, expected, value", [
    ("42", "42", 1.0), ("The answer is 40.", "answer: 50", 0.8), ("0", "0.0", 1.0),
    ("-5", "5", 0.0), ("1,234", "1234", 1.0), ("about 1.5e3 m", "1500", 1.0),
    ("COVID-19", "19", 1.0), ("\u22122", "-2", 1.0), ("costs $5.", "5", 1.0),
    ("1e308", "-1e308", 0.0), ("3 apples and 10 pears", "4", 0.75), ("x = .5", "1", 0.5),
])
def test_numeric_similarity(output: str, expected: str, value: float) -> None:
    assert score("numeric_similarity", output=output, expected=expected) == pytest.approx(value)


def test_numeric_similarity_without_a_number_is_an_error() -> None:
    with pytest.raises(EvaluationError, match="no number in 'output'"):
        run("numeric_similarity", output="none", expected="3")
    with pytest.raises(EvaluationError, match="no number in 'expected'"):
        run("numeric_similarity", output="3", expected="")
    with pytest.raises(EvaluationError, match="too large"):
        run("numeric_similarity", output="1e999", expected="3")


def test_evaluate_many_keeps_one_entry_per_item() -> None:
    items = [{"output": "1", "expected": "1"}, {"output": "x", "expected": "1"}]
    results = EVALUATORS["numeric_similarity"].evaluate_many(items, {})
    assert results[0] == Outcome(1.0, "1 vs 1: relative difference 0")
    assert isinstance(results[1], EvaluationError)


# --------------------------------------------------------------------------- properties

_TEXT = st.text(max_size=60)
_FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _similarity_params() -> st.SearchStrategy[tuple[str, dict[str, Any]]]:
    return st.one_of(
        st.tuples(st.just("fuzzy_match"), st.fixed_dictionaries({"case_sensitive": st.booleans()})),
        st.tuples(st.just("levenshtein_similarity"),
                  st.fixed_dictionaries({"case_sensitive": st.booleans()})),
        st.tuples(st.just("bleu_score"), st.fixed_dictionaries({"max_n": st.integers(1, 4)})),
        st.tuples(st.just("rouge_score"), st.fixed_dictionaries(
            {"rouge_type": st.sampled_from(["rouge1", "rouge2", "rougeL"])})),
    )


def _inputs(name: str, a: str, b: str) -> dict[str, str]:
    first, second = CATALOGUE[name].required_keys
    return {first: a, second: b}


@_FAST
@given(_similarity_params(), _TEXT, _TEXT)
def test_similarity_scores_stay_in_the_unit_interval(case: Any, a: str, b: str) -> None:
    name, params = case
    outcome = EVALUATORS[name].evaluate(_inputs(name, a, b), params)
    assert isinstance(outcome.output, float) and 0.0 <= outcome.output <= 1.0
    assert outcome.reason


@_FAST
@given(_similarity_params(), _TEXT)
def test_identical_texts_score_one(case: Any, a: str) -> None:
    name, params = case
    assert EVALUATORS[name].evaluate(_inputs(name, a, a), params).output == 1.0


@_FAST
@given(st.floats(allow_nan=False, allow_infinity=False, width=32), _TEXT, _TEXT)
def test_numeric_similarity_properties(x: float, prefix: str, other: str) -> None:
    evaluator = EVALUATORS["numeric_similarity"]
    same = evaluator.evaluate({"output": f"{x!r}", "expected": f"{x!r}"}, {})
    assert same.output == 1.0
    try:
        outcome = evaluator.evaluate({"output": prefix, "expected": other}, {})
    except EvaluationError as exc:
        assert "number" in str(exc)
    else:
        assert 0.0 <= outcome.output <= 1.0


@_FAST
@given(st.sampled_from([t.name for t in DETERMINISTIC if t.output_type == PASS_FAIL]), _TEXT)
def test_pass_fail_templates_answer_any_text(name: str, text: str) -> None:
    inputs = dict.fromkeys(CATALOGUE[name].required_keys, text)
    outcome = EVALUATORS[name].evaluate(inputs, _required_params(name))
    assert outcome.output in (OUTPUT_PASSED, OUTPUT_FAILED) and outcome.reason
