"""``fi-evals run``, ``fi-evals templates`` and ``fi-evals result``.

``run`` scores a data file (JSONL, CSV, a JSON array, Parquet, or ``-`` for stdin) with one or
more evals (``Evaluator.evaluate_batch``), shows progress on stderr and prints the summary on
stdout. Exit status, said again by the summary's last line:

- 0: every outcome is a verdict and every threshold holds;
- 1: an outcome errored (beyond ``--max-error-rate``), a threshold failed, or the run stopped
  early (deadline, Ctrl-C: the partial summary is printed, and how to resume);
- 2: the command cannot start (bad arguments, unknown template, a template this server cannot
  run, a key mapping the first row cannot satisfy, missing file, bad keys, no server).

Without ``FI_BASE_URL`` every command starts an embedded reference server on 127.0.0.1 and
stops it at exit (see :mod:`fi_evals.cli._embedded`); the ``--judge-*`` flags configure it.

Every run is kept in the run store (:mod:`fi_evals.runs`; ``--no-save`` to skip) for
``fi-evals runs``, ``view`` and ``diff`` (:mod:`fi_evals.cli.runs`); ``--junit`` and
``--summary-md`` write CI reports (:mod:`fi_evals.batch.formats`).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

from fi_evals import _constants as C
from fi_evals.cli._args import (
    MODEL_OPTIONS,
    add_model_options,
    given_model_options,
    model_settings,
    non_negative_int,
    positive_float,
    positive_int,
)
from fi_evals.cli._exit import EXIT_FAILED, EXIT_OK, EXIT_USAGE

__all__ = ["add_parser", "run"]

_CONFIG_KEYS = frozenset({"evals", "map", "thresholds", "async", "workers", "chunk_size",
                          "item_timeout", "deadline", "journal", "output", "max_error_rate",
                          "show", "limit", "run_name", "runs_dir", "save", "junit",
                          "summary_md", *MODEL_OPTIONS})

_RUN_EPILOG = """examples:
  fi-evals run answers.jsonl --eval is_json --map text=tool_call
  fi-evals run answers.csv --eval fuzzy_match --map output=answer --map expected=reference \\
      --eval short=length_less_than:max_length=400 --map short.text=answer \\
      --threshold fuzzy_match=0.7 --output scored.jsonl
  fi-evals run qa.jsonl --eval groundedness --map context=passages \\
      --judge-url http://localhost:11434/v1 --judge-model llama3.1
  fi-evals run big.jsonl --config evals.yaml --async --journal big.journal   # rerun to resume
  cat rows.jsonl | fi-evals run - --eval is_json --map text=answer --limit 100
  fi-evals run answers.jsonl --metric my_metrics:exact \\
      --metric my_metrics:overlap:pass_threshold=0.6   # Python functions as evals
  fi-evals run answers.jsonl --config evals.yaml --name main --junit report.xml \\
      --summary-md "$GITHUB_STEP_SUMMARY"      # then: fi-evals view main; fi-evals diff main latest

Every run is kept in the run store (.fi-evals/runs, $FI_EVALS_HOME/runs or --runs-dir;
--no-save to skip): `fi-evals runs` lists them, `fi-evals view` shows them in the browser,
`fi-evals diff BASE NEW` compares two row by row.

--metric MODULE:FUNCTION runs a Python function as an eval on every row (the module is
imported from the current directory or the installed packages); see docs/custom-metrics.md.

--map KEY=FIELD applies to every eval that reads KEY; --map LABEL.KEY=FIELD to one eval.
Mapping the same KEY twice without a LABEL is an error (it would silently apply to all).

