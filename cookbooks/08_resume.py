"""Recipe 8: resuming after an interruption.

With `journal=PATH`, every submission is written to the journal before it is sent and its eval
ids after. If the run dies (Ctrl-C, a crash, kill -9), run the same batch with the same journal:
it re-attaches to what was submitted, reads finished results instead of running them again,
and sends the rest. Here Ctrl-C is simulated by the input itself, half-way through.
"""

import os
import tempfile

from _local import local_evaluator

ROWS = [{"text": '{"ok": %d}' % i if i % 4 else "oops"} for i in range(400)]


def interrupted_after(n):
    yield from ROWS[:n]
    raise KeyboardInterrupt  # what Ctrl-C does while the batch is running


with local_evaluator(poll_retry_after=0) as ev, tempfile.TemporaryDirectory() as folder:
    journal = os.path.join(folder, "batch.journal")
    options = {"is_async": True, "chunk_size": 10, "max_workers": 4, "journal": journal,
                   "progress": False}

    first = ev.evaluate_batch(interrupted_after(300), ["is_json"], **options)
    print(f"first run: {first!r}")
    assert first.interrupted

    second = ev.evaluate_batch(ROWS, ["is_json"], **options)
    print(second)
    print(f"re-attached to {second.stats.resumed} evaluations from the journal")
    assert second.complete and second.stats.items == 400 and second.stats.resumed > 0
