"""Argument types shared by the ``fi-evals`` subcommands.

argparse turns their errors into exit 2.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from typing import Any

from fi_evals import _constants as C


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {text}")
    return value


def non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {text}")
    return value


def switch(text: str) -> bool:
    """An on/off environment value: 1/true/yes/on or 0/false/no/off (any case)."""
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"must be 1/true/yes/on or 0/false/no/off, not {text!r}")


# --------------------------------------------------------------------------- model options
# The same flags, with the same meaning, on every command that starts a server: `serve`, and
# `run`/`templates`/`result` with their embedded server.

MODEL_OPTIONS = ("judge_url", "judge_model", "judge_api_key", "judge_concurrency",
                 "judge_timeout", "judge_rpm", "judge_tpm", "judge_cache", "judge_cache_ttl",
                 "judge_price_in", "judge_price_out", "embedding_model", "embedding_precision",
                 "local_grounding_heuristic")
"""The argparse destinations (and ``--config`` keys) of :func:`add_model_options`."""

_ENV = {"judge_url": C.ENV_JUDGE_BASE_URL, "judge_model": C.ENV_JUDGE_MODEL,
        "judge_api_key": C.ENV_JUDGE_API_KEY, "embedding_model": C.ENV_EMBEDDING_MODEL,
        "embedding_precision": C.ENV_EMBEDDING_PRECISION, "judge_cache": C.ENV_JUDGE_CACHE,
        "judge_cache_ttl": C.ENV_JUDGE_CACHE_TTL, "judge_price_in": C.ENV_JUDGE_PRICE_IN,
        "judge_price_out": C.ENV_JUDGE_PRICE_OUT, "judge_rpm": C.ENV_JUDGE_RPM,
        "judge_tpm": C.ENV_JUDGE_TPM,
        "local_grounding_heuristic": C.ENV_LOCAL_GROUNDING_HEURISTIC}
_DEFAULTS = {"judge_concurrency": C.JUDGE_CONCURRENCY, "judge_timeout": C.JUDGE_TIMEOUT,
             "judge_cache": C.JUDGE_CACHE, "judge_cache_ttl": C.JUDGE_CACHE_TTL,
             "local_grounding_heuristic": False}
_NUMBERS = {"judge_cache_ttl": positive_float, "judge_price_in": non_negative_float,
            "judge_price_out": non_negative_float, "judge_rpm": positive_float,
            "judge_tpm": positive_float, "local_grounding_heuristic": switch}
"""Options whose environment variable (a string) is converted like the flag."""


def add_model_options(parser: argparse.ArgumentParser, *, embedded: bool = False) -> None:
    """Add the judge and offline-model flags (all default to None: "not given").

    Args:
        parser: the subcommand's parser.
        embedded: the command starts an embedded server only when ``FI_BASE_URL`` is unset
            (the flags are then refused with another server: it has its own judge).
    """
    where = (" (embedded server only: a server at FI_BASE_URL has its own judge)"
             if embedded else "")
    group = parser.add_argument_group(
        "model-judged templates" + where,
        "Without a judge, the offline models of pip install 'fi-evals[models]'\n"
        "compute a local approximation of toxicity and a few others (each reports its\n"
        "held-out accuracy); groundedness and its kin need a judge unless you opt in to\n"
        "the local heuristic.")
    group.add_argument("--judge-url", metavar="URL",
                       help="OpenAI-compatible base URL of the judge model (POST "
                            f"URL/chat/completions); default ${C.ENV_JUDGE_BASE_URL}")
    group.add_argument("--judge-model", metavar="NAME",
                       help=f"judge model when a request names none; default ${C.ENV_JUDGE_MODEL}")
    group.add_argument("--judge-api-key", metavar="KEY",
                       help=f"bearer token for the judge; default ${C.ENV_JUDGE_API_KEY}")
    group.add_argument("--judge-concurrency", type=positive_int, metavar="N",
                       help=f"judge calls in flight at once (default {C.JUDGE_CONCURRENCY})")
    group.add_argument("--judge-timeout", type=positive_float, metavar="SECONDS",
                       help="seconds one evaluation may spend on the judge, retries included "
                            f"(default {C.JUDGE_TIMEOUT:g})")
    group.add_argument("--judge-rpm", type=positive_float, metavar="N",
                       help="the judge provider's requests per minute: every judge call of "
                            "the process (of every worker, with --backend redis://) shares "
                            "one budget (default $FI_JUDGE_RPM, else learned from the "
                            "provider's x-ratelimit-* headers)")
    group.add_argument("--judge-tpm", type=positive_float, metavar="N",
                       help="the judge provider's tokens per minute (default $FI_JUDGE_TPM, "
                            "else learned from its headers)")
    group.add_argument("--judge-cache", choices=C.JUDGE_CACHE_CHOICES,
                       help="answer identical judge calls (endpoint, model, prompt version, "
                            "sampling, inputs, params) from the job store's judge cache; "
                            f"failures are never cached (default ${C.ENV_JUDGE_CACHE}, else "
                            f"{C.JUDGE_CACHE})")
    group.add_argument("--judge-cache-ttl", type=positive_float, metavar="SECONDS",
                       help="seconds a cached judge outcome is reused (default "
                            f"${C.ENV_JUDGE_CACHE_TTL}, else {C.JUDGE_CACHE_TTL:g}: 7 days)")
    group.add_argument("--judge-price-in", type=non_negative_float, metavar="PRICE",
                       help="price of 1M prompt tokens: with --judge-price-out, outcomes and "
                            "stats show their cost (no built-in price list; default "
                            f"${C.ENV_JUDGE_PRICE_IN})")
    group.add_argument("--judge-price-out", type=non_negative_float, metavar="PRICE",
                       help=f"price of 1M completion tokens (default ${C.ENV_JUDGE_PRICE_OUT})")
    group.add_argument("--embedding-model", metavar="DIR",
                       help="folder with your own sentence encoder for the offline templates "
                            f"(default ${C.ENV_EMBEDDING_MODEL}, else the bundled "
                            "all-MiniLM-L6-v2)")
    group.add_argument("--embedding-precision", choices=C.EMBEDDING_PRECISIONS,
                       help="precision of the offline encoder: int8 is about 1.4x faster, "
                            "fp32 runs the published weights unchanged (default "
                            f"${C.ENV_EMBEDDING_PRECISION}, else {C.EMBEDDING_PRECISION})")
    group.add_argument("--local-grounding-heuristic", action="store_true", default=None,
                       help="without a judge, compute groundedness, context_adherence and "
                            "is_factually_consistent with a local word-overlap heuristic: no "
                            "judge, held-out accuracy 0.58, barely better than a guess on hard "
                            "cases; off by default (default "
                            f"${C.ENV_LOCAL_GROUNDING_HEURISTIC})")


def given_model_options(args: argparse.Namespace,
                        config: Mapping[str, Any] | None = None) -> list[str]:
    """The model options given as flags or ``--config`` keys, as flags (``--judge-url``)."""
    return ["--" + name.replace("_", "-") for name in MODEL_OPTIONS
            if getattr(args, name, None) is not None or (config or {}).get(name) is not None]


def model_settings(args: argparse.Namespace,
                   config: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``ServerConfig`` fields from the flags, else the ``--config`` file, else the
    environment, else the defaults."""
    out: dict[str, Any] = {}
    for name in MODEL_OPTIONS:
        value = getattr(args, name, None)
        if value is None:
            value = (config or {}).get(name)
        if value is None and name in _ENV:
            value = os.environ.get(_ENV[name]) or None
            if value is not None and name in _NUMBERS:
                try:
                    value = _NUMBERS[name](value)
                except (ValueError, argparse.ArgumentTypeError) as exc:
                    raise ValueError(f"${_ENV[name]} {exc}") from exc
        if value is None:
            value = _DEFAULTS.get(name)
        out[name] = value
    return out


