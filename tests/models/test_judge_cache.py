"""The judge cache (issue 17, point 2) and the judge's token usage and cost (point 3): through a
real server and the fake OpenAI-compatible judge, whose answers carry OpenAI's ``usage``."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from fake_judge import FakeJudge, Status
from model_helpers import Client

from fi_evals import _constants as C
from fi_evals.cli import main
from fi_evals.server.config import ServerConfig
from fi_evals.server.evaluators.judge_cache import (
    SqliteJudgeCache,
    cache_key,
    default_cache_path,
    judge_cache_for,
)

POLITE = {"output": "Thank you for your patience."}


def _server(server_factory: Any, judge: FakeJudge, **overrides: Any) -> Client:
    overrides.setdefault("judge_timeout", 5.0)
    return Client(server_factory(judge_url=judge.url, judge_model="judge-small", **overrides))


# ------------------------------------------------------------------ units


def test_the_key_covers_endpoint_model_prompt_sampling_inputs_and_params() -> None:
    base = {"endpoint": "http://j/v1/chat/completions", "model": "m", "prompt": "is_polite@v1",
            "sampling": {"temperature": 0}, "inputs": {"output": "x"}, "params": {}}
    key = cache_key(**base)
    assert key == cache_key(**{**base, "inputs": {"output": "x"}})  # canonical, deterministic
    for name, other in [("endpoint", "http://k/v1/chat/completions"), ("model", "m2"),
                        ("prompt", "is_polite@v2"), ("sampling", {"temperature": 0.7}),
                        ("inputs", {"output": "y"}), ("params", {"k": 1})]:
        assert cache_key(**{**base, name: other}) != key, name


def test_entries_expire_after_their_ttl(tmp_path: Path) -> None:
    cache = SqliteJudgeCache(tmp_path / "c.db", ttl=0.2)
    cache.put("k", {"output": "Passed"})
    assert cache.get("k") == {"output": "Passed"} and cache.get("other") is None
    time.sleep(0.3)
    assert cache.get("k") is None
    cache.close()


def test_where_the_cache_lives(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = str(tmp_path / "jobs.db")
    assert judge_cache_for(ServerConfig(db_path=db, judge_cache="off")) is None
    in_store = judge_cache_for(ServerConfig(db_path=db, judge_cache_ttl=60))
    assert isinstance(in_store, SqliteJudgeCache) and in_store.path == db
    assert in_store.ttl == 60
    own = judge_cache_for(ServerConfig(db_path=db, judge_cache_path=str(tmp_path / "j.db")))
    assert isinstance(own, SqliteJudgeCache) and own.path == str(tmp_path / "j.db")
    # one rule for the per-user cache folder: the score logger's spool uses it too
    monkeypatch.delenv(C.ENV_JUDGE_CACHE_DIR)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    from fi_evals.logger._logger import default_spool_path

    monkeypatch.delenv(C.LOGGER_SPOOL_DIR_ENV, raising=False)
    assert default_cache_path().startswith(str(tmp_path / "xdg" / "fi-evals"))
    assert default_spool_path("http://s", "k").startswith(str(tmp_path / "xdg" / "fi-evals"))
    with pytest.raises(ValueError, match="judge_cache must be one of on, off"):
        ServerConfig(judge_cache="sometimes")


# ------------------------------------------------------------------ end to end


def test_an_identical_call_is_answered_from_the_cache(server_factory: Any,
                                                      judge: FakeJudge) -> None:
    api = _server(server_factory, judge)
    first = api.items("is_polite", POLITE)[0]
    assert first["output"] == "Passed" and "cached" not in first["reason"]
    assert " tokens]" in first["reason"]
    again = api.items("is_polite", POLITE)[0]
    assert again["output"] == "Passed" and again["reason"].endswith(", cached]")
    assert len(judge.requests) == 1  # the second costs no judge call
    other = api.items("is_polite", {"output": "Go away."})[0]  # other inputs: a judge call
    assert "cached" not in other["reason"] and len(judge.requests) == 2
    asked = api.items("is_polite", POLITE, model="judge-large")[0]  # another model too
    assert "cached" not in asked["reason"] and len(judge.requests) == 3


def test_async_evaluations_use_the_cache_too(server_factory: Any, judge: FakeJudge) -> None:
    api = _server(server_factory, judge)
    api.items("is_polite", POLITE)
    eval_id = api.items("is_polite", POLITE, is_async=True)[0]["eval_id"]
    payload = api.wait(eval_id)
    assert payload["eval_status"] == "completed"
    assert payload["result"]["reason"].endswith(", cached]")
    assert len(judge.requests) == 1


def test_failures_are_never_cached(server_factory: Any, judge: FakeJudge) -> None:
    api = _server(server_factory, judge, judge_timeout=2.0)
    judge.script(Status(401, body='{"error": "bad key"}'))
    failed = api.items("is_polite", POLITE)[0]
    assert failed["eval_status"] == "failed"
    again = api.items("is_polite", POLITE)[0]  # asked again, answered, then cached
    assert again["output"] == "Passed" and "cached" not in again["reason"]
    assert api.items("is_polite", POLITE)[0]["reason"].endswith(", cached]")
    assert len(judge.requests) == 2


def test_judge_cache_off_asks_every_time(server_factory: Any, judge: FakeJudge) -> None:
    api = _server(server_factory, judge, judge_cache="off")
    for _ in range(2):
        assert "cached" not in api.items("is_polite", POLITE)[0]["reason"]
    assert len(judge.requests) == 2


def test_the_cache_outlives_a_restart_on_the_same_store(server_factory: Any, judge: FakeJudge,
                                                        tmp_path: Path) -> None:
    db = str(tmp_path / "kept.db")
    server = server_factory(judge_url=judge.url, judge_model="judge-small", db_path=db)
    Client(server).items("is_polite", POLITE)
    server.stop(10)
    restarted = _server(server_factory, judge, db_path=db)
    assert restarted.items("is_polite", POLITE)[0]["reason"].endswith(", cached]")
    assert len(judge.requests) == 1


def test_cost_is_recorded_only_with_prices(server_factory: Any, judge: FakeJudge) -> None:
    priced = _server(server_factory, judge, judge_price_in=2.5, judge_price_out=10.0)
    reason = priced.items("is_polite", POLITE)[0]["reason"]
    usage = judge.requests[0]
    tokens = reason.rsplit(", ", 2)[-2]  # "P+C tokens"
    prompt, completion = (int(n) for n in tokens.split()[0].split("+"))
    assert prompt > 0 and completion > 0 and usage["temperature"] == 0
    assert reason.endswith(f", cost {(prompt * 2.5 + completion * 10.0) / 1e6:.6g}]")
    unpriced = _server(server_factory, judge, judge_cache="off")
    assert "cost" not in unpriced.items("is_polite", POLITE)[0]["reason"]


# ------------------------------------------------------------------ fi-evals run


def test_the_embedded_server_keeps_its_cache_across_runs(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        _judge_cache_dir: Path) -> None:
    for name in (C.ENV_BASE_URL, C.ENV_JUDGE_BASE_URL, C.ENV_JUDGE_MODEL):
        monkeypatch.delenv(name, raising=False)
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({"answer": f"Thank you ({n})."}) + "\n"
                            for n in range(5)))
    with FakeJudge() as judge:
        argv = ["run", str(rows), "--eval", "is_polite", "--map", "output=answer",
                "--judge-url", judge.url, "--judge-model", "judge-small", "--no-progress"]
        assert main(argv) == 0, capsys.readouterr().err
        assert len(judge.requests) == 5
        assert main(argv) == 0, capsys.readouterr().err
        assert len(judge.requests) == 5  # a rerun costs no judge call
        assert (_judge_cache_dir / "judge-cache.sqlite3").exists()
        shutil.rmtree(_judge_cache_dir)
        assert main([*argv, "--judge-cache", "off"]) == 0
        assert len(judge.requests) == 10 and not _judge_cache_dir.exists()


@pytest.mark.unit
def test_only_a_cached_judge_tag_means_cached_true() -> None:
    from fi_evals.server.evaluators.base import from_cache

    assert from_cache("Polite. [judge m for turing_small, prompt is_polite@v1.1, cached]")
    for reason in ("Polite. [judge m, prompt is_polite@v1.1, 12+3 tokens]", "x, cached]",
                   "contains 'a, cached]'", "", None):
        assert not from_cache(reason), reason
