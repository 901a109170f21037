"""Configuration of the reference server: one frozen value, built by the CLI or by tests.

Every default comes from :mod:`fi_evals._constants`. ``api_key``/``secret_key`` left as None mean
"generate a pair at start" (:meth:`ServerConfig.with_keys`); reading ``FI_API_KEY`` /
``FI_SECRET_KEY`` from the environment is the CLI's job, so that tests and embedded servers are
never affected by the developer's shell.
"""

from __future__ import annotations

import dataclasses
import secrets
from dataclasses import dataclass

from fi_evals import _constants as C

__all__ = ["ServerConfig", "generate_key_pair"]


def generate_key_pair() -> tuple[str, str]:
    """A fresh random (api key, secret key) pair."""
    return "fik_" + secrets.token_urlsafe(18), "fis_" + secrets.token_urlsafe(30)


_MIN_ISOLATION_MEMORY_MB = 128  # a child with the evaluators loaded maps ~60 MB before any work


def _isolation_problems(config: ServerConfig) -> list[str]:
    problems = []
    if config.isolation_workers < 1:
        problems.append(f"isolation_workers must be at least 1, not {config.isolation_workers}")
    if not config.isolation_item_seconds > 0:
        problems.append("isolation_item_seconds must be positive, not "
                        f"{config.isolation_item_seconds}")
    if config.isolation_memory_mb < _MIN_ISOLATION_MEMORY_MB:
        problems.append(f"isolation_memory_mb must be at least {_MIN_ISOLATION_MEMORY_MB}, "
                        f"not {config.isolation_memory_mb}")
    if config.isolation_inline_chars < 0:
        problems.append("isolation_inline_chars must be 0 or more, not "
                        f"{config.isolation_inline_chars}")
    return problems