# --------------------------------------------------------------------------- isolation options
# The same flags on `serve` and `worker`: a Celery worker runs the evaluations of an API node
# and must hold them to the same limits (fi_evals/server/isolation.py).

ISOLATION_OPTIONS = ("isolation_workers", "isolation_item_seconds", "isolation_memory_mb",
                     "isolation_inline_chars")


def add_isolation_options(parser: argparse.ArgumentParser) -> None:
    """Add the ``--isolation-*`` flags (defaults from :mod:`fi_evals._constants`)."""
    group = parser.add_argument_group(
        "isolated evaluations",
        "regex and json_schema, and fuzzy_match, levenshtein_similarity, rouge_score and\n"
        "bleu_score items above --isolation-inline-chars, run in child processes under a\n"
        "per-item time limit and a memory cap; an item past a limit is recorded failed.")
    group.add_argument("--isolation-workers", type=positive_int, metavar="N",
                       default=C.ISOLATION_WORKERS,
                       help=f"child processes (default {C.ISOLATION_WORKERS})")
    group.add_argument("--isolation-item-seconds", type=positive_float, metavar="SECONDS",
                       default=C.ISOLATION_ITEM_SECONDS,
                       help="wall-clock seconds per item; past it the child is killed and "
                            f"replaced (default {C.ISOLATION_ITEM_SECONDS:g})")
    group.add_argument("--isolation-memory-mb", type=positive_int, metavar="MB",
                       default=C.ISOLATION_MEMORY_MB,
                       help=f"address-space cap of each child (default {C.ISOLATION_MEMORY_MB})")
    group.add_argument("--isolation-inline-chars", type=non_negative_int, metavar="N",
                       default=C.ISOLATION_INLINE_CHARS,
                       help="longest text the similarity templates evaluate in-process "
                            f"(default {C.ISOLATION_INLINE_CHARS})")


def isolation_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The ``ServerConfig`` fields of :func:`add_isolation_options`."""
    return {name: getattr(args, name) for name in ISOLATION_OPTIONS}


def add_evaluators_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--evaluators MODULE:ATTR`` (``fi-evals serve`` and ``fi-evals worker``; loaded by
    :func:`fi_evals.server.evaluators.load_evaluators`)."""
    parser.add_argument("--evaluators", metavar="MODULE:ATTR", action="append", default=[],
                        help="extra evaluators (an evaluator, a list, or a callable returning "
                             "them; the module is imported from the current directory or the "
                             "installed packages), replacing built-ins of the same template; "
                             "one with isolation = 'always' or 'large' runs in the isolated "
                             "child processes; repeatable")
