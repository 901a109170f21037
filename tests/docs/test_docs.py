"""The documentation runs: every Python block and every ``fi-evals`` command line of README.md and
docs/*.md is a test case (``README.md:L42``), run as a reader would paste it.

What is run, per file and in document order, in a working directory of that file's own:

- a ```` ```python ```` block: as a script (``python BLOCK.py``), on its own;
- in a ```` ```sh ```` / ```` ```bash ```` block, each line (``\\`` continuations joined) that
  runs ``fi-evals``, through ``bash -c`` (pipes, ``|| true`` and variables work);
- a ```` ```yaml ```` block whose first line is a comment naming a file (``# evals.yaml``): written
  to that file, for the commands after it; a ```` ```python ```` block whose first line names a
  ``.py`` file (``# my_metrics.py``, a module the commands after it import) likewise, instead of
  running.

Not run: other lines of shell blocks (``pip install``, ``make``, ``export``, ``curl``,
``docker``...), comment lines (sample output), and blocks of any other language (``text`` for
sample output and synopses, ``conf``, ``dockerfile``, ``promql``, ``sql``). An untagged block
is an error (:func:`test_every_code_block_is_tagged`): a block not meant to run says what it is.

The environment of every step: ``FI_BASE_URL``, ``FI_API_KEY`` and ``FI_SECRET_KEY`` of a
reference server on loopback whose judge is a :class:`FakeJudge` (judging from content), no
``FI_EVALS_HOME`` (runs go to ``./.fi-evals/runs`` as the docs say), ``FI_EVALS_SPOOL_DIR`` in the
working directory, ``BROWSER=true`` (``fi-evals view`` opens nothing), ``PR`` and
``GITHUB_STEP_SUMMARY`` for the CI recipe. Commands that configure the embedded server
(``run``/``templates``/``result`` with a ``--judge-*``, ``--embedding-*`` or ``--state`` flag) run
without ``FI_BASE_URL``, as the docs say they must. Every working directory of docs/*.md starts
with the README's sample data (its first Python block) and its config files (its ``yaml`` file
blocks), which the docs there refer to.

Substitutions (:data:`SUBSTITUTIONS`), applied to commands and Python blocks:

=============================  ==============================  ==================================
in the docs                    run as                          why
=============================  ==============================  ==================================
``http://localhost:11434/v1``  the fake judge's URL            the docs' judge (Ollama) is not
                                                               here
``--host 0.0.0.0``             ``--host 127.0.0.1``            servers in tests listen on
                                                               loopback only
``10.0.0.5:6379``              a real redis-server's address   the docs' Redis machine, started
                                                               with ``requirepass PASSWORD`` as
                                                               the docs' URL says
``fi-evals serve [--port N]``  ``fi-evals serve --port 0``     8765 may be taken: any free port
=============================  ==============================  ==================================

Long-running commands (``fi-evals serve``, ``fi-evals view`` without ``--export``,
``fi-evals worker``) are started, must print their ready line (:data:`READY`) within
:data:`READY_TIMEOUT` seconds and answer on their address (serve: ``/healthcheck/``; view: its
page), and are then stopped (SIGINT for ``view``, as Ctrl-C; SIGTERM for the others). Every
other step must exit 0, except those in :data:`EXPECTED_STATUS` (a documented failure). Nothing
is skipped, except the Redis steps on a machine without ``redis-server`` outside CI (``make
test`` installs it; with ``CI`` set they fail instead).

Running one case alone (``-k``) first runs the earlier steps of its file (long-running ones
excepted), so that the files and runs it needs exist.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from fi_evals import _constants as C
from fi_evals.server.config import ServerConfig
from fi_evals.server.runner import RunningServer, start_server
from tests.models.fake_judge import FakeJudge

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SHELL_LANGS = {"sh", "bash", "shell", "console"}
STEP_TIMEOUT = 120.0
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0
REDIS_PASSWORD = "PASSWORD"

FENCE = re.compile(r"^(`{3,})([^`\s]*)\s*$")
FI_EVALS = re.compile(r"(?:^|[|;&(]\s*|^(?:[A-Za-z_][A-Za-z0-9_]*=\S*\s+)+)fi-evals(?:\s|$)")
FILE_HEADER = re.compile(r"^#\s*([\w.-]+\.ya?ml)\b")
MODULE_HEADER = re.compile(r"^#\s*([\w]+\.py)\s*$")
LONG_RUNNING = re.compile(r"\bfi-evals\s+(serve|worker|view)\b")
EMBEDDED_ONLY = re.compile(
    r"\bfi-evals\s+(run|templates|result)\b.*\s--(judge-|embedding-|state\b|local-grounding-)")

READY = {
    "serve": re.compile(r"fi-evals serving on (http://\S+)"),
    "view": re.compile(r"fi-evals view serving .* on (http://\S+)"),
    "worker": re.compile(r"fi-evals worker ready: "),
}
"""The line each long-running command prints once it works (and the address it serves)."""

EXPECTED_STATUS = {
    "--map text=answr": 2,  # docs/batch.md: the typo the preflight catches before any request
}
"""Exit statuses other than 0 that a command shows on purpose, by a fragment of its line."""


@dataclass(frozen=True)
class Substitution:
    """Replace ``pattern`` (a regex) in a step's text; ``replacement`` gets the services."""

    pattern: str
    replacement: Callable[[Services], str]
    why: str


