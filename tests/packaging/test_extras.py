"""Each extra installs what it uses: one fresh virtualenv per extra, only its declared dependencies.

The release artifacts are built once per session by ``make dist`` (the ``dist_artifacts``
fixture of conftest.py: a copy of the tree, so the work tree is left alone), then every extra
gets its own ``python -m venv`` into which pip installs the built ``fi_evals-*.whl[EXTRA]`` and
nothing else: no pip, no pytest, no test-suite helpers, no ``PYTHONPATH`` (the ``server`` extra
is also installed from the sdist, and both run the same checks). Each test then runs in that
venv what the extra promises (the ``fi-evals`` commands, real servers on 127.0.0.1), so a
dependency that the project's own venv happens to have through another package (``packaging``
through pytest, for kombu's Redis transport) fails here.

Speed: pip's own HTTP cache stays empty on this machine (the registry's answers carry no cache
headers), so downloads go to a persistent wheelhouse instead (``$FI_EVALS_TEST_WHEELHOUSE``, else
``~/.cache/fi-evals-test-wheels``, ~235 MB): ``pip download`` resolves each extra afresh against
the index as configured on the machine (so a dependency's new release that drops a package,
as kombu 5.7 did with ``packaging``, shows up here) and fetches only the files the wheelhouse
lacks, then ``pip install --no-index --find-links WHEELHOUSE --no-compile`` installs exactly
that set. The venvs are made ``--without-pip`` (the project venv's ``pip --python`` installs
into them) under pytest's tmp_path, anew on every run: a reused venv could hide a dependency
that went missing from setup.cfg. Measured on the 2-core machine: ~65 s for the module, first
run or not (resolution, installs and the checks dominate; the registry here is fast).
"""

from __future__ import annotations

import configparser
import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
import tomllib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import requests
from _artifacts import Artifacts

from fi_evals import Evaluator
from fi_evals import _constants as C
from fi_evals.cli.serve import read_serving_url
from fi_evals.cli.worker import READY_LINE_PREFIX
from fi_evals.server.runner import RunningServer

REPO = Path(__file__).resolve().parents[2]
"""The repository root (wherever it was cloned)."""

CHECKED_EXTRAS = ("server", "pandas", "redis", "models", "yaml", "otel")
"""The extras a test below checks in its own venv."""

DEV_EXTRAS = {
    "test": "installed by `make test` into .venv: the whole suite is its check",
    "bench": "installed by `make bench` on top of .venv[test]: the benchmarks are its check",
    "test-core": "installed by `make test-pythons` (nox) on each other supported Python",
    "dist": "in .venv through test: the dist_artifacts fixture runs `make dist` with it",
    "lint": "in .venv through test: `make test` runs `make lint` (ruff and mypy) with it",
}
"""Extras that no fresh venv checks, and why."""

API_KEY = "extras-test-api-key"
SECRET_KEY = "extras-test-secret-key"
PIP_TIMEOUT = 420.0
START_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0

TINY_ROWS = [
    {"id": 1, "call": '{"name": "track_order", "arguments": {"order_id": "A1"}}',
     "answer": "Your order A1 has shipped.", "reference": "Your order A1 has shipped!"},
    {"id": 2, "call": "not json", "answer": "No idea, sorry.",
     "reference": "Refunds take 5 business days."},
]
TINY_CONFIG_YAML = """\
# A tiny batch whose templates use the server extra's libraries (jsonschema, rapidfuzz, regex).
evals:
  - {eval: is_json, label: call_is_json, map: {text: call}}
  - eval: json_schema
    label: call_schema
    map: {text: call}
    params:
      schema: {type: object, required: [name, arguments]}
  - eval: fuzzy_match
    label: matches
    map: {output: answer, expected: reference}
  - eval: regex
    label: mentions_order
    map: {text: answer}
    params: {pattern: '\\border\\b'}
"""
TINY_LABELS = ("call_is_json", "call_schema", "matches", "mentions_order")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(480)]
"""Each test takes 5-20 s with the wheelhouse filled; the bound leaves room for a first run's
downloads (~235 MB) on a slow link."""


