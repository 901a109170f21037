"""The public surface: pinned names, py.typed, lazy loading, extras errors."""

from __future__ import annotations

import importlib.resources
import subprocess
import sys

import pytest

import fi_evals
from fi_evals._extras import require

PUBLIC = [
    "APIConnectionError", "APIError", "APITimeoutError", "AuthenticationError",
    "BadRequestError", "BatchItem", "BatchResult", "BatchRunResult", "ConflictError", "EvalFailedError", "EvalHandle",
    "EvalResult", "EvalSpec", "Evaluator", "FiEvalsError", "IdempotencyError", "InvalidInputError",
    "ItemError", "KeyMappingError", "LoggedScore", "LoggerStats", "MissingCredentialsError", "NotFoundError", "OverloadedError", "OverflowPolicy",
    "PermissionDeniedError", "PollBackoff", "ProtocolError", "RateLimitError", "RedirectError",
    "RequestTooLargeError",
    "RetryPolicy", "ScoreLogger", "ServerError", "Submission", "TemplateUnavailableError", "TransportStats",
    "UnknownTemplateError",
    "Verdict", "WaitTimeoutError", "__version__", "evaluate",
]


def test_all_is_pinned():
    # Adding a public name (batch engine, score logger...) means updating PUBLIC on purpose.
    assert sorted(fi_evals.__all__) == sorted(PUBLIC)


def test_every_public_name_resolves():
    for name in fi_evals.__all__:
        assert getattr(fi_evals, name) is not None
    with pytest.raises(AttributeError):
        fi_evals.NoSuchThing  # noqa: B018


def test_py_typed_is_shipped():
    assert importlib.resources.files("fi_evals").joinpath("py.typed").is_file()


def test_protocol_import_does_not_load_the_client():
    code = ("import sys, fi_evals.protocol, fi_evals.catalogue; "
            "print('fi_evals.client' in sys.modules, 'requests' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["False", "False"]


def test_missing_extra_names_the_install():
    with pytest.raises(ImportError) as info:
        require("fi_evals_no_such_module", "pandas", "BatchResult.to_dataframe()")
    assert "pip install 'fi-evals[pandas]'" in str(info.value)
    assert "BatchResult.to_dataframe()" in str(info.value)
    assert require("json", "x", "y").dumps([]) == "[]"
