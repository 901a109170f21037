"""``fi-evals runs``, ``fi-evals view`` and ``fi-evals diff``: looking at kept runs.

- ``runs``: one line per kept run (id, name, when, rows, pass rate per eval, verdict);
  ``--prune KEEP`` deletes all but the KEEP newest.
- ``view [RUN ...]``: serves the runs on 127.0.0.1 and opens the browser (server extra);
  ``--export FILE`` writes one self-contained HTML file instead.
- ``diff BASE NEW``: per eval the change in pass rate and mean, the rows whose verdict
  regressed or was fixed, rows only in one run; exit 1 when more rows regressed than
  ``--max-regressions`` (default 0): the CI gate "no worse than main".

A RUN is a run id, a name (the newest run of that name), ``latest`` / ``latest~N``, a unique
id prefix, or a run folder's path (:meth:`fi_evals.runs.RunStore.resolve`).
Exit status: 0 done, 1 ``diff`` found too many regressions, 2 bad arguments or unknown run.
"""

from __future__ import annotations

import argparse
import json
import sys
import webbrowser
from datetime import datetime
from typing import Any

from fi_evals import _constants as C
from fi_evals.cli._args import non_negative_int
from fi_evals.cli._exit import EXIT_FAILED, EXIT_OK, EXIT_USAGE

__all__ = ["add_parser"]

_RUN_HELP = ("a run id, a name (its newest run), latest, latest~N, an id prefix or a run "
             "folder")


def _runs_dir_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs-dir", metavar="DIR",
                        help=f"where runs are kept (default ${C.ENV_HOME}/{C.RUNS_SUBDIR}, "
                             f"else {C.HOME_DIR}/{C.RUNS_SUBDIR})")


def add_parser(subparsers: Any) -> None:
    """Add ``runs``, ``view`` and ``diff`` to the ``fi-evals`` command."""
    r = subparsers.add_parser("runs", help="list the kept runs (or prune old ones)",
                              description="List the kept runs, oldest first.")
    _runs_dir_option(r)
    r.add_argument("--prune", type=non_negative_int, metavar="KEEP",
                   help="delete all runs but the KEEP newest")
    r.add_argument("--json", action="store_true", help="print the runs' metadata as JSON")
    r.set_defaults(func=run_runs)

    v = subparsers.add_parser(
        "view", help="look at runs in the browser",
        description="Serve runs on 127.0.0.1 and open the browser: an overview per eval, "
                    "rows filtered by eval, verdict and text, each row's detail, several "
                    "runs side by side and their diff. Ctrl-C stops it.")
    v.add_argument("runs", nargs="*", metavar="RUN", help=f"{_RUN_HELP} (default: latest)")
    _runs_dir_option(v)
    v.add_argument("--port", type=non_negative_int, default=0,
                   help="port on 127.0.0.1 (default 0: any free port)")
    v.add_argument("--no-open", dest="open", action="store_false",
                   help="do not open a browser; print the address only")
    v.add_argument("--export", metavar="FILE",
                   help="write one self-contained HTML file instead of serving")
    v.add_argument("--export-rows", type=non_negative_int, default=C.VIEW_EXPORT_ROWS,
                   metavar="N", help=f"rows per run in --export (errored and failing first; "
                                     f"default {C.VIEW_EXPORT_ROWS})")
    v.set_defaults(func=run_view)

    d = subparsers.add_parser(
        "diff", help="compare two runs row by row",
        description="Compare NEW with BASE: per eval the change in pass rate and mean, rows "
                    "whose verdict regressed (passed -> failed or errored) or was fixed, rows "
                    "only in one run. Exit 1 when more rows regressed than --max-regressions.")
    d.add_argument("base", metavar="BASE", help=_RUN_HELP)
    d.add_argument("new", metavar="NEW", help=_RUN_HELP)
    _runs_dir_option(d)
    d.add_argument("--key", metavar="FIELD",
                   help="match rows by this field (default: a hash of the input fields, i.e. "
                        "all but those evals read as their output)")
    d.add_argument("--max-regressions", type=non_negative_int, default=0, metavar="N",
                   help="exit 1 when more than N rows regressed (default 0)")
    d.add_argument("--show", type=non_negative_int, default=C.DIFF_SHOW, metavar="N",
                   help=f"list the first N regressed and fixed rows (default {C.DIFF_SHOW})")
    d.add_argument("--json", action="store_true", help="print the diff as JSON")
    d.set_defaults(func=run_diff)