--config FILE (.json, .yaml or .yml) holds any of: "evals" (a list of "NAME[:p=v]" strings
or {"eval", "params", "label", "map", "pass_threshold"} objects), "map", "thresholds",
"async", "workers", "chunk_size", "item_timeout", "deadline", "journal", "output",
"max_error_rate", "show", "limit", "run_name", "runs_dir", "save", "junit", "summary_md",
and the judge options ("judge_url", "judge_model",
"judge_api_key", "judge_concurrency", "judge_timeout", "embedding_model",
"embedding_precision", "local_grounding_heuristic"); keys starting with "_" are comments.
Flags add to it and win.
"""


def _state_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--state", metavar="DIR",
                        help="embedded server only: keep its database and keys in DIR "
                             "(default: a temporary folder; with --journal J, J.server)")


def add_parser(subparsers: Any) -> None:
    """Add ``run``, ``templates`` and ``result`` to the ``fi-evals`` command."""
    p = subparsers.add_parser(
        "run", help="score a data file with one or more evals",
        description="Score every row of DATA with every --eval, in order, with progress and "
                    "a summary.\nExit 0: every outcome is a verdict and every threshold "
                    "holds; 1: an outcome errored\n(beyond --max-error-rate), a threshold "
                    "failed or the run stopped early; 2: it cannot start.",
        epilog=_RUN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data", metavar="DATA",
                   help="a .jsonl/.ndjson, .csv, .json (an array of objects) or .parquet "
                        "file, or - for JSON lines on stdin")
    p.add_argument("--eval", dest="evals", action="append", default=[],
                   metavar="[LABEL=]NAME[:param=value,...]", help="an eval (repeatable)")
    p.add_argument("--metric", dest="metrics", action="append", default=[],
                   metavar="[LABEL=]MODULE:FUNCTION[:pass_threshold=X]",
                   help="a Python function as an eval, run here on every row: it returns a "
                        "bool, a score from 0 to 1 or (value, reason) (repeatable)")
    p.add_argument("--map", dest="maps", action="append", default=[],
                   metavar="[LABEL.]KEY=FIELD",
                   help="read template key KEY from row field FIELD (repeatable)")
    p.add_argument("--config", metavar="FILE", help="a JSON file of evals and options")
    p.add_argument("--async", dest="is_async", action="store_true", default=None,
                   help="submit everything in chunks; results the server finished at submit "
                        "come back with their ids, the rest are polled with bulk status")
    p.add_argument("--workers", type=positive_int, metavar="N",
                   help=f"requests in flight at most (default {C.DEFAULT_MAX_WORKERS})")
    p.add_argument("--chunk-size", type=positive_int, metavar="N", help="rows per request")
    p.add_argument("--item-timeout", type=positive_float, metavar="SECONDS")
    p.add_argument("--deadline", type=positive_float, metavar="SECONDS",
                   help="stop the whole batch after this long")
    p.add_argument("--journal", metavar="PATH",
                   help="append-only journal; rerun with the same one to resume")
    p.add_argument("--output", metavar="PATH", help="stream scored rows to .jsonl or .csv")
    p.add_argument("--threshold", dest="thresholds", action="append", default=[],
                   metavar="LABEL[.METRIC]=MIN",
                   help="fail (exit 1) below MIN; METRIC is pass_rate, mean or coverage")
    p.add_argument("--max-error-rate", type=_rate, metavar="R",
                   help="share of outcomes (0 to 1) that may be errors with exit 0 "
                        "(default 0: any error exits 1)")
    p.add_argument("--show", type=non_negative_int, metavar="N",
                   help=f"list the first N failing or errored rows (default "
                        f"{C.BATCH_SHOW_FAILURES}; 0: none)")
    p.add_argument("--limit", type=positive_int, metavar="N", help="score the first N rows only")
    p.add_argument("--stats-json", metavar="PATH", help="also write the stats as JSON")
    kept = p.add_argument_group(
        "the run store and CI reports",
        "Every run is kept (config, evals, every row's outcomes, stats) for `fi-evals runs`,\n"
        "`fi-evals view` and `fi-evals diff`.")
    kept.add_argument("--run-name", "--name", dest="run_name", metavar="NAME",
                      help="name the kept run (default: a sortable id only); a name may be "
                           "reused: it then means the newest run of that name")
    kept.add_argument("--runs-dir", metavar="DIR",
                      help=f"where runs are kept (default ${C.ENV_HOME}/{C.RUNS_SUBDIR}, else "
                           f"{C.HOME_DIR}/{C.RUNS_SUBDIR})")
    kept.add_argument("--no-save", dest="save", action="store_false", default=None,
                      help="do not keep this run")
    kept.add_argument("--junit", metavar="PATH",
                      help="also write a JUnit XML report (a test case per row and eval)")
    kept.add_argument("--summary-md", metavar="PATH",
                      help="also write a Markdown summary (a PR comment, $GITHUB_STEP_SUMMARY)")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bar")
    _state_option(p)
    add_model_options(p, embedded=True)
    p.set_defaults(func=run_batch)

    t = subparsers.add_parser(
        "templates", help="list the server's evaluation templates",
        description="List the templates, whether each runs here and, when not, what to do.")
    t.add_argument("--json", action="store_true", help="print the raw list as JSON")
    _state_option(t)
    add_model_options(t, embedded=True)
    t.set_defaults(func=run_templates)

    r = subparsers.add_parser("result", help="print one evaluation's status and result")
    r.add_argument("eval_id", metavar="EVAL_ID")
    _state_option(r)
    add_model_options(r, embedded=True)
    r.set_defaults(func=run_result)


def _rate(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, not {text}")
    return value


def run(args: argparse.Namespace) -> int:
    """Dispatch to the subcommand's function (``args.func``)."""
    return int(args.func(args))


