"""The pytest plugin (fi_evals/pytest_plugin.py) and fi_evals.testing.

``assert_eval`` runs in-process against the shared loopback server; the plugin itself runs as a
user runs it: ``python -m pytest`` in a subprocess on a small test folder, its embedded server
started by the plugin (FI_BASE_URL unset), also under pytest-xdist (``-n 2``).
"""

from __future__ import annotations

import configparser
import os
import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path

import pytest

import fi_evals
from fi_evals import Evaluator
from fi_evals import _constants as C
from fi_evals.server.runner import RunningServer
from fi_evals.testing import assert_eval, load_dataset

ROOT = Path(fi_evals.__file__).resolve().parents[1]
RUN_TIMEOUT = 120


@pytest.fixture(scope="module")
def ev(live_server: RunningServer) -> Evaluator:
    with Evaluator(live_server.api_key, live_server.secret_key, live_server.url,
                   timeout=60) as evaluator:
        yield evaluator


def _plugin_installed() -> bool:
    return any(ep.value == "fi_evals.pytest_plugin"
               for ep in metadata.entry_points(group="pytest11"))


def run_pytest(folder: Path, *args: str, env: dict[str, str] | None = None,
               ) -> subprocess.CompletedProcess[str]:
    """``python -m pytest`` in ``folder`` with the plugin (by entry point once installed)."""
    base = {k: v for k, v in os.environ.items()
            if k not in (C.ENV_BASE_URL, "PYTEST_ADDOPTS", "PYTEST_XDIST_WORKER")}
    base["PYTHONPATH"] = os.pathsep.join([str(ROOT), base.get("PYTHONPATH", "")])
    base.update(env or {})
    plugin = [] if _plugin_installed() else ["-p", "fi_evals.pytest_plugin"]
    return subprocess.run([sys.executable, "-m", "pytest", *plugin, "-p", "no:cacheprovider",
                           "--rootdir", str(folder), "-q", *args], check=False, cwd=folder,
                          capture_output=True, text=True, env=base, timeout=RUN_TIMEOUT)


# ------------------------------------------------------------------ assert_eval, in-process

def test_assert_eval_passes_and_returns_the_verdict(ev: Evaluator) -> None:
    verdict = assert_eval('{"a": 1}', "is_json", evaluator=ev)  # text-only: output -> text
    assert verdict.passed and verdict.score == 1.0 and verdict.eval_id
    close = assert_eval("hello world", "fuzzy_match", threshold=0.8, expected="hello world!",
                        evaluator=ev)  # output -> output, expected by name
    assert close.score >= 0.8


def test_assert_eval_failure_shows_verdict_score_and_reason(ev: Evaluator) -> None:
    with pytest.raises(AssertionError) as caught:
        assert_eval("not json", "is_json", evaluator=ev)
    message = str(caught.value)
    assert "is_json did not pass: verdict Failed, score 0 < threshold 1" in message
    assert "reason: " in message and "(none given)" not in message
    assert "eval_id: " in message
    with pytest.raises(AssertionError, match=r"verdict Failed, score 0\.\d+ < threshold 0\.99"):
        assert_eval("hello", "fuzzy_match", threshold=0.99, expected="help", evaluator=ev)


def test_assert_eval_template_parameters_and_bad_input(ev: Evaluator) -> None:
    assert_eval("the cat sat", "contains", keyword="cat", evaluator=ev)
    with pytest.raises(TypeError, match="given twice"):
        assert_eval("a", "is_json", text="b", evaluator=ev)
    with pytest.raises(TypeError, match="no output-like key"):
        assert_eval("a", "pii", evaluator=ev)


# ------------------------------------------------------------------ the dataset helper

def test_load_dataset_ids_and_errors(tmp_path: Path) -> None:
    good = tmp_path / "good.jsonl"
    good.write_text('{"id": "a", "x": 1}\n\n{"x": 2}\n{"id": 7}\n', "utf-8")
    rows, ids = load_dataset(good)
    assert ids == ["a", "line3", "7"] and rows[1] == {"x": 2}
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a"}\n[1]\n', "utf-8")
    with pytest.raises(ValueError, match=r"bad.jsonl:2: expected a JSON object"):
        load_dataset(bad)
    bad.write_text('{"id": "a"}\n{oops\n', "utf-8")
    with pytest.raises(ValueError, match=r"bad.jsonl:2: not JSON"):
        load_dataset(bad)
    bad.write_text('{"id": "a"}\n{"id": "a"}\n', "utf-8")
    with pytest.raises(ValueError, match="id 'a' already used on line 1"):
        load_dataset(bad)


