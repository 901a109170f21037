"""The per-user cache folder of fi-evals: one rule for everything kept between runs.

Used by the score logger's spool (``fi_evals.logger``) and by the judge cache of the embedded
server of ``fi-evals run`` (``fi_evals.server.evaluators.judge_cache``). Neutral on purpose: the
server imports it, and it imports nothing of the client.
"""

from __future__ import annotations

import os


def user_cache_dir(subdir: str, override_env: str | None = None) -> str:
    """``$XDG_CACHE_HOME/<subdir>`` (default ``~/.cache/<subdir>``), or ``$<override_env>``.

    Args:
        subdir: the folder under the user's cache folder (``fi-evals/spool``).
        override_env: a variable naming the folder itself, checked first when set and not
            empty.
    """
    if override_env and os.environ.get(override_env):
        return os.environ[override_env]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, subdir)
