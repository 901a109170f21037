"""The scenarios of issue 6 (P1 to P5) and issue 8 (M): who runs, on how many items, where.

P1 to P3 are run by the harness itself, one contender at a time, each run against a fresh
``fi-evals serve`` process (see ``_server.py``); P4 and P5 run the standalone scripts of the
batch and logger areas (``bench_memory.py``, ``bench_logger.py``), which start their own server;
M runs ``bench_offline_models.py`` (the offline model templates' items/s, issue 8 point 5),
which needs the ``models`` extra and starts its own server in-process; V runs
``bench_viewer.py`` (``fi-evals view`` of a 1,000,000-row run, issue 16 point 8), once; A runs
``bench_asyncio.py`` (P2 awaited through ``AsyncEvaluator`` beside a 10 ms ticker, against the
sync client and a native httpx prototype, issue 19 point 1).

Sizes come from :class:`Sizes`: the full sizes of the issue, or tiny ones for the smoke run
that ``make test`` includes (it checks that the harness works end to end, nothing more).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from benchmarks.baseline import BASELINE_COMMIT

__all__ = ["FULL", "SMOKE", "Contender", "Scenario", "Sizes", "scenarios", "without_baseline"]

P1_EVALS = "is_json,fuzzy_match"
P2_EVALS = "is_json"
P3_EVALS = "is_json"
P2_LATENCY_MS = 50
P2_WORKERS = 32
P2_OLD_CHUNK = 50
"""What ``evaluate_batch`` picked for P2 before a48aef5 (``min(50, ceil(n / (2 x workers)))``)."""
OFFICIAL_THREADS = 8
OFFICIAL_POLL_SLEEP = 3.0
SDK_MAX_BATCH = 500
ASYNC_LABEL = ("fi_evals async: submit all (results finished at submit come with the ids), "
               "poll the rest")
P1_FIXED_CHUNKS = (100, 200, SDK_MAX_BATCH)
"""Fixed chunk sizes P1 measures: the adaptive default must reach 90% of the best (issue 20)."""
BASELINE_NAME = BASELINE_COMMIT
"""The baseline worktree's commit, as the tables name it."""


@dataclass(frozen=True)
class Sizes:
    """Items per scenario and contender family."""

    p1: int = 100_000
    p1_official: int = 1_000
    p2: int = 5_000
    p2_official: int = 1_000
    p3: int = 20_000
    p3_official: int = 1_000
    p4: tuple[int, int] = (10_000, 1_000_000)
    p5: dict[str, int] = field(default_factory=lambda: {
        "burst": 50_000, "service_calls": 24_000, "service_rate": 4_000, "offline": 20_000})
    m_items: int = 3_000
    """M: items per (length, template) scenario of ``bench_offline_models.py``."""
    m_batch: int | None = None
    """M: items per request; None = the script's default (the SDK's maximum batch size)."""
    m_lengths: tuple[str, ...] = ("short", "sentence")
    v_rows: int = 1_000_000
    """V: rows of the run ``bench_viewer.py`` builds and opens."""
    a_items: int = 5_000
    """A: P2's items, awaited (``bench_asyncio.py``)."""


FULL = Sizes()
SMOKE = Sizes(p1=400, p1_official=40, p2=96, p2_official=16, p3=400, p3_official=40,
              p4=(1_000, 2_000), p5={"burst": 2_000, "service_calls": 800,
                                     "service_rate": 4_000, "offline": 1_000},
              m_items=40, m_batch=20, m_lengths=("short",), v_rows=2_000, a_items=200)


@dataclass(frozen=True)
class Contender:
    """One line of a scenario's table.

    Attributes:
        key: the driver (``fi-sync``, ``fi-async``, ``http-ceiling``, ``in-process``,
            ``server-no-http``; ``official-sync``/``official-async`` run the official client).
        label: what the table says.
        role: ``fi`` (the product, SDK defaults), ``tuned`` (fi_evals with a non-default
            option, shown as evidence for a proposed change), ``official``, ``ceiling``.
        items: rows scored (the official client runs on a smaller sample, stated).
        evals: templates, comma-separated.
        workers: threads / ``max_workers``.
        chunk_size: rows per request; 0 = the SDK's own choice.
        baseline: run the baseline worktree's driver and server (``baseline.py``): the code
            before issue 20, measured in the same run.
    """

    key: str
    label: str
    role: str
    items: int
    evals: str
    workers: int = 8
    chunk_size: int = 0
    baseline: bool = False

    @property
    def name(self) -> str:
        """Unique within a scenario (a driver may run twice with different chunks)."""
        return self.key + (f"@{self.chunk_size}" if self.chunk_size else "") + (
            "@baseline" if self.baseline else "")

    @property
    def official(self) -> bool:
        return self.key.startswith("official-")

    @property
    def needs_server(self) -> bool:
        return self.key not in ("in-process", "server-no-http")

    @property
    def outcomes(self) -> int:
        return self.items * len(self.evals.split(","))


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    server_flags: tuple[str, ...] = ()
    contenders: tuple[Contender, ...] = ()
    external: str | None = None
    """For P4/P5/M/V/A: the standalone script that runs the whole scenario."""


