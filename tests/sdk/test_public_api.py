"""The public surface: pinned names, py.typed, lazy loading, extras errors."""

from __future__ import annotations

import ast
import importlib.resources
import subprocess
import sys
from pathlib import Path

import pytest

import fi_evals
from fi_evals._extras import require

PUBLIC = [
    "APIConnectionError", "APIError", "APITimeoutError", "AsyncEvaluator", "AsyncScoreLogger",
    "AuthenticationError", "BadRequestError", "BatchItem", "BatchResult", "BatchRunResult",
    "ConflictError", "EvalFailedError", "EvalHandle",
    "EvalResult", "EvalSpec", "Evaluator", "FiEvalsError", "FunctionMetric", "IdempotencyError",
    "InvalidInputError",
    "ItemError", "KeyMappingError", "LoggedScore", "LoggerStats", "MissingCredentialsError",
    "NotFoundError", "OverloadedError", "OverflowPolicy",
    "PermissionDeniedError", "PollBackoff", "ProtocolError", "RateLimitError", "RedirectError",
    "RequestTooLargeError",
    "RetryPolicy", "ScoreLogger", "ServerError", "Submission", "TemplateUnavailableError",
    "TransportStats",
    "UnknownTemplateError",
    "Verdict", "WaitTimeoutError", "__version__", "evaluate", "metric",
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


def test_retry_module_is_neutral():
    # The judge client (server side) retries with it: it must load no client and no HTTP library.
    code = ("import sys, fi_evals._retry; "
            "print('fi_evals.client' in sys.modules, 'fi_evals._exceptions' in sys.modules, "
            "'requests' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["False", "False", "False"]


# Modules both sides may import; the server imports only these and its own modules.
NEUTRAL = {"fi_evals._cachedir", "fi_evals._constants", "fi_evals._retry", "fi_evals._version",
           "fi_evals._otel",  # OpenTelemetry helpers: the SDK's spans and the server's
           "fi_evals._loading", "fi_evals.catalogue",
           "fi_evals.protocol"}


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            if node.module == "fi_evals":  # from fi_evals import _constants / Evaluator
                found.update(f"fi_evals.{alias.name}" for alias in node.names)
            else:
                found.add(node.module)
    return {name for name in found if name == "fi_evals" or name.startswith("fi_evals.")}


def test_the_server_and_the_neutral_modules_never_import_the_client():
    package = Path(fi_evals.__file__).parent
    wrong = []
    for path in sorted((package / "server").rglob("*.py")):
        for name in _imports(path):
            if name not in NEUTRAL and not name.startswith("fi_evals.server"):
                wrong.append(f"{path.relative_to(package)} imports {name}")
    for module in NEUTRAL:
        path = package / (module.removeprefix("fi_evals.").replace(".", "/") + ".py")
        wrong += [f"{module} imports {name}" for name in _imports(path) - NEUTRAL]
    assert wrong == []


def test_missing_extra_names_the_install():
    with pytest.raises(ImportError) as info:
        require("fi_evals_no_such_module", "pandas", "BatchResult.to_dataframe()")
    assert "pip install 'fi-evals[pandas]'" in str(info.value)
    assert "BatchResult.to_dataframe()" in str(info.value)
    assert require("json", "x", "y").dumps([]) == "[]"