def _fail(message: str, code: int = EXIT_USAGE) -> int:
    print(f"fi-evals: error: {message}", file=sys.stderr)
    return code


def _store(args: argparse.Namespace) -> Any:
    from fi_evals.runs.store import RunStore

    return RunStore(args.runs_dir)


# --------------------------------------------------------------------------- runs


def _when(iso: str | None) -> str:
    if not iso:
        return "?"
    try:
        return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return iso


def _rates(overview: dict[str, Any], width: int = 60) -> str:
    parts = [f"{e['label']} {'n/a' if e['pass_rate'] is None else format(e['pass_rate'], '.1%')}"
             for e in overview["evals"]]
    text = ", ".join(parts)
    if len(text) <= width:
        return text
    shown: list[str] = []
    for part in parts:
        if len(", ".join([*shown, part])) > width - 6:
            break
        shown.append(part)
    return ", ".join(shown) + f" +{len(parts) - len(shown)}"


def run_runs(args: argparse.Namespace) -> int:
    """``fi-evals runs``."""
    store = _store(args)
    if args.prune is not None:
        removed = store.prune(args.prune)
        for run in removed:
            print(f"removed {run.id}")
        kept = len(store.runs())
        print(f"{len(removed)} run(s) removed, {kept} kept in {store.root}")
        return EXIT_OK
    runs = store.runs()
    if args.json:
        print(json.dumps([r.meta for r in runs], indent=1, default=str))
        return EXIT_OK
    if not runs:
        print(f"no runs in {store.root} (every `fi-evals run` keeps one)")
        return EXIT_OK
    table = [("run", "name", "when", "rows", "pass rate per eval", "verdict")]
    for run in runs:
        overview = run.overview()
        verdict = run.verdict or run.status
        if run.verdict and run.status not in ("complete",):
            verdict += f" ({run.status})"
        table.append((run.id, run.name or "-", _when(overview.get("created")),
                      f"{run.rows:,}", _rates(overview), verdict))
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    for row in table:
        print("  ".join(c.rjust(w) if i == 3 else c.ljust(w)
                        for i, (c, w) in enumerate(zip(row, widths))).rstrip())
    print(f"{len(runs)} run(s) in {store.root}; `fi-evals view RUN` shows one, "
          f"`fi-evals diff BASE NEW` compares two")
    return EXIT_OK


# --------------------------------------------------------------------------- view


def run_view(args: argparse.Namespace) -> int:
    """``fi-evals view``."""
    from fi_evals.runs.store import RunNotFoundError

    store = _store(args)
    try:
        runs = [store.resolve(ref) for ref in (args.runs or ["latest"])]
    except RunNotFoundError as exc:
        return _fail(str(exc.args[0]))
    if args.export:
        from fi_evals.runs.export import export_html

        try:
            path = export_html(runs, args.export, rows=args.export_rows)
        except (OSError, ValueError) as exc:
            return _fail(str(exc))
        print(f"wrote {path} ({', '.join(r.id for r in runs)})")
        return EXIT_OK
    try:
        from fi_evals.runs.viewer import start_viewer

        viewer = start_viewer(runs, port=args.port)
    except (ImportError, OSError, RuntimeError) as exc:
        return _fail(str(exc))
    print(f"fi-evals view serving {', '.join(r.id for r in runs)} on {viewer.url} "
          f"(Ctrl-C to stop)", flush=True)
    if args.open:
        webbrowser.open(viewer.url)
    try:
        viewer.wait()
    except KeyboardInterrupt:
        pass
    finally:
        viewer.stop()
    return EXIT_OK


# --------------------------------------------------------------------------- diff


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _delta(value: float | None, points: bool) -> str:
    if value is None:
        return "n/a"
    return f"{value * 100:+.1f} pp" if points else f"{value:+.3f}"


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _table(rows: list[tuple[str, ...]], right: set[int]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.rjust(w) if i in right else c.ljust(w)
                      for i, (c, w) in enumerate(zip(r, widths))).rstrip() for r in rows]


