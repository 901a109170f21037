"""noxfile.py (``make test-pythons``): which interpreters its sessions get, on a fake pyenv."""

from __future__ import annotations

import importlib.util
import os
import stat
import sys
from pathlib import Path
from types import ModuleType

import pytest
from _artifacts import REPO

pytestmark = pytest.mark.unit  # no server, no model: `make unit` runs this file


nox_registry = pytest.importorskip("nox.registry",
                                   reason="nox comes with the test extra (make test-pythons)")


def fake_python(path: Path, prints: str, code: int = 0) -> Path:
    """An executable that answers the version probe with ``prints`` and exits ``code``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\necho {prints}\nexit {code}\n", "utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def load_noxfile(monkeypatch: pytest.MonkeyPatch, path_dirs: list[Path],
                 pyenv_root: Path) -> ModuleType:
    """Import noxfile.py with this ``PATH`` and ``PYENV_ROOT`` (both restored afterwards, and
    nox's session registry)."""
    monkeypatch.setenv("PATH", os.pathsep.join(str(d) for d in path_dirs))
    monkeypatch.setenv("PYENV_ROOT", str(pyenv_root))
    monkeypatch.setattr(nox_registry, "_REGISTRY", {})
    spec = importlib.util.spec_from_file_location("noxfile_under_test", REPO / "noxfile.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pyenv_versions_are_found_and_broken_ones_skipped(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """pyenv's newest working X.Y.* is put on PATH; a python3.13 that fails is not; a working
    ``pythonX.Y`` already on PATH is left to nox."""
    root = tmp_path / "pyenv"
    fake_python(root / "versions/3.12.1/bin/python3.12", "3.12")
    fake_python(root / "versions/3.12.10/bin/python3.12", "3.12")
    fake_python(root / "versions/3.13.0/bin/python3.13", "3.13", code=1)
    on_path = tmp_path / "bin"
    fake_python(on_path / "python3.11", "3.11")
    nox_file = load_noxfile(monkeypatch, [on_path], root)
    on_import = os.environ["PATH"].split(os.pathsep)

    monkeypatch.setenv("PATH", str(on_path))
    found = nox_file.find_pythons(["3.11", "3.12", "3.13"])
    assert found == {"3.12": str(root / "versions/3.12.10/bin")}
    # importing it put the folders of the sessions' versions in front of PATH
    assert on_import == [*nox_file.find_pythons(nox_file.OTHER_PYTHONS).values(), str(on_path)]


def test_the_default_interpreter_gets_no_session(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """``make test`` runs the whole suite on the interpreter nox runs on; the sessions cover the
    other supported versions, never downloading one."""
    nox_file = load_noxfile(monkeypatch, [tmp_path], tmp_path / "no-pyenv")
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert running in nox_file.SUPPORTED_PYTHONS
    assert nox_file.OTHER_PYTHONS == [v for v in nox_file.SUPPORTED_PYTHONS if v != running]
    assert nox_file.nox.options.download_python == "never"
    assert nox_file.nox.options.error_on_missing_interpreters is False