SUBSTITUTIONS = [
    Substitution(r"http://localhost:11434/v1", lambda s: s.judge.url,
                 "the docs' judge (Ollama) is not here: the fake judge answers as one"),
    Substitution(r"--host 0\.0\.0\.0", lambda s: "--host 127.0.0.1",
                 "servers in tests listen on loopback only"),
    Substitution(r"10\.0\.0\.5:6379", lambda s: s.redis_address(),
                 "the docs' Redis machine: a real redis-server (requirepass PASSWORD)"),
    Substitution(r"(fi-evals serve)((?:(?!\s#).)*?)\s--port[ =]\d+", lambda s: r"\1\2",
                 "8765 may be taken (the --port 0 below picks a free port)"),
    Substitution(r"\bfi-evals serve\b", lambda s: "fi-evals serve --port 0",
                 "8765 may be taken: any free port"),
]


# --------------------------------------------------------------------------- reading the docs


@dataclass(frozen=True)
class Step:
    """One thing the docs show to run: a Python block, a command line, or a file to write."""

    doc: str
    line: int
    kind: str  # "python" | "command" | "file"
    text: str
    filename: str | None = None

    @property
    def id(self) -> str:
        return f"{self.doc}:L{self.line}"


@dataclass(frozen=True)
class Block:
    doc: str
    line: int  # of the opening fence
    lang: str
    lines: list[str]


def code_blocks(doc: str, text: str) -> list[Block]:
    """The fenced blocks of a Markdown text (fences at the start of a line)."""
    lines = text.splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        fence, lang = match.groups()
        end = i + 1
        while end < len(lines) and not re.fullmatch(re.escape(fence) + r"`*\s*", lines[end]):
            end += 1
        blocks.append(Block(doc, i + 1, lang.lower(), lines[i + 1:end]))
        i = end + 1
    return blocks


def shell_commands(block: Block) -> Iterator[tuple[int, str]]:
    """(line number, logical line) of a shell block's lines that run ``fi-evals``."""
    current: list[str] = []
    start = 0
    for offset, raw in enumerate(block.lines):
        if not current:
            start = block.line + 1 + offset
        if raw.rstrip().endswith("\\"):
            current.append(raw.rstrip()[:-1])
            continue
        current.append(raw)
        logical = " ".join(part.strip() for part in current)
        current = []
        if logical and not logical.startswith("#") and FI_EVALS.search(logical):
            yield start, logical


def doc_steps(doc: str, text: str) -> list[Step]:
    steps: list[Step] = []
    for block in code_blocks(doc, text):
        if block.lang == "python":
            module = MODULE_HEADER.match(block.lines[0]) if block.lines else None
            if module:
                steps.append(Step(block.doc, block.line + 1, "file",
                                  "\n".join(block.lines) + "\n", filename=module.group(1)))
            else:
                steps.append(Step(block.doc, block.line + 1, "python", "\n".join(block.lines)))
        elif block.lang in SHELL_LANGS:
            steps.extend(Step(block.doc, line, "command", text)
                         for line, text in shell_commands(block))
        elif block.lang in ("yaml", "yml") and block.lines:
            header = FILE_HEADER.match(block.lines[0])
            if header:
                steps.append(Step(block.doc, block.line + 1, "file", "\n".join(block.lines) + "\n",
                                  filename=header.group(1)))
    return steps


def doc_name(path: Path) -> str:
    return path.relative_to(REPO).as_posix()


STEPS = {doc_name(path): doc_steps(doc_name(path), path.read_text("utf-8")) for path in DOCS}
README_SETUP = [s for s in STEPS["README.md"] if s.kind == "file"] + [
    next(s for s in STEPS["README.md"] if s.kind == "python")]
"""What every docs/*.md working directory starts with: the README's data block and config files."""


def test_every_code_block_is_tagged() -> None:
    """A block without a language cannot say whether it is meant to run."""
    untagged = [f"{b.doc}:L{b.line}" for path in DOCS
                for b in code_blocks(doc_name(path), path.read_text("utf-8")) if not b.lang]
    assert not untagged, f"code blocks without a language tag (```text for output): {untagged}"


