"""The ``unit`` mark's promise (tests/conftest.py): a unit test starts no server."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from _unit_mark import unit_test_servers

pytestmark = pytest.mark.unit  # no server, no model: `make unit` runs this file


def _item(*, unit: bool, fixtures: list[str]) -> Any:
    marks = {"unit": object()} if unit else {}
    return SimpleNamespace(get_closest_marker=marks.get, fixturenames=fixtures, nodeid="t")


def test_a_unit_test_that_asks_for_a_server_is_named() -> None:
    # fixturenames is the whole closure: a server reached through another fixture counts too.
    item = _item(unit=True, fixtures=["tmp_path", "own_server", "server_factory", "live_server"])
    assert unit_test_servers(item) == ["live_server", "server_factory"]


def test_other_tests_and_serverless_unit_tests_pass() -> None:
    assert unit_test_servers(_item(unit=False, fixtures=["live_server"])) == []
    assert unit_test_servers(_item(unit=True, fixtures=["tmp_path"])) == []


def test_this_unit_test_starts_no_server(request: pytest.FixtureRequest) -> None:
    assert unit_test_servers(request.node) == []
