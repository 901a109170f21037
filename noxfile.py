"""``make test-pythons``: the suite that needs no model, on every other supported Python here.

``make test`` runs the whole suite (models included) on the default interpreter, the one of
``.venv``; ``make test-pythons`` runs it first, then this file's ``no_models`` session on each
other version of ``SUPPORTED_PYTHONS``: a fresh virtualenv under ``.nox/``,
``pip install -e '.[test-core]'`` (every extra but ``models``, plus the test tools), then pytest.
Tests that need onnxruntime skip there; the ``slow``-marked ones are left to ``make test``
(see ``NO_MODEL_PYTEST_ARGS``).

An interpreter the machine lacks is skipped with a message, never downloaded: nox looks on
``PATH``, where ``find_pythons`` puts pyenv's installed versions first (pyenv's shims run only
the versions selected by ``pyenv global``/``local``). ``.venv/bin/python -m nox -s
no_models-3.13`` runs one session; arguments after ``--`` replace ``NO_MODEL_PYTEST_ARGS``
(``-- -p no:cacheprovider`` runs the slow tests too).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import nox

SUPPORTED_PYTHONS = ("3.11", "3.12", "3.13")
"""Keep in step with ``python_requires`` and the classifiers in setup.cfg (a test checks)."""

DEFAULT_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
"""The interpreter nox runs on (``.venv``'s under make): ``make test`` covers it."""

OTHER_PYTHONS = [version for version in SUPPORTED_PYTHONS if version != DEFAULT_PYTHON]

NO_MODEL_PYTEST_ARGS = ("-m", "not slow", "-p", "no:cacheprovider")
"""The slow tests (fresh venvs, kill -9 and fault runs) stay in ``make test``; the cache
provider is off so that sessions never write the tree's ``.pytest_cache``."""


def runs(executable: str | Path, version: str) -> bool:
    """Whether ``executable`` starts and is Python ``version`` (a pyenv shim may refuse)."""
    probe = "import sys; print('%d.%d' % sys.version_info[:2])"
    try:
        done = subprocess.run([str(executable), "-c", probe], capture_output=True, text=True,
                              timeout=30, check=False, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0 and done.stdout.strip() == version


def find_pythons(versions: list[str]) -> dict[str, str]:
    """For each version whose ``pythonX.Y`` on ``PATH`` does not run, the ``bin`` folder of
    pyenv's newest installed ``X.Y.*`` that does (``$PYENV_ROOT``, else ``~/.pyenv``)."""
    root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"
    found: dict[str, str] = {}
    for version in versions:
        on_path = shutil.which(f"python{version}")
        if on_path is not None and runs(on_path, version):
            continue
        installed = sorted(root.glob(f"{version}.*/bin/python{version}"), reverse=True,
                           key=lambda p: [int(n) for n in re.findall(r"\d+", p.parts[-3])])
        for executable in installed:
            if runs(executable, version):
                found[version] = str(executable.parent)
                break
    return found


# `make test-pythons` starts nox in the background of make's shell, and a non-interactive shell
# starts background commands with SIGINT ignored: inherited by every process below, it would
# leave the suite's children without Ctrl-C (Python installs no KeyboardInterrupt handler for
# an ignored SIGINT), and the tests that stop one with Ctrl-C would wait forever. A handler is
# reset to the default in the processes nox starts.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

os.environ["PATH"] = os.pathsep.join([*find_pythons(OTHER_PYTHONS).values(),
                                      os.environ.get("PATH", "")])

nox.options.sessions = ["no_models"]
nox.options.download_python = "never"
nox.options.error_on_missing_interpreters = False  # a missing Python is a skip, also on CI
# The sessions run at the same time, each in its own subprocess (nox prints a session's output
# when it ends): the suite mostly waits on its servers (one session used ~30% of one core), so
# two at once take about the time of one.
nox.options.parallel = max(1, len(OTHER_PYTHONS))


@nox.session(python=OTHER_PYTHONS, allow_parallel=True)
def no_models(session: nox.Session) -> None:
    """The test suite without the models extra on this Python."""
    session.install("--disable-pip-version-check", "-q", "-e", ".[test-core]")
    session.run("python", "-m", "pytest", *(session.posargs or NO_MODEL_PYTEST_ARGS))
