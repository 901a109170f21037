"""The run store: where runs are kept, how they are named, found, listed and pruned.

Layout::

    .fi-evals/runs/                  FI_EVALS_HOME/runs, or --runs-dir / runs_dir=
        .gitignore                   "*": runs stay out of git
        20250611-142233-main/        one run: UTC start time, then its name (or 4 hex digits)
            meta.json                see fi_evals.runs.schema
            rows.sqlite

A run's **id** is its folder's name: its start time (to the second) and its name. ``--name NAME``
(``run_name=``) is a label kept in ``meta.json`` and in the id; several runs may share a name
(``main`` every night), and a name then means the newest of them. A run is referred to (``fi-evals
view REF``, ``fi-evals diff BASE NEW``, :meth:`RunStore.resolve`) by, in order: a path to a run
folder, its id, ``latest`` / ``latest~N`` (N runs before the latest), its name (the newest run of
that name), or a unique prefix of its id.
"""

from __future__ import annotations

import contextvars
import os
import re
import secrets
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Union

from fi_evals._constants import ENV_HOME, HOME_DIR, RUNS_SUBDIR
from fi_evals.batch.stats import TemplateStats
from fi_evals.runs.run import Run
from fi_evals.runs.schema import FORMAT, META_FILE
from fi_evals.runs.writer import RunWriter, now_iso

__all__ = ["RECORDED_COMMAND", "RunNotFoundError", "RunStore", "default_runs_dir"]

PathLike = Union[str, "os.PathLike[str]"]

RECORDED_COMMAND: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "fi_evals_recorded_command", default=None)
"""The command line a run came from (``fi-evals run`` sets it; ``meta.json`` keeps it)."""

_GITIGNORE = "# Runs of fi-evals (fi-evals runs, fi-evals view): local results, not sources.\n*\n"
_SLUG = re.compile(r"[^A-Za-z0-9._-]+")
_LATEST = re.compile(r"^latest(?:~(\d+))?$")


class RunNotFoundError(LookupError):
    """No run matches a reference (the message lists what there is)."""


def default_runs_dir() -> Path:
    """``$FI_EVALS_HOME/runs``, else ``.fi-evals/runs`` in the working directory."""
    return Path(os.environ.get(ENV_HOME) or HOME_DIR) / RUNS_SUBDIR


def check_name(name: str) -> str:
    """A run name as given (it becomes part of the run's folder name, so it must be short
    and free of path separators).

    Raises:
        ValueError: empty, too long, or with characters other than letters, digits, ``.``,
            ``_`` and ``-`` (spaces become ``-``).
    """
    cleaned = "-".join(name.split())
    if not cleaned or len(cleaned) > 64 or _SLUG.search(cleaned) or cleaned.startswith("."):
        raise ValueError(f"run name {name!r}: use 1 to 64 letters, digits, '.', '_' or '-' "
                         f"(not starting with '.')")
    if _LATEST.match(cleaned):
        raise ValueError(f"run name {name!r} is reserved (it means the newest run)")
    return cleaned


