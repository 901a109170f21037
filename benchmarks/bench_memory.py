"""Memory benchmark of the batch engine: peak RSS does not grow with the number of items.

For each size N, a fresh client process scores N generated items (``is_json`` and
``length_less_than`` on every row), streaming them to a JSONL output and keeping the run in a
run store (as ``fi-evals run`` does; ``--no-store`` turns that off), against a reference
server running in ANOTHER process (``fi-evals serve``), so that only the client is measured.
The client reports its peak RSS (``ru_maxrss``) before and after the batch.

Usage (standalone; not part of ``make test`` beyond a tiny smoke run)::

    .venv/bin/python benchmarks/bench_memory.py                     # 10,000 and 1,000,000
    .venv/bin/python benchmarks/bench_memory.py --sizes 10000 100000 --json out.json

Target (issue 4, point 2): peak RSS <= 150 MB at 1,000,000 items, and about the same as at
10,000 items.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

TARGET_MB = 150.0
EVALS = ["is_json", "length_less_than:max_length=64"]
_SERVING = "fi-evals serving on "


def _peak_rss_mb() -> float:
    # Linux reports kilobytes, macOS bytes.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def _rows(n: int) -> Iterator[dict[str, Any]]:
    for i in range(n):
        yield {"id": i, "tool_call": '{"name": "lookup", "id": %d}' % i if i % 10 else
               "lookup(%d" % i, "note": f"customer {i % 977} asked about order {i}"}


def child(n: int, url: str, api_key: str, secret_key: str, workers: int,
          chunk_size: int, store: bool = True) -> dict[str, Any]:
    """Run in the measured process: one batch of ``n`` items streamed to a temp JSONL (and
    to a run store, unless ``store`` is False)."""
    from fi_evals import Evaluator

    with Evaluator(api_key, secret_key, url, max_workers=workers) as ev, \
            tempfile.TemporaryDirectory() as folder:
        before = _peak_rss_mb()
        started = time.perf_counter()
        out = Path(folder) / "scored.jsonl"
        kept = {"run_name": "bench-memory", "runs_dir": Path(folder) / "runs"} if store else {}
        result = ev.evaluate_batch(_rows(n), EVALS, key_mapping={"text": "tool_call"},
                                   chunk_size=chunk_size, output=out, progress=False, **kept)
        wall = time.perf_counter() - started
        size_mb = out.stat().st_size / 1e6
        store_mb = (sum(p.stat().st_size for p in result.run.folder.iterdir()) / 1e6
                    if result.run is not None else None)
        return {"items": n, "outcomes": result.stats.outcomes, "errors": result.stats.errors,
                "wall_seconds": round(wall, 1), "outcomes_per_second": round(
                    result.stats.outcomes / wall), "rss_before_mb": round(before, 1),
                "peak_rss_mb": round(_peak_rss_mb(), 1), "output_mb": round(size_mb, 1),
                "run_store": store, "store_mb": None if store_mb is None else round(store_mb, 1),
                "requests": result.stats.requests}


class _Server:
    """``fi-evals serve`` in a child process on an ephemeral port."""

    def __init__(self, folder: str) -> None:
        self.api_key, self.secret_key = "bench-api-key", "bench-secret-key"
        cmd = [sys.executable, "-m", "fi_evals.cli", "serve", "--port", "0", "--db",
               os.path.join(folder, "bench.db"), "--api-key", self.api_key, "--secret-key",
               self.secret_key, "--no-access-log", "--log-level", "warning"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode()
        if not line.startswith(_SERVING):
            self.proc.kill()
            raise RuntimeError(f"the server did not start: {line!r}")
        self.url = line[len(_SERVING):].strip()
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 1_000_000])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--chunk-size", type=int, default=500)
    parser.add_argument("--no-store", dest="store", action="store_false",
                        help="do not keep the run in a run store (output file only)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(child(args.child, args.url, "bench-api-key", "bench-secret-key",
                               args.workers, args.chunk_size, args.store)))
        return 0
    results = []
    with tempfile.TemporaryDirectory(prefix="fi-evals-bench-") as folder:
        server = _Server(folder)
        try:
            for n in args.sizes:
                done = subprocess.run(
                    [sys.executable, __file__, "--child", str(n), "--url", server.url,
                     "--workers", str(args.workers), "--chunk-size", str(args.chunk_size),
                     *([] if args.store else ["--no-store"])],
                    capture_output=True, text=True, check=True)
                results.append(json.loads(done.stdout.strip().splitlines()[-1]))
                r = results[-1]
                print(f"{r['items']:>9,} items: peak RSS {r['peak_rss_mb']:6.1f} MB (before "
                      f"the batch {r['rss_before_mb']:.1f} MB), {r['wall_seconds']:7.1f} s, "
                      f"{r['outcomes_per_second']:,} outcomes/s, {r['errors']} errors, "
                      f"output {r['output_mb']:.0f} MB"
                      + (f", run store {r['store_mb']:.0f} MB" if r["store_mb"] else
                         ", no run store"), flush=True)
        finally:
            server.stop()
    peak = max(r["peak_rss_mb"] for r in results)
    verdict = "PASS" if peak <= TARGET_MB else "FAIL"
    print(f"{verdict}: largest peak RSS {peak:.1f} MB (target <= {TARGET_MB:.0f} MB)")
    if args.json:
        Path(args.json).write_text(json.dumps({"target_mb": TARGET_MB, "evals": EVALS,
                                               "run_store": args.store, "results": results},
                                              indent=2))
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
