"""Two runs row by row: what changed per eval, which rows regressed or were fixed.

**Matching.** Rows are matched by a key: by default the hash of the row's input fields
(``rows.key``: every field but those an eval reads as its ``output``, see
:mod:`fi_evals.runs.schema`), or the value of one field (``key="id"``; a dotted path reads a
nested one). Rows with the same key are matched in input order (the n-th such row of BASE
with the n-th of NEW), so duplicates pair up instead of multiplying. When the two runs left
different fields out of their keys (their evals read ``output`` from different fields), both
runs' keys are recomputed without the union of those fields.

**Verdicts.** Evals are matched by label. For each matched row and eval, a change from
``passed`` to ``failed`` or ``errored`` is a **regression**, from ``failed`` or ``errored``
to ``passed`` a **fix**; other changes (``failed`` <-> ``errored``) are counted as changed.
A row regressed when one of its evals did: ``fi-evals diff --max-regressions N`` counts rows.
The per-eval figures (pass rate, mean, counts) are each run's own, over all its rows.

**Cost.** Everything happens in SQLite, in a scratch database of the diff's own (deleted by
:meth:`Diff.close`): memory stays flat, and two 1,000,000-row runs compare in seconds.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from fi_evals.runs.run import Run, _cut
from fi_evals.runs.schema import ERRORED, FAILED, PASSED, ROWS_FILE, row_key

__all__ = ["CHANGE_KINDS", "Diff", "EvalDiff", "diff_runs"]

CHANGE_KINDS = ("regressed", "fixed", "changed", "only_base", "only_new")
_PREVIEW = 300


@dataclass(frozen=True, kw_only=True)
class EvalDiff:
    """One eval in both runs: each run's figures, and the matched rows that changed."""

    label: str
    output_type: str
    base: dict[str, Any]
    """``total``, ``scored``, ``graded``, ``passed``, ``pass_rate``, ``mean`` of BASE."""
    new: dict[str, Any]
    regressed: int
    fixed: int
    changed: int

    def delta(self, metric: str) -> float | None:
        """``new - base`` of ``pass_rate`` or ``mean`` (None when either is missing)."""
        a, b = self.base.get(metric), self.new.get(metric)
        return None if a is None or b is None else b - a


