"""The ``fi-evals`` command.

Each subcommand lives in its own module with ``add_parser(subparsers)`` and ``run(args) -> int``;
they are imported lazily so that a missing extra only matters for the subcommand that needs it.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from fi_evals._version import __version__
from fi_evals.cli._exit import EXIT_USAGE

# subcommand -> module under fi_evals.cli
SUBCOMMANDS = {
    "serve": "serve",
    "run": "run",
    "templates": "run",
    "result": "run",
    "worker": "worker",
    "runs": "runs",
    "view": "runs",
    "diff": "runs",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fi-evals",
        description="Run LLM evaluations at scale, against a local reference server or the "
                    "hosted evaluation API.",
    )
    parser.add_argument("--version", action="version", version=f"fi-evals {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    seen: set[str] = set()
    for module_name in SUBCOMMANDS.values():
        if module_name in seen:
            continue
        seen.add(module_name)
        try:
            module = importlib.import_module(f"fi_evals.cli.{module_name}")
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith("fi_evals.cli."):
                continue  # subcommand not built yet
            raise
        module.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
