"""Runs kept on disk, and what looks at them: ``fi-evals runs``, ``view`` and ``diff``.

Every ``fi-evals run`` (and ``evaluate_batch(..., run_name=...)`` from Python) records its run
in a run store (default ``.fi-evals/runs/``; ``FI_EVALS_HOME`` or ``--runs-dir`` move it):
config, evals, per-row outcomes, stats, timing and versions, written as rows finish, in
bounded memory.

Modules: :mod:`~fi_evals.runs.schema` (what a run folder holds), :mod:`~fi_evals.runs.writer`
(writing a run as rows finish), :mod:`~fi_evals.runs.store` (naming, finding, listing,
pruning), :mod:`~fi_evals.runs.run` (reading: overview, filtered pages, row detail),
:mod:`~fi_evals.runs.diff` (two runs row by row), :mod:`~fi_evals.runs.viewer` (the local web
page, server extra) and :mod:`~fi_evals.runs.export` (one self-contained HTML file).
"""

from __future__ import annotations

from fi_evals.runs.run import RowQuery, Run
from fi_evals.runs.store import RunNotFoundError, RunStore, default_runs_dir
from fi_evals.runs.writer import RunWriter

__all__ = ["RowQuery", "Run", "RunNotFoundError", "RunStore", "RunWriter", "default_runs_dir"]