# ------------------------------------------------------------------ the plugin, as users run it

USER_TESTS = '''
    import sys

    from fi_evals.testing import assert_eval, eval_dataset


    def test_fixture(fi_evaluator):
        assert fi_evaluator.base_url.startswith("http://127.0.0.1:")
        assert fi_evaluator.evaluate("is_json", {"text": "{}"}).ok


    @eval_dataset("cases.jsonl")
    def test_cases(row):
        assert_eval(row["output"], "fuzzy_match", threshold=0.8, expected=row["expected"])
'''
CASES = ('{"id": "close", "output": "Paris is the capital", "expected": "Paris is the capital."}\n'
         '{"id": "far", "output": "Lyon", "expected": "Paris is the capital of France"}\n'
         '{"output": "same", "expected": "same"}\n')


@pytest.fixture
def user_folder(tmp_path: Path) -> Path:
    (tmp_path / "test_user.py").write_text(textwrap.dedent(USER_TESTS), "utf-8")
    (tmp_path / "cases.jsonl").write_text(CASES, "utf-8")
    return tmp_path


def test_the_plugin_is_declared_as_a_pytest11_entry_point() -> None:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg", encoding="utf-8")
    assert "fi_evals = fi_evals.pytest_plugin" in cfg["options.entry_points"]["pytest11"]


def test_dataset_ids_and_failure_message_under_pytest(user_folder: Path) -> None:
    listed = run_pytest(user_folder, "--collect-only")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    for ident in ("test_cases[close]", "test_cases[far]", "test_cases[line3]"):
        assert f"test_user.py::{ident}" in listed.stdout
    done = run_pytest(user_folder)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "1 failed, 3 passed" in done.stdout, done.stdout
    assert "FAILED test_user.py::test_cases[far]" in done.stdout
    assert "fuzzy_match did not pass: verdict Failed, score 0." in done.stdout
    assert "< threshold 0.8" in done.stdout and "reason: Sequence similarity" in done.stdout


@pytest.mark.slow
def test_safe_under_xdist(user_folder: Path) -> None:
    done = run_pytest(user_folder, "-n", "2", "-p", "xdist")
    assert "1 failed, 3 passed" in done.stdout, done.stdout + done.stderr


def test_plugin_starts_and_imports_nothing_unless_used(tmp_path: Path) -> None:
    (tmp_path / "test_plain.py").write_text(textwrap.dedent('''
        import sys, threading

        def test_nothing_loaded(request):
            assert request.config.pluginmanager.has_plugin("fi_evals") or \\
                request.config.pluginmanager.has_plugin("fi_evals.pytest_plugin")
            ours = sorted(m for m in sys.modules if m.split(".")[0] == "fi_evals")
            assert ours == ["fi_evals", "fi_evals._version", "fi_evals.pytest_plugin"]
            assert [t.name for t in threading.enumerate()] == ["MainThread"]
    '''), "utf-8")
    done = run_pytest(tmp_path, "-p", "no:xdist")
    assert "1 passed" in done.stdout, done.stdout + done.stderr
    fixtures = run_pytest(tmp_path, "--fixtures")
    assert "fi_evaluator [session scope]" in fixtures.stdout, fixtures.stdout


def test_fixture_uses_fi_base_url_when_set(tmp_path: Path, live_server: RunningServer) -> None:
    (tmp_path / "test_env.py").write_text(textwrap.dedent(f'''
        def test_env(fi_evaluator):
            assert fi_evaluator.base_url == "{live_server.url}"
    '''), "utf-8")
    done = run_pytest(tmp_path, env={C.ENV_BASE_URL: live_server.url,
                                     C.ENV_API_KEY: live_server.api_key,
                                     C.ENV_SECRET_KEY: live_server.secret_key})
    assert "1 passed" in done.stdout, done.stdout + done.stderr
