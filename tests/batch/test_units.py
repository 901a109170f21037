"""Pure unit tests of the batch engine's pieces: no network, no server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fi_evals._exceptions import InvalidInputError, ItemError, UnknownTemplateError
from fi_evals._inputs import TemplateSpec
from fi_evals.batch.concurrency import AdaptiveLimit
from fi_evals.batch.errors import JournalMismatchError
from fi_evals.batch.journal import Journal, JournalEntry, body_hash
from fi_evals.batch.mapping import build_inputs, resolve_mapping, task_fields
from fi_evals.batch.output import BatchItem, open_writer, read_jsonl
from fi_evals.batch.readers import BadRow, iter_items, source_length
from fi_evals.batch.result import check_thresholds, parse_thresholds
from fi_evals.batch.specs import EvalSpec, parse_eval_spec, resolve_specs
from fi_evals.batch.stats import LatencyReservoir, TemplateStats
from fi_evals.catalogue import CATALOGUE
from fi_evals.results import EvalResult

pytestmark = pytest.mark.unit  # no server, no model: `make unit` runs this file


# --------------------------------------------------------------------------- specs


def test_parse_spec_with_label_and_json_params() -> None:
    spec = parse_eval_spec('kw=contains_any:keywords=["a,b","c"],case_sensitive=true')
    assert (spec.label, spec.name) == ("kw", "contains_any")
    assert spec.params == {"keywords": ["a,b", "c"], "case_sensitive": True}
    assert parse_eval_spec("length_less_than:max_length=40").params == {"max_length": 40}
    assert parse_eval_spec("regex:pattern=^a.*z$").params == {"pattern": "^a.*z$"}


@pytest.mark.parametrize("bad", ["", ":x=1", "contains:keyword"])
def test_parse_spec_rejects_malformed(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_eval_spec(bad)


def test_resolve_specs_labels_and_checks() -> None:
    pairs = resolve_specs(["is_json", "contains:keyword=a", "contains:keyword=b",
                           {"eval": "fuzzy_match", "label": "fz", "pass_threshold": 0.7}])
    assert [s.label for s, _ in pairs] == ["is_json", "contains:keyword=a",
                                          "contains:keyword=b", "fz"]
    assert pairs[3][0].score_threshold == 0.7
    with pytest.raises(UnknownTemplateError, match="is_json"):
        resolve_specs(["is_jsonn"])
    with pytest.raises(InvalidInputError, match="keyword"):
        resolve_specs(["contains"])
    with pytest.raises(ValueError, match="label"):
        resolve_specs(["is_json", EvalSpec("one_line", label="is_json")])


# --------------------------------------------------------------------------- readers


def test_readers_jsonl_csv_columns_and_bad_rows(tmp_path: Path) -> None:
    jl = tmp_path / "d.jsonl"
    jl.write_text('{"a": 1}\n\nnot json\n[1, 2]\n{"a": 2}\n')
    rows = list(iter_items(jl))
    assert rows[0] == {"a": 1} and rows[-1] == {"a": 2}
    assert [isinstance(r, BadRow) for r in rows] == [False, True, True, False]
    csv_path = tmp_path / "d.csv"
    csv_path.write_text("a,b\n1,\n2,x\n")
    assert list(iter_items(csv_path)) == [{"a": "1", "b": None}, {"a": "2", "b": "x"}]
    assert list(iter_items({"a": [1, 2], "b": ["x", "y"]})) == [{"a": 1, "b": "x"},
                                                              {"a": 2, "b": "y"}]
    assert source_length({"a": [1, 2]}) == 2 and source_length(jl) is None
    assert isinstance(list(iter_items([{"a": 1}, "oops"]))[1], BadRow)
    with pytest.raises(FileNotFoundError):
        iter_items(tmp_path / "missing.jsonl")
    (tmp_path / "d.txt").write_text("x")
    with pytest.raises(ValueError):
        iter_items(tmp_path / "d.txt")
    with pytest.raises(ValueError):
        iter_items({"a": [1, 2], "b": [1]})


def test_reader_is_lazy() -> None:
    pulled = []

    def gen():
        for i in range(10**9):
            pulled.append(i)
            yield {"i": i}

    it = iter_items(gen())
    assert next(it) == {"i": 0} and len(pulled) == 1


def test_reader_dataframe_missing_values_become_none() -> None:
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"a": [1.5, float("nan")], "b": ["x", None]})
    assert list(iter_items(frame)) == [{"a": 1.5, "b": "x"}, {"a": None, "b": None}]
    assert source_length(frame) == 2


# --------------------------------------------------------------------------- mapping


def _spec(name: str) -> TemplateSpec:
    return TemplateSpec.from_template(CATALOGUE[name])


def test_mapping_prefers_task_fields_and_walks_paths() -> None:
    fuzzy = _spec("fuzzy_match")
    mapping = resolve_mapping({}, {"expected": "meta.gold"}, fuzzy)
    inputs = build_inputs(fuzzy, mapping, {"output": "old", "meta": {"gold": "g"}},
                          task_fields("new"), 0)
    assert inputs == {"output": "new", "expected": "g"}
    assert build_inputs(fuzzy, resolve_mapping({"output": "item.output"}, {}, fuzzy),
                        {"output": "old", "expected": "e"}, task_fields("new"), 0) == {
        "output": "old", "expected": "e"}
    with pytest.raises(ValueError):
        resolve_mapping({"text": "x"}, {}, fuzzy)


def test_mapping_missing_required_key_names_the_field() -> None:
    ground = _spec("groundedness")
    mapping = resolve_mapping({"context": "docs"}, {}, ground)
    inputs = build_inputs(ground, mapping, {"output": "a", "docs": ["c1", "c2"]}, {}, 3)
    assert inputs == {"output": "a", "context": ["c1", "c2"]}  # optional input left out
    with pytest.raises(InvalidInputError, match="'docs'.*item 3"):
        build_inputs(ground, mapping, {"output": "a"}, {}, 3)


# --------------------------------------------------------------------------- stats & AIMD


def test_reservoir_is_exact_then_bounded() -> None:
    r = LatencyReservoir(size=100)
    for i in range(1, 101):
        r.add(i / 100)
    assert r.exact and r.quantile(0.5) == 0.5 and r.quantile(0.99) == 0.99
    for _ in range(10_000):
        r.add(5.0)
    assert not r.exact and r.count == 10_100 and len(r._sample) == 100
    assert r.quantile(0.5) == 5.0


def test_template_stats_coverage_and_pass_rate() -> None:
    t = TemplateStats("fz", "fuzzy_match", "score", 0.5)
    for value in (0.9, 0.4, 0.6):
        t.record_result(value)
    t.record_error("APITimeoutError")
    assert (t.total, t.scored, t.passed) == (4, 3, 2)
    assert t.coverage == 0.75 and t.pass_rate == pytest.approx(2 / 3)
    assert t.mean_score == pytest.approx(1.9 / 3) and t.errors == {"APITimeoutError": 1}


def test_aimd_halves_once_per_cooldown_and_grows_one_per_round_trip() -> None:
    now = [0.0]
    limit = AdaptiveLimit(8, cooldown=1.0, clock=lambda: now[0])
    limit.on_throttle()
    limit.on_throttle()  # same burst: ignored
    assert limit.limit == 4
    now[0] = 2.0
    limit.on_throttle()
    assert limit.limit == 2
    for _ in range(2):
        limit.on_success()
    assert limit.limit == 3
    for _ in range(100):
        limit.on_success()
    assert limit.limit == 8  # never above the maximum
    reasons = [c.reason for c in limit.history]
    assert reasons[0] == "start" and reasons.count("throttled") == 2
    assert max(c.limit for c in limit.history) == 8


# --------------------------------------------------------------------------- journal


def test_journal_round_trip_torn_line_and_mismatch(tmp_path: Path) -> None:
    path = tmp_path / "j.journal"
    with Journal(path) as j:
        j.start(evals=[{"eval": "is_json"}], chunk_size=10, is_async=True, task=False)
        entry = JournalEntry("k1", 2, body_hash({"a": 1}), True)
        j.record_submit(0, 0, 0, entry)
        j.record_ids("k1", ["id1", "id2"])
        j.record_submit(1, 0, 0, JournalEntry("k2", 1, "h", True))
        j.record_tasks(0, ["x", {"y": 1}])
    with open(path, "ab") as fh:
        fh.write(b'{"t": "ids", "key": "k2", "ids": ["tor')  # killed mid-write
    with Journal(path) as j:
        assert j.skipped_lines == 1 and j.submissions == 2
        assert j.eval_ids(j.lookup(0, 0, 0)) == ["id1", "id2"]
        assert j.eval_ids(j.lookup(1, 0, 0)) is None and j.lookup(2, 0, 0) is None
        assert j.task_outputs(0) == ["x", {"y": 1}]
        j.start(evals=[{"eval": "is_json"}], chunk_size=10, is_async=True, task=False)
        with pytest.raises(JournalMismatchError, match="chunk_size"):
            j.start(evals=[{"eval": "is_json"}], chunk_size=5, is_async=True, task=False)
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b""  # the torn line was closed, later records stay readable


# --------------------------------------------------------------------------- results


def _item(i: int, output: object, status: str = "completed") -> BatchItem:
    error = ItemError("ServerError", "boom", 500) if status == "error" else None
    result = EvalResult(name="fuzzy_match", output=output, output_type="score", status=status,
                        error=error, eval_id=f"id{i}")
    return BatchItem(i, {"q": f"row {i}", "nested": {"a": [1]}}, {"fz": result}, None,
                     None if error else output >= 0.5)


def test_writers_round_trip(tmp_path: Path) -> None:
    items = [_item(0, 0.9), _item(1, None, "error")]
    writer = open_writer(tmp_path / "o.jsonl", ["fz"])
    for it in items:
        writer.write(it)
    writer.close()
    back = list(read_jsonl(tmp_path / "o.jsonl"))
    assert back[0].results["fz"].output == 0.9 and back[0].item["nested"] == {"a": [1]}
    assert back[1].results["fz"].error == ItemError("ServerError", "boom", 500)
    csv_writer = open_writer(tmp_path / "o.csv", ["fz"])
    for it in items:
        csv_writer.write(it)
    csv_writer.close()
    header, first, _ = (tmp_path / "o.csv").read_text().splitlines()
    assert header.split(",")[:3] == ["index", "q", "nested"]
    assert "fz.output" in header and json.loads(first.split(",", 3)[2].strip('"')
                                                .replace('""', '"')) is not None
    with pytest.raises(ValueError):
        open_writer(tmp_path / "o.txt", ["fz"])


def test_thresholds_need_coverage_and_know_defaults() -> None:
    stats = {"j": TemplateStats("j", "is_json", "Pass/Fail", 0.5),
             "t": TemplateStats("t", "tone", "choices", 0.5)}
    for out in ("Passed", "Passed", "Failed"):
        stats["j"].record_result(out)
    stats["j"].record_error("ServerError")
    parsed = parse_thresholds({"j": 0.6}, stats)
    assert parsed == [("j", "pass_rate", 0.6)]
    (check,) = check_thresholds(parsed, stats)
    assert check.value == pytest.approx(2 / 3) and not check.passed  # coverage 3/4 < 100%
    relaxed = parse_thresholds({"j": 0.6, "j.coverage": 0.7}, stats)
    assert all(c.passed for c in check_thresholds(relaxed, stats))
    assert not any(c.passed for c in check_thresholds(relaxed, stats, complete=False))
    for bad in ({"nope": 0.5}, {"j.median": 0.5}, {"t": 0.5}, {"j": 1.5}):
        with pytest.raises(ValueError):
            parse_thresholds(bad, stats)
