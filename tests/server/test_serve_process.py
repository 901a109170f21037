"""``fi-evals serve`` as a real process: keys, SIGTERM drain, and ``kill -9`` durability."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from _helpers import ServeProcess

from fi_evals import _constants as C

pytestmark = pytest.mark.slow


def post(proc: ServeProcess, body: Any, timeout: float = 30) -> requests.Response:
    return requests.post(proc.url + C.PATH_NEW_EVAL, json=body, headers=proc.headers,
                         timeout=timeout)


def statuses(proc: ServeProcess, ids: list[str]) -> list[str]:
    found: list[str] = []
    for start in range(0, len(ids), C.DEFAULT_MAX_STATUS_IDS):
        r = requests.post(proc.url + C.PATH_BULK_STATUS, headers=proc.headers, timeout=30,
                          json={"eval_ids": ids[start:start + C.DEFAULT_MAX_STATUS_IDS]})
        assert r.status_code == 200, r.text
        found += [e["eval_status"] for e in r.json()["result"]]
    return found


def db_counts(db: Path) -> dict[str, int]:
    with sqlite3.connect(db) as conn:
        return dict(conn.execute("SELECT status, count(*) FROM evals GROUP BY status").fetchall())


def test_generated_keys_are_printed_and_work(tmp_path: Path) -> None:
    with ServeProcess(tmp_path / "gen.db", api_key=None) as proc:
        assert proc.api_key.startswith("fik_") and proc.secret_key.startswith("fis_")
        export = next(line for line in proc.stdout_lines if line.startswith("export "))
        assert f"{C.ENV_BASE_URL}={proc.url}" in export
        assert requests.get(proc.url + C.PATH_CAPABILITIES, headers=proc.headers,
                            timeout=10).status_code == 200
        proc.terminate()
        assert proc.wait() == 0
        assert proc.secret_key not in proc.log_text()


def test_keys_from_the_environment(tmp_path: Path) -> None:
    env = {C.ENV_API_KEY: "env-api", C.ENV_SECRET_KEY: "env-secret"}
    with ServeProcess(tmp_path / "env.db", api_key=None, env=env) as proc:
        assert not any(line.startswith("export ") for line in proc.stdout_lines)
        r = requests.get(proc.url + C.PATH_CAPABILITIES, timeout=10,
                         headers={C.HEADER_API_KEY: "env-api", C.HEADER_SECRET_KEY: "env-secret"})
        assert r.status_code == 200


def test_sigterm_drains(tmp_path: Path) -> None:
    db = tmp_path / "drain.db"
    proc = ServeProcess(db, "--sim-latency-ms", "400", "--workers", "2")
    with proc:
        queued = post(proc, {"eval_name": "is_json", "inputs": {"text": ["{}"] * 12},
                             "is_async": True})
        queued_ids = [i["eval_id"] for i in queued.json()["result"][0]["evaluations"]]
        in_flight: list[requests.Response] = []
        secret_text = "s3cret-input-text"
        sync_body = {"eval_name": "one_line", "inputs": {"text": [secret_text] * 3}}
        worker = threading.Thread(target=lambda: in_flight.append(post(proc, sync_body)))
        worker.start()
        time.sleep(0.3)  # the sync request is running (3 x 400 ms)
        proc.terminate()
        deadline = time.monotonic() + 5
        refused = None
        while time.monotonic() < deadline:  # new work is refused while the drain lasts
            r = requests.get(proc.url + C.PATH_CAPABILITIES, headers=proc.headers, timeout=5)
            if r.status_code == 503:
                refused = r
                break
            time.sleep(0.02)
        assert refused is not None, "no 503 while draining"
        assert refused.json()["type"] == "overloaded"
        assert int(refused.headers[C.HEADER_RETRY_AFTER]) >= 1
        assert requests.get(proc.url + C.PATH_HEALTH, timeout=5).status_code == 503
        worker.join(10)
        assert in_flight and in_flight[0].status_code == 200
        assert [i["output"] for i in in_flight[0].json()["result"][0]["evaluations"]] == [
            "Passed"] * 3
        assert proc.wait(20) == 0
        log = proc.log_text()
    counts = db_counts(db)
    assert counts.get("processing", 0) == 0
    assert counts.get("pending", 0) > 0, counts  # queued work stays for the next start
    assert "POST /sdk/api/v1/new-eval/ 200" in log and "rid=" in log
    for secret in (proc.api_key, proc.secret_key, secret_text):
        assert secret not in log
    with ServeProcess(db) as again:  # ...and the next start finishes it
        deadline = time.monotonic() + 20
        while set(statuses(again, queued_ids)) != {"completed"}:
            assert time.monotonic() < deadline
            time.sleep(0.1)


def test_kill9_loses_no_async_evaluation(tmp_path: Path) -> None:
    db = tmp_path / "kill9.db"
    texts = [f'{{"n": {i}}}' if i % 2 else f"not json {i}" for i in range(500)]
    ids: list[str] = []
    with ServeProcess(db, "--sim-latency-ms", "3", "--workers", "4") as proc:
        for _ in range(4):
            r = post(proc, {"eval_name": "is_json", "inputs": {"text": texts}, "is_async": True})
            assert r.status_code == 200
            ids += [i["eval_id"] for i in r.json()["result"][0]["evaluations"]]
        deadline = time.monotonic() + 10
        while "completed" not in statuses(proc, ids[:50]):  # the workers are busy
            assert time.monotonic() < deadline
            time.sleep(0.02)
        proc.kill9()
    counts = db_counts(db)
    print("after kill -9:", counts)
    assert sum(counts.values()) == 2000
    assert counts.get("pending", 0) + counts.get("processing", 0) > 0, counts
    with ServeProcess(db, "--workers", "4") as proc:
        deadline = time.monotonic() + 60
        while True:
            now = statuses(proc, ids)
            if set(now) == {"completed"}:
                break
            assert time.monotonic() < deadline, {s: now.count(s) for s in set(now)}
            time.sleep(0.2)
        outputs = []
        for start in range(0, 2000, 1000):
            r = requests.post(proc.url + C.PATH_BULK_STATUS, headers=proc.headers, timeout=30,
                              json={"eval_ids": ids[start:start + 1000]})
            outputs += [e["result"]["output"] for e in r.json()["result"]]
        assert outputs == ["Failed" if i % 2 == 0 else "Passed" for i in range(500)] * 4
        if counts.get("processing"):
            assert "requeued" in proc.log_text()