# --------------------------------------------------------------------------- helpers


def _fail(message: str, code: int = EXIT_USAGE) -> int:
    print(f"fi-evals: error: {message}", file=sys.stderr)
    return code


def _fail_on(exc: BaseException) -> int:
    """Exit 2 with the error, and for a server that cannot be reached, what to check."""
    from fi_evals import APIConnectionError, AuthenticationError
    from fi_evals.cli._embedded import external_server

    message = str(exc)
    url = external_server()
    if url and isinstance(exc, APIConnectionError):
        message += (f" (is the server at {C.ENV_BASE_URL}={url} running? Unset "
                    f"{C.ENV_BASE_URL} to use an embedded local server)")
    elif url and isinstance(exc, AuthenticationError):
        message += (f" (check {C.ENV_API_KEY} and {C.ENV_SECRET_KEY}: they are the keys of "
                    f"{url})")
    return _fail(message)


def _load_config(path: str | None) -> dict[str, Any]:
    """The ``--config`` file (JSON or YAML), with its keys checked."""
    if path is None:
        return {}
    from fi_evals.batch.config import load_config

    try:
        config = load_config(path)
    except ImportError as exc:
        raise ValueError(str(exc)) from None
    unknown = {k for k in config if not k.startswith("_")} - _CONFIG_KEYS  # "_x": comments
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {sorted(unknown)}; expected some of "
                         f"{sorted(_CONFIG_KEYS)}")
    return config


def _labels_reading(key: str, evals: list[Any]) -> list[str]:
    """Labels of the evals whose template reads ``key`` (for error messages; best effort)."""
    from fi_evals.batch.specs import resolve_specs

    try:
        specs = resolve_specs(evals)
    except Exception:  # noqa: BLE001 - unknown names are reported later, with their own message
        return []
    return [spec.label or spec.name for spec, template in specs if key in template.key_names]


def _parse_maps(entries: list[str], base: dict[str, Any], evals: list[Any]) -> dict[str, Any]:
    """``--map`` flags over the config's ``map``: ``KEY=FIELD`` for every eval that reads KEY,
    ``LABEL.KEY=FIELD`` for one. An unscoped KEY given twice with two fields is an error: it
    cannot mean both (flags win over the config file)."""
    mapping: dict[str, Any] = {k: (dict(v) if isinstance(v, dict) else v)
                               for k, v in base.items()}
    unscoped: dict[str, str] = {}
    for entry in entries:
        left, eq, field = entry.partition("=")
        if not eq or not left or not field:
            raise ValueError(f"--map {entry!r}: write KEY=FIELD or LABEL.KEY=FIELD")
        label, dot, key = left.rpartition(".")
        if dot:
            mapping.setdefault(label, {})[key] = field
            continue
        if key in unscoped and unscoped[key] != field:
            labels = _labels_reading(key, evals) or ["LABEL"]
            fields = [unscoped[key], field]
            scoped = " ".join(f"--map {lb}.{key}={fields[i] if i < 2 else 'FIELD'}"
                              for i, lb in enumerate(labels))
            raise ValueError(
                f"--map {key}={unscoped[key]} and --map {key}={field} both map key {key!r} "
                f"for every eval; to read it from another field per eval, scope each to its "
                f"eval label: {scoped}")
        unscoped[key] = field
        mapping[key] = field
    return mapping


def _parse_thresholds(entries: list[str], base: dict[str, Any]) -> dict[str, float]:
    out = {k: float(v) for k, v in base.items()}
    for entry in entries:
        name, eq, value = entry.rpartition("=")
        try:
            out[name] = float(value)
        except ValueError:
            raise ValueError(f"--threshold {entry!r}: write LABEL=0.8") from None
        if not eq or not name:
            raise ValueError(f"--threshold {entry!r}: write LABEL=0.8")
    return out


