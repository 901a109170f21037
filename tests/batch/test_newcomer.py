"""The newcomer's path, end to end, through the installed ``fi-evals`` command in subprocesses:
a 50-row JSONL of their own, the templates, the usual mistakes, a judge, errors and faults.
Every step reads the exit status and the words a person would read."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fi_evals import _constants as C
from tests.models.fake_judge import FakeJudge

CAPITALS = [("France", "Paris"), ("Italy", "Rome"), ("Spain", "Madrid"), ("Japan", "Tokyo"),
            ("Peru", "Lima")]


def _rows() -> list[dict[str, Any]]:
    rows = []
    for i in range(50):
        country, city = CAPITALS[i % len(CAPITALS)]
        answer = (f"{city} is the capital of {country}." if i % 4 else
                  f"I think it is probably {city}, which has been the seat of government of "
                  f"{country} for a long time.")
        rows.append({"id": i, "question": f"What is the capital of {country}?",
                     "answer": answer})
    return rows


def _fi_evals(*args: str, env: dict[str, str], stdin: str | None = None,
              timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fi_evals.cli", *args], input=stdin,
                          capture_output=True, text=True, env=env, timeout=timeout)


@pytest.mark.slow
def test_the_newcomer_path(tmp_path: Path, server_factory: Callable[..., Any]) -> None:
    data = tmp_path / "mine.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in _rows()))
    env = {k: v for k, v in os.environ.items()
           if k not in (C.ENV_BASE_URL, C.ENV_JUDGE_BASE_URL, C.ENV_JUDGE_MODEL)}

    # What can I run here?
    listing = _fi_evals("templates", env=env)
    assert listing.returncode == 0, listing.stderr
    assert "run here" in listing.stdout and "--judge-url URL" in listing.stdout

    # Two evals reading `text` from two fields: the unscoped form is refused...
    mixed = ["run", str(data), "--eval", "contains:keyword=capital", "--map", "text=question",
             "--eval", "length_less_than:max_length=40", "--map", "text=answer",
             "--no-progress"]
    done = _fi_evals(*mixed, env=env)
    assert done.returncode == 2 and "--map contains.text=question" in done.stderr
    # ...and the scoped form scores each eval on its own field.
    out = tmp_path / "scored.jsonl"
    done = _fi_evals("run", str(data), "--eval", "contains:keyword=capital", "--map",
                     "contains.text=question", "--eval", "length_less_than:max_length=40",
                     "--map", "length_less_than.text=answer", "--output", str(out),
                     "--no-progress", env=env)
    assert done.returncode == 0, done.stderr
    scored = [json.loads(line) for line in out.read_text().splitlines()]
    assert all(r["results"]["contains"]["output"] == "Passed" for r in scored)
    long_ones = {r["index"] for r in scored if r["results"]["length_less_than"]["output"]
                 == "Failed"}
    assert long_ones == {i for i in range(50) if i % 4 == 0}
    assert done.stdout.rstrip().splitlines()[-1] == "exit 0: PASS: every outcome is a verdict"
    assert "item 0 (mine.jsonl line 1)" in done.stdout  # failing rows on screen

    # A typo in a field name.
    done = _fi_evals("run", str(data), "--eval", "is_json", "--map", "text=answr",
                     "--no-progress", env=env)
    assert done.returncode == 2 and "Did you mean 'answer'?" in done.stderr

    # A judge template without a judge, then with one from the same command.
    done = _fi_evals("run", str(data), "--eval", "is_polite", "--map", "output=answer",
                     "--no-progress", env=env)
    assert done.returncode == 2 and "--judge-url URL --judge-model NAME" in done.stderr
    with FakeJudge() as judge:
        done = _fi_evals("run", str(data), "--eval", "is_polite", "--map", "output=answer",
                         "--judge-url", judge.url, "--judge-model", "judge-small",
                         "--no-progress", env=env)
    assert done.returncode == 0, done.stderr
    assert "is_polite" in done.stdout and "50/50" in done.stdout

    # Rows that cannot be scored: exit 1, the reasons on screen, the way out named.
    broken = tmp_path / "broken.jsonl"
    broken.write_text(data.read_text() + '{"id": 50, "question": "?", "answer": ""}\n')
    done = _fi_evals("run", str(broken), "--eval", "is_json", "--map", "text=answer",
                     "--no-progress", env=env)
    assert done.returncode == 1
    assert "InvalidInputError" in done.stdout and "broken.jsonl line 51" in done.stdout
    assert done.stdout.rstrip().splitlines()[-1].startswith("exit 1: FAIL: 1 of 51 outcomes")
    done = _fi_evals("run", str(broken), "--eval", "is_json", "--map", "text=answer",
                     "--max-error-rate", "0.05", "--no-progress", env=env)
    assert done.returncode == 0

    # A flaky server: every row still gets its verdict.
    server = server_factory(faults="500:0.05,429:0.02,reset:0.01", fault_seed=11,
                            access_log=False)
    remote = {**env, C.ENV_BASE_URL: server.url, C.ENV_API_KEY: server.api_key,
              C.ENV_SECRET_KEY: server.secret_key}
    done = _fi_evals("run", str(data), "--eval", "is_json", "--map", "text=answer",
                     "--chunk-size", "5", "--no-progress", env=remote)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "50/50" in done.stdout
