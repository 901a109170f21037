"""Inputs: normalisation, client-side checks, value encoding, chunk planning, bodies."""

from __future__ import annotations

import json

import pytest

from fi_evals._exceptions import InvalidInputError, UnknownTemplateError
from fi_evals._inputs import (
    TemplateSpec,
    build_body,
    check_params,
    encode_item,
    plan_chunks,
    prepare_items,
    resolve_template,
    split_items,
    template_name,
    template_params,
)
from fi_evals.protocol import TemplateInfo

pytestmark = pytest.mark.unit  # no server, no model: `make unit` runs this file


IS_JSON = resolve_template("is_json")
FUZZY = resolve_template("fuzzy_match")
GROUNDED = resolve_template("groundedness")  # output, input (optional), context (list)
CONVERSATION = resolve_template("conversation_coherence")


class IsJson:  # the official client's EvalTemplate classes carry eval_name
    eval_name = "is_json"


class Regex:
    eval_name = "regex"

    def __init__(self, config=None):
        self.config = config or {}


def test_template_names_from_strings_classes_and_instances():
    assert template_name("is_json") == "is_json"
    assert template_name(IsJson) == "is_json"
    assert template_name(Regex(config={"pattern": "a"})) == "regex"
    assert template_params(Regex(config={"pattern": "a"})) == {"pattern": "a"}
    assert template_params(Regex) is None and template_params("regex") is None
    with pytest.raises(TypeError):
        template_name(42)
    with pytest.raises(TypeError):
        template_name("  ")


def test_unknown_template_lists_close_names():
    with pytest.raises(UnknownTemplateError) as info:
        resolve_template("is_jsn")
    assert info.value.suggestions[0] == "is_json"
    assert "is_json" in str(info.value) and isinstance(info.value, ValueError)


def test_server_only_templates_come_from_the_server_list():
    info = TemplateInfo.model_validate({"name": "brand_voice", "config": {
        "required_keys": ["output", "context", "input"], "optional_keys": ["input"],
        "output": "score"}})
    calls = []

    def server():
        calls.append(1)
        return [info]

    spec = resolve_template("brand_voice", server_templates=server)
    assert spec.source == "server" and spec.output_type == "score"
    assert spec.mandatory == ("output", "context")
    assert spec.kind("context") == "list" and spec.kind("output") == "string"
    resolve_template("is_json", server_templates=server)
    assert len(calls) == 1  # catalogue names never ask the server
    with pytest.raises(UnknownTemplateError) as err:
        resolve_template("brand_vioce", server_templates=server)
    assert "brand_voice" in err.value.suggestions


def test_one_dict_is_one_item():
    assert split_items({"text": "a"}, IS_JSON) == [{"text": "a"}]
    # context is a list-kind key: a list of strings is ONE item's chunks.
    assert prepare_items({"output": "o", "context": ["c1", "c2"]}, GROUNDED) == [
        {"output": "o", "context": ["c1", "c2"]}]


def test_dict_of_lists_is_a_batch():
    items = prepare_items({"output": ["a", "b"], "expected": ["A", "B"]}, FUZZY)
    assert items == [{"output": "a", "expected": "A"}, {"output": "b", "expected": "B"}]
    items = prepare_items({"output": ["a", "b"], "context": [["x", "y"], "z"]}, GROUNDED)
    assert items == [{"output": "a", "context": ["x", "y"]}, {"output": "b", "context": ["z"]}]


def test_list_of_dicts_and_dataframe_like():
    items = prepare_items([{"text": "a"}, {"text": "b"}], IS_JSON)
    assert items == [{"text": "a"}, {"text": "b"}]

    class Frame:  # what split_items uses of a pandas DataFrame
        columns = ["text"]  # noqa: RUF012 - a stand-in for DataFrame.columns

        def to_dict(self, orient):
            assert orient == "records"
            return [{"text": "x"}, {"text": "y"}]

    assert prepare_items(Frame(), IS_JSON) == [{"text": "x"}, {"text": "y"}]
    assert prepare_items([], IS_JSON) == []


def test_a_list_of_dicts_under_a_string_key_is_one_conversation():
    convo = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    items = prepare_items({"conversation": convo}, CONVERSATION)
    assert len(items) == 1 and json.loads(items[0]["conversation"]) == convo
    two = prepare_items({"conversation": [convo, convo[:1]]}, CONVERSATION)
    assert len(two) == 2 and json.loads(two[1]["conversation"]) == convo[:1]


def test_shape_errors():
    with pytest.raises(InvalidInputError, match="unequal lengths"):
        split_items({"output": ["a", "b"], "expected": ["A"]}, FUZZY)
    with pytest.raises(InvalidInputError, match="single values"):
        split_items({"output": ["a", "b"], "expected": "A"}, FUZZY)
    with pytest.raises(InvalidInputError, match="not a dict"):
        split_items(["a"], IS_JSON)
    with pytest.raises(InvalidInputError):
        split_items("text", IS_JSON)