def _options(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``evaluate_batch`` keyword arguments (plus ``evals``), and the config file."""
    from fi_evals.batch.metrics import load_metric

    config = _load_config(args.config)
    evals = [*config.get("evals", []), *args.evals,
             *(load_metric(m) for m in getattr(args, "metrics", []))]
    if not evals:
        raise ValueError("no eval given: add --eval NAME (see `fi-evals templates`) or "
                         "--metric MODULE:FUNCTION")

    def pick(flag: Any, key: str, default: Any = None) -> Any:
        return flag if flag is not None else config.get(key, default)

    return {
        "evals": evals,
        "key_mapping": _parse_maps(args.maps, config.get("map", {}), evals),
        "thresholds": _parse_thresholds(args.thresholds, config.get("thresholds", {})),
        "is_async": bool(pick(args.is_async, "async", False)),
        "max_workers": pick(args.workers, "workers"),
        "chunk_size": pick(args.chunk_size, "chunk_size"),
        "item_timeout": pick(args.item_timeout, "item_timeout"),
        "deadline": pick(args.deadline, "deadline"),
        "journal": pick(args.journal, "journal"),
        "output": pick(args.output, "output"),
        "max_error_rate": float(pick(args.max_error_rate, "max_error_rate", 0.0)),
        "show": int(pick(args.show, "show", C.BATCH_SHOW_FAILURES)),
        "limit": pick(args.limit, "limit"),
        "progress": args.progress,
        **_store_options(args, config),
        "junit": pick(args.junit, "junit"),
        "summary_md": pick(args.summary_md, "summary_md"),
    }, config


def _store_options(args: argparse.Namespace, config: dict[str, Any]) -> dict[str, Any]:
    """The run store's options: the CLI keeps every run unless ``--no-save`` (or
    ``save: false`` in the config) says otherwise, and then ignores the run's name."""
    save = args.save if args.save is not None else config.get("save", True)
    if not isinstance(save, bool):
        raise ValueError(f"save: expected true or false, not {save!r}")
    if not save:
        return {"save": False, "run_name": None, "runs_dir": None}
    name = args.run_name if args.run_name is not None else config.get("run_name")
    return {"save": True, "run_name": None if name is None else str(name),
            "runs_dir": args.runs_dir if args.runs_dir is not None else config.get("runs_dir")}


# --------------------------------------------------------------------------- commands


def run_batch(args: argparse.Namespace) -> int:
    """``fi-evals run``."""
    from fi_evals import (
        Evaluator,
        FiEvalsError,
        KeyMappingError,
        TemplateUnavailableError,
    )
    from fi_evals.batch.summary import render_summary
    from fi_evals.cli._embedded import ForeignServerOptions, ServerMissing, connect

    try:
        options, config = _options(args)
        if args.data != "-" and not Path(args.data).exists():
            raise ValueError(f"no such data file: {args.data!r}")
    except ValueError as exc:
        return _fail(str(exc))
    evals = options.pop("evals")
    workers = options["max_workers"] or C.DEFAULT_MAX_WORKERS
    state = args.state or (f"{options['journal']}.server" if options["journal"] else None)
    from fi_evals.runs.store import RECORDED_COMMAND

    command_line = shlex.join(["fi-evals", *getattr(args, "argv", sys.argv[1:])])
    recorded = RECORDED_COMMAND.set(command_line)
    try:
        with connect(state, models=model_settings(args, config),
                     given=given_model_options(args, config)) as server, \
                Evaluator(max_workers=workers, **server) as ev:
            result = ev.evaluate_batch(args.data, evals, **options)
    except KeyMappingError as exc:
        return _fail(_mapping_message(exc, args.data))
    except TemplateUnavailableError as exc:
        return _fail(f"--eval {exc.name} cannot run on this server: {exc.reason}")
    except (ServerMissing, ForeignServerOptions, FiEvalsError, ValueError, OSError,
            ImportError) as exc:
        return _fail_on(exc)
    except KeyboardInterrupt:  # before or after the batch (during it, the batch handles it)
        return _fail("interrupted", EXIT_FAILED)
    finally:
        RECORDED_COMMAND.reset(recorded)
    print(render_summary(result, cli=True), flush=True)
    if result.stopped in ("interrupted", "deadline"):
        print(_resume_hint(options["journal"], command_line), file=sys.stderr)
    if args.stats_json:
        payload = {**result.stats.to_dict(), "stopped": result.stopped,
                   "passed": result.passed, "problems": result.problems,
                   "checks": [c.__dict__ for c in result.checks]}
        Path(args.stats_json).write_text(json.dumps(payload, indent=2), "utf-8")
    return EXIT_OK if result.passed else EXIT_FAILED


