"""Bulk status written around the store's JSON text (issue 20): byte for byte the answer that
decoding each record and encoding the entry gives, for every kind of record."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fi_evals.server.application import create_app
from fi_evals.server.config import ServerConfig
from fi_evals.server.errors import json_bytes
from fi_evals.server.evaluators.base import CACHED_TAG
from fi_evals.server.service import EvalService, new_eval_ids
from fi_evals.server.store import NewJob

_CASES: list[dict[str, Any]] = [
    {"template": "is_json", "status": "completed", "output": "Passed", "reason": "valid JSON"},
    {"template": "is_json", "status": "completed", "output": "Failed", "reason": None,
     "inputs": {"text": 'é "quoted" \\ \n\u2028 😀'}},
    {"template": "fuzzy_match", "status": "completed", "output": 0.8333333333333334,
     "reason": "ratio", "inputs": {"output": "abc", "expected": "abd"}},
    {"template": "fuzzy_match", "status": "completed", "output": 1e-07, "reason": None},
    {"template": "fuzzy_match", "status": "completed", "output": 1, "reason": None},
    {"template": "fuzzy_match", "status": "completed", "output": 1e16, "reason": None},
    {"template": "tone", "status": "completed", "output": ["joy", "ünïcode"], "reason": "r"},
    {"template": "custom_judge", "status": "completed", "output": 0.5, "reason": "x"},
    {"template": "groundedness", "status": "completed", "output": "Passed", "model": "m-1",
     "reason": f"grounded [judge m-1, prompt p1{CACHED_TAG}",
     "inputs": {"output": "a", "context": ["a", "b"]}},
    {"template": "groundedness", "status": "failed", "output": None, "reason": None,
     "error_message": "judge unreachable after 3 attempts", "runtime": 0},
    {"template": "is_json", "status": "pending", "output": None, "reason": None},
    {"template": "is_json", "status": "processing", "output": None, "reason": None},
    {"template": "no_longer_listed", "status": "completed", "output": "Passed", "reason": None},
    {"template": "is_json", "status": "completed", "output": True, "reason": None},
]


def _service(tmp_path: Path, compat: bool) -> EvalService:
    config = ServerConfig(port=0, db_path=str(tmp_path / f"s{compat}.db"), compat=compat)
    return create_app(config.with_keys()).service


@pytest.mark.parametrize("compat", [False, True])
def test_text_entries_are_the_decoded_records_encoded(tmp_path: Path, compat: bool) -> None:
    service = _service(tmp_path, compat)
    ids = new_eval_ids(len(_CASES))
    service.store.insert([
        NewJob(eval_id=i, template=c["template"], inputs=c.get("inputs", {"text": "{}"}),
               params={}, model=c.get("model"), status=c["status"], output=c["output"],
               reason=c["reason"], runtime=c.get("runtime", 3),
               error_message=c.get("error_message"))
        for i, c in zip(ids, _CASES, strict=True)])
    unknown = new_eval_ids(1)[0]
    asked = [*ids, unknown, ids[0]]
    text = list(service._status_parts(asked))
    found = service.store.get_many(asked)
    decoded = []
    for eval_id in asked:
        entry, finished = service._status_entry(eval_id, found.get(eval_id))
        decoded.append((json_bytes(entry), finished))
    assert text == decoded
    by_objects = [service._entry_bytes(i, found.get(i)) for i in asked]
    assert by_objects == decoded
    rows = service.store.get_many_text(ids)
    assert rows is not None
    taken = [service._text_entry(i, rows[i]) is not None for i in ids]
    # the common records take the text path; the output-dependent ones are decoded
    assert taken == [True] * 6 + [False, False, True, True, True, True, False, False]
    service.store.close()


def _two_completed(tmp_path: Path) -> tuple[EvalService, list[str]]:
    """A service with two completed ``is_json`` evaluations stored the general way."""
    service = _service(tmp_path, False)
    ids = new_eval_ids(2)
    service.store.insert([NewJob(eval_id=i, template="is_json", inputs={"text": "{}"},
                                 params={}, model=None, status="completed", output="Passed")
                          for i in ids])
    return service, ids


def test_a_store_without_text_is_read_as_before(tmp_path: Path) -> None:
    service, ids = _two_completed(tmp_path)
    expected = list(service._status_parts(ids))
    service.store.get_many_text = lambda eval_ids: None  # type: ignore[method-assign]
    assert list(service._status_parts(ids)) == expected
    service.store.close()


def test_ids_without_a_text_row_are_read_with_get_many(tmp_path: Path) -> None:
    """A store may keep some evaluations where get_many_text does not look (e.g. elsewhere
    than its evals rows): those are read the general way, not answered not_found."""
    service, ids = _two_completed(tmp_path)
    expected = list(service._status_parts(ids))
    real = service.store.get_many_text
    service.store.get_many_text = lambda eval_ids: {  # type: ignore[method-assign]
        k: v for k, v in real(eval_ids).items() if k != ids[1]}
    assert list(service._status_parts(ids)) == expected
    assert b'"completed"' in expected[1][0]
    service.store.close()


@pytest.mark.parametrize("compat", [False, True])
def test_entries_of_requests_evaluated_at_submit(tmp_path: Path, compat: bool) -> None:
    """Sync and cheap async requests' results (wherever the store keeps them) read the same
    through the fast paths as through the decoded records."""
    service = _service(tmp_path, compat)
    ids: list[str] = []
    for is_async in (False, True):
        for name, inputs in (("is_json", {"text": ["{}", "[", "é"]}),
                             ("fuzzy_match", {"output": ["abc", "x"], "expected": ["abd", "y"]})):
            body = json.dumps({"eval_name": name, "inputs": inputs, "is_async": is_async})
            answer = service.submit(body.encode(), "scope", None)
            ids += [e["eval_id"] for e in json.loads(answer.body)["result"][0]["evaluations"]]
    found = service.store.get_many(ids)
    expected = [(json_bytes(service._status_entry(i, found[i])[0]), True) for i in ids]
    assert list(service._status_parts(ids)) == expected
    service.store.close()
