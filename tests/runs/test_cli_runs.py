"""The command line as a user runs it: ``fi-evals run`` keeps runs; ``runs``, ``view``, ``diff``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import requests

from fi_evals import _constants as C
from fi_evals.cli import main
from fi_evals.runs import RunStore


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty FI_EVALS_HOME, the embedded server, and a working directory of its own."""
    monkeypatch.delenv(C.ENV_BASE_URL, raising=False)
    monkeypatch.setenv(C.ENV_HOME, str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    return tmp_path / "home"


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "answers.jsonl"
    path.write_text("".join(json.dumps({"id": i, "answer": '{"a": %d}' % i if i % 4 else "oops"})
                            + "\n" for i in range(20)))
    return path


RUN = ["--eval", "is_json", "--map", "text=answer", "--no-progress"]


def test_every_run_is_kept_unless_no_save(home: Path, data: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    junit, summary = tmp_path / "report.xml", tmp_path / "summary.md"
    assert main(["run", str(data), *RUN, "--name", "main", "--junit", str(junit),
                 "--summary-md", str(summary)]) == 0
    out = capsys.readouterr().out
    (run,) = RunStore(home / "runs").runs()
    assert run.name == "main" and run.rows == 20 and run.verdict == "PASS"
    assert f"run: {run.id}  (fi-evals view {run.id})" in out
    assert run.meta["command"].startswith("fi-evals ")
    assert (home / "runs" / ".gitignore").exists()
    suite = ET.parse(junit).getroot().find("testsuite[@name='is_json']")
    assert suite is not None and suite.get("failures") == "5" and suite.get("tests") == "20"
    assert summary.read_text().startswith("### fi-evals: \u2705 PASS")
    assert main(["run", str(data), *RUN, "--no-save"]) == 0
    assert len(RunStore(home / "runs").runs()) == 1
    other = tmp_path / "elsewhere"
    assert main(["run", str(data), *RUN, "--runs-dir", str(other)]) == 0
    (kept,) = RunStore(other).runs()
    assert f"(fi-evals view {kept.folder})" in capsys.readouterr().out


def test_store_options_from_a_config_file(home: Path, data: Path, tmp_path: Path) -> None:
    config = tmp_path / "evals.yaml"
    config.write_text(f"evals: [is_json]\nmap: {{text: answer}}\nrun_name: nightly\n"
                      f"junit: {tmp_path / 'j.xml'}\nsummary_md: {tmp_path / 's.md'}\n")
    assert main(["run", str(data), "--config", str(config), "--no-progress"]) == 0
    (run,) = RunStore(home / "runs").runs()
    assert run.name == "nightly"
    assert (tmp_path / "j.xml").exists() and (tmp_path / "s.md").exists()
    config.write_text("evals: [is_json]\nmap: {text: answer}\nsave: false\nrun_name: x\n")
    assert main(["run", str(data), "--config", str(config), "--no-progress"]) == 0
    assert len(RunStore(home / "runs").runs()) == 1  # save: false wins over the name
    config.write_text("evals: [is_json]\nmap: {text: answer}\nsave: maybe\n")
    assert main(["run", str(data), "--config", str(config), "--no-progress"]) == 2
    assert main(["run", str(data), *RUN, "--name", "no/slash"]) == 2


def test_runs_lists_and_prunes(home: Path, data: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["runs"]) == 0
    assert "no runs in" in capsys.readouterr().out
    for name in ("a", "b", "c"):
        main(["run", str(data), *RUN, "--name", name, "--threshold", "is_json=0.9"])
    capsys.readouterr()
    assert main(["runs"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["run", "name", "when", "rows", "pass", "rate", "per", "eval",
                                "verdict"]
    assert [line.split()[1] for line in lines[1:4]] == ["a", "b", "c"]
    assert "is_json 75.0%" in lines[1] and lines[1].rstrip().endswith("FAIL")
    assert main(["runs", "--json"]) == 0
    assert [m["name"] for m in json.loads(capsys.readouterr().out)] == ["a", "b", "c"]
    assert main(["runs", "--prune", "1"]) == 0
    assert "2 run(s) removed, 1 kept" in capsys.readouterr().out
    assert [r.name for r in RunStore(home / "runs").runs()] == ["c"]


def test_view_export_and_unknown_runs(home: Path, data: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["view", "--no-open"]) == 2
    assert "no runs in" in capsys.readouterr().err
    main(["run", str(data), *RUN, "--name", "main"])
    report = tmp_path / "report.html"
    assert main(["view", "main", "--export", str(report), "--export-rows", "5"]) == 0
    text = report.read_text()
    assert "of its 20 rows (errored and failing first)" in text and "src=" not in text
    assert main(["view", "nope", "--no-open"]) == 2
    assert "no run 'nope'" in capsys.readouterr().err


def test_view_serves_until_ctrl_c(home: Path, data: Path) -> None:
    assert main(["run", str(data), *RUN, "--name", "main"]) == 0
    # Ctrl-C as a terminal sends it: the child starts with SIGINT at its default even when
    # this run was started with it ignored (a background job of a shell script).
    proc = subprocess.Popen([sys.executable, "-m", "fi_evals.cli", "view", "main", "--no-open"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("fi-evals view serving ") and "(Ctrl-C to stop)" in line
        url = line.split(" on ")[1].split()[0]
        assert url.startswith("http://127.0.0.1:")
        (run,) = requests.get(url + "api/runs", timeout=10).json()["runs"]
        assert run["name"] == "main" and run["rows"] == 20
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate(timeout=10)
            pytest.fail(f"fi-evals view did not stop within 30 s of Ctrl-C; stderr:\n{err}")
        assert code == 0, proc.communicate(timeout=10)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
