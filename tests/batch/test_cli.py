"""``fi-evals run``, ``templates`` and ``result``: exit codes, the embedded server, Ctrl-C."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from _helpers import metric_sum

from fi_evals import _constants as C
from fi_evals.cli import COMMANDS, build_parser, main

from .conftest import rows
from .test_resume import _count


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows(30)))
    return path


@pytest.fixture(autouse=True)
def _embedded(monkeypatch: pytest.MonkeyPatch) -> None:
    """No FI_BASE_URL: every command starts (and stops) its own embedded server."""
    monkeypatch.delenv(C.ENV_BASE_URL, raising=False)


def test_exit_0_when_thresholds_hold_1_when_they_fail(data: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    base = ["run", str(data), "--eval", "is_json", "--map", "text=tool_call", "--no-progress"]
    stats = tmp_path / "stats.json"
    assert main([*base, "--threshold", "is_json=0.6", "--stats-json", str(stats)]) == 0
    out = capsys.readouterr().out
    assert "30 items x 1 evals" in out and "PASS is_json.pass_rate 0.667" in out
    assert json.loads(stats.read_text())["passed"] is True
    assert main([*base, "--threshold", "is_json=0.9"]) == 1
    assert "FAIL is_json.pass_rate" in capsys.readouterr().out
    assert main(base) == 0  # no threshold: the run itself is the check


def test_config_file_and_per_eval_maps(data: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "evals.json"
    config.write_text(json.dumps({
        "evals": ["is_json", {"eval": "fuzzy_match", "label": "close"}],
        "map": {"text": "tool_call", "close": {"output": "answer", "expected": "reference"}},
        "thresholds": {"close": 0.5}, "workers": 2}))
    out_csv = tmp_path / "out.csv"
    code = main(["run", str(data), "--config", str(config), "--eval", "short=length_less_than:"
                 "max_length=100", "--map", "short.text=answer", "--output", str(out_csv),
                 "--no-progress"])
    assert code == 0
    out = capsys.readouterr().out
    assert "close" in out and "short" in out and "30/30" in out
    header = out_csv.read_text().splitlines()[0]
    assert "close.output" in header and "short.output" in header


@pytest.mark.parametrize("argv", [
    ["--eval", "is_jsn"],                      # unknown template
    ["--eval", "contains"],                    # missing parameter
    [],                                        # no eval at all
    ["--eval", "is_json", "--map", "text"],    # malformed --map
    ["--eval", "is_json", "--threshold", "nope=0.5"],
    ["--eval", "is_json", "--workers", "0"],   # argparse refuses
])
def test_usage_errors_exit_2(argv: list[str], data: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        raise SystemExit(main(["run", str(data), *argv, "--no-progress"]))
    assert exited.value.code == 2
    assert "error" in capsys.readouterr().err


def test_missing_file_and_journal_mismatch_exit_2(data: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(tmp_path / "nope.jsonl"), "--eval", "is_json"]) == 2
    journal = str(tmp_path / "j.journal")
    base = ["run", str(data), "--map", "text=tool_call", "--journal", journal, "--no-progress"]
    assert main([*base, "--eval", "is_json"]) == 0
    assert main([*base, "--eval", "one_line"]) == 2
    assert "another batch" in capsys.readouterr().err


def test_templates_and_result(data: Path, tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["templates"]) == 0
    listing = capsys.readouterr().out
    assert "is_json" in listing and "groundedness" in listing
    assert main(["templates", "--json"]) == 0
    names = {t["name"] for t in json.loads(capsys.readouterr().out)}
    assert {"is_json", "fuzzy_match"} <= names
    state, output = tmp_path / "state", tmp_path / "o.jsonl"
    assert main(["run", str(data), "--eval", "is_json", "--map", "text=tool_call",
                 "--state", str(state), "--output", str(output), "--no-progress"]) == 0
    eval_id = json.loads(output.read_text().splitlines()[1])["results"]["is_json"]["eval_id"]
    capsys.readouterr()
    assert main(["result", eval_id, "--state", str(state)]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["result"]["eval_status"] == "completed"
    assert payload["result"]["result"]["value"] == "Passed"
    assert main(["result", "00000000-0000-4000-8000-000000000000", "--state", str(state)]) == 1


def test_installed_command_end_to_end(data: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != C.ENV_BASE_URL}
    done = subprocess.run([sys.executable, "-m", "fi_evals.cli", "run", str(data), "--eval",
                           "is_json", "--map", "text=tool_call", "--threshold", "is_json=0.5"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "embedded server on http://127.0.0.1:" in done.stderr
    assert "evaluating" in done.stderr  # the progress bar
    assert "thresholds: PASS" in done.stdout


@pytest.mark.slow
def test_ctrl_c_prints_partial_summary_and_keeps_the_journal_usable(
        server_factory: Callable[..., Any], tmp_path: Path) -> None:
    server = server_factory(sim_latency_ms=20, workers=2, access_log=False)
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows(200)))
    journal = tmp_path / "j.journal"
    env = {**os.environ, C.ENV_BASE_URL: server.url, C.ENV_API_KEY: server.api_key,
           C.ENV_SECRET_KEY: server.secret_key}
    cmd = [sys.executable, "-m", "fi_evals.cli", "run", str(data), "--eval", "one_line",
           "--map", "text=answer", "--journal", str(journal), "--chunk-size", "5",
           "--workers", "2", "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    end = time.monotonic() + 30
    while _count(journal, "ids") < 4 and time.monotonic() < end and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1, err.decode()
    assert "INTERRUPTED" in out.decode() and "200 items" not in out.decode()
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
    assert again.returncode == 0, again.stderr
    assert "200 items x 1 evals" in again.stdout and "resumed" in again.stdout
    assert metric_sum(server, "fi_evals_evaluations_total") == 200


def test_help_lists_every_command_and_each_imports_only_its_module(
        capsys: pytest.CaptureFixture[str]) -> None:
    # The registry's help is each module's own (one text per command, said once).
    full = build_parser()
    choices = next(a for a in full._actions if isinstance(a, argparse._SubParsersAction))
    assert [c.dest for c in choices._choices_actions] == list(COMMANDS)
    assert {c.dest: c.help for c in choices._choices_actions} == {
        name: command.help for name, command in COMMANDS.items()}
    with pytest.raises(SystemExit) as stop:
        main(["--help"])
    assert stop.value.code == 0
    listing = capsys.readouterr().out
    assert all(name in listing for name in COMMANDS)
    assert "run the reference evaluation server" in listing
    # A command builds its own module's parsers; the rest are names in the listing.
    code = ("import sys\nfrom fi_evals.cli import main\n"
            "try:\n    main(['diff', '--help'])\nexcept SystemExit:\n    pass\n"
            "print(' '.join(sorted(m for m in sys.modules if m.startswith('fi_evals.cli.'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    command_modules = {f"fi_evals.cli.{c.module}" for c in COMMANDS.values()}
    assert command_modules & set(out.split()) == {"fi_evals.cli.runs"}
