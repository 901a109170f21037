"""One status vocabulary, exit codes defined once, no two classes of one name (issue 15, point 2).

Static checks over the package's source (``ast``), plus the aliases that must spell the protocol's
words: they fail when a copy of the finished set, a bare status comparison or a second class of
an existing name creeps back in.
"""

from __future__ import annotations

import ast
import collections
import concurrent.futures
import queue
import threading
import typing
from pathlib import Path

import pytest

import fi_evals
from fi_evals.protocol import (
    FINISHED_STATUSES,
    KNOWN_STATUSES,
    UNFINISHED_STATUSES,
    EvalStatus,
    FinishedStatus,
)
from fi_evals.results import UNSCORED_STATUSES, ResultStatus

pytestmark = pytest.mark.unit  # no server, no model: `make unit` runs this file


PACKAGE = Path(fi_evals.__file__).parent
STATUS_WORDS = {s.value for s in EvalStatus}


def _sources() -> list[tuple[Path, ast.Module]]:
    return [(path, ast.parse(path.read_text(encoding="utf-8"), str(path)))
            for path in sorted(PACKAGE.rglob("*.py"))]


def test_the_vocabulary_and_its_sets_are_defined_once() -> None:
    assert STATUS_WORDS == {"pending", "processing", "completed", "failed", "not_found"}
    assert FINISHED_STATUSES == {"completed", "failed"}
    assert UNFINISHED_STATUSES == {"pending", "processing"}
    assert KNOWN_STATUSES == FINISHED_STATUSES | UNFINISHED_STATUSES | {"not_found"}
    assert [s for s in EvalStatus if s.finished] == [EvalStatus.COMPLETED, EvalStatus.FAILED]
    assert str(EvalStatus.COMPLETED) == "completed" and f"{EvalStatus.FAILED}" == "failed"
    # The typed aliases spell the same words (plus the client's own "error").
    assert set(typing.get_args(FinishedStatus)) == FINISHED_STATUSES
    assert set(typing.get_args(ResultStatus)) == (KNOWN_STATUSES - {"not_found"}) | {"error"}
    assert UNSCORED_STATUSES == {"failed", "error"}


def test_the_score_loggers_statuses_are_the_finished_ones_plus_rejected() -> None:
    from fi_evals.logger._types import ScoreStatus

    assert set(typing.get_args(ScoreStatus)) == FINISHED_STATUSES | {"rejected"}


def _is_status_word(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and node.value in STATUS_WORDS


def _names_a_status(node: ast.AST) -> bool:
    """``status``, ``x.eval_status``, ``job.status``...: an expression holding a status."""
    name = (node.id if isinstance(node, ast.Name)
            else node.attr if isinstance(node, ast.Attribute) else "")
    return "status" in name


def test_no_module_spells_statuses_itself() -> None:
    """Comparisons, sets and ``status=`` arguments use the vocabulary, not string literals."""
    found = []
    for path, tree in _sources():
        if path == PACKAGE / "protocol.py":
            continue
        for node in ast.walk(tree):
            where = f"{path.relative_to(PACKAGE)}:{getattr(node, 'lineno', '?')}"
            operands = [node.left, *node.comparators] if isinstance(node, ast.Compare) else []
            if any(map(_is_status_word, operands)) and any(map(_names_a_status, operands)):
                found.append(f"{where} compares a status with a string")
            elif (isinstance(node, (ast.Set, ast.Tuple, ast.List))
                  and all(_is_status_word(e) for e in node.elts)
                  and len({e.value for e in node.elts if isinstance(e, ast.Constant)}) > 1):
                found.append(f"{where} defines its own set of statuses")
            elif isinstance(node, ast.keyword) and node.arg == "status" \
                    and _is_status_word(node.value):
                found.append(f"{where} passes status= as a string")
            elif isinstance(node, ast.AnnAssign) and node.value is not None \
                    and isinstance(node.target, ast.Name) and node.target.id == "status" \
                    and _is_status_word(node.value):
                found.append(f"{where} defaults a status to a string")
    assert found == []


def test_no_two_classes_share_a_name() -> None:
    where: dict[str, list[str]] = collections.defaultdict(list)
    for path, tree in _sources():
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                where[node.name].append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert {name: places for name, places in where.items() if len(places) > 1} == {}
    # Nor does one take the name of a concurrency class it could be mistaken for.
    taken = {name for module in (concurrent.futures, threading, queue)
             for name in dir(module) if name[:1].isupper()}
    assert sorted(set(where) & taken) == []


def test_the_server_executor_keeps_its_old_name_as_a_deprecated_alias() -> None:
    from fi_evals.server import executor

    with pytest.warns(DeprecationWarning, match="JobExecutor"):
        old = executor.Executor  # type: ignore[attr-defined]
    assert old is executor.JobExecutor


def test_exit_codes_are_defined_once() -> None:
    from fi_evals.cli import _exit

    assert (_exit.EXIT_OK, _exit.EXIT_FAILED, _exit.EXIT_USAGE) == (0, 1, 2)
    found = []
    for path, tree in _sources():
        if path == PACKAGE / "cli" / "_exit.py":
            continue
        for node in ast.walk(tree):
            targets = (node.targets if isinstance(node, ast.Assign)
                       else [node.target] if isinstance(node, ast.AnnAssign) else [])
            found += [f"{path.relative_to(PACKAGE)}:{node.lineno} defines {t.id}"
                      for t in targets if isinstance(t, ast.Name) and t.id.startswith("EXIT_")]
            if (path.parent == PACKAGE / "cli" and isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute) and node.func.attr in ("exit", "_exit")
                    and node.args and isinstance(node.args[0], ast.Constant)):
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno} exits with a literal")
    assert found == []