class RunStore:
    """A folder of runs.

    Args:
        root: the runs folder (default :func:`default_runs_dir`).
    """

    def __init__(self, root: PathLike | None = None) -> None:
        self.root = Path(root) if root is not None else default_runs_dir()

    def __repr__(self) -> str:
        return f"<RunStore {str(self.root)!r}>"

    # ------------------------------------------------------------------ writing

    def _new_folder(self, name: str | None) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        ignore = self.root / ".gitignore"
        if not ignore.exists():
            ignore.write_text(_GITIGNORE, "utf-8")
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        base = f"{stamp}-{name or secrets.token_hex(2)}"
        for n in range(1, 1000):
            folder = self.root / (base if n == 1 else f"{base}-{n}")
            try:
                folder.mkdir()
                return folder
            except FileExistsError:
                continue
        raise FileExistsError(f"{self.root}: too many runs named {base}")

    def create(self, *, name: str | None, evals: Sequence[Mapping[str, Any]],
               key_excluded: Sequence[str], config: Mapping[str, Any],
               extra: Mapping[str, Any] | None = None) -> RunWriter:
        """Start a run: its folder, its first ``meta.json`` and its database.

        Args:
            name: the run's name (see :func:`check_name`), or None.
            evals: per eval: ``label``, ``template``, ``output_type``, ``pass_threshold``
                (and optionally ``approximation``).
            key_excluded: the row fields left out of the diff key (:func:`key_fields`).
            config: what the run was asked to do (JSON-ready).
            extra: more ``meta.json`` entries (versions, server).

        Returns:
            The :class:`RunWriter` to emit rows to.
        """
        if name is not None:
            name = check_name(name)
        folder = self._new_folder(name)
        meta: dict[str, Any] = {
            "format": FORMAT, "id": folder.name, "name": name, "status": "running",
            "created": now_iso(), "started_at": time.time(), "pid": os.getpid(),
            "command": RECORDED_COMMAND.get(),
            "config": dict(config), "evals": [dict(e) for e in evals],
            "key_excluded": list(key_excluded), **(extra or {}),
        }
        graders = [TemplateStats(e["label"], e["template"], e["output_type"],
                                 e["pass_threshold"]) for e in evals]
        return RunWriter(folder, meta, graders, key_excluded)

    # ------------------------------------------------------------------ reading

    def runs(self) -> list[Run]:
        """Every readable run, oldest first (by start time: ids sort by the second only);
        folders without a ``meta.json`` are skipped."""
        if not self.root.is_dir():
            return []
        found = []
        for folder in self.root.iterdir():
            if folder.is_dir() and (folder / META_FILE).is_file():
                try:
                    found.append(Run(folder))
                except (OSError, ValueError):
                    continue  # a half-written or foreign folder: not a run
        return sorted(found, key=lambda r: (float(r.meta.get("started_at") or 0.0), r.id))

    def resolve(self, ref: str) -> Run:
        """The run ``ref`` names (see the module docs for the forms it takes).

        Raises:
            RunNotFoundError: nothing matches, or an id prefix matches several runs.
        """
        path = Path(ref)
        if (path / META_FILE).is_file():
            return Run(path)
        runs = self.runs()
        if not runs:
            raise RunNotFoundError(f"no runs in {self.root} (run `fi-evals run ...` first, or "
                                   f"give --runs-dir)")
        by_id = {r.id: r for r in runs}
        if ref in by_id:
            return by_id[ref]
        latest = _LATEST.match(ref)
        if latest:
            back = int(latest.group(1) or 0)
            if back >= len(runs):
                raise RunNotFoundError(f"{ref}: there are only {len(runs)} runs in {self.root}")
            return runs[-1 - back]
        named = [r for r in runs if r.name == ref]
        if named:
            return named[-1]
        prefixed = [r for r in runs if r.id.startswith(ref)]
        if len(prefixed) == 1:
            return prefixed[0]
        if prefixed:
            raise RunNotFoundError(f"{ref!r} matches {len(prefixed)} runs: "
                                   f"{', '.join(r.id for r in prefixed[-5:])}")
        names = sorted({r.name for r in runs if r.name})
        raise RunNotFoundError(
            f"no run {ref!r} in {self.root}: give a run id, a name"
            f"{' (' + ', '.join(names[-8:]) + ')' if names else ''}, latest or latest~N "
            f"(`fi-evals runs` lists them)")

    def prune(self, keep: int) -> list[Run]:
        """Delete all but the ``keep`` newest runs (a run still being written is kept).

        Returns:
            The runs removed.

        Raises:
            ValueError: ``keep`` is negative.
        """
        if keep < 0:
            raise ValueError(f"keep must be 0 or more, not {keep}")
        runs = self.runs()
        old = runs[:max(0, len(runs) - keep)]
        removed = []
        for run in old:
            if run.status == "running":
                continue
            shutil.rmtree(run.folder, ignore_errors=True)
            removed.append(run)
        return removed
