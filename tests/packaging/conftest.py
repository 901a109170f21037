"""Fixtures of the packaging tests: the release artifacts, built once per session by ``make dist``
(see _artifacts.py)."""

from __future__ import annotations

import pytest
from _artifacts import Artifacts, make_dist


@pytest.fixture(scope="session")
def dist_artifacts(tmp_path_factory: pytest.TempPathFactory) -> Artifacts:
    """The sdist and the wheel ``make dist`` builds (the wheel from the sdist), ``twine
    check --strict`` passed on both."""
    return make_dist(tmp_path_factory.mktemp("tree"))