@dataclass(frozen=True, kw_only=True)
class ServerConfig:
    """Everything a reference server needs to start.

    Attributes:
        host: interface to listen on (loopback by default).
        port: TCP port; 0 picks a free ephemeral port (see ``RunningServer.url``).
        db_path: SQLite file holding evaluations and idempotency records.
        workers: async worker threads.
        api_key, secret_key: the accepted key pair; None generates one at start.
        max_batch_size: items per ``new-eval/`` request.
        max_status_ids: ids per bulk-status request.
        max_queue: pending + processing evaluations above which async submissions get a 503.
        max_body_mb: request body limit in MiB (413 above it).
        rate_limit: requests per second per API key (token bucket); None turns it off.
        rate_burst: bucket capacity; None means ``max(1, rate_limit)``.
        sim_latency_ms: every evaluation takes at least this long (like a judge model).
        faults: fault injection spec, e.g. ``"500:0.05,429:0.02,503:0.01,reset:0.01,slow:0.01"``.
        fault_slow_seconds: how long a ``slow`` fault holds the answer.
        fault_seed: seed of the fault RNG (reproducible runs); None is random.
        compat: turn every PROTOCOL.md section B extension off (a hosted-API-shaped server).
        poll_retry_after: seconds suggested by ``Retry-After`` on unfinished polls.
        overload_retry_after: seconds suggested by ``Retry-After`` on 503s.
        drain_timeout: seconds a stopping server waits for in-flight work.
        claim_batch: pending evaluations an async worker claims at once.
        inline_cheap_async: evaluate an async request's items in the request itself when its
            template is a built-in deterministic one (microseconds an item) and the workers
            run in this process; they are stored finished at once (False: every async item
            is queued for the workers).
        idempotency_wait: seconds a duplicate waits for the first request with its key.
        access_log: log one line per request (logger ``fi_evals.server.access``).
        read_timeout: seconds a request's headers and body may take to arrive, from its first
            byte (408 and the connection closed past it).
        max_json_depth: deepest nesting of arrays/objects in a request body.
        max_schema_depth: deepest nesting in the ``json_schema`` template's ``schema``.
        max_pattern_length: longest regular expression (``regex``'s pattern, a schema's).
        max_pattern_nesting: deepest group nesting of such a pattern.
        max_pattern_expansion: compile budget of such a pattern (see
            :func:`fi_evals.server.limits.pattern_problem`).
        max_quadratic_input_chars: longest input string of the templates whose cost is the
            product of their input lengths (``QUADRATIC_TEMPLATES``).
        max_status_answer_mb: size in MiB past which a bulk-status answer stops adding entries.
        backend: ``redis://HOST:PORT/DB`` keeps evaluations in Redis and sends async work to
            Celery workers (``fi_evals.server.redis_backend``); None: SQLite at ``db_path``
            and in-process worker threads.
        judge_url: OpenAI-compatible base URL of the judge model for model-judged templates
            (``fi_evals.server.evaluators.judge``); None: no judge (offline models, when the
            ``models`` extra is installed, compute the templates they can).
        judge_model: judge model used when a request names none.
        judge_api_key: bearer token for the judge (never shown in reprs or logs).
        judge_concurrency: judge calls in flight per process.
        judge_timeout: seconds one evaluation may spend on the judge, retries included.
        judge_cache: ``"on"``: identical judge calls are answered from the judge cache (in
            the SQLite file at ``db_path``, or the Redis of ``backend``); ``"off"``: never.
        judge_cache_ttl: seconds a cached judge outcome is reused (default 7 days).
        judge_cache_path: a SQLite file of its own for the judge cache (``fi-evals run``'s
            embedded server: the per-user cache folder); None: the job store.
        judge_price_in: price of 1M prompt tokens; with ``judge_price_out``, outcomes record
            their cost (None: tokens only; there is no built-in price list).
        judge_price_out: price of 1M completion tokens.
        judge_rpm: the judge provider's requests per minute, shared by every judge call of
            the process (None: learned from the provider's rate-limit headers).
        judge_tpm: the judge provider's tokens per minute (None: learned from its headers).
        embedding_model: folder of the user's own sentence encoder for the offline templates;
            None uses the sha256-pinned all-MiniLM-L6-v2 of the ``models`` extra.
        embedding_precision: ``int8`` (about 1.4x faster; similarities within ~0.01 of fp32)
            or ``fp32`` (the published weights unchanged); None: ``$FI_EMBEDDING_PRECISION``,
            else int8.
        local_grounding_heuristic: without a judge, serve groundedness, context_adherence
            and is_factually_consistent with the offline word-overlap heuristic (the models
            extra), which the user must ask for: it is no judge, and its held-out accuracy
            (``offline/_accuracy.py``) is reported wherever it is offered. False: those
            templates need a judge.
        isolation_workers: child processes running the evaluators without a natural cost
            bound (``fi_evals.server.isolation``: regex, json_schema, large similarity items).
        isolation_item_seconds: wall-clock seconds one isolated item may take (the item then
            fails and its child process is replaced).
        isolation_memory_mb: address-space cap (``RLIMIT_AS``, MiB) of each child process.
        isolation_inline_chars: longest text input the quadratic similarity templates
            evaluate in-process; longer items run isolated.
    """

    host: str = C.DEFAULT_HOST
    port: int = C.DEFAULT_PORT
    db_path: str = C.DEFAULT_DB_PATH
    workers: int = C.DEFAULT_SERVER_WORKERS
    api_key: str | None = None
    secret_key: str | None = None
    max_batch_size: int = C.DEFAULT_MAX_BATCH_SIZE
    max_status_ids: int = C.DEFAULT_MAX_STATUS_IDS
    max_queue: int = C.DEFAULT_MAX_QUEUE
    max_body_mb: float = C.DEFAULT_MAX_BODY_MB
    rate_limit: float | None = C.DEFAULT_RATE_LIMIT
    rate_burst: int | None = None
    sim_latency_ms: int = C.DEFAULT_SIM_LATENCY_MS
    faults: str | None = None
    fault_slow_seconds: float = C.DEFAULT_FAULT_SLOW_SECONDS
    fault_seed: int | None = None
    compat: bool = False
    poll_retry_after: int = C.DEFAULT_POLL_RETRY_AFTER
    overload_retry_after: int = C.DEFAULT_OVERLOAD_RETRY_AFTER
    drain_timeout: float = C.DEFAULT_DRAIN_TIMEOUT
    claim_batch: int = C.DEFAULT_CLAIM_BATCH
    inline_cheap_async: bool = True
    idempotency_wait: float = C.DEFAULT_IDEMPOTENCY_WAIT
    access_log: bool = True
    read_timeout: float = C.DEFAULT_REQUEST_READ_TIMEOUT
    max_json_depth: int = C.DEFAULT_MAX_JSON_DEPTH
    max_schema_depth: int = C.DEFAULT_MAX_SCHEMA_DEPTH
    max_pattern_length: int = C.DEFAULT_MAX_PATTERN_LENGTH
    max_pattern_nesting: int = C.DEFAULT_MAX_PATTERN_NESTING
    max_pattern_expansion: int = C.DEFAULT_MAX_PATTERN_EXPANSION
    max_quadratic_input_chars: int = C.DEFAULT_MAX_QUADRATIC_INPUT_CHARS
    max_status_answer_mb: float = C.DEFAULT_MAX_STATUS_ANSWER_MB
    backend: str | None = None
    judge_url: str | None = None
    judge_model: str | None = None
    judge_api_key: str | None = None
    judge_concurrency: int = C.JUDGE_CONCURRENCY
    judge_timeout: float = C.JUDGE_TIMEOUT
    judge_cache: str = C.JUDGE_CACHE
    judge_cache_ttl: float = C.JUDGE_CACHE_TTL
    judge_cache_path: str | None = None
    judge_price_in: float | None = None
    judge_price_out: float | None = None
    judge_rpm: float | None = None
    judge_tpm: float | None = None
    embedding_model: str | None = None
    embedding_precision: str | None = None
    local_grounding_heuristic: bool = False
    isolation_workers: int = C.ISOLATION_WORKERS
    isolation_item_seconds: float = C.ISOLATION_ITEM_SECONDS
    isolation_memory_mb: int = C.ISOLATION_MEMORY_MB
    isolation_inline_chars: int = C.ISOLATION_INLINE_CHARS

    def __post_init__(self) -> None:
        problems = []
        if not 0 <= self.port <= 65535:
            problems.append(f"port must be 0..65535, not {self.port}")
        for name in ("workers", "max_batch_size", "max_status_ids", "max_queue", "claim_batch",
                     "max_json_depth", "max_schema_depth", "max_pattern_length",
                     "max_pattern_nesting", "max_pattern_expansion",
                     "max_quadratic_input_chars"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be at least 1, not {getattr(self, name)}")
        for name in ("max_body_mb", "max_status_answer_mb", "read_timeout"):
            if not getattr(self, name) > 0:
                problems.append(f"{name} must be positive, not {getattr(self, name)}")
        if self.rate_limit is not None and self.rate_limit <= 0:
            problems.append(f"rate_limit must be positive or None, not {self.rate_limit}")
        if self.sim_latency_ms < 0:
            problems.append(f"sim_latency_ms must be >= 0, not {self.sim_latency_ms}")
        if self.judge_url is not None and not self.judge_url.startswith(("http://", "https://")):
            problems.append(f"judge_url must be an http(s) URL, not {self.judge_url!r}")
        if self.judge_concurrency < 1:
            problems.append(f"judge_concurrency must be at least 1, not {self.judge_concurrency}")
        if not self.judge_timeout > 0:
            problems.append(f"judge_timeout must be positive, not {self.judge_timeout}")
        if self.judge_cache not in C.JUDGE_CACHE_CHOICES:
            problems.append(f"judge_cache must be one of {', '.join(C.JUDGE_CACHE_CHOICES)}, "
                            f"not {self.judge_cache!r}")
        if not self.judge_cache_ttl > 0:
            problems.append(f"judge_cache_ttl must be positive, not {self.judge_cache_ttl}")
        for name in ("judge_price_in", "judge_price_out"):
            value = getattr(self, name)
            if value is not None and not value >= 0:
                problems.append(f"{name} must be 0 or more, not {value}")
        for name in ("judge_rpm", "judge_tpm"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                problems.append(f"{name} must be positive, not {value}")
        if self.embedding_precision not in (None, *C.EMBEDDING_PRECISIONS):
            problems.append(f"embedding_precision must be one of "
                            f"{', '.join(C.EMBEDDING_PRECISIONS)}, not "
                            f"{self.embedding_precision!r}")
        problems.extend(_isolation_problems(self))
        if (self.api_key is None) != (self.secret_key is None):
            problems.append("give both api_key and secret_key, or neither")
        if self.backend is not None:
            from fi_evals.server.redis_backend.settings import BackendURL

            try:
                BackendURL.parse(self.backend)
            except ValueError as exc:
                problems.append(str(exc))
        if problems:
            raise ValueError("invalid server configuration: " + "; ".join(problems))
        if self.faults:
            from fi_evals.server.faults import FaultPlan

            FaultPlan.parse(self.faults)  # raises ValueError naming the bad part

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 1024 * 1024)

    @property
    def keys_generated(self) -> bool:
        return self.api_key is None

    def with_keys(self) -> ServerConfig:
        """This config, with a generated key pair if it has none."""
        if self.api_key is not None:
            return self
        api_key, secret_key = generate_key_pair()
        return dataclasses.replace(self, api_key=api_key, secret_key=secret_key)

    def replace(self, **changes: object) -> ServerConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def knobs(self) -> list[str]:
        """Human descriptions of the test knobs that are on (logged loudly at start)."""
        on = []
        if self.sim_latency_ms:
            on.append(f"--sim-latency-ms {self.sim_latency_ms}: every evaluation takes at least "
                      f"{self.sim_latency_ms} ms")
        if self.faults:
            on.append(f"--faults {self.faults}: answers to /sdk/api/ requests are randomly broken "
                      f"(slow = {self.fault_slow_seconds:g} s)")
        if self.compat:
            on.append("--compat: section B extensions are off (hosted-API-shaped server)")
        if self.rate_limit is not None:
            on.append(f"--rate-limit {self.rate_limit:g}/s per API key")
        return on

    def __repr__(self) -> str:
        # Never print the secret (reprs end up in logs and test output).
        fields = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in ("api_key", "secret_key", "judge_api_key") and value is not None:
                value = "***"
            if f.name == "backend" and value is not None and "@" in value:
                value = value.split("://", 1)[0] + "://***@" + value.split("@", 1)[1]
            if value != f.default:
                fields.append(f"{f.name}={value!r}")
        return f"ServerConfig({', '.join(fields)})"