def _mapping_message(exc: Any, data: str) -> str:
    """A :class:`~fi_evals.KeyMappingError` told in the command line's terms."""
    where = "stdin" if data == "-" else Path(data).name
    target = exc.suggestion or "FIELD"
    hint = f" Did you mean {exc.suggestion!r}?" if exc.suggestion else ""
    return (f"--eval {exc.label} reads key {exc.key!r} from field {exc.field!r}, which the "
            f"first row of {where} does not have.{hint} Its fields: "
            f"{', '.join(exc.fields) or '(none)'}. Write --map {exc.key}={target}, or "
            f"--map {exc.label}.{exc.key}={target} for this eval only.")


def _resume_hint(journal: str | None, command: str) -> str:
    if journal:
        return (f"fi-evals: the run stopped early; its journal {journal} keeps what was done. "
                f"Resume with:\n  {command}")
    return ("fi-evals: the run stopped early and kept no journal, so it cannot resume; next "
            "time add --journal FILE, and rerun the same command to resume.")


def run_templates(args: argparse.Namespace) -> int:
    """``fi-evals templates``."""
    from fi_evals import Evaluator, FiEvalsError
    from fi_evals.cli._embedded import ForeignServerOptions, ServerMissing, connect

    try:
        with connect(args.state, quiet=args.json, models=model_settings(args),
                     given=given_model_options(args)) as server, Evaluator(**server) as ev:
            templates = ev.list_evaluations()
    except (ServerMissing, ForeignServerOptions, FiEvalsError, ValueError) as exc:
        return _fail_on(exc)
    if args.json:
        print(json.dumps(templates, indent=2))
        return EXIT_OK
    _print(_templates_table(templates))
    return EXIT_OK


def _templates_table(templates: list[dict[str, Any]]) -> str:
    """One line per template; what to do for those that cannot run, once per reason."""
    notes: dict[str, str] = {}  # reason or approximation -> its footnote mark

    def mark(text: str) -> str:
        return notes.setdefault(text, f"[{len(notes) + 1}]")

    rows = [("name", "output", "runs here", "keys", "params")]
    for t in templates:
        cfg = t["config"]
        optional = set(cfg.get("optional_keys") or [])
        keys = ", ".join(k + ("?" if k in optional else "") for k in cfg["required_keys"])
        params = ", ".join((cfg.get("params") or {}).get("properties", {}))
        if not cfg.get("evaluable", True):
            here = "no " + mark(cfg.get("unavailable_reason") or "the server gives no reason")
        elif cfg.get("approximation"):
            here = "local " + mark(cfg["approximation"])
        else:
            here = "yes"
        properties = (cfg.get("params") or {}).get("properties", {})
        output = "output_type" if "output_type" in properties else cfg["output"]  # custom_judge
        rows.append((t["name"], output, here, keys, params or "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[4] for r in rows]
    runnable = sum(1 for t in templates if t["config"].get("evaluable", True))
    lines.append(f"\n{len(templates)} templates, {runnable} run here; '?' marks an optional "
                 f"key. Use one with `fi-evals run DATA --eval NAME[:param=value]`.")
    for text, note in notes.items():
        lines.append(f"{note} {text}")
    return "\n".join(lines)


def _print(text: str) -> None:
    """Print, and stay quiet when the reader went away (``fi-evals templates | head``)."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def run_result(args: argparse.Namespace) -> int:
    """``fi-evals result EVAL_ID``: the raw payload as JSON; 1 when the id is unknown."""
    from fi_evals import BadRequestError, Evaluator, FiEvalsError, NotFoundError
    from fi_evals.cli._embedded import ForeignServerOptions, ServerMissing, connect

    try:
        with connect(args.state, quiet=True, models=model_settings(args),
                     given=given_model_options(args)) as server, Evaluator(**server) as ev:
            payload = ev.get_eval_result(args.eval_id)
    except (NotFoundError, BadRequestError) as exc:
        return _fail(str(exc), EXIT_FAILED)
    except (ServerMissing, ForeignServerOptions, FiEvalsError, ValueError) as exc:
        return _fail(str(exc))
    print(json.dumps(payload, indent=2, default=str))
    return EXIT_OK