def _listing(diff: Any, kind: str, total: int, show: int) -> list[str]:
    if not total:
        return []
    what = {"regressed": "a verdict went from passed to failed or errored",
            "fixed": "a verdict went from failed or errored to passed"}[kind]
    entries = diff.rows(kind, limit=show * 4) if show else []
    rows_seen: list[int] = []
    lines = []
    for e in entries:
        if e["base_index"] not in rows_seen:
            if len(rows_seen) == show:
                break
            rows_seen.append(e["base_index"])
        reason = e["new"]["error_type"] or e["new"]["reason"] or ""
        reason = " ".join(str(reason).split())
        lines.append(f"  row {e['base_index']} -> {e['new_index']}  {e['label']}  "
                     f"{e['base']['verdict']} -> {e['new']['verdict']}  {reason[:120]}")
    note = ("all shown" if len(rows_seen) == total else
            f"the first {len(rows_seen)} shown; --show N for more")
    return [f"{kind} rows: {total:,} ({what}; {note})", *lines]


def render_diff(diff: Any, show: int) -> list[str]:
    """The text ``fi-evals diff`` prints (without its verdict line)."""
    b, n = diff.base, diff.new
    matched = (f"rows matched by {diff.key_text}: {diff.matched:,} matched, "
               f"{diff.only_base:,} only in base, {diff.only_new:,} only in new")
    lines = [f"base  {b.id}  ({b.rows:,} rows, {b.verdict or b.status})",
             f"new   {n.id}  ({n.rows:,} rows, {n.verdict or n.status})", matched, ""]
    table: list[tuple[str, ...]] = [("eval", "base pass rate", "new pass rate", "change",
                                      "base mean", "new mean", "change", "regressed", "fixed")]
    for e in diff.evals:
        base_rate = f"{_pct(e.base['pass_rate'])} ({e.base['passed']:,}/{e.base['graded']:,})"
        table.append((e.label, base_rate,
                      f"{_pct(e.new['pass_rate'])} ({e.new['passed']:,}/{e.new['graded']:,})",
                      _delta(e.delta("pass_rate"), True), _num(e.base["mean"]),
                      _num(e.new["mean"]), _delta(e.delta("mean"), False), f"{e.regressed:,}",
                      f"{e.fixed:,}"))
    lines += _table(table, right={1, 2, 3, 4, 5, 6, 7, 8})
    for side, labels in (("base", diff.labels_only_base), ("new", diff.labels_only_new)):
        if labels:
            lines.append(f"evals only in {side}: {', '.join(labels)} (not compared)")
    lines += _listing(diff, "regressed", diff.regressed_rows, show)
    lines += _listing(diff, "fixed", diff.fixed_rows, show)
    for kind, count in (("only_base", diff.only_base), ("only_new", diff.only_new)):
        if count:
            indexes = [str(r["index"]) for r in diff.rows(kind, limit=10)]
            more = ", ..." if count > len(indexes) else ""
            where = "base" if kind == "only_base" else "new"
            lines.append(f"only in {where}: {count:,} rows ({', '.join(indexes)}{more})")
    return lines


def run_diff(args: argparse.Namespace) -> int:
    """``fi-evals diff``."""
    from fi_evals.runs.diff import diff_runs
    from fi_evals.runs.store import RunNotFoundError

    store = _store(args)
    try:
        base, new = store.resolve(args.base), store.resolve(args.new)
    except RunNotFoundError as exc:
        return _fail(str(exc.args[0]))
    if base.folder.resolve() == new.folder.resolve():
        return _fail(f"BASE and NEW are the same run ({base.id})")
    with diff_runs(base, new, key=args.key) as diff:
        too_many = diff.regressed_rows > args.max_regressions
        if args.json:
            print(json.dumps({**diff.to_dict(), "max_regressions": args.max_regressions,
                              "passed": not too_many}, indent=1, default=str))
        else:
            print("\n".join(render_diff(diff, args.show)))
            verdict = (f"exit 1: FAIL: {diff.regressed_rows:,} regressed rows > "
                       f"--max-regressions {args.max_regressions}" if too_many else
                       f"exit 0: PASS: {diff.regressed_rows:,} regressed rows <= "
                       f"--max-regressions {args.max_regressions}")
            print(verdict)
    return EXIT_FAILED if too_many else EXIT_OK
