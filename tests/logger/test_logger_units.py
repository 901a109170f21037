"""Unit tests of the score logger's parts, without a network: queue, watermark, spool, prepare."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from fi_evals._exceptions import InvalidInputError, UnknownTemplateError
from fi_evals._retry import Backoff
from fi_evals._transport import Transport
from fi_evals.logger import OverflowPolicy, default_spool_path
from fi_evals.logger._delivery import Delivery, Watermark
from fi_evals.logger._link import Link
from fi_evals.logger._poll import ScorePoller
from fi_evals.logger._prepare import Preparer
from fi_evals.logger._queue import DROPPED, OVERFLOWED, QUEUED, Entry, ScoreQueue
from fi_evals.logger._spool import Spool, SpoolRow
from fi_evals.logger._types import Counters, LoggedScore, LoggerError

pytestmark = pytest.mark.unit  # no server, no model: `make unit` runs this file


def _put(q: ScoreQueue, i: int) -> tuple[int, Entry | None]:
    return q.put("is_json", {"text": str(i)}, {"i": i}, None, None, None)


# ---------------------------------------------------------------------- queue policies


def test_drop_newest_keeps_the_oldest():
    q = ScoreQueue(3, OverflowPolicy.DROP_NEWEST, 0, 10)
    outcomes = [_put(q, i) for i in range(5)]
    assert [o for o, _ in outcomes] == [QUEUED] * 3 + [DROPPED] * 2
    assert [d.metadata["i"] for _, d in outcomes if d] == [3, 4]
    assert [e.metadata["i"] for e in q.take(10)] == [0, 1, 2]


def test_drop_oldest_keeps_the_newest():
    q = ScoreQueue(3, OverflowPolicy.DROP_OLDEST, 0, 10)
    outcomes = [_put(q, i) for i in range(5)]
    assert [o for o, _ in outcomes] == [QUEUED] * 5
    assert [d.metadata["i"] for _, d in outcomes if d] == [0, 1]
    assert [e.metadata["i"] for e in q.take(10)] == [2, 3, 4]


def test_spool_policy_overflows_then_drops_past_the_overflow_bound():
    q = ScoreQueue(2, OverflowPolicy.SPOOL, 0, 2)
    outcomes = [_put(q, i)[0] for i in range(6)]
    assert outcomes == [QUEUED, QUEUED, OVERFLOWED, OVERFLOWED, DROPPED, DROPPED]
    assert q.overflow_wake.is_set()
    assert [e.metadata["i"] for e in q.take_overflow(10)] == [2, 3]


def test_block_waits_for_room_then_drops_at_its_timeout():
    q = ScoreQueue(1, OverflowPolicy.BLOCK, 2.0, 10)
    assert _put(q, 0)[0] == QUEUED
    threading.Timer(0.2, q.take, args=(1,)).start()  # the "worker" makes room
    assert _put(q, 1)[0] == QUEUED  # it waited for the room (else: DROPPED after 2 s)
    q.block_timeout = 0.1
    assert _put(q, 2)[0] == DROPPED


def test_sequence_numbers_follow_log_order_and_drain_merges_overflow():
    q = ScoreQueue(2, OverflowPolicy.SPOOL, 0, 10)
    for i in range(5):
        _put(q, i)
    assert q.marker() == (6, 5)  # (a number no score gets, scores numbered before it)
    assert [e.lseq for e in q.drain()] == [1, 2, 3, 4, 5]
    assert len(q) == 0
    _put(q, 6)
    assert q.marker() == (8, 6)


def test_bad_sizes_and_policies_are_refused():
    with pytest.raises(ValueError):
        ScoreQueue(0, OverflowPolicy.SPOOL, 0, 1)
    with pytest.raises(ValueError):
        OverflowPolicy("drop_everything")


# ---------------------------------------------------------------------- watermark


def test_watermark_advances_only_over_contiguous_settled_scores():
    w = Watermark()
    for n in (2, 3, 5):
        w.settle(n)
    assert w.low == 0 and not w.wait(1, 0)
    w.settle(1)
    assert w.low == 3 and w.wait(3, 0) and not w.wait(4, 0)
    w.settle(4)
    assert w.low == 5
    w.settle(2)  # settling twice is harmless
    assert w.low == 5


# ---------------------------------------------------------------------- spool


def _rows(gen: int, n: int, grp: str = "g", start: int = 1) -> list[SpoolRow]:
    return [SpoolRow(gen=gen, lseq=i, grp=grp, eval_name="is_json",
                     record={"inputs": {"text": str(i)}, "metadata": i})
            for i in range(start, start + n)]


def test_spool_replays_in_log_order_across_generations(tmp_path: Path):
    spool = Spool(tmp_path / "s.sqlite3")
    g1, g2 = spool.next_generation(), spool.next_generation()
    assert g2 == g1 + 1
    spool.append(_rows(g2, 3))
    spool.append(_rows(g1, 3, start=10))
    spool.append(_rows(g2, 2, start=4))
    got = spool.claim_next(100)
    assert got is not None and got.key is None
    assert [(r.gen, r.lseq) for r in got.rows] == [(g1, 10), (g1, 11), (g1, 12), (g2, 1),
                                                   (g2, 2), (g2, 3), (g2, 4), (g2, 5)]
    assert spool.count_before_gen(g2) == 3


def test_spool_claims_one_group_at_a_time(tmp_path: Path):
    spool = Spool(tmp_path / "s.sqlite3")
    spool.append([*_rows(1, 2, "a"), *_rows(1, 2, "b", start=3), *_rows(1, 1, "a", start=5)])
    first = spool.claim_next(100)
    assert first is not None and {r.grp for r in first.rows} == {"a"}
    assert [r.lseq for r in first.rows] == [1, 2, 5]
    spool.delete(first.ids)
    second = spool.claim_next(100)
    assert second is not None and [r.lseq for r in second.rows] == [3, 4]


def test_a_bound_batch_replays_whole_with_its_key_and_body(tmp_path: Path):
    spool = Spool(tmp_path / "s.sqlite3")
    spool.append(_rows(1, 3))
    claimed = spool.claim_next(2)
    assert claimed is not None and len(claimed.rows) == 2
    body = {"eval_name": "is_json", "inputs": {"text": ["1", "2"]}, "is_async": True}
    spool.bind(claimed, "key-1", body)
    spool.release(claimed.ids)  # the send failed: the server is away
    # A new process (another owner) sees the same batch, same key, same body.
    other = Spool(tmp_path / "s.sqlite3")
    again = other.claim_next(100)
    assert again is not None
    assert (again.key, again.body, [r.lseq for r in again.rows]) == ("key-1", body, [1, 2])
    other.delete(again.ids, again.key)
    last = other.claim_next(100)
    assert last is not None and last.key is None and [r.lseq for r in last.rows] == [3]


def test_a_live_owners_claim_is_respected_and_a_dead_owners_is_taken_over(tmp_path: Path):
    path = tmp_path / "s.sqlite3"
    mine, theirs = Spool(path), Spool(path)
    mine.append(_rows(1, 2))
    assert mine.claim_next(10) is not None
    assert theirs.claim_next(10) is None  # claimed by a live process (this one)
    with sqlite3.connect(path) as conn:  # the claimer's pid is gone
        conn.execute("UPDATE entries SET claimed_by=?", (f"{os.uname().nodename}:999999999:x",))
    taken = theirs.claim_next(10)
    assert taken is not None and len(taken.rows) == 2


def test_submitted_scores_are_handed_over_once(tmp_path: Path):
    spool = Spool(tmp_path / "s.sqlite3")
    spool.save_submitted([("id-1", 1, 1, "is_json", {"metadata": {"k": 1}})])
    assert spool.count_submitted() == 1
    assert spool.take_submitted(10) == [("id-1", 1, 1, "is_json", {"metadata": {"k": 1}})]
    assert spool.take_submitted(10) == []


def test_a_spool_write_is_atomic_when_the_transaction_fails(tmp_path: Path):
    spool = Spool(tmp_path / "s.sqlite3")
    spool.append(_rows(1, 2))
    with pytest.raises(sqlite3.IntegrityError):
        spool.append([_rows(1, 1)[0],
                      SpoolRow(gen=1, lseq=9, grp=None, eval_name="x",  # type: ignore[arg-type]
                               record={})])
    assert spool.count() == 2  # neither row of the failed write is there


def test_default_spool_path_is_per_server_and_key(monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path):
    monkeypatch.setenv("FI_EVALS_SPOOL_DIR", str(tmp_path))
    a = default_spool_path("http://a", "key1")
    assert os.path.dirname(a) == str(tmp_path)
    assert a != default_spool_path("http://a", "key2") != default_spool_path("http://b", "key1")
    assert "key1" not in a


# ---------------------------------------------------------------------- prepare


def _entry(name: object, inputs: object, params: object = None) -> Entry:
    return Entry(1, name, inputs, None, None, None, params)


def test_prepare_encodes_like_the_sdk_and_groups_by_template_keys_and_params():
    prep = Preparer(None)
    a = prep.prepare(_entry("is_json", {"text": {"a": 1}}), gen=1)
    b = prep.prepare(_entry("is_json", {"text": "x"}), gen=1)
    c = prep.prepare(_entry("contains", {"text": "x"}, {"keyword": "y"}), gen=1)
    assert a.wire == {"text": '{"a": 1}'} and a.grp == b.grp != c.grp
    body = Preparer.body([a, b])
    assert body["is_async"] is True and body["inputs"] == {"text": ['{"a": 1}', "x"]}
    assert Preparer.body([c])["config"] == {"params": {"keyword": "y"}}


@pytest.mark.parametrize("name, inputs, params, error", [
    ("no_such_template", {"text": "x"}, None, UnknownTemplateError),
    ("is_json", {"txt": "x"}, None, InvalidInputError),
    ("is_json", "just a string", None, InvalidInputError),
    ("contains", {"text": "x"}, None, InvalidInputError),  # a required parameter is missing
    (None, {"text": "x"}, None, TypeError),
])
def test_prepare_rejects_misuse_with_a_typed_error(name, inputs, params, error):
    with pytest.raises(error):
        Preparer(None).prepare(_entry(name, inputs, params), gen=1)


_EXIT_ORDER_SCRIPT = """
import fi_evals.logger._logger as L
import urllib3

