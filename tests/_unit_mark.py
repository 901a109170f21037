"""The ``unit`` mark's rule (checked by tests/conftest.py before any fixture runs): a test marked
``unit`` starts no server, even through another fixture, so that ``make unit`` stays fast."""

from __future__ import annotations

from typing import Any

SERVER_FIXTURES = frozenset({"live_server", "server_factory"})
"""The fixtures of tests/conftest.py that start a server."""


def unit_test_servers(item: Any) -> list[str]:
    """The server fixtures a ``unit``-marked test item would start (empty for any other test).

    ``item.fixturenames`` is the test's whole fixture closure: a server reached through an area
    fixture (``own_server``...) counts too.
    """
    if item.get_closest_marker("unit") is None:
        return []
    return sorted(SERVER_FIXTURES & set(getattr(item, "fixturenames", ())))
