"""``fi-evals serve --evaluators MODULE:ATTR`` (issue 17, 4c): the user's evaluators in a real
``fi-evals serve`` process, loaded by the one loader ``fi-evals worker`` uses, running under
the hardening issue's isolation (child processes, per-item time limit) and door limits."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import requests
from _helpers import ServeProcess

from fi_evals import _constants as C
from fi_evals.cli import build_parser
from fi_evals.server.evaluators import load_evaluators

pytestmark = pytest.mark.slow

MODULE = '''
import os, time
from fi_evals.catalogue import CATALOGUE
from fi_evals.server.evaluators import BaseEvaluator, Outcome


class Shouting(BaseEvaluator):
    """one_line, replaced: passes when the text is upper case; says which process ran it."""
    template = CATALOGUE["one_line"]
    isolation = "always"

    def evaluate(self, inputs, params, model=None):
        if inputs["text"] == "hang":
            time.sleep(60)
        return Outcome("Passed" if inputs["text"].isupper() else "Failed", f"pid {os.getpid()}")


class InProcess(BaseEvaluator):
    template = CATALOGUE["is_email"]

    def evaluate(self, inputs, params, model=None):
        return Outcome("Passed", f"pid {os.getpid()}")


EVALUATORS = [Shouting(), InProcess()]
NOT_AN_EVALUATOR = [object()]


class Unknown(BaseEvaluator):
    template = CATALOGUE["one_line"].__class__("no_such_template", "", (), "Pass/Fail", "judge")


UNKNOWN = Unknown()
'''


@pytest.fixture
def module_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "my_evaluators.py").write_text(MODULE)
    monkeypatch.chdir(tmp_path)  # imported from the working directory, as a user's would be
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def _post(proc: ServeProcess, name: str, texts: list[str]) -> list[dict[str, object]]:
    r = requests.post(proc.url + C.PATH_NEW_EVAL, headers=proc.headers, timeout=60,
                      json={"eval_name": name, "inputs": {"text": texts}})
    assert r.status_code == 200, r.text
    return r.json()["result"][0]["evaluations"]


def test_serve_runs_them_isolated_with_the_limits(module_dir: Path) -> None:
    with ServeProcess(module_dir / "e.db", "--evaluators", "my_evaluators:EVALUATORS",
                      "--isolation-item-seconds", "1", "--max-json-depth", "4") as proc:
        server_pid = proc.proc.pid
        loud, quiet, hung = _post(proc, "one_line", ["LOUD", "quiet", "hang"])
        assert (loud["output"], quiet["output"]) == ("Passed", "Failed")
        child = int(str(loud["reason"]).split()[1])
        assert child != server_pid  # isolation = "always": an isolated child process ran it
        assert hung["eval_status"] == "failed"
        assert "exceeded the 1 s per-item time limit" in str(hung["error_message"])
        email = _post(proc, "is_email", ["not an address"])[0]
        assert email["output"] == "Passed" and email["reason"] == f"pid {server_pid}"
        # the door limits hold for them as for built-ins: too deep a body is a 400
        deep = requests.post(proc.url + C.PATH_NEW_EVAL, headers=proc.headers, timeout=30,
                             json={"eval_name": "one_line",
                                   "inputs": {"text": "x"}, "config": {"params": {
                                       "a": {"b": {"c": {"d": {}}}}}}})
        assert deep.status_code == 400 and "depth" in deep.text
        proc.terminate()
        assert proc.wait() == 0


@pytest.mark.parametrize(("ref", "says"), [
    ("nope_module:EVALUATORS", "cannot import module 'nope_module'"),
    ("my_evaluators:MISSING", "has no attribute 'MISSING'"),
    ("my_evaluators:NOT_AN_EVALUATOR", "which is not a BaseEvaluator"),
    ("my_evaluators:UNKNOWN", "which the catalogue does not list"),
    ("my_evaluators", "write MODULE:ATTR"),
])
def test_a_bad_reference_exits_2_saying_what_to_do(module_dir: Path, ref: str, says: str) -> None:
    done = subprocess.run([sys.executable, "-m", "fi_evals.cli", "serve", "--port", "0", "--db",
                           str(module_dir / "x.db"), "--evaluators", ref],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert says in done.stderr


@pytest.mark.unit
def test_serve_and_worker_share_the_option_and_the_loader(module_dir: Path) -> None:
    parser = build_parser()
    for command in ("serve", "worker"):
        args = parser.parse_args([command, "--evaluators", "my_evaluators:EVALUATORS",
                                  *(["--backend", "redis://127.0.0.1:1/0"]
                                    if command == "worker" else [])])
        assert args.evaluators == ["my_evaluators:EVALUATORS"]
    loaded = load_evaluators(["my_evaluators:EVALUATORS"])
    assert [e.template.name for e in loaded] == ["one_line", "is_email"]