def test_missing_keys_are_listed():
    with pytest.raises(InvalidInputError) as info:
        prepare_items({"output": "a"}, FUZZY)
    assert "'expected'" in str(info.value) and "output, expected" in str(info.value)
    with pytest.raises(InvalidInputError, match="'context'"):
        prepare_items([{"output": "a", "context": ["c"]}, {"output": "b"}], GROUNDED)


def test_unexpected_keys_are_never_renamed_or_dropped():
    with pytest.raises(InvalidInputError) as info:
        prepare_items({"response": "{}"}, IS_JSON)
    text = str(info.value)
    assert "'response'" in text and "reads text" in text and "'response' -> 'text'" in text
    with pytest.raises(InvalidInputError, match="'extra'"):
        prepare_items({"text": "a", "extra": "b"}, IS_JSON)


def test_optional_keys_may_be_absent_or_none():
    assert prepare_items({"output": "o", "context": "c", "input": None}, GROUNDED) == [
        {"output": "o", "context": ["c"]}]
    with pytest.raises(InvalidInputError, match="missing"):
        prepare_items({"output": None, "context": "c"}, GROUNDED)


def test_values_are_encoded_as_the_protocol_requires():
    item = encode_item({"text": {"a": [1, 2]}}, IS_JSON)
    assert item == {"text": '{"a": [1, 2]}'}
    assert encode_item({"text": [{"a": 1}]}, IS_JSON) == {"text": '[{"a": 1}]'}
    assert encode_item({"text": ["x", "y"]}, IS_JSON) == {"text": '["x", "y"]'}
    assert encode_item({"text": 5}, IS_JSON) == {"text": "5"}
    assert encode_item({"text": 0.25}, IS_JSON) == {"text": "0.25"}
    assert encode_item({"text": True}, IS_JSON) == {"text": "true"}
    assert encode_item({"output": "o", "context": ["a", 2, {"k": "v"}]}, GROUNDED) == {
        "output": "o", "context": ["a", "2", '{"k": "v"}']}
    assert encode_item({"output": "o", "context": "one chunk"}, GROUNDED)["context"] == [
        "one chunk"]
    with pytest.raises(InvalidInputError, match="bytes"):
        encode_item({"text": b"raw"}, IS_JSON)
    assert encode_item({"text": "ünïcode"}, IS_JSON) == {"text": "ünïcode"}


def test_chunks_respect_the_size_and_group_key_sets():
    items = [encode_item({"output": f"o{i}", "context": ["c"],
                          **({"input": "q"} if i % 3 == 0 else {})}, GROUNDED)
             for i in range(10)]
    chunks = plan_chunks(items, GROUNDED, 3)
    seen = sorted(i for c in chunks for i in c.indices)
    assert seen == list(range(10))  # every item exactly once
    for chunk in chunks:
        assert 1 <= len(chunk) <= 3
        assert len({tuple(it) for it in chunk.items}) == 1  # one key set per request
        assert [items[i] for i in chunk.indices] == list(chunk.items)
    assert [c.indices[0] for c in chunks] == sorted(c.indices[0] for c in chunks)
    assert [len(c) for c in plan_chunks(items[:7], GROUNDED, 500)] == [3, 4]


def test_chunk_sizes_for_compat_servers():
    items = prepare_items({"text": [str(i) for i in range(10)]}, IS_JSON)
    assert [len(c) for c in plan_chunks(items, IS_JSON, 3)] == [3, 3, 3, 1]
    with pytest.raises(ValueError):
        plan_chunks(items, IS_JSON, 0)


def test_items_without_a_string_key_go_one_per_request():
    spec = TemplateSpec("only_lists", (GROUNDED.keys[2],))
    items = prepare_items([{"context": ["a"]}, {"context": ["b"]}], spec)
    assert [len(c) for c in plan_chunks(items, spec, 100)] == [1, 1]


def test_bodies():
    one = build_body([{"text": "a"}], IS_JSON)
    assert one == {"eval_name": "is_json", "inputs": {"text": "a"}, "model": None,
                   "is_async": False}
    items = prepare_items({"output": ["a", "b"], "context": [["x"], ["y", "z"]]}, GROUNDED)
    body = build_body(items, GROUNDED, model="judge-1", is_async=True,
                      params={"k": 1}, extra={"custom_eval_name": "n", "span_id": None})
    assert body["inputs"] == {"output": ["a", "b"], "context": [["x"], ["y", "z"]]}
    assert body["config"] == {"params": {"k": 1}} and body["custom_eval_name"] == "n"
    assert "span_id" not in body and body["is_async"] is True and body["model"] == "judge-1"
    with pytest.raises(ValueError):
        build_body([{"output": "a", "context": ["x"]}, {"output": "b", "input": "q",
                                                        "context": ["y"]}], GROUNDED)


def test_params_are_checked_by_name():
    regex = resolve_template("regex")
    check_params({"pattern": "a+"}, regex)
    with pytest.raises(InvalidInputError, match="'pattern'"):
        check_params({}, regex)
    with pytest.raises(InvalidInputError, match="unknown template parameter"):
        check_params({"pattern": "a", "flags": "i"}, regex)
    check_params(None, IS_JSON)
