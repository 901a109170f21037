"""Evaluations as test assertions: ``assert_eval`` and a JSONL dataset helper for pytest.

::

    from fi_evals.testing import assert_eval, eval_dataset

    def test_answer_is_json():
        assert_eval('{"answer": 42}', "is_json")

    @eval_dataset("cases.jsonl")          # one test per line, ids from each row's "id"
    def test_answers(row):
        assert_eval(row["output"], "fuzzy_match", threshold=0.8, expected=row["expected"])

Both use one :class:`~fi_evals.client.Evaluator` per test process (per pytest-xdist worker):
``FI_BASE_URL`` / ``FI_API_KEY`` / ``FI_SECRET_KEY`` when ``FI_BASE_URL`` is set, else an
embedded reference server on 127.0.0.1 (temporary state; its judge from ``FI_JUDGE_BASE_URL``
and ``FI_JUDGE_MODEL`` like ``fi-evals run``). It starts on first use and stops when the pytest
session ends (the plugin's ``pytest_unconfigure``), or at interpreter exit outside pytest. The
``fi_evaluator`` fixture (the plugin, :mod:`fi_evals.pytest_plugin`) is that Evaluator.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import inspect
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fi_evals._default import Verdict
    from fi_evals.client import Evaluator

__all__ = ["OUTPUT_KEYS", "assert_eval", "close_session_evaluator", "eval_dataset",
           "load_dataset", "session_evaluator"]

OUTPUT_KEYS = ("output", "text", "hypothesis", "generated_value")
"""The key ``assert_eval``'s ``output`` fills: the first of these the template reads."""

_lock = threading.Lock()
_stack: contextlib.ExitStack | None = None
_evaluator: Evaluator | None = None
_atexit_registered = False


def session_evaluator() -> Evaluator:
    """This process's test Evaluator: the environment's server, else an embedded one.

    Started on first use (thread-safe), closed by :func:`close_session_evaluator`.

    Raises:
        ServerMissing: ``FI_BASE_URL`` is unset and the ``server`` extra is not installed.
    """
    global _stack, _evaluator, _atexit_registered
    with _lock:
        if _evaluator is not None:
            return _evaluator
        from fi_evals.cli._args import model_settings
        from fi_evals.cli._embedded import connect
        from fi_evals.client import Evaluator

        stack = contextlib.ExitStack()
        try:
            kwargs = stack.enter_context(
                connect(quiet=True, models=model_settings(argparse.Namespace())))
            evaluator = stack.enter_context(Evaluator(**kwargs))
        except BaseException:
            stack.close()
            raise
        _stack, _evaluator = stack, evaluator
        if not _atexit_registered:
            atexit.register(close_session_evaluator)
            _atexit_registered = True
        return evaluator


def close_session_evaluator() -> None:
    """Close the test Evaluator and stop its embedded server, if one was started (idempotent)."""
    global _stack, _evaluator
    with _lock:
        stack, _stack, _evaluator = _stack, None, None
    if stack is not None:
        stack.close()


def _output_key(key_names: tuple[str, ...], template: str) -> str:
    for key in OUTPUT_KEYS:
        if key in key_names:
            return key
    raise TypeError(f"assert_eval: template {template!r} has no output-like key (it reads "
                    f"{', '.join(key_names)}): pass them by name and output=None")


def assert_eval(output: Any, template: Any, *, threshold: float | None = None,
                model: str | None = None, timeout: float | None = None,
                evaluator: Evaluator | None = None, **inputs: Any) -> Verdict:
    """Evaluate ``output`` with ``template`` and fail the test unless it passes.

    Args:
        output: fills the template's output-like key: ``output``, or ``text`` for text-only
            templates (``hypothesis``, ``generated_value`` for the templates that name it so).
            None: every key is given by name in ``inputs``.
        template: a template name or object (one template).
        threshold: passed means ``score >= threshold`` (default: the verdict for Pass/Fail
            templates, 0.5 for scores; see :class:`~fi_evals.Verdict`).
        model: the judge model for model-judged templates.
        timeout: seconds for the evaluation.
        evaluator: the Evaluator to use (default: :func:`session_evaluator`).
        **inputs: the template's other keys by name (``expected=``, ``context=``...) and its
            parameters (``keyword=`` for ``contains``).

    Returns:
        The :class:`~fi_evals.Verdict` (score, reason, eval_id) when it passed.

    Raises:
        AssertionError: the verdict did not pass; the message shows the verdict, score,
            threshold, reason and eval id. Also for choice templates (no pass meaning).
        UnknownTemplateError, InvalidInputError, EvalFailedError, APIError...: as
            :func:`fi_evals.evaluate` (a broken evaluation is an error, not a failed test).
    """
    __tracebackhide__ = True
    from fi_evals._default import evaluate_on

    ev = evaluator if evaluator is not None else session_evaluator()
    if output is not None:
        spec = ev.resolve_template(template)
        key = _output_key(spec.key_names, spec.name)
        if key in inputs:
            raise TypeError(f"assert_eval: {key!r} is given twice (as output and by name)")
        inputs = {key: output, **inputs}
    verdict = evaluate_on(ev, template, model=model, timeout=timeout, threshold=threshold,
                          **inputs)
    if verdict.passed:
        return verdict
    if verdict.passed is None:
        raise AssertionError(f"{verdict.name} answers {verdict.output!r}, which has no pass or "
                             f"fail meaning (a choice template): check verdict.output with "
                             f"fi_evals.evaluate(...) instead")
    score = "None" if verdict.score is None else f"{verdict.score:g}"
    raise AssertionError(
        f"{verdict.name} did not pass: verdict Failed, score {score} < threshold "
        f"{verdict.threshold:g}\n"
        f"  reason: {verdict.reason or '(none given)'}\n"
        f"  eval_id: {verdict.eval_id}")


def load_dataset(path: str | Path, *, id_key: str = "id") -> tuple[list[dict[str, Any]],
                                                                  list[str]]:
    """The rows of a JSONL file and their test ids (``row[id_key]``, else ``line<N>``).

    Blank lines are skipped. Raises ValueError naming the file and line for a line that is not
    a JSON object, and for two rows with the same id.
    """
    path = Path(path)
    rows: list[dict[str, Any]] = []
    ids: list[str] = []
    seen: dict[str, int] = {}
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{number}: not JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{number}: expected a JSON object, got "
                                 f"{type(row).__name__}")
            ident = str(row[id_key]) if row.get(id_key) is not None else f"line{number}"
            if ident in seen:
                raise ValueError(f"{path}:{number}: id {ident!r} already used on line "
                                 f"{seen[ident]} (test ids must be unique)")
            seen[ident] = number
            rows.append(row)
            ids.append(ident)
    return rows, ids


def eval_dataset(path: str | Path, *, argname: str = "row",
                 id_key: str = "id") -> Callable[[Callable[..., Any]], Any]:
    """Parametrize a test over the rows of a JSONL file, one test per row.

    Args:
        path: the file; a relative path is taken from the calling test file's folder.
        argname: the test's parameter that receives each row (a dict).
        id_key: the row key whose value is the test id (``test_x[case-7]``); rows without it
            are ``line<N>``. Ids and order come from the file alone, so pytest-xdist workers
            collect the same tests.
    """
    import pytest

    path = Path(path)
    if not path.is_absolute():
        caller = inspect.stack(context=0)[1].filename
        path = Path(caller).resolve().parent / path
    rows, ids = load_dataset(path, id_key=id_key)
    return pytest.mark.parametrize(argname, rows, ids=ids)
