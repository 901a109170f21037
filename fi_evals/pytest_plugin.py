"""The pytest plugin of fi-evals (entry point ``pytest11``: loaded by every pytest run).

It imports nothing but pytest and starts nothing until a test uses it: the ``fi_evaluator``
fixture or :func:`fi_evals.testing.assert_eval` start the per-process Evaluator (an embedded
reference server when ``FI_BASE_URL`` is unset), and the session's end stops it. Under
pytest-xdist each worker has its own. Disable it with ``-p no:fi_evals``.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from fi_evals.client import Evaluator

_TESTING = "fi_evals.testing"


@pytest.fixture(scope="session")
def fi_evaluator() -> Evaluator:
    """The test process's :class:`~fi_evals.Evaluator` (see :mod:`fi_evals.testing`)."""
    from fi_evals.testing import session_evaluator

    return session_evaluator()


def pytest_unconfigure(config: pytest.Config) -> None:
    """Stop the Evaluator and its embedded server, if a test started them."""
    del config
    testing = sys.modules.get(_TESTING)
    if testing is not None:
        testing.close_session_evaluator()