# --------------------------------------------------------------------------- building the venvs


def wheelhouse() -> Path:
    """The persistent download folder shared by every run (see the module docstring)."""
    configured = os.environ.get("FI_EVALS_TEST_WHEELHOUSE")
    if configured:
        folder = Path(configured)
    else:
        cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        folder = Path(cache) / "fi-evals-test-wheels"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@contextlib.contextmanager
def locked(folder: Path) -> Iterator[None]:
    """An exclusive lock on ``folder`` (two runs at once do not write the same files)."""
    with open(folder / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def pip(*args: str, timeout: float = PIP_TIMEOUT) -> subprocess.CompletedProcess[str]:
    """Run the project venv's pip (as configured on the machine); fail with its output."""
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
    done = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} exited {done.returncode}\n--- stdout\n{done.stdout}"
                    f"\n--- stderr\n{done.stderr}")
    return done


def child_env(**extra: str) -> dict[str, str]:
    """The environment of programs run in a test venv: nothing that leaks the project's venv,
    the repository or a server's keys into it."""
    dropped = {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP", C.ENV_API_KEY,
               C.ENV_SECRET_KEY, C.ENV_BASE_URL, C.ENV_JUDGE_BASE_URL, C.ENV_JUDGE_API_KEY,
               C.ENV_JUDGE_MODEL, C.ENV_EMBEDDING_MODEL, C.ENV_EMBEDDING_PRECISION}
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    env["PYTHONNOUSERSITE"] = "1"
    env.update(extra)
    return env


