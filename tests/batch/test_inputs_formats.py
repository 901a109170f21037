"""Inputs people have: .json arrays, stdin, .parquet, limits, row locations, pass_threshold in the
``NAME:param=...`` form, and JSON/YAML config files.

Unit tests need no server; the two ``live`` tests run ``evaluate_batch`` on the shared
``live_server`` over a ``.json`` and a ``.parquet`` file.
"""

from __future__ import annotations

import io
import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from fi_evals import Evaluator
from fi_evals.batch import readers
from fi_evals.batch.config import load_config
from fi_evals.batch.readers import (
    BadRow,
    RowSource,
    estimate_length,
    iter_items,
    source_length,
)
from fi_evals.batch.specs import EvalSpec, parse_eval_spec, resolve_specs

from .conftest import EVALS, MAPPING, rows

# --------------------------------------------------------------------------- .json arrays


def _write_json(path: Path, value: Any, **dump: Any) -> Path:
    path.write_text(json.dumps(value, **dump), "utf-8")
    return path


@pytest.mark.parametrize("indent", [None, 2])
def test_json_array_of_objects_streams_and_marks_non_objects(tmp_path: Path,
                                                             indent: int | None) -> None:
    data = [{"a": i, "text": "x" * i} for i in range(5)] + [[1, 2], "loose", None]
    path = _write_json(tmp_path / "d.json", data, indent=indent)
    got = list(iter_items(path))
    assert got[:5] == data[:5]
    bad = got[5:]
    assert all(isinstance(b, BadRow) for b in bad)
    assert [b.index for b in bad] == [5, 6, 7]
    assert bad[0].reason == "item 5 of d.json: a JSON array, not an object"
    assert "string" in bad[1].reason and "null" in bad[2].reason
    assert estimate_length(path) is None and source_length(path) is None


