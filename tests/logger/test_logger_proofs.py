"""The score logger's proofs against the real server (issue acceptance 5 a, b, c).

Counts come from the server's ``/metrics`` (``fi_evals_evaluations_total``: evaluator runs),
so "exactly once" means the server ran each score once, not that the logger believes so.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from _helpers import parse_metrics
from _logger_helpers import EVALUATIONS, evaluated, free_port, read_jsonl, run_child

from fi_evals import Evaluator
from fi_evals.logger import ScoreLogger
from fi_evals.logger._spool import Spool

THREADS = 16
OUTAGE_SCORES = 5000
OUTAGE_SECONDS = 10.0


def _final_count(server) -> int:
    """Evaluator runs of a server that has stopped (its registry outlives the socket)."""
    metrics = parse_metrics(server.app.metrics.render().decode())
    return int(sum(v for (name, _), v in metrics.items() if name == EVALUATIONS))


@pytest.mark.slow
def test_a_outage_of_ten_seconds_loses_nothing_and_runs_each_score_once(server_factory,
                                                                        make_logger,
                                                                        tmp_path: Path):
    port, db = free_port(), str(tmp_path / "evals.db")
    keys = {"api_key": "logger-test-key", "secret_key": "logger-test-secret"}
    first = server_factory(port=port, db_path=db, access_log=False, **keys)
    logger = make_logger(first)
    spread = 14.0  # seconds over which the threads log: before, during and after the outage

    def produce(k: int) -> None:
        for i in range(k, OUTAGE_SCORES, THREADS):
            logger.log("is_json", {"text": json.dumps({"i": i})}, metadata={"i": i})
            time.sleep(spread * THREADS / OUTAGE_SCORES)

    threads = [threading.Thread(target=produce, args=(k,)) for k in range(THREADS)]
    for t in threads:
        t.start()
    time.sleep(2.0)
    first.stop(10.0)  # drains: in-flight requests finish, later ones are refused
    before = _final_count(first)
    time.sleep(OUTAGE_SECONDS)
    during = logger.stats()
    second = server_factory(port=port, db_path=db, access_log=False, **keys)
    for t in threads:
        t.join()
    assert logger.flush(60), logger.stats()
    stats = logger.stats()
    assert during.online is False and during.spooled > 0  # the outage was real
    assert before + evaluated(second) == OUTAGE_SCORES  # each score ran exactly once
    assert (stats.queued, stats.completed, stats.dropped, stats.failed) == (5000, 5000, 0, 0)
    assert stats.replayed == stats.spooled and stats.in_spool == 0
    sink = read_jsonl(tmp_path / "sink.jsonl")
    assert sorted(line["metadata"]["i"] for line in sink) == list(range(OUTAGE_SCORES))
    assert len({line["eval_id"] for line in sink}) == OUTAGE_SCORES


def test_b_scores_of_a_process_that_exits_at_once_are_evaluated_by_the_next(own_server,
                                                                             tmp_path: Path):
    spool, sink, n = tmp_path / "spool.sqlite3", tmp_path / "sink.jsonl", 1000
    start = evaluated(own_server)
    child = run_child(own_server, "exit", str(spool), str(sink), str(n), "0")
    assert child.returncode == 0, child.stderr
    # Every score was accepted by the server (then it runs) or is in the spool.
    left = Spool(spool)
    unsent, unfinished = left.count(), left.count_submitted()
    assert unsent > 0, "the exit was too slow to leave anything in the spool"
    sent = _wait_for(lambda: evaluated(own_server) - start, n - unsent)
    assert sent + unsent >= n  # >: a batch in flight at exit is both (it replays idempotently)
    with Evaluator(own_server.api_key, own_server.secret_key, own_server.url) as ev, \
            ScoreLogger(ev, spool=spool, sink=sink, poll_interval=0.2) as nxt:
        assert nxt.flush(30), nxt.stats()
        assert nxt.stats().replayed == unsent
    assert evaluated(own_server) - start == n
    lines = read_jsonl(sink)  # both processes wrote here: every score once, all completed
    assert sorted(line["metadata"]["i"] for line in lines) == list(range(n))
    assert {line["status"] for line in lines} == {"completed"}
    assert unfinished == 0 or len(lines) == n


def test_b_a_killed_process_leaves_its_spool_consistent(own_server, tmp_path: Path):
    spool, sink, n = tmp_path / "spool.sqlite3", tmp_path / "sink.jsonl", 300

    class Away:  # a server address nobody listens on
        url = f"http://127.0.0.1:{free_port()}"
        api_key, secret_key = own_server.api_key, own_server.secret_key

    child = run_child(Away, "kill", str(spool), str(sink), str(n))
    assert child.returncode == -9, child.stderr
    assert json.loads(child.stdout.splitlines()[-1])["spooled"] == n
    assert Spool(spool).count() == n
    start = evaluated(own_server)
    with Evaluator(own_server.api_key, own_server.secret_key, own_server.url) as ev, \
            ScoreLogger(ev, spool=spool, sink=sink, poll_interval=0.2) as nxt:
        assert nxt.flush(30), nxt.stats()
    assert evaluated(own_server) - start == n
    assert sorted(line["metadata"]["i"] for line in read_jsonl(sink)) == list(range(n))


def test_c_drop_oldest_with_a_tiny_queue_counts_exactly_what_is_missing(server_factory,
                                                                        make_logger,
                                                                        tmp_path: Path):
    server = server_factory(access_log=False, sim_latency_ms=2)
    logger = make_logger(server, overflow="drop_oldest", queue_size=4, batch_size=8,
                         linger=0.0)
    n = 2000
    for i in range(n):
        logger.log("is_json", {"text": str(i)}, metadata={"i": i})
        if i % 50 == 0:
            time.sleep(0.005)  # bursts: some scores get through, most of each burst is dropped
    assert logger.flush(30), logger.stats()
    stats = logger.stats()
    kept = read_jsonl(tmp_path / "sink.jsonl")
    assert stats.dropped > 0
    assert n - len(kept) == stats.dropped
    assert evaluated(server) == n - stats.dropped == stats.completed
    assert stats.spooled == 0 and stats.in_spool == 0
    # drop_oldest keeps the newest: the last score logged always survives.
    assert n - 1 in {line["metadata"]["i"] for line in kept}


def _wait_for(read, target: int, timeout: float = 15.0) -> int:
    deadline = time.monotonic() + timeout
    value = read()
    while value < target and time.monotonic() < deadline:
        time.sleep(0.05)
        value = read()
    return value
