"""The baseline of issue 20's end-to-end gate: a ``git worktree`` of the commit before the
issue's first change, measured side by side with this tree in the same ``make bench`` run.

    python -m benchmarks.baseline            # make (or check) benchmarks/.baseline, print it

The worktree is made once (``git worktree add --detach``) and reused: when it already exists at
the right commit nothing happens, so the step is idempotent. Its contenders run its own
``benchmarks.drivers`` against its own ``fi-evals serve`` (cwd and ``PYTHONPATH`` point there),
so the baseline is the code as it was, harness included.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

__all__ = ["BASELINE_COMMIT", "BASELINE_DIR", "ensure"]

ROOT = Path(__file__).resolve().parents[1]
BASELINE_COMMIT = "576b380"
"""The commit before issue 20's first change (the HEAD its branch started from)."""
BASELINE_DIR = ROOT / "benchmarks" / ".baseline"


def _git(*args: str, cwd: Path = ROOT) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout.strip()


def ensure(folder: Path = BASELINE_DIR, commit: str = BASELINE_COMMIT) -> Path:
    """The baseline worktree at ``commit`` in ``folder``, made if missing.

    Raises:
        RuntimeError: git cannot make it (no repository, unknown commit...).
    """
    wanted = _git("rev-parse", "--verify", f"{commit}^{{commit}}")
    if (folder / ".git").exists():
        if _git("rev-parse", "HEAD", cwd=folder) == wanted:
            return folder
        _git("checkout", "--detach", "--quiet", wanted, cwd=folder)
        return folder
    # --force: also when the folder was deleted by hand but git still lists it.
    _git("worktree", "add", "--detach", "--force", str(folder), wanted)
    return folder


def main() -> int:
    print(ensure())
    return 0


if __name__ == "__main__":
    sys.exit(main())
