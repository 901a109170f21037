"""The ``fi-evals`` command.

Each subcommand lives in its own module with ``add_parser(subparsers)`` (which adds the parsers
of every command it runs, each with a ``func``). Only the chosen command's module is imported:
:data:`COMMANDS` names every command, its module and its one-line help, so that
``fi-evals --help`` lists them all without importing any, and ``fi-evals run ...`` imports
:mod:`fi_evals.cli.run` alone (a missing extra only matters for the command that needs it).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Any, NamedTuple

from fi_evals._version import __version__
from fi_evals.cli._exit import EXIT_USAGE


class Command(NamedTuple):
    """A subcommand: the module under ``fi_evals.cli`` that builds its parser, and its help."""

    module: str
    help: str


# In the order ``fi-evals --help`` lists them. The help must be the one the module gives
# (tests/batch/test_cli.py checks it).
COMMANDS: dict[str, Command] = {
    "serve": Command("serve", "run the reference evaluation server"),
    "run": Command("run", "score a data file with one or more evals"),
    "templates": Command("run", "list the server's evaluation templates"),
    "result": Command("run", "print one evaluation's status and result"),
    "worker": Command("worker", "run a Celery worker for `fi-evals serve --backend redis://...`"),
    "runs": Command("runs", "list the kept runs (or prune old ones)"),
    "view": Command("runs", "look at runs in the browser"),
    "diff": Command("runs", "compare two runs row by row"),
}


def _top_parser() -> tuple[argparse.ArgumentParser, Any]:
    """The top-level parser and its (still empty) subparsers."""
    parser = argparse.ArgumentParser(
        prog="fi-evals",
        description="Run LLM evaluations at scale, against a local reference server or the "
                    "hosted evaluation API.",
    )
    parser.add_argument("--version", action="version", version=f"fi-evals {__version__}")
    return parser, parser.add_subparsers(dest="command", metavar="COMMAND")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``fi-evals`` parser.

    Args:
        command: build the parsers of this command's module only (importing that module
            alone); the other commands are listed by name and help. None: every command's.
    """
    parser, subparsers = _top_parser()
    wanted = None if command is None else COMMANDS[command].module
    built: set[str] = set()
    for name, (module, help_text) in COMMANDS.items():
        if wanted is not None and module != wanted:
            subparsers.add_parser(name, help=help_text, add_help=False)  # listed only
        elif module not in built:
            built.add(module)
            importlib.import_module(f"fi_evals.cli.{module}").add_parser(subparsers)
    return parser


def _command_of(argv: Sequence[str]) -> str | None:
    """The command named on the line, from a parser that lists every command and imports none
    (``--help``, ``--version`` and a mistyped name are answered there, as usual)."""
    parser, subparsers = _top_parser()
    for name, (_, help_text) in COMMANDS.items():
        subparsers.add_parser(name, help=help_text, add_help=False)
    known, _ = parser.parse_known_args(argv)
    if known.command is None:
        parser.print_help()
    return known.command


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``fi-evals`` with ``argv`` (``sys.argv[1:]`` by default); returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    command = _command_of(argv)
    if command is None:
        return EXIT_USAGE
    args = build_parser(command).parse_args(argv)
    args.argv = argv  # the command line as given, for what a command records or prints
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