def heading_anchors(text: str) -> set[str]:
    """GitHub's anchors of a Markdown text's headings (lower case, punctuation dropped)."""
    anchors = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*$", strip_code(text), flags=re.MULTILINE):
        anchors.add(re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-"))
    return anchors


def strip_code(text: str) -> str:
    """``text`` without its fenced blocks (a ``# comment`` there is no heading)."""
    return re.sub(r"^(`{3,})[^\n]*\n.*?^\1\s*$", "", text, flags=re.MULTILINE | re.DOTALL)


def test_links_between_docs_resolve() -> None:
    """docs/*.md link to each other (and to their headings) with relative links: each one leads
    somewhere. (The README has no relative link at all: tests/packaging/test_release.py.)"""
    broken = []
    for path in DOCS[1:]:
        text = path.read_text("utf-8")
        for target in re.findall(r"\]\(([^)\s]+)\)", strip_code(text)):
            if re.match(r"^(https?:|mailto:)", target):
                continue
            file_part, _, anchor = target.partition("#")
            linked = (path.parent / file_part) if file_part else path
            if not linked.is_file():
                broken.append(f"{doc_name(path)}: {target} (no such file)")
            elif anchor and anchor not in heading_anchors(linked.read_text("utf-8")):
                broken.append(f"{doc_name(path)}: {target} (no such heading)")
    assert not broken, broken


def test_the_parser_finds_each_kind_of_step() -> None:
    """The extraction on a small page: continuations, pipes, env prefixes, comments, files."""
    page = ("```sh\npip install 'fi-evals[server]'\nfi-evals run a.jsonl --eval is_json \\\n"
            "    --map text=answer   # a comment\n# fi-evals serving on http://x\n"
            "cat a.jsonl | fi-evals run - --eval is_json\nFI_X=1 fi-evals serve\n"
            "make demo\n```\n\n```yaml\n# evals.yaml: fi-evals run a --config evals.yaml\n"
            "evals: [is_json]\n```\n\n```python\nprint(1)\n```\n\n```text\nfi-evals run x\n```\n")
    steps = doc_steps("page.md", page)
    assert [(s.line, s.kind) for s in steps] == [(3, "command"), (6, "command"), (7, "command"),
                                                 (12, "file"), (17, "python")]
    assert steps[0].text == "fi-evals run a.jsonl --eval is_json --map text=answer   # a comment"
    assert steps[3].filename == "evals.yaml"


# --------------------------------------------------------------------------- the services


@dataclass
class Services:
    """The judge, the server and (started on first use) Redis that the docs' steps talk to."""

    judge: FakeJudge
    server: RunningServer
    root: Path
    _redis: object | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def redis_address(self) -> str:
        with self._lock:
            if self._redis is None:
                if shutil.which("redis-server") is None:
                    message = "redis-server is not installed; `make test` installs it (apt-get)"
                    if os.environ.get("CI"):
                        pytest.fail(message)
                    pytest.skip(message)
                from scaleout.cluster import RedisServer  # tests/scaleout: the suite's Redis

                redis_server = RedisServer(self.root / "redis")
                redis_server.client().config_set("requirepass", REDIS_PASSWORD)
                self._redis = redis_server
        return f"127.0.0.1:{self._redis.port}"  # type: ignore[attr-defined]

    def stop(self) -> None:
        if self._redis is not None:
            self._redis.stop()  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    root = tmp_path_factory.mktemp("docs")
    (root / "redis").mkdir()
    with FakeJudge(judge_content=True) as judge:
        server = start_server(ServerConfig(port=0, db_path=str(root / "docs.db"),
                                           judge_url=judge.url, judge_model="llama3.1"))
        found = Services(judge, server, root)
        try:
            yield found
        finally:
            found.stop()
            server.stop(10.0)


# --------------------------------------------------------------------------- running steps


@dataclass
class Outcome:
    status: int | None
    output: str
    failure: str | None = None  # why a long-running command did not work


def substitute(text: str, services: Services) -> str:
    for sub in SUBSTITUTIONS:
        if re.search(sub.pattern, text):
            text = re.sub(sub.pattern, sub.replacement(services), text)
    return text


def step_env(services: Services, workdir: Path, command: str = "") -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k != C.ENV_HOME and not k.startswith("FI_JUDGE_")}
    env.update({
        C.ENV_BASE_URL: services.server.url,
        C.ENV_API_KEY: services.server.api_key,
        C.ENV_SECRET_KEY: services.server.secret_key,
        "FI_EVALS_SPOOL_DIR": str(workdir / ".spool"),
        "BROWSER": "true",
        "PR": "42",
        "GITHUB_STEP_SUMMARY": str(workdir / "step-summary.md"),
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
        "PYTHONUNBUFFERED": "1",
    })
    if EMBEDDED_ONLY.search(command):
        env.pop(C.ENV_BASE_URL)
    return env


