"""``MODULE:ATTR`` references to the caller's code: ``fi-evals run --metric``, ``fi-evals serve
--evaluators`` and ``fi-evals worker --evaluators`` read them the same way.

The module is imported with the current directory on ``sys.path`` (as ``python -m`` does), so
``--metric my_metrics:exact`` finds ``./my_metrics.py``. A reference that cannot be resolved
raises :class:`ImportTargetError` saying which part failed and what to do.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

__all__ = ["ImportTargetError", "import_attr"]


class ImportTargetError(ValueError):
    """A ``MODULE:ATTR`` reference that is malformed, or whose module or attribute cannot be
    imported (raised before anything runs; ``fi-evals`` exits 2 with this message).

    A ValueError (not an SDK error): this module is shared by the client and the server,
    which imports nothing of the client."""


def import_attr(ref: str, *, flag: str) -> Any:
    """The object ``ref`` (``package.module:attr[.attr]``) names.

    Args:
        ref: the reference.
        flag: the option it came from, for messages (``--metric``).

    Raises:
        ImportTargetError: ``ref`` is not ``MODULE:ATTR``, the module cannot be imported (the
            cause is in the message), or it has no such attribute.
    """
    module_name, colon, attr = ref.strip().partition(":")
    if not colon or not module_name.strip() or not attr.strip():
        raise ImportTargetError(f"{flag} {ref!r}: write MODULE:ATTR, e.g. my_metrics:exact for "
                                f"the function exact in ./my_metrics.py")
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name.strip())
    except ImportError as exc:
        raise ImportTargetError(
            f"{flag} {ref!r}: cannot import module {module_name!r} ({exc}); it must be "
            f"importable from the current directory ({cwd}) or the installed packages "
            f"(check the name, or set PYTHONPATH)") from exc
    except Exception as exc:  # the user's module raised while importing
        raise ImportTargetError(f"{flag} {ref!r}: importing {module_name!r} raised "
                                f"{type(exc).__name__}: {exc}") from exc
    value: Any = module
    for part in attr.strip().split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            names = sorted(n for n in dir(module) if not n.startswith("_"))
            shown = ", ".join(names[:15]) + (", ..." if len(names) > 15 else "")
            raise ImportTargetError(
                f"{flag} {ref!r}: module {module_name!r} ({getattr(module, '__file__', '?')}) "
                f"has no attribute {attr!r}; it has: {shown or 'nothing public'}") from None
    return value
