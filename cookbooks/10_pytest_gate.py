"""Recipe 10: gate a release in pytest with the fi-evals plugin.

`pytest_gate/test_release_gate.py` is the gate: `assert_eval(output, "template", threshold=...)`
per answer, one test per row of a JSONL file (`eval_dataset`), and the `fi_evaluator` fixture
for whole batches. This script runs it as CI would (`python -m pytest pytest_gate`, then with
two pytest-xdist workers), and shows what a failed `assert_eval` says.
"""

import subprocess
import sys
from importlib import metadata

from fi_evals.testing import assert_eval, close_session_evaluator

# pip installs the plugin's entry point; a checkout installed (editable) before the plugin
# existed lacks it until reinstalled, and then names the plugin with -p.
plugin = [] if any(ep.value == "fi_evals.pytest_plugin"
                   for ep in metadata.entry_points(group="pytest11")) else \
    ["-p", "fi_evals.pytest_plugin"]
for extra in ([], ["-n", "2"]):
    done = subprocess.run([sys.executable, "-m", "pytest", *plugin, "pytest_gate", "-q",
                           "-p", "no:cacheprovider", *extra],
                          capture_output=True, text=True, check=False, timeout=300)
    summary = done.stdout.strip().splitlines()[-1]
    assert done.returncode == 0, done.stdout + done.stderr
    print(f"release gate{' (-n 2)' if extra else ''}: {summary}")

try:  # outside pytest, assert_eval starts the same embedded server (stopped below)
    assert_eval("I think it is Lyon.", "fuzzy_match", threshold=0.8,
                expected="Paris is the capital of France.")
except AssertionError as failure:
    print(f"a failed assert_eval says:\n{failure}")
else:
    raise SystemExit("that answer should not have passed")
finally:
    close_session_evaluator()