def run_python(step: Step, services: Services, workdir: Path) -> Outcome:
    script = workdir.parent / f"{workdir.name}-L{step.line}.py"
    script.write_text(substitute(step.text, services), "utf-8")
    done = subprocess.run([sys.executable, str(script)], check=False, cwd=workdir,
                          capture_output=True, text=True, timeout=STEP_TIMEOUT,
                          env=step_env(services, workdir), stdin=subprocess.DEVNULL)
    return Outcome(done.returncode, done.stdout + done.stderr)


def run_command(step: Step, services: Services, workdir: Path) -> Outcome:
    command = substitute(step.text, services)
    env = step_env(services, workdir, command)
    kind = LONG_RUNNING.search(command)
    if kind and not re.search(r"\s--export\b", command):
        return run_long(kind.group(1), re.sub(r"\s&\s*(#.*)?$", "", command), env, workdir)
    done = subprocess.run(["bash", "-c", command], check=False, cwd=workdir,
                          capture_output=True, text=True, timeout=STEP_TIMEOUT, env=env,
                          stdin=subprocess.DEVNULL)
    return Outcome(done.returncode, done.stdout + done.stderr)


def run_long(kind: str, command: str, env: dict[str, str], workdir: Path) -> Outcome:
    """Start, wait for the ready line, check the address answers, stop."""
    proc = subprocess.Popen(["bash", "-c", command], cwd=workdir, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    lines: list[str] = []
    ready = threading.Event()
    address: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode("utf-8", "replace")
            lines.append(line)
            match = READY[kind].search(line)
            if match and not ready.is_set():
                address.extend(match.groups())
                ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    failure = None
    try:
        if not ready.wait(READY_TIMEOUT):
            failure = f"no ready line ({READY[kind].pattern}) within {READY_TIMEOUT:.0f} s"
        elif address:
            path = C.PATH_HEALTH if kind == "serve" else "/"
            answer = requests.get(address[0].rstrip("/") + path, timeout=10)
            if answer.status_code != 200:
                failure = f"{address[0]}{path} answered {answer.status_code}"
    finally:
        stop_signal = signal.SIGINT if kind == "view" else signal.SIGTERM
        if proc.poll() is None:
            os.killpg(proc.pid, stop_signal)
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
            failure = failure or f"did not stop within {STOP_TIMEOUT:.0f} s of {stop_signal.name}"
        reader.join(5)
    return Outcome(0 if failure is None else None, "".join(lines), failure)


def execute(step: Step, services: Services, workdir: Path) -> Outcome:
    if step.kind == "file":
        assert step.filename is not None
        (workdir / step.filename).write_text(step.text, "utf-8")
        return Outcome(0, "")
    if step.kind == "python":
        return run_python(step, services, workdir)
    return run_command(step, services, workdir)


@dataclass
class DocRun:
    """One file's working directory and how far its steps have run."""

    workdir: Path
    done: int = 0


@pytest.fixture(scope="module")
def doc_runs(services: Services) -> dict[str, DocRun]:
    return {}


def prepare(doc: str, index: int, services: Services, runs: dict[str, DocRun]) -> Path:
    """The file's working directory, with every earlier step of it run."""
    run = runs.get(doc)
    if run is None:
        workdir = services.root / re.sub(r"\W", "_", doc)
        workdir.mkdir()
        if doc != "README.md":
            for setup in README_SETUP:
                execute(setup, services, workdir)
        run = runs[doc] = DocRun(workdir)
    for earlier in STEPS[doc][run.done:index]:
        if not (earlier.kind == "command" and LONG_RUNNING.search(earlier.text)):
            execute(earlier, services, run.workdir)
    run.done = max(run.done, index + 1)
    return run.workdir


CASES = [pytest.param(doc, index, id=step.id)
         for doc, steps in STEPS.items() for index, step in enumerate(steps)]


@pytest.mark.slow
@pytest.mark.parametrize(("doc", "index"), CASES)
def test_doc_step(doc: str, index: int, services: Services,
                  doc_runs: dict[str, DocRun]) -> None:
    step = STEPS[doc][index]
    workdir = prepare(doc, index, services, doc_runs)
    started = time.monotonic()
    outcome = execute(step, services, workdir)
    expected = next((status for fragment, status in EXPECTED_STATUS.items()
                     if fragment in step.text), 0)
    shown = f"{step.id} ({time.monotonic() - started:.1f} s):\n{step.text}\n--- output:\n" \
            f"{outcome.output[-4000:]}"
    assert outcome.failure is None, f"{outcome.failure}\n{shown}"
    assert outcome.status == expected, f"exit status {outcome.status}, expected {expected}\n{shown}"
