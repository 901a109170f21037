"""Issue 14, point 1: evaluators whose cost has no natural bound run isolated.

Each abuse row of the issue's table that point 1 covers runs against a real server over
loopback with small limits (0.5 s per item, 256 MB per child), asserting the item is recorded
``failed`` with a message naming the limit, and that ``/healthcheck/`` answers within 1 s while
it runs. The door limits of point 2 (pattern compile budget, input length of quadratic
templates) would turn most of these requests into a 400 before they reach an evaluator; they are
opened wide here (``_OPEN_DOOR``) so that the isolation behind them is what is tested.

The regex compile bomb runs against a server *subprocess* under ``prlimit --as``: if isolation
failed, that server, not the test machine, would run out of memory.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import requests

from fi_evals import _constants as C
from fi_evals.catalogue import CATALOGUE
from fi_evals.cli.serve import read_serving_url
from fi_evals.server.evaluators import Registry
from fi_evals.server.evaluators.base import BaseEvaluator, EvaluationError, Outcome
from fi_evals.server.isolation import (
    IsolatedEvaluator,
    IsolationLimits,
    IsolationPool,
    SizeRoutedEvaluator,
    isolate,
    text_size,
)

from .conftest import Api
from .test_http_protocol import wait_finished

ITEM_SECONDS = 0.5
MEMORY_MB = 256
LIMITS = {"isolation_item_seconds": ITEM_SECONDS, "isolation_memory_mb": MEMORY_MB}
TIME_LIMIT = f"{ITEM_SECONDS:g} s per-item time limit"
MEMORY_LIMIT = f"{MEMORY_MB} MB memory limit"
HEALTH_BUDGET = 1.0
BOMB = "(?:(?:a{1000}){1000}){1000}"
CATASTROPHIC = {"type": "string", "pattern": "^(a+)+$"}
_OPEN_DOOR = {"max_pattern_expansion": 10**15, "max_quadratic_input_chars": 4 * 2**20}
"""Point 2's door limits, opened so that these requests reach the evaluators."""


# ---------------------------------------------------------------------- stand-ins


class BusyOneLine(BaseEvaluator):
    """Stands in for ``one_line``, isolated: "busy:S" burns CPU for S wall-clock seconds,
    "hog:MB" allocates MB megabytes; every outcome names the process that computed it."""

    template = CATALOGUE["one_line"]
    isolation = "always"

    def evaluate(self, inputs: Mapping[str, Any], params: Mapping[str, Any],
                 model: str | None = None) -> Outcome:
        text = str(inputs["text"])
        if text.startswith("busy:"):
            end = time.perf_counter() + float(text[5:])
            while time.perf_counter() < end:  # CPU-bound, as a runaway evaluator is
                pass
        elif text.startswith("hog:"):
            hog = bytearray(int(text[4:]) * 2**20)
            hog[::4096] = b"x" * len(hog[::4096])  # touch every page
        return Outcome("Passed", f"pid {os.getpid()}")


def pid_of(entry: Mapping[str, Any]) -> int:
    return int(entry["reason"].removeprefix("pid "))


# ---------------------------------------------------------------------- helpers


def healthy_while(url: str, work: Callable[[], Any]) -> tuple[Any, list[float]]:
    """Run ``work`` in a thread while polling ``/healthcheck/``; returns its result and the
    health answers' latencies (at least one, taken while ``work`` ran)."""
    out: list[Any] = []
    thread = threading.Thread(target=lambda: out.append(work()))
    latencies: list[float] = []
    with requests.Session() as session:
        thread.start()
        while thread.is_alive() or not latencies:
            started = time.perf_counter()
            r = session.get(url + C.PATH_HEALTH, timeout=10)
            latencies.append(time.perf_counter() - started)
            assert r.status_code == 200
            time.sleep(0.05)
        thread.join()
    assert out, "the request thread failed"
    return out[0], latencies


def evaluations(response: requests.Response) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    return response.json()["result"][0]["evaluations"]


def assert_failed(entry: Mapping[str, Any], *needles: str) -> None:
    assert entry["eval_status"] == "failed", entry
    for needle in needles:
        assert needle in entry["error_message"], (needle, entry["error_message"])


