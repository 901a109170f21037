"""The score logger against the real server: results, misuse, errors, policies, exit, fork."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from _logger_helpers import evaluated, free_port, read_jsonl, run_child, wait_until

from fi_evals import Evaluator
from fi_evals.logger import LoggedScore, LoggerError, ScoreLogger
from fi_evals.logger._spool import Spool


def test_results_reach_callbacks_and_the_sink_in_one_piece(own_server, make_logger,
                                                            tmp_path: Path):
    got: list[LoggedScore] = []
    logger = make_logger(own_server)
    start = evaluated(own_server)
    texts = ['{"a": 1}', "not json", "[1, 2]"]
    for i, text in enumerate(texts):
        assert logger.log("is_json", {"text": text}, metadata={"i": i}, callback=got.append)
    logger.log("fuzzy_match", {"output": "Hello", "expected": "hello"}, callback=got.append)
    logger.log("contains", {"text": "a refund please"}, config={"keyword": "refund"},
               callback=got.append)
    assert logger.flush(20)
    by_name = {(s.eval_name, json.dumps(s.metadata)): s for s in got}
    assert [by_name[("is_json", json.dumps({"i": i}))].output for i in range(3)] == [
        "Passed", "Failed", "Passed"]
    assert by_name[("fuzzy_match", "null")].output == pytest.approx(1.0)
    assert by_name[("contains", "null")].output == "Passed"
    assert all(s.status == "completed" and s.eval_id for s in got) and len(got) == 5
    lines = read_jsonl(tmp_path / "sink.jsonl")
    assert sorted(line["eval_id"] for line in lines) == sorted(s.eval_id for s in got)
    assert evaluated(own_server) - start == 5
    stats = logger.stats()
    assert (stats.queued, stats.sent, stats.completed, stats.failed) == (5, 5, 5, 0)


def test_misuse_never_raises_into_the_caller_and_is_reported(own_server, make_logger):
    events: list[LoggerError] = []
    got: list[LoggedScore] = []
    logger = make_logger(own_server, on_error=events.append)
    assert logger.log("no_such_template", {"text": "x"}, callback=got.append) is True
    assert logger.log("is_json", {"wrong_key": "x"}, callback=got.append) is True
    assert logger.log("is_json", None, callback=got.append) is True  # type: ignore[arg-type]
    assert logger.log(12345, {"text": "x"}, callback=got.append) is True  # type: ignore[arg-type]
    # Passes the client-side checks; the server refuses the parameter value (400).
    assert logger.log("contains", {"text": "x"}, config={"keyword": ""}, callback=got.append)
    assert logger.flush(20)
    assert [s.status for s in got] == ["rejected"] * 5
    assert "UnknownTemplateError" in got[0].error and "wrong_key" in got[1].error
    assert "BadRequestError" in got[4].error
    stats = logger.stats()
    assert (stats.rejected, stats.failed, stats.completed) == (5, 5, 0)
    assert sum(1 for e in events if e.kind == "rejected") == 5


def test_failing_callbacks_and_sinks_are_caught_and_counted(own_server, make_logger):
    def bad_callback(score: LoggedScore) -> None:
        raise RuntimeError("callback bug")

    def bad_sink(score: LoggedScore) -> None:
        raise OSError("disk full")

    kinds: list[str] = []
    logger = make_logger(own_server, sink=bad_sink, on_error=lambda e: kinds.append(e.kind))
    for i in range(3):
        logger.log("one_line", {"text": f"line {i}"}, callback=bad_callback)
    assert logger.flush(20)
    stats = logger.stats()
    assert (stats.completed, stats.callback_errors, stats.sink_errors) == (3, 3, 3)
    assert kinds.count("callback") == 3 and kinds.count("sink") == 3
    logger.log("one_line", {"text": "still working"})
    assert logger.flush(20) and logger.stats().completed == 4


def test_log_after_close_drops_and_counts(own_server, make_logger):
    logger = make_logger(own_server)
    logger.log("is_json", {"text": "{}"})
    assert logger.close(10) is True
    assert logger.log("is_json", {"text": "{}"}) is False
    stats = logger.stats()
    assert (stats.queued, stats.completed, stats.dropped) == (1, 1, 1)


def test_without_a_spool_the_batch_waits_in_memory_for_the_server(server_factory, make_logger,
                                                                  tmp_path: Path):
    port = free_port()
    keys = {"api_key": "logger-key-2", "secret_key": "logger-secret-2"}

    class NotYet:
        url, api_key, secret_key = f"http://127.0.0.1:{port}", keys["api_key"], keys[
            "secret_key"]

    logger = make_logger(NotYet, overflow="drop_newest", queue_size=20, batch_size=10)
    for i in range(100):
        logger.log("is_json", {"text": str(i)}, metadata={"i": i})
    assert not logger.flush(0.5)  # nobody listens
    assert wait_until(lambda: not logger.stats().online)
    assert logger.stats().spooled == 0
    server = server_factory(port=port, access_log=False, **keys)
    assert logger.flush(20), logger.stats()
    stats = logger.stats()
    assert stats.dropped > 0 and stats.completed + stats.dropped == 100
    assert evaluated(server) == stats.completed == len(read_jsonl(tmp_path / "sink.jsonl"))


def test_compat_server_without_extensions(server_factory, make_logger):
    server = server_factory(compat=True, access_log=False)
    got: list[LoggedScore] = []
    logger = make_logger(server)
    for i in range(10):
        logger.log("is_json", {"text": "[]" if i % 2 else "nope"}, callback=got.append)
    assert logger.flush(30)
    assert sorted(s.output for s in got) == ["Failed"] * 5 + ["Passed"] * 5
    assert evaluated(server) == 10


def test_stats_are_logged_periodically_at_info(own_server, make_logger, caplog):
    caplog.set_level(logging.INFO, logger="fi_evals.logger")
    logger = make_logger(own_server, stats_interval=0.1)
    logger.log("is_json", {"text": "{}"})
    assert logger.flush(20)

    def stats_lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if "score logger stats" in r.getMessage()]

    assert wait_until(lambda: any("completed=1" in line for line in stats_lines()))
    assert "queued=1 " in stats_lines()[-1]


def test_exit_flushes_everything_when_given_the_time(own_server, tmp_path: Path):
    spool, sink = tmp_path / "spool.sqlite3", tmp_path / "sink.jsonl"
    start = evaluated(own_server)
    child = run_child(own_server, "exit", str(spool), str(sink), "500", "20")
    assert child.returncode == 0, child.stderr
    assert "score logger closed" in child.stderr
    # A result can be visible to the child a moment before the server's counter moves.
    assert wait_until(lambda: evaluated(own_server) - start == 500, timeout=5), \
        (evaluated(own_server) - start, child.stderr[-3000:])
    assert Spool(spool).count() == 0 and Spool(spool).count_submitted() == 0
    assert len(read_jsonl(sink)) == 500


def test_a_forked_child_gets_its_own_worker_and_nothing_is_sent_twice(own_server,
                                                                      tmp_path: Path):
    spool, sink, n = tmp_path / "spool.sqlite3", tmp_path / "sink.jsonl", 200
    start = evaluated(own_server)
    child = run_child(own_server, "fork", str(spool), str(sink), str(n))
    assert child.returncode == 0, child.stderr
    reports = {r["who"]: r for r in map(json.loads, child.stdout.splitlines())}
    assert reports["child"]["flushed"] and reports["parent"]["flushed"]
    assert reports["parent"]["child_status"] == 0
    # Each process counts its own scores: the child does not inherit the parent's queue.
    assert (reports["child"]["queued"], reports["child"]["completed"]) == (n, n)
    assert (reports["parent"]["queued"], reports["parent"]["completed"]) == (n, n)
    assert evaluated(own_server) - start == 2 * n
    tags = [line["metadata"]["tag"] for line in read_jsonl(sink)]
    assert (tags.count("parent"), tags.count("child")) == (n, n)


def test_evaluator_score_logger_builds_one(own_server, tmp_path: Path):
    with (Evaluator(own_server.api_key, own_server.secret_key, own_server.url) as ev,
          ev.score_logger(spool=tmp_path / "s.sqlite3") as logger):
            assert isinstance(logger, ScoreLogger)
            logger.log("is_json", {"text": "{}"})
            assert logger.flush(20) and logger.stats().completed == 1
