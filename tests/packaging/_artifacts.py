"""The release artifacts as ``make dist`` builds them, from a copy of what a clone holds.

The files a fresh clone of the work tree would hold (``git ls-files``: tracked and untracked,
not ignored) are copied to a temporary folder and ``make dist`` runs there, with the test's own
interpreter (``PY=``, which has the ``dist`` extra through ``test``) and no install step
(``DIST_STAMP=``). So the artifacts come from the Makefile's own recipe, the work tree is left
alone, and a stale ``*.egg-info`` or ``build/`` in it cannot leak into them.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
"""The repository root (wherever it was cloned)."""

BUILD_TIMEOUT = 300.0
"""``make dist`` takes ~10 s here (two isolated builds, each installing setuptools)."""

UNCOPIED = shutil.ignore_patterns(".git", ".venv", ".nox", "dist", "build", "*.egg-info",
                                  "__pycache__", "*.pyc", ".pytest_cache", ".hypothesis")
"""What a clone would not have, for trees that are not git work trees."""


@dataclass(frozen=True)
class Artifacts:
    """What ``make dist`` built, and the copy of the tree it built them from."""

    source: Path
    sdist: Path
    wheel: Path


def clone_files(repo: Path) -> list[str] | None:
    """The paths a clone of ``repo`` with its uncommitted work would hold (None: not git)."""
    try:
        done = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                               "--exclude-standard"], cwd=repo, capture_output=True, timeout=60,
                              check=False, stdin=subprocess.DEVNULL)
    except OSError:
        return None
    if done.returncode != 0:
        return None
    return [name for name in done.stdout.decode("utf-8").split("\0") if name]


def copy_tree(repo: Path, target: Path) -> None:
    """Copy what a clone holds (files deleted but still in git's index are skipped)."""
    names = clone_files(repo)
    if names is None:
        shutil.copytree(repo, target, ignore=UNCOPIED, dirs_exist_ok=True)
        return
    for name in names:
        source = repo / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


def make_dist(source: Path) -> Artifacts:
    """Copy the tree to ``source`` and run ``make dist`` there; fail the test with its output
    unless it builds one sdist and one wheel and ``twine check --strict`` passes (the recipe's
    last step)."""
    if shutil.which("make") is None:
        pytest.fail("make is not installed: the artifacts are built by `make dist`")
    copy_tree(REPO, source)
    cmd = ["make", "--no-print-directory", "-C", str(source), "dist", f"PY={sys.executable}",
           "DIST_STAMP="]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=BUILD_TIMEOUT,
                          check=False, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} exited {done.returncode}\n--- stdout\n{done.stdout[-6000:]}"
                    f"\n--- stderr\n{done.stderr[-6000:]}")
    sdists = sorted((source / "dist").glob("fi_evals-*.tar.gz"))
    wheels = sorted((source / "dist").glob("fi_evals-*.whl"))
    assert len(sdists) == 1 and len(wheels) == 1, sorted((source / "dist").iterdir())
    return Artifacts(source=source, sdist=sdists[0], wheel=wheels[0])