def test_json_array_read_in_small_pieces(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Values cut anywhere by the reads (numbers included) come out whole."""
    data = [{"i": i, "s": "é\"," * i, "f": 12345.678, "n": [i, {"k": None}]} for i in range(40)]
    path = _write_json(tmp_path / "d.json", [*data, 1234567890], ensure_ascii=False)
    monkeypatch.setattr(readers, "_READ_CHARS", 3)
    got = list(iter_items(path))
    assert got[:-1] == data
    assert isinstance(got[-1], BadRow) and got[-1].raw == "1234567890"


def test_json_empty_array_and_bom(tmp_path: Path) -> None:
    (tmp_path / "e.json").write_text("  [ ]\n", "utf-8")
    assert list(iter_items(tmp_path / "e.json")) == []
    (tmp_path / "b.json").write_bytes(b'\xef\xbb\xbf[{"a": 1}]')
    assert list(iter_items(tmp_path / "b.json")) == [{"a": 1}]


@pytest.mark.parametrize("text, message", [
    ('{"a": 1}\n{"a": 2}\n', "one JSON object per line .*name it d.jsonl"),
    ('{\n  "a": 1\n}\n', "found a single JSON object"),
    ("", "the file is empty"),
    ("12", "found a JSON number"),
    ('"rows"', "found a JSON string"),
    ("rows", "found text that is not JSON"),
    ('{"a": ', r"d.json line 1 column 7: not valid JSON"),
])
def test_json_that_is_not_an_array_fails_at_once(tmp_path: Path, text: str,
                                                 message: str) -> None:
    (tmp_path / "d.json").write_text(text, "utf-8")
    with pytest.raises(ValueError, match="d.json") as info:
        iter_items(tmp_path / "d.json")  # before anything is iterated
    assert "expected a JSON array of objects" in str(info.value)
    assert re.search(message, str(info.value))


@pytest.mark.parametrize("text, message", [
    ('[{"a": 1},\n {"a": 2},\n {"a" 3}]', "line 3 column 7: not valid JSON"),
    ('[{"a": 1},\n {"a": 2},]', "line 2 column 11: .*a comma before"),
    ('[{"a": 1},\n {"a": 2}', "not closed after 2 element"),
    ('[{"a": 1},\n {"a": 2}] [', "more data after the array"),
    ('[{"a": 1},\n {"a": 2} {"a": 3}]', "expected ',' or ']' after element 1"),
])
def test_json_broken_in_the_middle_raises_after_the_rows_before(tmp_path: Path, text: str,
                                                                message: str) -> None:
    (tmp_path / "d.json").write_text(text, "utf-8")
    source = iter_items(tmp_path / "d.json")
    got: list[Any] = []
    with pytest.raises(ValueError, match=message) as info:
        got.extend(source)  # keeps the rows appended before the error
    assert str(info.value).startswith("d.json line ")
    assert got == [{"a": 1}, {"a": 2}]  # the rows before the break were read


# --------------------------------------------------------------------------- stdin


def test_stdin_jsonl_with_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO('\n{"a": 1}\n\n{"a": 2}\nnope\n[3]\n'))
    source = iter_items("-")
    got = list(source)
    assert got[:2] == [{"a": 1}, {"a": 2}]
    assert isinstance(got[2], BadRow) and got[2].line == 5 and got[2].index == 2
    assert got[2].reason.startswith("item 2 (<stdin> line 5): not JSON")
    assert "a JSON array, not an object" in got[3].reason
    assert [source.describe(i) for i in range(4)] == [
        "item 0 (<stdin> line 2)", "item 1 (<stdin> line 4)", "item 2 (<stdin> line 5)",
        "item 3 (<stdin> line 6)"]
    assert source_length("-") is None and estimate_length("-", limit=5) is None


def test_stdin_json_array(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO('\n\n  [{"a": 1},\n {"a": 2}, 3]\n'))
    source = iter_items("-")
    got = list(source)
    assert got[:2] == [{"a": 1}, {"a": 2}] and isinstance(got[2], BadRow)
    assert source.describe(1) == "item 1" and source.name == "<stdin>"


def test_stdin_is_not_a_missing_file_and_empty_stdin_is_no_rows(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no file named "-" here
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n\n"))
    assert list(iter_items("-")) == []
    monkeypatch.setattr(sys, "stdin", None)
    with pytest.raises(ValueError, match="no stdin"):
        iter_items("-")


def test_stdin_broken_array_names_the_stdin_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO('\n[{"a": 1},\n {"a" 2}]'))
    source = iter_items("-")
    with pytest.raises(ValueError, match=r"<stdin> line 3 column 7: not valid JSON"):
        list(source)


# --------------------------------------------------------------------------- parquet


def test_parquet_round_trip_in_record_batches(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    frame = pd.DataFrame({"id": range(10), "answer": [f"a{i}" for i in range(10)],
                          "score": [0.5, float("nan")] * 5,
                          "tags": [["x", "y"], []] * 5})
    frame.loc[3, "answer"] = None
    path = tmp_path / "d.parquet"
    frame.to_parquet(path)
    monkeypatch.setattr(readers, "PARQUET_BATCH_ROWS", 3)  # several record batches
    got = list(iter_items(path))
    assert len(got) == 10 and got[0] == {"id": 0, "answer": "a0", "score": 0.5,
                                         "tags": ["x", "y"]}
    assert got[1]["score"] is None and got[3]["answer"] is None and got[1]["tags"] == []
    assert type(got[0]["id"]) is int
    json.dumps(got)  # plain Python values
    assert source_length(path) == 10 and estimate_length(path) == 10
    assert source_length(path, limit=4) == 4
    limited = iter_items(path, limit=4)
    assert [r["id"] for r in limited] == [0, 1, 2, 3] and limited.describe(3) == "item 3"


def test_parquet_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("pyarrow")
    (tmp_path / "bad.parquet").write_text("not parquet", "utf-8")
    with pytest.raises(ValueError, match="bad.parquet: not a readable Parquet file"):
        iter_items(tmp_path / "bad.parquet")
    assert source_length(tmp_path / "bad.parquet") is None
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # as if it were not installed
    with pytest.raises(ImportError, match=r"pip install 'fi-evals\[pandas\]'"):
        iter_items(tmp_path / "bad.parquet")


# --------------------------------------------------------------------------- limit


def test_limit_stops_reading_and_closes_the_file(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps({"i": i}) + "\n" for i in range(10)), "utf-8")
    source = iter_items(path, limit=3)
    assert [r["i"] for r in source] == [0, 1, 2]  # type: ignore[index]
    assert source.rows_read == 3 and list(source) == []
    assert source._rows.gi_frame is None  # type: ignore[attr-defined]  # generator closed
    assert estimate_length(path, limit=3) == 3 and estimate_length(path, limit=50) == 10
    assert source_length(list(range(10)), limit=4) == 4 and source_length(path, limit=4) is None
    assert list(iter_items([{"a": 1}] * 5, limit=0)) == []
    pulled = []

    def gen():
        for i in range(100):
            pulled.append(i)
            yield {"i": i}

    assert len(list(iter_items(gen(), limit=2))) == 2 and pulled == [0, 1]
    bad = [{"a": 1}, "oops", {"a": 2}]
    assert isinstance(list(iter_items(bad, limit=2))[1], BadRow)  # bad rows count
    for wrong in (-1, 1.5, True, "3"):
        with pytest.raises(ValueError, match="limit"):
            iter_items([{"a": 1}], limit=wrong)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- row locations


def test_jsonl_row_locations_follow_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('{"a": 0}\n\n\n{"a": 1}\n{"a": 2}\nbroken\n\n[4]\n', "utf-8")
    source = iter_items(path)
    assert isinstance(source, RowSource)
    assert source.describe(0) == "item 0"  # nothing read yet
    got = list(source)
    assert [source.line_of(i) for i in range(5)] == [1, 4, 5, 6, 8]
    assert source.describe(3) == "item 3 (d.jsonl line 6)" and source.line_of(5) is None
    assert isinstance(got[3], BadRow) and (got[3].index, got[3].line) == (3, 6)
    assert got[3].reason.startswith("item 3 (d.jsonl line 6): not JSON")
    assert got[3].raw == "broken\n"
    assert got[4].reason == "item 4 (d.jsonl line 8): a JSON array, not an object"


def test_line_index_stays_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(readers, "LINE_RUNS_KEPT", 4)
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps({"i": i}) + "\n\n" for i in range(50)), "utf-8")
    source = iter_items(path)
    assert len(list(source)) == 50
    starts = source._lines._starts  # type: ignore[union-attr]
    assert len(starts) <= 8
    assert source.line_of(49) == 99 and source.line_of(46) == 93  # recent rows: exact
    assert source.line_of(0) is None and source.describe(0) == "item 0"  # forgotten


def test_other_sources_describe_rows_by_index(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("a,b\n1,x\n2,y,extra\n", "utf-8")
    source = iter_items(path)
    got = list(source)
    assert got[0] == {"a": "1", "b": "x"} and isinstance(got[1], BadRow)
    assert (got[1].index, got[1].line) == (1, 3)
    assert got[1].reason == "item 1 (d.csv line 3): more cells than the 2 columns of the header"
    assert source.describe(1) == "item 1"
    listed = iter_items([{"a": 1}, 7])
    bad = list(listed)[1]
    assert isinstance(bad, BadRow) and bad.index == 1 and bad.line is None
    assert bad.reason == "item 1: a value of type int, not a mapping"
    assert listed.describe(1) == "item 1"
    assert "RowSource" in repr(listed)


def test_unsupported_suffix_lists_the_formats(tmp_path: Path) -> None:
    (tmp_path / "d.txt").write_text("x", "utf-8")
    with pytest.raises(ValueError, match=r"\.jsonl, \.ndjson, \.csv, \.json or \.parquet"):
        iter_items(tmp_path / "d.txt")


# --------------------------------------------------------------------------- pass_threshold


def test_pass_threshold_in_the_string_form() -> None:
    spec = parse_eval_spec("fz=fuzzy_match:case_sensitive=true,pass_threshold=0.8")
    assert (spec.label, spec.params, spec.pass_threshold) == ("fz", {"case_sensitive": True},
                                                             0.8)
    assert spec.score_threshold == 0.8
    assert spec.display == "fuzzy_match:case_sensitive=true,pass_threshold=0.8"
    assert spec.to_dict() == {"eval": "fuzzy_match", "params": {"case_sensitive": True},
                              "label": "fz", "pass_threshold": 0.8}
    again = parse_eval_spec(spec.display)
    assert (again.params, again.pass_threshold) == (spec.params, spec.pass_threshold)
    zero = parse_eval_spec("fuzzy_match:pass_threshold=0")
    assert zero.pass_threshold == 0.0 and zero.to_dict()["pass_threshold"] == 0.0
    pairs = resolve_specs(["fuzzy_match:pass_threshold=0.9", {"eval": "fuzzy_match"},
                           {"eval": "fuzzy_match:pass_threshold=0.9", "pass_threshold": 0.9,
                            "label": "same"}])
    assert [s.label for s, _ in pairs] == ["fuzzy_match:pass_threshold=0.9", "fuzzy_match",
                                           "same"]
    assert [s.score_threshold for s, _ in pairs] == [0.9, 0.5, 0.9]
    assert pairs[0][0].params == {}  # not sent as a template parameter


def test_model_in_the_string_form() -> None:
    spec = parse_eval_spec("answer_relevance:model=gpt-4o-mini")
    assert (spec.params, spec.model) == ({}, "gpt-4o-mini")
    assert spec.display == "answer_relevance:model=gpt-4o-mini"
    assert spec.to_dict() == {"eval": "answer_relevance", "model": "gpt-4o-mini"}


@pytest.mark.parametrize("text, shown", [
    ("fuzzy_match:pass_threshold=1.5", "1.5"),
    ("fuzzy_match:pass_threshold=-0.1", "-0.1"),
    ("fuzzy_match:pass_threshold=high", "'high'"),
    ("fuzzy_match:pass_threshold=true", "True"),
    ("fuzzy_match:pass_threshold=NaN", "nan"),
    ("fuzzy_match:pass_threshold=[0.5]", r"\[0.5\]"),
])
def test_pass_threshold_must_be_a_number_from_0_to_1(text: str, shown: str) -> None:
    with pytest.raises(ValueError, match=rf"pass_threshold must be a number from 0 to 1 .*"
                                         rf"not {shown}$"):
        parse_eval_spec(text)


def test_pass_threshold_checked_in_every_form() -> None:
    with pytest.raises(ValueError, match="pass_threshold must be a number from 0 to 1"):
        resolve_specs([{"eval": "fuzzy_match", "pass_threshold": 2}])
    with pytest.raises(ValueError, match="pass_threshold must be a number from 0 to 1"):
        EvalSpec("fuzzy_match", pass_threshold=7)
    with pytest.raises(ValueError, match="pass_threshold is given twice"):
        resolve_specs([{"eval": "fuzzy_match:pass_threshold=0.5", "pass_threshold": 0.7}])
    with pytest.raises(ValueError, match="model must be a model name"):
        parse_eval_spec("answer_relevance:model=")
    with pytest.raises(ValueError, match="'case_sensitive' is given twice"):
        parse_eval_spec("fuzzy_match:case_sensitive=true,case_sensitive=false")
    assert EvalSpec("fuzzy_match", pass_threshold="0.25").pass_threshold == 0.25  # type: ignore


def test_display_quotes_strings_that_would_not_read_back() -> None:
    for value in ("a,b", "12", "true", " padded", "^[a-z", 'say "hi"'):
        spec = EvalSpec("contains", {"keyword": value})
        assert parse_eval_spec(spec.display).params == {"keyword": value}, spec.display
    assert EvalSpec("contains", {"keyword": "refund"}).display == "contains:keyword=refund"


# --------------------------------------------------------------------------- config files


def test_yaml_and_json_configs(tmp_path: Path) -> None:
    yaml_text = """\
# evals.yaml
evals:
  - is_json
  - fuzzy_match:pass_threshold=0.8
  - eval: contains
    params: {keyword: order}
    label: mentions_order
map:
  text: tool_call
thresholds:
  is_json: 0.9
async: true
_note: a comment key
"""
    expected = {"evals": ["is_json", "fuzzy_match:pass_threshold=0.8",
                          {"eval": "contains", "params": {"keyword": "order"},
                           "label": "mentions_order"}],
                "map": {"text": "tool_call"}, "thresholds": {"is_json": 0.9}, "async": True,
                "_note": "a comment key"}
    for name in ("evals.yaml", "evals.YML"):
        (tmp_path / name).write_text(yaml_text, "utf-8")
        assert load_config(tmp_path / name) == expected
    (tmp_path / "evals.json").write_text(json.dumps(expected), "utf-8")
    assert load_config(str(tmp_path / "evals.json")) == expected
    (tmp_path / "anything.conf").write_text(json.dumps(expected), "utf-8")
    assert load_config(tmp_path / "anything.conf") == expected  # other names: JSON
    (tmp_path / "unknown.json").write_text('{"not_a_key": 1}', "utf-8")
    assert load_config(tmp_path / "unknown.json") == {"not_a_key": 1}  # keys: the CLI's job


@pytest.mark.parametrize("name, text, message", [
    ("c.yaml", "- is_json\n- fuzzy_match\n", r"c.yaml: expected a YAML mapping .*found a list"),
    ("c.json", '["is_json"]', r"c.json: expected a JSON mapping .*found a list"),
    ("c.yml", "just text\n", "found a string"),
    ("c.yml", "# nothing\n", "c.yml: the config file is empty"),
    ("c.json", "  \n", "c.json: the config file is empty"),
    ("c.yaml", "1: x\n", "top-level keys must be strings"),
    ("c.yaml", "evals:\n  - is_json\n - bad\n", r"^c.yaml line 3 column 2: not valid YAML"),
    ("c.yaml", "evals: [a]\nworkers: 2\nevals: [b]\n",
     r"^c.yaml line 3 column 1: .*the key 'evals' is given twice"),
    # Python 3.13's json points at the trailing comma (column 22), 3.11/3.12's at the "]"
    ("c.json", '{\n  "evals": ["is_json",]\n}', r"^c.json line 2 column 2[23]: not valid JSON"),
    ("c.json", '{"workers": 1, "workers": 2}', "the key 'workers' is given twice"),
    ("c.cfg", "evals: [x]\n", "not valid JSON .*a YAML config needs a .yaml or .yml name"),
])
def test_config_errors_name_the_file_and_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              name: str, text: str, message: str) -> None:
    monkeypatch.chdir(tmp_path)  # the message names the path as given
    Path(name).write_text(text, "utf-8")
    with pytest.raises(ValueError, match=message) as info:
        load_config(name)
    assert str(info.value).startswith(name)


def test_config_yaml_merge_keys_may_override(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("base: &b {workers: 2, deadline: 60}\nrun:\n  <<: *b\n  workers: 8\n")
    assert load_config(path)["run"] == {"workers": 8, "deadline": 60}


def test_config_missing_file_and_missing_yaml(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="no such config file"):
        load_config(tmp_path / "nope.json")
    (tmp_path / "c.yaml").write_text("evals: [is_json]\n", "utf-8")
    monkeypatch.setitem(sys.modules, "yaml", None)
    with pytest.raises(ImportError, match=r"c.yaml \(PyYAML\).*pip install 'fi-evals\[yaml\]'"):
        load_config(tmp_path / "c.yaml")
    (tmp_path / "c.json").write_text('{"evals": ["is_json"]}', "utf-8")
    assert load_config(tmp_path / "c.json") == {"evals": ["is_json"]}  # JSON needs no PyYAML


# --------------------------------------------------------------------------- live


def _every_row_has_a_verdict(result: Any, n: int) -> None:
    assert [item.index for item in result.items] == list(range(n))
    for item in result.items:
        assert list(item.results) == ["is_json", "fuzzy_match", "contains"]
        assert all(r.ok for r in item.results.values()), item
    assert result.stats.outcomes == 3 * n and result.complete


def test_live_json_array_file(evaluator: Evaluator, tmp_path: Path) -> None:
    path = _write_json(tmp_path / "rows.json", rows(30), indent=2)
    result = evaluator.evaluate_batch(path, EVALS, key_mapping=MAPPING, progress=False)
    _every_row_has_a_verdict(result, 30)
    assert result.items[1].results["is_json"].output == "Passed"
    assert result.items[3].results["is_json"].output == "Failed"


def test_live_parquet_file(evaluator: Evaluator, tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    path = tmp_path / "rows.parquet"
    pd.DataFrame(rows(30)).to_parquet(path)
    result = evaluator.evaluate_batch(path, EVALS, key_mapping=MAPPING, progress=False)
    _every_row_has_a_verdict(result, 30)
    assert result.items[3].results["is_json"].output == "Failed"
    assert result.items[4].item["id"] == 4


def test_live_json_array_broken_in_the_middle_keeps_the_rows_before(evaluator: Evaluator,
                                                                    tmp_path: Path) -> None:
    text = json.dumps(rows(60), indent=1)
    cut = text.index('"id": 40')
    path = tmp_path / "rows.json"
    path.write_text(text[:cut] + "oops " + text[cut:], "utf-8")
    result = evaluator.evaluate_batch(path, EVALS, key_mapping=MAPPING, progress=False,
                                      chunk_size=10)
    assert [item.index for item in result.items] == list(range(len(result.items)))
    assert 0 < len(result.items) <= 40
    assert all(r.ok for item in result.items for r in item.results.values())
    assert result.stopped == "input_error" and "rows.json line " in str(result.input_error)