def scenarios(sizes: Sizes) -> list[Scenario]:
    """P1 to P5, M, V and A at the given sizes, in the order they run."""
    s = sizes
    return [
        Scenario("P1", "Deterministic evaluations per second (is_json + fuzzy_match)", (), (
            Contender("fi-sync", "fi_evals sync batch (evaluate_batch)", "fi", s.p1, P1_EVALS),
            Contender("fi-async", ASYNC_LABEL, "fi", s.p1,
                      P1_EVALS),
            *(Contender("fi-sync", f"fi_evals sync batch, fixed chunk_size={size}", "tuned",
                        s.p1, P1_EVALS, chunk_size=size) for size in P1_FIXED_CHUNKS),
            Contender("fi-sync", f"baseline {BASELINE_NAME}: fi_evals sync batch (defaults)",
                      "baseline", s.p1, P1_EVALS, baseline=True),
            Contender("official-sync", "official client: 8 threads x evaluate() per item",
                      "official", s.p1_official, P1_EVALS, OFFICIAL_THREADS),
            Contender("official-async", "official client: is_async per item, poll each id "
                      "every 3 s", "official", s.p1_official, P1_EVALS, OFFICIAL_THREADS),
            Contender("http-ceiling", "HTTP ceiling: bare requests.Session + 8 threads, "
                      "same requests as fi_evals sync", "ceiling", s.p1, P1_EVALS),
            Contender("http-ceiling", f"HTTP ceiling, chunks of {SDK_MAX_BATCH}", "ceiling",
                      s.p1, P1_EVALS, chunk_size=SDK_MAX_BATCH),
            Contender("server-no-http", "server pipeline in-process (validate, evaluate, "
                      "store), no HTTP", "ceiling", s.p1, P1_EVALS),
            Contender("server-no-http", f"baseline {BASELINE_NAME}: server pipeline "
                      "in-process, no HTTP", "baseline", s.p1, P1_EVALS, baseline=True),
            Contender("server-no-http", f"server pipeline in-process, chunks of {SDK_MAX_BATCH}",
                      "ceiling", s.p1, P1_EVALS, chunk_size=SDK_MAX_BATCH),
            Contender("server-no-http", f"baseline {BASELINE_NAME}: server pipeline "
                      f"in-process, chunks of {SDK_MAX_BATCH}", "baseline", s.p1, P1_EVALS,
                      chunk_size=SDK_MAX_BATCH, baseline=True),
            Contender("in-process", "evaluators called in-process (no HTTP, no storage)",
                      "ceiling", s.p1, P1_EVALS),
        )),
        Scenario("P2", f"Latency-bound: --sim-latency-ms {P2_LATENCY_MS}, max_workers="
                 f"{P2_WORKERS}", ("--sim-latency-ms", str(P2_LATENCY_MS)), (
            Contender("fi-sync", "fi_evals sync batch (evaluate_batch)", "fi", s.p2, P2_EVALS,
                      P2_WORKERS),
            Contender("fi-sync", f"fi_evals sync batch, chunk_size={P2_OLD_CHUNK} (the "
                      "SDK's chunk rule before a48aef5)", "tuned", s.p2, P2_EVALS, P2_WORKERS,
                      P2_OLD_CHUNK),
            Contender("official-sync", "official client: 8 threads x evaluate() per item",
                      "official", s.p2_official, P2_EVALS, OFFICIAL_THREADS),
            Contender("http-ceiling", f"bare requests.Session + {P2_WORKERS} threads, same "
                      "requests as fi_evals sync", "ceiling", s.p2, P2_EVALS, P2_WORKERS),
        )),
        Scenario("P3", "HTTP requests per evaluation, submit everything then poll", (), (
            Contender("fi-async", ASYNC_LABEL, "fi", s.p3,
                      P3_EVALS),
            Contender("official-async", "official client: is_async per item, poll each id "
                      "every 3 s", "official", s.p3_official, P3_EVALS, OFFICIAL_THREADS),
        )),
        Scenario("P4", "Client peak RSS, items streamed to a JSONL file",
                 external="bench_memory.py"),
        Scenario("P5", "ScoreLogger.log() caller cost while the worker is busy",
                 external="bench_logger.py"),
        Scenario("M", "Offline model templates, items/s (local all-MiniLM-L6-v2 on "
                 "onnxruntime, in-process server)", external="bench_offline_models.py"),
        Scenario("V", f"fi-evals view of a {s.v_rows:,}-row run: first page served, viewer "
                 "RSS", external="bench_viewer.py"),
        Scenario("A", f"asyncio: P2 ({s.a_items:,} items) awaited through AsyncEvaluator beside "
                 "a 10 ms ticker, against the sync client and a native httpx prototype",
                 external="bench_asyncio.py"),
    ]


def only(scenario_list: list[Scenario], keys: set[str] | None) -> list[Scenario]:
    return [s for s in scenario_list if keys is None or s.key in keys]


def without_official(scenario: Scenario) -> Scenario:
    return replace(scenario, contenders=tuple(c for c in scenario.contenders if not c.official))


def without_variants(scenario: Scenario) -> Scenario:
    """Only the contenders with the SDK's own chunk size, no baseline (``--smoke``)."""
    return replace(scenario, contenders=tuple(c for c in scenario.contenders
                                              if not c.chunk_size and not c.baseline))


def without_baseline(scenario: Scenario) -> Scenario:
    return replace(scenario, contenders=tuple(c for c in scenario.contenders
                                              if not c.baseline))
