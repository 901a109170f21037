"""The judge's token usage, cost and cache savings in batch stats, ``--stats-json`` and the
summary (issue 17, point 3), against a real server and the fake OpenAI-compatible judge, in
sync, async and resumed runs."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import requests

from fi_evals import AsyncEvaluator
from fi_evals import _constants as C
from fi_evals.batch import evaluate_batch
from fi_evals.batch.stats import JudgeUsage, judge_usage
from fi_evals.batch.summary import render_summary
from fi_evals.cli import main
from tests.models.fake_judge import FakeJudge

from .conftest import client_for

ROWS = [{"output": f"Thank you for waiting ({n})."} for n in range(6)]


def test_the_reason_tag_is_parsed() -> None:
    fresh = judge_usage("Polite. [judge m, prompt is_polite@v1, 120+14 tokens, cost 0.00044]")
    assert fresh == JudgeUsage(judged=1, prompt_tokens=120, completion_tokens=14, cost=0.00044)
    assert judge_usage("Polite. [judge m for turing_small, prompt p@v1, cached]") == \
        JudgeUsage(cached=1)
    assert judge_usage("Polite. [judge m, prompt p@v1]") == JudgeUsage(judged=1)  # no usage
    assert judge_usage("The text contains [brackets] inside") is None
    assert judge_usage(None) is None


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_stats_count_tokens_cost_and_cache_savings(server_factory: Any, tmp_path: Path,
                                                   is_async: bool) -> None:
    with FakeJudge() as judge:
        server = server_factory(judge_url=judge.url, judge_model="judge-small",
                                judge_price_in=1.0, judge_price_out=2.0)
        with client_for(server, max_workers=4) as ev:
            first = evaluate_batch(ev, ROWS, ["is_polite"], is_async=is_async, progress=False,
                                   save=False)
            usage = first.stats.templates["is_polite"].judge
            assert usage.judged == 6 and usage.cached == 0 and len(judge.requests) == 6
            assert usage.prompt_tokens > 0 and usage.completion_tokens > 0
            expected = (usage.prompt_tokens * 1.0 + usage.completion_tokens * 2.0) / 1e6
            assert usage.cost == pytest.approx(expected, rel=1e-3)
            again = evaluate_batch(ev, ROWS, ["is_polite"], is_async=is_async, progress=False,
                                   save=False)
            assert again.stats.judge == JudgeUsage(cached=6)  # no tokens, no cost: no call
            assert not any(it.results["is_polite"].cached for it in first)
            assert all(it.results["is_polite"].cached for it in again)  # cached: true
            assert len(judge.requests) == 6
            stats = again.stats.to_dict()
            assert stats["judge"]["judge_calls_saved"] == 6
            assert stats["templates"]["is_polite"]["judge"]["cached"] == 6
            assert ("judge is_polite: 0 judged (0 prompt + 0 completion tokens), 6 from the "
                    "judge cache (judge calls saved)") in render_summary(again)


def test_run_shows_usage_in_stats_json_and_summary(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (C.ENV_BASE_URL, C.ENV_JUDGE_BASE_URL, C.ENV_JUDGE_MODEL):
        monkeypatch.delenv(name, raising=False)
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    stats_json = tmp_path / "stats.json"
    with FakeJudge() as judge:
        argv = ["run", str(rows), "--eval", "is_polite", "--eval", "tone", "--judge-url",
                judge.url, "--judge-model", "judge-small", "--judge-price-in", "0.5",
                "--judge-price-out", "1.5", "--stats-json", str(stats_json), "--no-progress"]
        assert main(argv) == 0
        out = capsys.readouterr().out
        assert "judge is_polite: 6 judged (" in out and "judge tone: 6 judged (" in out
        assert "judge total: 12 judged (" in out and ", cost " in out
        stats = json.loads(stats_json.read_text())
        assert stats["judge"]["judged"] == 12 and stats["judge"]["cost"] > 0
        assert stats["judge"]["prompt_tokens"] > 0
        journal = tmp_path / "run.journal"
        assert main([*argv, "--journal", str(journal)]) == 0  # the rerun: every call saved
        out = capsys.readouterr().out
        assert "judge total: 0 judged (0 prompt + 0 completion tokens), 12 from the " \
               "judge cache (judge calls saved)" in out
        assert json.loads(stats_json.read_text())["judge"]["judge_calls_saved"] == 12
        assert len(judge.requests) == 12
        assert main([*argv, "--journal", str(journal)]) == 0  # resumed from the journal
        resumed = json.loads(stats_json.read_text())
        assert resumed["resumed"] == 12 and len(judge.requests) == 12


def test_cached_outcomes_say_so_in_results_outputs_and_resumed_runs(server_factory: Any,
                                                                   tmp_path: Path) -> None:
    with FakeJudge() as judge:
        server = server_factory(judge_url=judge.url, judge_model="judge-small")
        with client_for(server, max_workers=4) as ev:
            assert ev.evaluate("is_polite", ROWS[0]).eval_results[0].cached is False
            again = ev.evaluate("is_polite", ROWS[0]).eval_results[0]
            assert again.cached is True and again.reason.endswith(", cached]")  # tag kept
            journal, output = tmp_path / "run.journal", tmp_path / "out.jsonl"
            options: dict[str, Any] = {"is_async": True, "journal": journal,
                                       "progress": False, "save": False}
            first = evaluate_batch(ev, ROWS, ["is_polite"], output=output, **options)
            expected = [True] + [False] * 5  # row 0 was judged above
            assert [it.results["is_polite"].cached for it in first] == expected
            lines = [json.loads(line) for line in output.read_text().splitlines()]
            assert [line["results"]["is_polite"].get("cached", False) for line in lines] == \
                expected  # absent when false: outputs of other servers stay as they were
            resumed = evaluate_batch(ev, ROWS, ["is_polite"], **options)  # re-attached by id
            assert resumed.stats.resumed == 6 and len(judge.requests) == 6
            assert [it.results["is_polite"].cached for it in resumed] == expected

        async def judged_twice() -> list[bool]:
            async with AsyncEvaluator(server.api_key, server.secret_key, server.url) as aev:
                runs = [await aev.evaluate("is_polite", ROWS[1]) for _ in range(2)]
            return [r.eval_results[0].cached for r in runs]

        assert asyncio.run(judged_twice()) == [True, True]  # row 1: judged by the batch
        compat = server_factory(judge_url=judge.url, judge_model="judge-small", compat=True)
        headers = {C.HEADER_API_KEY: compat.api_key, C.HEADER_SECRET_KEY: compat.secret_key}
        items = [requests.post(compat.url + C.PATH_NEW_EVAL, headers=headers, timeout=30,
                               json={"eval_name": "is_polite", "inputs": ROWS[2]}
                               ).json()["result"][0]["evaluations"][0] for _ in range(2)]
        assert items[1]["reason"].endswith(", cached]") and "cached" not in items[1]
