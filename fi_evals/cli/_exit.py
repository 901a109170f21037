"""The exit statuses of every ``fi-evals`` command, defined once.

===========  =====  =====================================================================
name         value  meaning
===========  =====  =====================================================================
EXIT_OK      0      done, and the outcome is good (thresholds met, no regression past the
                    limit, a server or worker that stopped cleanly)
EXIT_FAILED  1      the command ran but its outcome is a failure: ``run`` below a threshold
                    or interrupted, ``diff`` past ``--max-regressions``, ``result`` of an
                    unknown id, ``serve``/``worker`` that could not start (a missing extra,
                    a port in use) or did not stop cleanly
EXIT_USAGE   2      the command could not run as asked: bad arguments or configuration, a
                    server it cannot reach or whose keys are wrong (as ``argparse`` exits 2 on
                    a bad option)
===========  =====  =====================================================================
"""

from __future__ import annotations

from typing import Final

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_USAGE"]

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