class Venv:
    """A fresh virtualenv with ``fi-evals[EXTRA]`` installed and nothing else."""

    def __init__(self, extra: str, root: Path) -> None:
        self.extra = extra
        self.root = root
        self.work = root.parent / f"{extra}-work"
        self.work.mkdir(exist_ok=True)
        self.python = root / "bin" / "python"

    def bin(self, name: str) -> str:
        return str(self.root / "bin" / name)

    def run(self, *cmd: str, timeout: float = 120.0, env: dict[str, str] | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``cmd`` (``fi-evals ...`` or ``python ...``, taken from the venv) in the work
        folder; with ``check``, fail the test with its output unless it exits 0."""
        argv = [self.bin(cmd[0]), *cmd[1:]]
        done = subprocess.run(argv, check=False, capture_output=True, text=True,
                              timeout=timeout, cwd=self.work, env=env or child_env(),
                              stdin=subprocess.DEVNULL)
        if check and done.returncode != 0:
            pytest.fail(f"[{self.extra}] {' '.join(cmd)} exited {done.returncode}\n"
                        f"--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}")
        return done

    def script(self, source: str, *, timeout: float = 120.0,
               env: dict[str, str] | None = None) -> str:
        """Run a Python script in the venv; returns its stdout (fails the test unless 0)."""
        path = self.work / f"check_{time.time_ns()}.py"
        path.write_text(textwrap.dedent(source), "utf-8")
        return self.run("python", str(path), timeout=timeout, env=env).stdout

    def start(self, *cmd: str, name: str, env: dict[str, str] | None = None) -> BackgroundProcess:
        """Start a long-running venv command (a server, a worker)."""
        return BackgroundProcess([self.bin(cmd[0]), *cmd[1:]], log=self.work / f"{name}.log",
                                 cwd=self.work, env=env or child_env())


def build_requirements() -> list[str]:
    """``[build-system] requires`` of pyproject.toml: what pip needs to build the sdist."""
    with open(REPO / "pyproject.toml", "rb") as fh:
        return list(tomllib.load(fh)["build-system"]["requires"])


def build_venv(extra: str, artifact: Path, folder: Path) -> Venv:
    """``python -m venv`` + pip install ``ARTIFACT[EXTRA]`` (the wheel or the sdist) through the
    wheelhouse."""
    root = folder / extra
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True,
                   timeout=120, stdin=subprocess.DEVNULL)
    venv = Venv(extra, root)
    requirement = f"{artifact}[{extra}]"
    house = wheelhouse()
    with locked(house):
        if artifact.name.endswith(".tar.gz"):  # pip builds it: the build backend from the house
            pip("download", "-q", "-d", str(house), *build_requirements())
        # The project's own wheel must never come from the wheelhouse (same file name, older
        # content): pip download copies it there, so it is removed before and after.
        for stale in house.glob("fi_evals-*"):
            stale.unlink()
        try:
            pip("--python", str(venv.python), "download", "-q", "-d", str(house), requirement)
        finally:
            for copied in house.glob("fi_evals-*"):
                copied.unlink()
        pip("--python", str(venv.python), "install", "-q", "--no-compile", "--no-index",
            "--find-links", str(house), requirement)
    return venv


@pytest.fixture(scope="module")
def venv_for(dist_artifacts: Artifacts,
             tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Venv]:
    """``venv_for(extra, artifact="wheel")``: that extra's fresh venv with ``make dist``'s wheel
    (or ``"sdist"``), built on first use, after the common checks (installed from the artifact
    with its package data, no test tooling, ``pip check`` clean)."""
    built: dict[tuple[str, str], Venv] = {}

    def get(extra: str, artifact: str = "wheel") -> Venv:
        if (extra, artifact) not in built:
            folder = tmp_path_factory.mktemp(f"venvs-{artifact}")
            venv = build_venv(extra, getattr(dist_artifacts, artifact), folder)
            common_checks(venv)
            built[extra, artifact] = venv
        return built[extra, artifact]

    return get


def common_checks(venv: Venv) -> None:
    """fi_evals comes from the venv's site-packages with its package data; the venv holds only
    what pip installed for the extra (no pytest, no pip); the installed set is consistent."""
    venv.script(f"""
        import importlib.metadata, importlib.resources, importlib.util, sys
        import fi_evals

        assert fi_evals.__file__.startswith(sys.prefix), fi_evals.__file__
        assert importlib.resources.files("fi_evals").joinpath("py.typed").is_file()
        data = importlib.resources.files("fi_evals.server.evaluators.offline") / "data"
        assert any(p.name.endswith(".jsonl") for p in data.iterdir()), "package data missing"
        for tool in ("pytest", "pip", "hypothesis"):
            assert importlib.util.find_spec(tool) is None, f"{{tool}} leaked into the venv"
        extras = importlib.metadata.metadata("fi-evals").get_all("Provides-Extra")
        assert {venv.extra!r} in extras, extras
    """)
    pip("--python", str(venv.python), "check")


# --------------------------------------------------------------------------- processes


class BackgroundProcess:
    """A command in its own process group; stdout lines are collected, stderr goes to a log."""

    def __init__(self, argv: Sequence[str], *, log: Path, cwd: Path,
                 env: dict[str, str]) -> None:
        self.log_path = log
        self._log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=self._log,
                                     stdin=subprocess.DEVNULL, cwd=cwd, env=env,
                                     start_new_session=True)
        self.lines: list[str] = []

    def wait_for_line(self, prefix: str, timeout: float = START_TIMEOUT) -> str:
        """The rest of the first stdout line starting with ``prefix``; fails the test (with the
        log) when the process exits or the line does not come in time."""
        assert self.proc.stdout is not None
        if prefix == C.SERVING_LINE_PREFIX:
            found = read_serving_url(self.proc.stdout, timeout)
        else:
            found = self._read_until(prefix, timeout)
        if found is None:
            pytest.fail(f"no {prefix!r} line from {self.proc.args!r} within {timeout:g} s "
                        f"(exit code {self.proc.poll()}); log:\n{self.log_text()}")
        threading.Thread(target=self._drain, daemon=True).start()
        return found

    def _read_until(self, prefix: str, timeout: float) -> str | None:
        found: list[str] = []

        def read() -> None:
            assert self.proc.stdout is not None
            for raw in self.proc.stdout:
                line = raw.decode("utf-8", "replace").strip()
                self.lines.append(line)
                if line.startswith(prefix):
                    found.append(line[len(prefix):])
                    return

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(timeout)
        return found[0] if found else None

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))

    def log_text(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text("utf-8", "replace")

    def stop(self) -> int:
        """SIGTERM (graceful), SIGKILL to the whole group after ``STOP_TIMEOUT``."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            code = self.proc.wait(10)
        self._log.close()
        return code


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """A real redis-server on a free 127.0.0.1 port (the scale-out suite's), for one test."""
    if shutil.which("redis-server") is None:
        message = "redis-server is not installed; `make services` installs it (apt-get)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from scaleout.cluster import RedisServer

    server = RedisServer(tmp_path)
    try:
        yield server.url
    finally:
        server.stop()


def write_tiny_batch(folder: Path) -> tuple[Path, Path]:
    """TINY_ROWS as JSONL and TINY_CONFIG_YAML as a .yaml config in ``folder``."""
    data = folder / "tiny.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in TINY_ROWS), "utf-8")
    config = folder / "tiny.yaml"
    config.write_text(TINY_CONFIG_YAML, "utf-8")
    return data, config


def check_tiny_run(done: subprocess.CompletedProcess[str], scored: Path) -> None:
    """What ``fi-evals run tiny.jsonl --config tiny.yaml --output scored.jsonl`` must give."""
    for label in TINY_LABELS:
        assert label in done.stdout, done.stdout
    rows: list[dict[str, Any]] = [json.loads(line) for line in scored.read_text("utf-8")
                                  .splitlines() if line.strip()]
    assert [row["item"]["id"] for row in rows] == [1, 2], rows
    outputs = [{label: result["output"] for label, result in row["results"].items()}
               for row in rows]
    assert outputs[0]["call_is_json"] == "Passed", rows
    assert outputs[1]["call_is_json"] == "Failed", rows
    assert outputs[0]["call_schema"] == "Passed", rows
    assert outputs[1]["call_schema"] == "Failed", rows
    assert outputs[0]["mentions_order"] == "Passed", rows
    assert outputs[1]["mentions_order"] == "Failed", rows
    assert outputs[0]["matches"] > 0.9 > outputs[1]["matches"], rows


def server_env(server: RunningServer, **extra: str) -> dict[str, str]:
    """child_env() pointing the SDK and the CLI at ``server``."""
    return child_env(**{C.ENV_BASE_URL: server.url, C.ENV_API_KEY: server.api_key or "",
                        C.ENV_SECRET_KEY: server.secret_key or ""}, **extra)


# --------------------------------------------------------------------------- the extras


def test_every_extra_is_checked() -> None:
    """A new extra in setup.cfg needs a check here (or a reason in DEV_EXTRAS)."""
    parser = configparser.ConfigParser()
    parser.read(REPO / "setup.cfg", encoding="utf-8")
    declared = set(parser["options.extras_require"])
    assert declared - set(DEV_EXTRAS) == set(CHECKED_EXTRAS), (
        f"extras in setup.cfg: {sorted(declared)}; checked here: {sorted(CHECKED_EXTRAS)}; "
        f"dev-only: {sorted(DEV_EXTRAS)}")


@pytest.mark.parametrize("artifact", ["wheel", "sdist"])
def test_server_extra(venv_for: Callable[..., Venv], artifact: str) -> None:
    """Each artifact of ``make dist`` with the server extra alone: ``fi-evals serve`` starts and
    answers, an SDK call and ``fi-evals templates`` go to it, and ``fi-evals run`` scores a JSONL
    file with a YAML config (PyYAML) on the embedded server, with templates that use each server
    library."""
    venv = venv_for("server", artifact)
    server = venv.start("fi-evals", "serve", "--host", "127.0.0.1", "--port", "0", "--db",
                        str(venv.work / "serve.db"), "--api-key", API_KEY, "--secret-key",
                        SECRET_KEY, "--no-access-log", name="serve")
    try:
        url = server.wait_for_line(C.SERVING_LINE_PREFIX)
        assert url.startswith("http://127.0.0.1:"), url
        health = requests.get(f"{url}/healthcheck/", timeout=10)
        assert health.status_code == 200, health.text
        metrics = requests.get(f"{url}{C.PATH_METRICS}", timeout=10)
        assert metrics.status_code == 200 and "# TYPE" in metrics.text, metrics.text[:500]
        env = child_env(**{C.ENV_BASE_URL: url, C.ENV_API_KEY: API_KEY,
                           C.ENV_SECRET_KEY: SECRET_KEY})
        out = venv.script("""
            import json
            from fi_evals import Evaluator

            with Evaluator() as evaluator:  # FI_BASE_URL, FI_API_KEY, FI_SECRET_KEY
                results = evaluator.evaluate("is_json", [{"text": "[1, 2]"}, {"text": "no"}])
            print(json.dumps([[r.status, r.output] for r in results.eval_results]))
        """, env=env)
        assert json.loads(out.strip().splitlines()[-1]) == [["completed", "Passed"],
                                                           ["completed", "Failed"]], out
        listed = venv.run("fi-evals", "templates", env=env)
        names = {line.split()[0] for line in listed.stdout.splitlines() if line.strip()}
        assert {"is_json", "json_schema", "fuzzy_match", "regex"} <= names, listed.stdout
    finally:
        assert server.stop() == 0, server.log_text()

    data, config = write_tiny_batch(venv.work)
    scored = venv.work / "scored.jsonl"
    done = venv.run("fi-evals", "run", str(data), "--config", str(config), "--output",
                    str(scored), timeout=120)
    assert "started an embedded server on http://127.0.0.1:" in done.stderr, done.stderr
    check_tiny_run(done, scored)


def test_pandas_extra(venv_for: Callable[[str], Venv], live_server: RunningServer) -> None:
    """DataFrame and .parquet inputs (pyarrow) and ``BatchResult.to_dataframe()`` against a
    running server. Without the server extra, ``fi-evals run`` says which extra it needs."""
    venv = venv_for("pandas")
    env = server_env(live_server)
    out = venv.script("""
        import importlib.util
        import pandas as pd
        from fi_evals import Evaluator

        assert importlib.util.find_spec("fastapi") is None, "the pandas extra pulled the server"
        frame = pd.DataFrame({"text": ['{"a": 1}', "not json"], "n": [1, 2]})
        frame.to_parquet("rows.parquet")
        assert pd.read_parquet("rows.parquet").equals(frame)
        with Evaluator() as evaluator:
            for source in (frame, "rows.parquet"):  # a DataFrame, a .parquet input (pyarrow)
                result = evaluator.evaluate_batch(source, ["is_json"], progress=False)
                table = result.to_dataframe()
                assert list(table["is_json.output"]) == ["Passed", "Failed"], table
                assert list(table["n"]) == [1, 2], table
        print("rows", len(table))
    """, env=env)
    assert "rows 2" in out

    data, _ = write_tiny_batch(venv.work)
    done = venv.run("fi-evals", "run", str(data), "--eval", "is_json", "--map", "text=call",
                    check=False)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "pip install 'fi-evals[server]'" in done.stderr, done.stderr


def test_redis_extra(venv_for: Callable[[str], Venv], redis_url: str) -> None:
    """A real ``fi-evals worker`` connects to a real redis-server and runs the async
    evaluations of a ``fi-evals serve --backend redis://...`` API node (which runs none)."""
    venv = venv_for("redis")
    helped = venv.run("fi-evals", "worker", "--help")
    assert "--backend" in helped.stdout, helped.stdout

    worker = venv.start("fi-evals", "worker", "--backend", f"{redis_url}/0", "--concurrency",
                        "2", name="worker")
    node: BackgroundProcess | None = None
    try:
        name = worker.wait_for_line(READY_LINE_PREFIX)
        assert name.startswith("fi-evals-"), name
        node = venv.start("fi-evals", "serve", "--backend",
                          f"{redis_url}/0?prefix=extras-test:", "--host", "127.0.0.1", "--port",
                          "0", "--api-key", API_KEY, "--secret-key", SECRET_KEY,
                          "--no-access-log", name="serve")
        url = node.wait_for_line(C.SERVING_LINE_PREFIX)
        assert requests.get(f"{url}/healthcheck/", timeout=10).status_code == 200
        with Evaluator(API_KEY, SECRET_KEY, url) as evaluator:
            submitted = evaluator.evaluate("is_json", [{"text": "[1, 2]"}, {"text": "nope"}],
                                           is_async=True)
            results = evaluator.wait_all(submitted, timeout=60)
        assert [r.status for r in results] == ["completed", "completed"], results
        assert [r.output for r in results] == ["Passed", "Failed"], results
    finally:
        node_code = node.stop() if node is not None else 0
        worker_code = worker.stop()
    assert node_code == 0, node.log_text() if node is not None else ""
    assert worker_code == 0, worker.log_text()


def test_models_extra(venv_for: Callable[[str], Venv], tmp_path: Path) -> None:
    """The offline templates evaluate on an in-process server: the shipped weights load, the
    ONNX graph is built (into an empty cache) and runs on onnxruntime."""
    venv = venv_for("models")
    env = child_env(**{C.ENV_MODEL_CACHE: str(tmp_path / "model-cache")})
    out = venv.script(f"""
        import json
        from fi_evals import Evaluator
        from fi_evals.server.config import ServerConfig
        from fi_evals.server.runner import start_server

        server = start_server(ServerConfig(host="127.0.0.1", port=0,
                                           db_path={str(tmp_path / "models.db")!r}))
        try:
            with Evaluator(server.api_key, server.secret_key, server.url) as evaluator:
                similar = evaluator.evaluate("embedding_similarity", [
                    {{"output": "The cat sat on the mat.",
                      "expected": "A cat was sitting on the mat."}},
                    {{"output": "The cat sat on the mat.",
                      "expected": "Quarterly revenue rose by 4 percent."}},
                ]).eval_results
                toxic = evaluator.evaluate("toxicity", [
                    {{"output": "Thanks, have a lovely day!"}},
                    {{"output": "Shut up, you worthless idiot. I hate you."}},
                ]).eval_results
        finally:
            server.stop()
        print(json.dumps({{"similar": [(r.status, r.output) for r in similar],
                          "toxic": [(r.status, r.output) for r in toxic]}}))
    """, env=env, timeout=180)
    got = json.loads(out.strip().splitlines()[-1])
    assert [s for s, _ in got["similar"]] == ["completed", "completed"], got
    (_, close), (_, far) = got["similar"]
    assert close > 0.8 > far, got
    assert got["toxic"] == [["completed", "Passed"], ["completed", "Failed"]], got
    assert any((tmp_path / "model-cache").rglob("*.onnx")), "no graph built in the cache"


def test_yaml_extra(venv_for: Callable[[str], Venv], live_server: RunningServer) -> None:
    """The yaml extra brings PyYAML alone: ``fi-evals run --config tiny.yaml`` against a
    running server, without the server extra."""
    venv = venv_for("yaml")
    venv.script("""
        import importlib.util

        assert importlib.util.find_spec("fastapi") is None, "the yaml extra pulled the server"
        from fi_evals import _otel

        assert not _otel.enabled()  # no opentelemetry: the spans are no-ops
    """)
    data, config = write_tiny_batch(venv.work)
    scored = venv.work / "scored.jsonl"
    done = venv.run("fi-evals", "run", str(data), "--config", str(config), "--output",
                    str(scored), env=server_env(live_server), timeout=120)
    check_tiny_run(done, scored)


def test_otel_extra(venv_for: Callable[[str], Venv], live_server: RunningServer) -> None:
    """The otel extra brings opentelemetry-api alone: evaluate() records its spans with the
    provider the application sets (here the API's default no-op one), without the server."""
    venv = venv_for("otel")
    venv.script("""
        import importlib.util

        from fi_evals import Evaluator, _otel

        assert importlib.util.find_spec("fastapi") is None, "the otel extra pulled the server"
        assert importlib.util.find_spec("opentelemetry.sdk") is None, "the SDK is the app's"
        assert _otel.enabled()
        with Evaluator() as ev:
            assert ev.evaluate("is_json", {"text": "{}"}).eval_results[0].output == "Passed"
    """, env=server_env(live_server))