def long_text(chars: int, seed: int) -> str:
    """Words (so that rouge has ~chars/5 tokens) drawn at random, ``chars`` long."""
    rng = random.Random(seed)
    words = [rng.choice(("alpha", "beta", "gamma", "delta", "eps", "zeta")) for _ in
             range(chars // 4)]
    return " ".join(words)[:chars]


@pytest.fixture
def isolated_server(server_factory: Any) -> Any:
    return server_factory(**LIMITS, **_OPEN_DOOR, evaluators=[BusyOneLine()])


# ---------------------------------------------------------------------- the table's rows


def test_json_schema_catastrophic_pattern_fails_its_item_and_the_server_stays_live(
        isolated_server: Any) -> None:
    api = Api(isolated_server)
    runaway = json.dumps("a" * 40 + "!")  # 2^40 backtracking steps in `re`, GIL held
    body = {"eval_name": "json_schema", "inputs": {"text": [runaway, '"aaa"', '"b"']},
            "config": {"params": {"schema": CATASTROPHIC}}}
    started = time.monotonic()
    response, latencies = healthy_while(api.url, lambda: api.post(C.PATH_NEW_EVAL, body))
    entries = evaluations(response)
    assert_failed(entries[0], TIME_LIMIT, "--isolation-item-seconds")
    assert [e["output"] for e in entries[1:]] == ["Passed", "Failed"]  # the next items run
    assert max(latencies) < HEALTH_BUDGET, latencies
    assert time.monotonic() - started < 10 * ITEM_SECONDS + 5

    # Async: the same item fails the same way in the worker threads, and is stored.
    r = api.post(C.PATH_NEW_EVAL, {**body, "is_async": True})
    ids = [e["eval_id"] for e in evaluations(r)]
    stored = wait_finished(api, ids)
    assert stored[0]["eval_status"] == "failed"
    assert TIME_LIMIT in stored[0]["error_message"]
    assert [e["result"]["value"] for e in stored[1:]] == ["Passed", "Failed"]


@pytest.mark.parametrize("template,keys", [
    ("fuzzy_match", ("output", "expected")),
    ("levenshtein_similarity", ("output", "expected")),
    ("rouge_score", ("reference", "hypothesis")),
])
def test_quadratic_templates_on_1mib_strings_fail_by_time_not_freeze(
        isolated_server: Any, template: str, keys: tuple[str, str]) -> None:
    api = Api(isolated_server)
    big_a, big_b = long_text(2**20, 1), long_text(2**20, 2)
    body = {"eval_name": template,
            "inputs": {keys[0]: [big_a, "the cat sat"], keys[1]: [big_b, "the cat sat"]}}
    response, latencies = healthy_while(api.url, lambda: api.post(C.PATH_NEW_EVAL, body))
    entries = evaluations(response)
    assert_failed(entries[0], TIME_LIMIT)
    assert entries[1]["eval_status"] == "completed"  # small: in-process, as before
    assert entries[1]["output"] == 1.0
    assert max(latencies) < HEALTH_BUDGET, latencies


def test_regex_compile_bomb_cannot_grow_the_server(tmp_path: Path) -> None:
    """The 27-byte pattern against a server process capped at 4 GB of address space: the
    compile runs in a 256 MB child, the request is a 400 naming that cap, the server's peak
    RSS stays small and it keeps answering. (A 5 s item limit: on a loaded machine filling
    256 MB may take over 0.5 s, and this test is about memory.)"""
    server = CappedServer(tmp_path, address_space_gb=4, isolation_item_seconds=5.0)
    try:
        api = Api(server)
        body = {"eval_name": "regex", "inputs": {"text": ["aaa"]},
                "config": {"params": {"pattern": BOMB}}}
        response, latencies = healthy_while(api.url, lambda: api.post(C.PATH_NEW_EVAL, body))
        assert response.status_code == 400, response.text
        message = response.json()["message"]
        assert MEMORY_LIMIT in message and "--isolation-memory-mb" in message, message
        assert max(latencies) < HEALTH_BUDGET, latencies
        assert server.peak_rss_mb() < 512, server.peak_rss_mb()
        ok = api.evaluate("regex", {"text": ["a1"]}, config={"params": {"pattern": r"\d"}})
        assert evaluations(ok)[0]["output"] == "Passed"
    finally:
        server.stop()


# ---------------------------------------------------------------------- the pool's promises


def test_near_limit_items_back_to_back_in_one_reused_child_then_a_normal_one(
        server_factory: Any) -> None:
    """Two CPU-bound items of 0.6 s each under a 1 s limit, then a normal one, all in the same
    child: the limit is per item (a process-wide RLIMIT_CPU of 1 s would kill the second)."""
    server = server_factory(isolation_workers=1, isolation_item_seconds=1.0,
                            isolation_memory_mb=MEMORY_MB, evaluators=[BusyOneLine()])
    api = Api(server)
    entries = evaluations(api.evaluate("one_line", {"text": ["busy:0.6", "busy:0.6", "hi"]}))
    assert [e["eval_status"] for e in entries] == ["completed"] * 3, entries
    pids = {pid_of(e) for e in entries}
    assert len(pids) == 1 and os.getpid() not in pids
    again = evaluations(api.evaluate("one_line", {"text": ["hi"]}))
    assert {pid_of(again[0])} == pids  # reused across requests


def test_an_item_over_the_time_limit_is_killed_and_the_next_items_run(
        server_factory: Any) -> None:
    api = Api(server_factory(isolation_workers=1, **LIMITS, evaluators=[BusyOneLine()]))
    first = evaluations(api.evaluate("one_line", {"text": ["hi"]}))
    entries = evaluations(api.evaluate("one_line", {"text": ["busy:30", "hi", "busy:30", "hi"]}))
    assert_failed(entries[0], TIME_LIMIT)
    assert_failed(entries[2], TIME_LIMIT)
    assert entries[1]["eval_status"] == entries[3]["eval_status"] == "completed"
    # One child at a time: each overrun killed the child, and a new one took the next item.
    assert len({pid_of(first[0]), pid_of(entries[1]), pid_of(entries[3])}) == 3


def test_an_item_over_the_memory_cap_fails_naming_it_and_the_next_items_run(
        isolated_server: Any) -> None:
    api = Api(isolated_server)
    entries = evaluations(api.evaluate("one_line", {"text": ["hog:1024", "hi", "hog:64"]}))
    assert_failed(entries[0], MEMORY_LIMIT, "--isolation-memory-mb")
    assert [e["eval_status"] for e in entries[1:]] == ["completed", "completed"]


def test_a_child_retires_before_what_it_cached_can_fail_the_next_item() -> None:
    """Without HTTP: the bomb's check answers the cap. Patterns of ~100 MB compiled each fit
    a 256 MB child one by one but not three together (the compiled-pattern cache keeps
    them): a child past half its cap retires after answering, so none of them fails."""
    pool = IsolationPool(IsolationLimits(item_seconds=5.0, memory_mb=MEMORY_MB, workers=1))
    try:
        regex = isolate(Registry.default(), pool).get(CATALOGUE["regex"])
        with pytest.raises(EvaluationError, match=MEMORY_LIMIT):
            regex.check_params({"pattern": BOMB})
        for letter in "abc":
            regex.check_params({"pattern": f"(?:{letter}{{450}}){{1000}}"})
        assert regex.evaluate({"text": "xyz"}, {"pattern": "y"}).output == "Passed"
    finally:
        pool.stop()


def test_a_script_without_a_main_guard_is_not_run_again_by_the_children(tmp_path: Path) -> None:
    """An embedded server in a plain script (no ``if __name__ == "__main__"``): isolated
    children must not re-import the script, as ``multiprocessing`` children would."""
    marker = tmp_path / "ran.txt"
    script = tmp_path / "user_script.py"
    script.write_text(f"""
import requests
from fi_evals.server.config import ServerConfig
from fi_evals.server.runner import start_server
with open({str(marker)!r}, "a") as f:
    f.write("ran\\n")
server = start_server(ServerConfig(port=0, db_path={str(tmp_path / "s.db")!r}))
r = requests.post(server.url + {C.PATH_NEW_EVAL!r}, headers=server.headers, timeout=60,
                  json={{"eval_name": "regex", "inputs": {{"text": ["a1"]}},
                         "config": {{"params": {{"pattern": "[0-9]"}}}}}})
print(r.json()["result"][0]["evaluations"][0]["output"])
server.stop(5)
""")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["Passed"]
    assert marker.read_text() == "ran\n"


# ---------------------------------------------------------------------- wiring, no processes


def test_isolate_wraps_by_the_evaluators_isolation_attribute() -> None:
    pool = IsolationPool(IsolationLimits(inline_chars=10))
    registry = isolate(Registry.default(), pool)
    kinds = {name: type(registry.get(CATALOGUE[name])) for name in registry}
    assert kinds["regex"] is kinds["json_schema"] is IsolatedEvaluator
    for name in ("fuzzy_match", "levenshtein_similarity", "rouge_score", "bleu_score"):
        assert kinds[name] is SizeRoutedEvaluator
    assert not issubclass(kinds["is_json"], IsolatedEvaluator)
    assert isolate(registry, pool).get(CATALOGUE["regex"]).inner.isolation == "always"


def test_size_routing_keeps_small_items_in_process() -> None:
    pool = IsolationPool(IsolationLimits(inline_chars=10))
    pool.stop()  # any isolated item now fails with "stopping": inline ones cannot
    fuzzy = isolate(Registry.default(), pool).get(CATALOGUE["fuzzy_match"])
    small = {"output": "abc", "expected": "abd"}
    large = {"output": "a" * 11, "expected": "a"}
    assert fuzzy.evaluate(small, {}).output == pytest.approx(2 / 3)
    results = fuzzy.evaluate_many([small, large, small], {})
    assert isinstance(results[1], EvaluationError) and "stopping" in str(results[1])
    assert [type(r) for r in results[::2]] == [Outcome, Outcome]
    assert text_size({"a": "xy", "b": ["abc", "de"], "c": 3}) == 5


# ---------------------------------------------------------------------- the Celery worker


@pytest.mark.slow
def test_celery_worker_holds_the_same_limits(server_factory: Any, tmp_path: Path) -> None:
    if shutil.which("redis-server") is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is not installed; `make test` installs it (apt-get)")
        pytest.skip("redis-server is not installed")
    from scaleout.cluster import RedisServer, WorkerProcess

    redis_server = RedisServer(tmp_path)
    worker = None
    try:
        backend = f"{redis_server.url}/3?prefix=isolation:"
        worker = WorkerProcess(backend, "--concurrency", "2", "--isolation-item-seconds",
                               str(ITEM_SECONDS), "--isolation-memory-mb", str(MEMORY_MB),
                               log_path=tmp_path / "worker.log")
        node = server_factory(backend=backend, **LIMITS, **_OPEN_DOOR)
        api = Api(node)
        runaway = json.dumps("a" * 40 + "!")
        r = api.post(C.PATH_NEW_EVAL, {
            "eval_name": "json_schema", "inputs": {"text": [runaway, '"aaa"']},
            "config": {"params": {"schema": CATASTROPHIC}}, "is_async": True})
        ids = [e["eval_id"] for e in evaluations(r)]
        stored, latencies = healthy_while(api.url, lambda: wait_finished(api, ids, 60))
        assert stored[0]["eval_status"] == "failed", stored
        assert TIME_LIMIT in stored[0]["error_message"]
        assert stored[1]["result"]["value"] == "Passed"
        assert max(latencies) < HEALTH_BUDGET, latencies
    finally:
        if worker is not None:
            worker.stop()
        redis_server.stop()


# ---------------------------------------------------------------------- a capped server


_LAUNCH = """
import json, sys
from fi_evals import _constants as C
from fi_evals.server.config import ServerConfig
from fi_evals.server.runner import start_server
server = start_server(ServerConfig(**json.loads(sys.argv[1])))
print(C.SERVING_LINE_PREFIX + server.url, flush=True)
sys.stdin.read()
server.stop(5)
"""


class CappedServer:
    """A reference server in a subprocess whose address space ``prlimit`` caps."""

    def __init__(self, folder: Path, *, address_space_gb: int, **overrides: Any) -> None:
        if shutil.which("prlimit") is None:
            pytest.skip("prlimit (util-linux) is not installed")
        self.api_key, self.secret_key = "capped-api-key", "capped-secret-key"
        config = {"port": 0, "db_path": str(folder / "capped.db"), "api_key": self.api_key,
                  "secret_key": self.secret_key, "access_log": False, **LIMITS, **_OPEN_DOOR,
                  **overrides}
        self._log = open(folder / "capped.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            ["prlimit", f"--as={address_space_gb * 2**30}", sys.executable, "-c", _LAUNCH,
             json.dumps(config)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log)
        assert self.proc.stdout is not None
        url = read_serving_url(self.proc.stdout, 30)
        if url is None:
            self.proc.kill()
            self.proc.wait(5)
            self._log.close()
            raise RuntimeError("the capped server did not start: "
                               + (folder / "capped.log").read_text()[-2000:])
        self.url = url

    def peak_rss_mb(self) -> float:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        line = next(x for x in status.splitlines() if x.startswith("VmHWM:"))
        return int(line.split()[1]) / 1024

    def stop(self) -> None:
        """Close its stdin (it stops), then wait; SIGKILL if it does not."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self._log.close()

