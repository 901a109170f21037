"""Recipe 7: chunking 10,000+ items.

A generator feeds 12,000 rows; the batch reads them as it can send them (memory stays flat),
cuts them into chunks (one request per chunk and eval), and streams each finished row to a
JSONL file in input order. The stats stay exact without keeping the rows.
"""

import os
import tempfile

from _local import local_evaluator

from fi_evals.batch import read_jsonl

N = 12_000


def rows():
    for i in range(N):
        yield {"id": i, "reply": f"Ticket {i}: your replacement ships tomorrow.",
               "gold": f"Ticket {i}: a replacement ships tomorrow."}


with local_evaluator(max_workers=4) as ev, tempfile.TemporaryDirectory() as folder:
    out = os.path.join(folder, "scored.jsonl")
    result = ev.evaluate_batch(rows(), ["fuzzy_match", "length_less_than:max_length=60"],
                               key_mapping={"output": "reply", "expected": "gold",
                                            "text": "reply"},
                               chunk_size=200, output=out, progress=True)
    print(result)
    last = None
    for last in read_jsonl(out):  # noqa: B007 - the loop keeps the last row
        pass
    print(f"{os.path.getsize(out) / 1e6:.1f} MB written; last row: {last}")
    assert result.stats.items == N and last.index == N - 1
    assert result.stats.requests < N  # chunks, not one request per row