@dataclass(kw_only=True)
class Diff:
    """The comparison of two runs; build it with :func:`diff_runs`, then :meth:`close`."""

    base: Run
    new: Run
    key: str | None
    key_excluded: list[str]
    matched: int
    only_base: int
    only_new: int
    evals: list[EvalDiff]
    regressed_rows: int
    fixed_rows: int
    labels_only_base: list[str] = field(default_factory=list)
    labels_only_new: list[str] = field(default_factory=list)
    _folder: Path | None = None

    def __repr__(self) -> str:
        return (f"<Diff {self.base.id} -> {self.new.id}: {self.matched} matched, "
                f"{self.regressed_rows} regressed, {self.fixed_rows} fixed>")

    @property
    def key_text(self) -> str:
        """How rows were matched, in words."""
        if self.key:
            return f"field {self.key!r}"
        left_out = f" (all but {', '.join(self.key_excluded)})" if self.key_excluded else ""
        return f"a hash of the input fields{left_out}"

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        if self._folder is None:
            raise RuntimeError("this diff is closed")
        db = sqlite3.connect((self._folder / "diff.sqlite").as_uri(), uri=True,
                             check_same_thread=False)
        try:
            _attach(db, self.base, "b")
            _attach(db, self.new, "n")
            yield db
        finally:
            db.close()

    def rows(self, kind: str, *, offset: int = 0, limit: int = 50) -> list[dict[str, Any]]:
        """A page of changed (or unmatched) rows, in BASE's input order.

        Args:
            kind: ``regressed``, ``fixed``, ``changed`` (one entry per row and eval), or
                ``only_base`` / ``only_new`` (one entry per row).
            offset, limit: the page.

        Returns:
            For changes: ``base_index``, ``new_index``, ``label``, ``base`` and ``new``
            (verdict, score, output, reason, error type), ``item`` (NEW's row, cut); for
            unmatched rows: ``index`` and ``item``.

        Raises:
            ValueError: an unknown kind.
        """
        if kind not in CHANGE_KINDS:
            raise ValueError(f"kind: expected one of {', '.join(CHANGE_KINDS)}, not {kind!r}")
        with self._connect() as db:
            if kind in ("only_base", "only_new"):
                side = "b" if kind == "only_base" else "n"
                found = db.execute(f"SELECT u.idx, r.item FROM {kind} u JOIN {side}.rows r ON "
                                   f"r.idx = u.idx ORDER BY u.idx LIMIT ? OFFSET ?",
                                   [limit, offset]).fetchall()
                return [{"index": idx, "item": _cut(item, _PREVIEW)} for idx, item in found]
            nb, nn = len(self.base.labels), len(self.new.labels)
            found = db.execute(
                "SELECT c.bidx, c.nidx, c.label, ob.verdict, ob.score, ob.output, ob.reason, "
                "ob.error_type, onw.verdict, onw.score, onw.output, onw.reason, onw.error_type, "
                f"r.item FROM changes c JOIN b.outcomes ob ON ob.id = c.bidx * {nb} + c.eb "
                f"JOIN n.outcomes onw ON onw.id = c.nidx * {nn} + c.en "
                "JOIN n.rows r ON r.idx = c.nidx WHERE c.kind = ? "
                "ORDER BY c.bidx, c.eb LIMIT ? OFFSET ?", [kind, limit, offset]).fetchall()
        out = []
        for (bidx, nidx, label, *rest) in found:
            base, new, item = rest[:5], rest[5:10], rest[10]
            out.append({"base_index": bidx, "new_index": nidx, "label": label,
                        "base": _side(base), "new": _side(new), "item": _cut(item, _PREVIEW)})
        return out

    def count(self, kind: str) -> int:
        """Entries :meth:`rows` has for ``kind``."""
        if kind == "only_base":
            return self.only_base
        if kind == "only_new":
            return self.only_new
        if kind not in CHANGE_KINDS:
            raise ValueError(f"kind: expected one of {', '.join(CHANGE_KINDS)}, not {kind!r}")
        with self._connect() as db:
            return int(db.execute("SELECT count(*) FROM changes WHERE kind = ?",
                                  [kind]).fetchone()[0])

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (what the viewer's diff view and ``fi-evals diff --json`` show)."""
        return {
            "base": {"id": self.base.id, "name": self.base.name, "rows": self.base.rows,
                     "verdict": self.base.verdict},
            "new": {"id": self.new.id, "name": self.new.name, "rows": self.new.rows,
                    "verdict": self.new.verdict},
            "key": self.key, "key_text": self.key_text, "matched": self.matched,
            "only_base": self.only_base, "only_new": self.only_new,
            "regressed_rows": self.regressed_rows, "fixed_rows": self.fixed_rows,
            "labels_only_base": self.labels_only_base, "labels_only_new": self.labels_only_new,
            "evals": [{"label": e.label, "output_type": e.output_type, "base": e.base,
                       "new": e.new, "regressed": e.regressed, "fixed": e.fixed,
                       "changed": e.changed, "pass_rate_delta": e.delta("pass_rate"),
                       "mean_delta": e.delta("mean")} for e in self.evals],
        }

    def close(self) -> None:
        """Delete the scratch database (idempotent)."""
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _side(values: Sequence[Any]) -> dict[str, Any]:
    verdict, score, output, reason, error_type = values
    return {"verdict": verdict, "score": score, "output": output,
            "reason": _cut(reason, _PREVIEW), "error_type": error_type}


def _attach(db: sqlite3.Connection, run: Run, alias: str) -> None:
    path = (run.folder / ROWS_FILE).resolve()
    db.execute(f"ATTACH DATABASE ? AS {alias}", [f"{path.as_uri()}?mode=ro"])


def _json_path(field_path: str) -> str:
    return "$" + "".join('."' + part.replace('"', '\\"') + '"'
                         for part in field_path.split("."))


def _key_sql(base: Run, new: Run, key: str | None,
             db: sqlite3.Connection) -> tuple[str, list[Any], list[str]]:
    """The SQL expression of a row's key, its arguments, and the fields the hash leaves out."""
    if key:
        # A field named "a.b" is read as such first, else as the path a -> b.
        return ("json_quote(coalesce(json_extract(item, ?), json_extract(item, ?)))",
                [f'$."{key}"', _json_path(key)], [])
    left_base = list(base.meta.get("key_excluded") or [])
    left_new = list(new.meta.get("key_excluded") or [])
    if left_base == left_new:
        return "key", [], left_base
    union = sorted(set(left_base) | set(left_new))
    db.create_function("fi_key", 1, lambda item: row_key(json.loads(item), union),
                       deterministic=True)
    return "fi_key(item)", [], union


def _figures(run: Run) -> dict[str, dict[str, Any]]:
    fields = ("total", "scored", "graded", "passed", "pass_rate", "mean", "counts")
    return {e["label"]: {k: e.get(k) for k in fields} for e in run.overview()["evals"]}


def diff_runs(base: Run, new: Run, *, key: str | None = None) -> Diff:
    """Compare ``new`` with ``base`` (see the module docs).

    Args:
        base: the reference run (main); new: the run under review.
        key: match rows by this field instead of a hash of the input fields.

    Returns:
        A :class:`Diff` (close it, or use it as a context manager, to delete its scratch
        database).
    """
    folder = Path(tempfile.mkdtemp(prefix="fi-evals-diff-"))
    try:
        return _build(base, new, key, folder)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def _build(base: Run, new: Run, key: str | None, folder: Path) -> Diff:
    db = sqlite3.connect((folder / "diff.sqlite").as_uri(), uri=True)  # URIs in ATTACH too
    try:
        _attach(db, base, "b")
        _attach(db, new, "n")
        expr, args, excluded = _key_sql(base, new, key, db)
        for side, table in (("b", "bk"), ("n", "nk")):
            db.execute(f"CREATE TABLE {table} AS SELECT idx, k, ROW_NUMBER() OVER (PARTITION "
                       f"BY k ORDER BY idx) AS occ FROM (SELECT idx, {expr} AS k FROM "
                       f"{side}.rows)", args)
            db.execute(f"CREATE INDEX {table}_k ON {table} (k, occ)")
        db.executescript("""
            CREATE TABLE pairs AS SELECT bk.idx AS bidx, nk.idx AS nidx FROM bk
                JOIN nk ON nk.k IS bk.k AND nk.occ = bk.occ;
            CREATE TABLE only_base AS SELECT idx FROM bk WHERE NOT EXISTS
                (SELECT 1 FROM nk WHERE nk.k IS bk.k AND nk.occ = bk.occ);
            CREATE TABLE only_new AS SELECT idx FROM nk WHERE NOT EXISTS
                (SELECT 1 FROM bk WHERE bk.k IS nk.k AND bk.occ = nk.occ);
            CREATE TABLE changes (bidx INTEGER, nidx INTEGER, label TEXT, eb INTEGER,
                en INTEGER, kind TEXT);
        """)
        nb, nn = len(base.labels), len(new.labels)
        common = [label for label in base.labels if label in new.labels]
        for label in common:
            eb, en = base.labels.index(label), new.labels.index(label)
            db.execute(
                f"INSERT INTO changes SELECT p.bidx, p.nidx, ?, ?, ?, CASE "
                f"WHEN ob.verdict = '{PASSED}' AND onw.verdict IN ('{FAILED}', '{ERRORED}') "
                f"THEN 'regressed' WHEN ob.verdict IN ('{FAILED}', '{ERRORED}') AND "
                f"onw.verdict = '{PASSED}' THEN 'fixed' ELSE 'changed' END "
                f"FROM pairs p JOIN b.outcomes ob ON ob.id = p.bidx * {nb} + ? "
                f"JOIN n.outcomes onw ON onw.id = p.nidx * {nn} + ? "
                f"WHERE ob.verdict <> onw.verdict", [label, eb, en, eb, en])
        db.execute("CREATE INDEX changes_kind ON changes (kind, bidx, eb)")
        db.commit()
        per_eval = {(label, kind): n for label, kind, n in db.execute(
            "SELECT label, kind, count(*) FROM changes GROUP BY label, kind")}
        rows_by_kind = dict(db.execute(
            "SELECT kind, count(DISTINCT bidx) FROM changes GROUP BY kind").fetchall())
        matched = db.execute("SELECT count(*) FROM pairs").fetchone()[0]
        only_b = db.execute("SELECT count(*) FROM only_base").fetchone()[0]
        only_n = db.execute("SELECT count(*) FROM only_new").fetchone()[0]
    finally:
        db.close()
    fb, fn = _figures(base), _figures(new)
    types = {e["label"]: e.get("output_type", "") for e in base.evals}
    evals = [EvalDiff(label=label, output_type=types.get(label, ""), base=fb[label],
                      new=fn[label], regressed=per_eval.get((label, "regressed"), 0),
                      fixed=per_eval.get((label, "fixed"), 0),
                      changed=per_eval.get((label, "changed"), 0)) for label in common]
    return Diff(base=base, new=new, key=key, key_excluded=excluded, matched=matched,
                only_base=only_b, only_new=only_n, evals=evals,
                regressed_rows=rows_by_kind.get("regressed", 0),
                fixed_rows=rows_by_kind.get("fixed", 0),
                labels_only_base=[x for x in base.labels if x not in new.labels],
                labels_only_new=[x for x in new.labels if x not in base.labels],
                _folder=folder)