pool = urllib3.HTTPConnectionPool("127.0.0.1", 9, maxsize=2)  # made after the logger import


class StandIn:  # a live logger, as the exit hook sees it
    closed = False
    exit_timeout = 0.1

    def close(self, timeout):
        print("free connection slots at the loggers' exit flush:", pool.pool.qsize(), flush=True)


keep = StandIn()
L._LIVE.add(keep)
"""


def test_loggers_flush_at_exit_before_urllib3_empties_its_pools(tmp_path: Path) -> None:
    # urllib3 drains every pool at exit (weakref.finalize); a logger whose sender had not
    # sent yet used to wait forever for a connection, and spooled everything.
    script = tmp_path / "exit_order.py"
    script.write_text(_EXIT_ORDER_SCRIPT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                           timeout=60, env=env)
    assert child.returncode == 0, child.stderr
    assert "free connection slots at the loggers' exit flush: 2" in child.stdout, child.stdout


# ---------------------------------------------------------------------- the shared link


def test_the_link_is_the_one_state_both_threads_share(tmp_path: Path) -> None:
    """Offline once (reported once, the sender's unsent batches spilled), back online, results
    queued for the delivery thread: all through one Link, no network needed."""
    events: list[LoggerError] = []
    counters = Counters()
    transport = Transport("http://127.0.0.1:9", "k" * 12, "s" * 12, pool_size=1)
    link = Link(transport, Delivery(counters, Watermark(), None, events.append), counters, {},
                poll_interval=0.5, reconnect=Backoff(60.0, 60.0, jitter="equal"),
                spool_path=str(tmp_path / "s.sqlite3"))
    spilled: list[int] = []
    link.spill = lambda: spilled.append(1)
    with link.state:
        link.went_offline(ConnectionError("refused"))
        link.went_offline(ConnectionError("refused again"))
    assert not link.online and not link.probe_due() and link.retry_in() > 29.0
    assert [e.kind for e in events] == ["unreachable"] and "s.sqlite3" in events[0].message
    assert spilled == [1, 1]
    with link.state:
        link.reachable()
    assert link.online and link.probe_due()
    item = Preparer(None).prepare(Entry(7, "is_json", {"text": "{}"}, {"id": 7}, None, None,
                                        None), gen=1)
    link.pending["e1"] = item
    assert link.inherited() == 0
    link.finish(link.pending.pop("e1"), LoggedScore("is_json", "completed", eval_id="e1"))
    assert link.poll_wake.is_set() and len(link.ready_scores) == 1
    poller = ScorePoller(link, "overflow policy spool, queue size 10", lambda: "", 60.0)
    poller.deliver_ready()
    assert not link.ready_scores and counters.values["completed"] == 1
    transport.close()
