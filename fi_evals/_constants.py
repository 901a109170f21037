"""Every default of fi_evals in one place.

Docstrings and help texts refer to these names; no other module repeats the literals.
Client, server and CLI all read from here (this module imports nothing of the package).
"""

from __future__ import annotations

# --- Environment variables (the names the hosted API's published client reads too) ---
ENV_API_KEY = "FI_API_KEY"
ENV_SECRET_KEY = "FI_SECRET_KEY"
ENV_BASE_URL = "FI_BASE_URL"
ENV_OTEL_INPUTS = "FI_OTEL_INPUTS"
"""``1``/``true``: OpenTelemetry evaluate spans (the SDK's and the server's) also carry the
inputs, as JSON cut at ``OTEL_INPUTS_MAX_CHARS`` (off by default: inputs may be private)."""
OTEL_INPUTS_MAX_CHARS = 4096

# --- Wire protocol (../shared/PROTOCOL.md) ---
PROTOCOL_VERSION = "fi-evals/1"
HEADER_API_KEY = "X-Api-Key"
HEADER_SECRET_KEY = "X-Secret-Key"
HEADER_IDEMPOTENCY_KEY = "Idempotency-Key"
HEADER_IDEMPOTENT_REPLAYED = "Idempotent-Replayed"
HEADER_REQUEST_ID = "X-Request-Id"
HEADER_RETRY_AFTER = "Retry-After"
# RFC 7240: an async submission asks for the results the server already has (fi-evals servers
# evaluate cheap templates at submit); a server that applied it says so.
HEADER_PREFER = "Prefer"
HEADER_PREFERENCE_APPLIED = "Preference-Applied"
PREFER_RESULTS = "return=representation"

PATH_NEW_EVAL = "/sdk/api/v1/new-eval/"
PATH_BULK_STATUS = "/sdk/api/v1/new-eval/status/"
PATH_GET_EVALS = "/sdk/api/v1/get-evals/"
PATH_CAPABILITIES = "/sdk/api/v1/capabilities/"
PATH_HEALTH = "/healthcheck/"
PATH_METRICS = "/metrics"

PROCESSING_MESSAGE = "Evaluation is being processed."

# --- Client defaults ---
DEFAULT_BASE_URL = "https://api.futureagi.com"
DEFAULT_MAX_WORKERS = 8
DEFAULT_TIMEOUT = 200.0
"""Seconds a whole `evaluate()` call may take, as in the hosted API's published client."""
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_READ_TIMEOUT = 60.0
"""Seconds one HTTP response may take to arrive before the attempt counts as a read timeout."""
COMPAT_MAX_BATCH_SIZE = 3
"""Items per request against a server that does not announce capabilities (section A only)."""
COMPAT_MAX_STATUS_IDS = 1

# Retries (PROTOCOL.md section C).
RETRY_MAX_ATTEMPTS = 5
RETRY_BACKOFF_BASE = 0.5
RETRY_BACKOFF_MAX = 8.0
RETRY_AFTER_CAP = 60.0
RETRY_STATUS_CODES = frozenset({408, 429, 502, 503, 504})
"""Statuses worth a retry when it is safe: 429 and 503 promise that nothing ran (retried for every
request); 408, 502 and 504 may have run (retried only when the request cannot run twice: GETs, bulk
status, a POST to a server announcing idempotency). Any other 5xx is retried on that same condition
(``RetryPolicy.retry_server_errors``)."""
RETRY_BACKOFF_MULTIPLIER = 2.0
THROTTLE_STATUS_CODES = frozenset({429, 503})
"""Answers that mean "slow down": the transport reports each to its throttle listeners."""

# Polling.
POLL_INITIAL_DELAY = 0.25
POLL_MAX_DELAY = 10.0
POLL_BACKOFF_MULTIPLIER = 2.0
DEFAULT_WAIT_TIMEOUT = 600.0

# --- Server defaults ---
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
DEFAULT_DB_PATH = "fi-evals.db"
DEFAULT_SERVER_WORKERS = 4
DEFAULT_MAX_BATCH_SIZE = 500
DEFAULT_MAX_STATUS_IDS = 1000
DEFAULT_MAX_QUEUE = 1_000_000
DEFAULT_MAX_BODY_MB = 10
DEFAULT_POLL_RETRY_AFTER = 1
"""Seconds the server suggests between polls of unfinished evaluations."""
DEFAULT_OVERLOAD_RETRY_AFTER = 2
IDEMPOTENCY_TTL_SECONDS = 24 * 60 * 60

# --- Score logger (fi_evals.logger) ---
LOGGER_QUEUE_SIZE = 10_000
"""Scores the in-memory queue holds before the overflow policy applies."""
LOGGER_OVERFLOW_POLICY = "spool"
LOGGER_BLOCK_TIMEOUT = 1.0
"""Seconds ``log()`` may wait for room under the ``block`` policy before dropping the score."""
LOGGER_BATCH_SIZE = 500
"""Most scores per submission (further capped by the server's ``max_batch_size``)."""
LOGGER_LINGER = 0.05
"""Seconds the worker waits for more scores to fill a batch before it sends a partial one."""
LOGGER_POLL_INTERVAL = 0.5
"""Least seconds between two bulk polls (the server's ``Retry-After`` may ask for more)."""
LOGGER_MAX_PENDING = 20_000
"""Most submitted-but-unfinished evaluations; the worker stops submitting above it."""
LOGGER_RECONNECT_INITIAL = 0.25
LOGGER_RECONNECT_MAX = 5.0
"""Bounds of the backoff between health probes while the server is unreachable."""
LOGGER_STATS_INTERVAL = 60.0
"""Seconds between two INFO lines with the logger's counters."""
LOGGER_EXIT_TIMEOUT = 5.0
"""Seconds the interpreter-exit hook spends flushing every open logger (then spools the rest)."""
LOGGER_CLOSE_TIMEOUT = 10.0
LOGGER_OVERFLOW_MAX = 200_000
"""Most scores waiting in memory for the spool writer; past it, ``spool`` drops (counted)."""
LOGGER_SPOOL_LEASE = 60.0
"""Seconds a process's claim on spooled scores holds before another process may replay them."""
LOGGER_SPOOL_DIR_ENV = "FI_EVALS_SPOOL_DIR"
LOGGER_SPOOL_SUBDIR = "fi-evals/spool"
"""Default spool folder, under ``$XDG_CACHE_HOME`` (or ``~/.cache``)."""

# --- Reference server: knobs (fi_evals/server/config.py) ---
DEFAULT_RATE_LIMIT: float | None = None
"""Requests per second per API key; None turns the token bucket off."""
DEFAULT_SIM_LATENCY_MS = 0
DEFAULT_FAULT_SLOW_SECONDS = DEFAULT_READ_TIMEOUT + 5.0
"""How long a `slow` fault holds its answer: longer than the client's read timeout."""
DEFAULT_DRAIN_TIMEOUT = 30.0
"""Seconds a stopping server waits for in-flight requests and evaluations to finish."""
DEFAULT_CLAIM_BATCH = 8
"""Pending evaluations an async worker claims at once at first (it grows for cheap ones)."""
DEFAULT_IDEMPOTENCY_WAIT = 5.0
"""Seconds a duplicate request waits for the first one with its Idempotency-Key to finish."""
MAX_IDEMPOTENCY_KEY_LENGTH = 255
HEADER_RATELIMIT_LIMIT = "X-RateLimit-Limit"
HEADER_RATELIMIT_REMAINING = "X-RateLimit-Remaining"
HEADER_RATELIMIT_RESET = "X-RateLimit-Reset"
SERVING_LINE_PREFIX = "fi-evals serving on "
"""`fi-evals serve` prints this plus the base URL on stdout once it accepts connections."""

# --- Reference server: limits at the door (fi_evals/server/limits.py); each is a 4xx ---
DEFAULT_MAX_JSON_DEPTH = 64
"""Deepest nesting of arrays/objects in any request body (a new-eval body needs 3 plus its
schema parameter); deeper bodies are a 400 before anything recursive touches them."""
DEFAULT_MAX_SCHEMA_DEPTH = 32
"""Deepest nesting of arrays/objects in a ``json_schema`` template's ``schema`` parameter
(each level costs jsonschema about five stack frames when it checks the schema)."""
DEFAULT_MAX_PATTERN_LENGTH = 10_000
"""Longest regular expression, in characters, in a ``regex`` pattern or a JSON schema's
``pattern``/``patternProperties`` (the regex evaluator has its own ``REGEX_MAX_PATTERN_LENGTH``)."""
DEFAULT_MAX_PATTERN_NESTING = 32
"""Deepest nesting of groups in such a pattern (the compilers recurse per group)."""
DEFAULT_MAX_PATTERN_EXPANSION = 100_000
"""Compile budget of such a pattern: the sum over its atoms of the product of the minimum
counts of the fixed repeats around them. ``regex`` unrolls nested counted repeats at compile
time (``(?:a{1000}){1000}`` takes ~260 MB), so the product is what memory scales with; 100,000
is ~35 MB."""
DEFAULT_MAX_QUADRATIC_INPUT_CHARS = 100_000
"""Longest input string, in characters, of a template whose cost grows with the product of its
input lengths (:data:`QUADRATIC_TEMPLATES`): two 100,000-character texts take fuzzy_match ~0.3 s
and levenshtein_similarity ~0.45 s, within an isolated item's time limit; two 1 MiB texts took
fuzzy_match 39 s."""
QUADRATIC_TEMPLATES = frozenset({"fuzzy_match", "levenshtein_similarity", "rouge_score"})
"""Templates whose time grows with len(a) * len(b) (edit distances, longest common
subsequence)."""
DEFAULT_MAX_STATUS_ANSWER_MB = 16.0
"""Size in MiB past which a bulk-status answer stops adding entries (at least one is always
answered); clients ask again for the ids left out, as PROTOCOL.md's poller does."""
DEFAULT_REQUEST_READ_TIMEOUT = 30.0
"""Seconds a request's headers and body may take to arrive (from its first byte); past it the
server answers 408 and closes the connection."""

# --- Deterministic evaluators (fi_evals/server/evaluators/deterministic.py) ---
OUTPUT_PASSED = "Passed"
OUTPUT_FAILED = "Failed"
"""The two outputs of every Pass/Fail template."""
REGEX_TIMEOUT_SECONDS = 0.5
"""Longest one `regex` template match may run; past it the item fails (catastrophic patterns)."""
REGEX_MAX_PATTERN_LENGTH = 10_000
"""Longest pattern the `regex` template accepts, in characters."""

# --- Isolated evaluations (fi_evals/server/isolation.py) ---
ISOLATION_WORKERS = 2
"""Child processes per server (or `fi-evals worker`) that run the evaluators without a natural
cost bound: regex and json_schema always, the quadratic similarity templates above
``ISOLATION_INLINE_CHARS``."""
ISOLATION_ITEM_SECONDS = 2.0
"""Wall-clock seconds one isolated item (or one parameter check) may take; past it the parent
kills the child, records the item ``failed`` and carries on with a fresh child."""
ISOLATION_MEMORY_MB = 1024
"""Address-space cap (``RLIMIT_AS``, MiB) of each isolated child process."""
ISOLATION_INLINE_CHARS = 10_000
"""Longest text input (characters) that fuzzy_match, levenshtein_similarity, rouge_score and
bleu_score evaluate in the server process; longer items run isolated (a 10,000-character pair
takes about 5 ms or less inline on 2 cores)."""

# --- Batch engine (fi_evals/batch/) ---
BATCH_CHUNK_SIZE = 50
"""Items per request of `evaluate_batch` when the input's length is unknown (files, generators);
further capped by the server's `max_batch_size`."""
BATCH_ASYNC_CHUNK_SIZE = 500
"""Items per submission of `evaluate_batch(is_async=True)` (submitting is cheap: the server only
stores them); further capped by the server's `max_batch_size`."""
BATCH_MIN_CHUNKS_PER_WORKER = 2
"""With a known input length, chunks are made small enough to give each worker this many."""
BATCH_ADAPT_FAST_SECONDS = 1.0
"""Sync mode without an explicit `chunk_size` (issue 20): a full request answered faster than this
doubles the rows of the next chunks (up to the server's `max_batch_size`); a judge-like
template's requests take longer, so its chunks keep their size and fill whole worker waves."""
BATCH_ADAPT_NEAR_TIMEOUT = 0.25
"""A request that took more than this share of the read timeout halves the chunk size."""
BATCH_ADAPT_SLOWDOWN = 4.0
"""A request no longer fast whose rows took this many times the fastest rows seen halves the
chunk size (the server slowed down)."""
BATCH_SHOW_FAILURES = 5
"""Failing or errored rows the batch summary lists (`--show N`, `show=`)."""
BATCH_WINDOW_CHUNKS_PER_WORKER = 4
"""Sync mode: chunks read ahead of the oldest unfinished one, per worker (bounds memory)."""
BATCH_ASYNC_WINDOW_ITEMS = 20_000
"""Async mode: items submitted ahead of the oldest unfinished one. Inputs up to this size are
submitted completely before the first poll; larger ones roll (the window bounds memory)."""
BATCH_TICK_SECONDS = 0.2
"""Longest the coordinator sleeps between checks of deadlines, timeouts and Ctrl-C."""
BATCH_LATENCY_RESERVOIR = 10_000
"""Latency samples kept for p50/p95/p99 (a uniform reservoir: exact up to this many outcomes)."""
BATCH_CONCURRENCY_HISTORY = 1_000
"""Most adaptive-concurrency changes kept in the stats (the oldest are dropped first)."""
BATCH_AIMD_DECREASE = 0.5
"""Factor applied to the in-flight limit on a 429/503 (multiplicative decrease)."""
BATCH_AIMD_COOLDOWN = 0.5
"""Least seconds between two decreases: a burst of 429s from one round trip is one signal."""
BATCH_SCORE_PASS_THRESHOLD = 0.5
"""A score template's item passes when its score is at least this (per-eval `pass_threshold`)."""
BATCH_THRESHOLD_MIN_COVERAGE = 1.0
"""Thresholds also require this share of items scored: errors never hide behind a mean."""
BATCH_INTERRUPT_GRACE = 2.0
"""Seconds Ctrl-C waits for requests already on the wire before returning the partial result."""
BATCH_TASK_LOOP_CLOSE_TIMEOUT = 5.0
"""Seconds the end of a batch waits for its ``async def`` tasks, once cancelled, to finish."""
JOURNAL_VERSION = 1
LOGGER_RETRY_ATTEMPTS = 2
"""HTTP attempts per logger request: the logger's own spool and backoff handle longer outages."""

# --- Scale-out backend: Redis job store + Celery workers (fi_evals/server/redis_backend/) ---
REDIS_KEY_PREFIX = "fi-evals:"
"""Prefix of every job-store key in Redis (``?prefix=`` in the backend URL changes it, so that
several deployments can share one Redis)."""
CELERY_QUEUE = "fi-evals"
"""The Celery queue API nodes send evaluation chunks to and workers consume."""
CELERY_TASK_CHUNK = 25
"""Evaluations per Celery task: one task per chunk, not per evaluation, keeps 10,000 cheap."""
CELERY_VISIBILITY_TIMEOUT = 600.0
"""Seconds an unacknowledged task stays with the worker that took it before Redis hands it to
another (a dead worker's tasks come back after this). Must exceed the longest chunk."""
CELERY_RESTORE_INTERVAL = 5.0
"""Seconds between a worker's sweeps for tasks whose visibility timeout ran out."""
WORKER_CONCURRENCY = 8
"""Tasks one `fi-evals worker` runs at once (threads: evaluations mostly wait on judge models)."""
OUTBOX_GRACE_SECONDS = 30.0
"""An async evaluation stored this long ago whose task was never confirmed sent (its API node
died in between) is sent again by the outbox sweep."""
OUTBOX_SWEEP_SECONDS = 10.0
"""Seconds between two outbox sweeps of an API node."""
IDEMPOTENCY_RESERVATION_TTL = 600
"""Seconds a reserved (unanswered) Idempotency-Key lives in Redis: a crashed API node's
reservations expire instead of blocking their key for 24 h."""

# --- Model-based templates: LLM judge and offline models (fi_evals/server/evaluators/) ---
ENV_JUDGE_BASE_URL = "FI_JUDGE_BASE_URL"
ENV_JUDGE_API_KEY = "FI_JUDGE_API_KEY"
ENV_JUDGE_MODEL = "FI_JUDGE_MODEL"
ENV_EMBEDDING_MODEL = "FI_EMBEDDING_MODEL"
"""A folder with model.safetensors, config.json and tokenizer.json of a BERT sentence encoder
(the user's own copy), used instead of the all-MiniLM-L6-v2 that the models extra ships."""
ENV_EMBEDDING_PRECISION = "FI_EMBEDDING_PRECISION"
"""``int8`` (default) or ``fp32``: the precision the offline encoder runs at."""
EMBEDDING_PRECISIONS = ("int8", "fp32")
EMBEDDING_PRECISION = "int8"
"""int8 is about 1.4x faster on 2 cores; similarities move by 0.007 on average (see
``fi_evals/server/evaluators/offline/_model.py``)."""
ENV_LOCAL_GROUNDING_HEURISTIC = "FI_LOCAL_GROUNDING_HEURISTIC"
"""``1`` / ``true``: without a judge, serve groundedness, context_adherence and
is_factually_consistent with the opt-in word-overlap heuristic (``--local-grounding-heuristic``);
its held-out accuracy is reported wherever it is offered. Unset: those templates need a judge."""
ENV_MODEL_CACHE = "FI_EVALS_MODEL_CACHE"
"""Folder of built ONNX graphs (default ``$XDG_CACHE_HOME/fi-evals/models`` or ``~/.cache/...``)."""
MODEL_CACHE_SUBDIR = "fi-evals/models"
JUDGE_CONCURRENCY = 8
"""Judge requests in flight at once per server process (also the judge connection pool size)."""
JUDGE_TIMEOUT = 60.0
"""Seconds one evaluation may spend on the judge, every attempt and backoff included."""
JUDGE_ATTEMPT_SHARE = 0.5
"""Largest share of ``JUDGE_TIMEOUT`` one attempt may take, so a hung call leaves time to retry."""
JUDGE_CONNECT_TIMEOUT = 5.0
JUDGE_MAX_ATTEMPTS = 4
"""HTTP attempts per judge call (429, 5xx, timeouts and connection errors are retried)."""
JUDGE_BACKOFF_BASE = 0.25
JUDGE_BACKOFF_MAX = 4.0
JUDGE_RETRY_STATUS_CODES = frozenset({408, 409, 429, 500, 502, 503, 504})
JUDGE_PARSE_ATTEMPTS = 2
"""Judge answers asked for per evaluation: a malformed answer is asked for again once."""
JUDGE_RAW_ANSWER_CHARS = 2000
"""Most characters of a malformed judge answer quoted in the evaluation's error message."""
JUDGE_CACHE = "on"
"""``--judge-cache``: identical judge calls are answered from the job store (``off``: never)."""
JUDGE_CACHE_CHOICES = ("on", "off")
JUDGE_CACHE_TTL = 7 * 24 * 3600.0
"""Seconds a cached judge outcome is reused (``--judge-cache-ttl``): 7 days."""
JUDGE_CACHE_SUBDIR = "fi-evals/judge"
"""Folder, under the per-user cache folder, of ``fi-evals run``'s judge cache."""
ENV_JUDGE_CACHE = "FI_JUDGE_CACHE"
ENV_JUDGE_CACHE_TTL = "FI_JUDGE_CACHE_TTL"
ENV_JUDGE_CACHE_DIR = "FI_JUDGE_CACHE_DIR"
ENV_JUDGE_PRICE_IN = "FI_JUDGE_PRICE_IN"
ENV_JUDGE_PRICE_OUT = "FI_JUDGE_PRICE_OUT"
ENV_JUDGE_RPM = "FI_JUDGE_RPM"
ENV_JUDGE_TPM = "FI_JUDGE_TPM"
JUDGE_ANSWER_TOKENS = 100
"""Tokens allowed for a judge's answer when estimating a call before sending it."""
JUDGE_THROTTLE_PAUSE = 1.0
"""Seconds the judge's rate budget pauses after a 429 without ``Retry-After``."""
JUDGE_BUDGET_BURST_SECONDS = 1.0
"""A ``--judge-rpm``/``--judge-tpm`` budget sends at most this many seconds' worth at once."""
HOSTED_MODEL_PREFIXES = ("turing",)
HOSTED_MODEL_NAMES = frozenset({"protect", "protect_flash"})
"""The hosted service's own model names (``turing_flash``, ``turing_small``, ``turing_large``...,
matched case-insensitively by prefix as its SDK does, plus these): a request naming one is
served by the server's configured judge model (``fi_evals.server.evaluators.judge``)."""
EMBEDDING_BATCH_SIZE = 32
"""Texts per onnxruntime call (sorted by length first, so a batch pads little)."""
EMBEDDING_MAX_WORKERS = 8
"""Threads running encoder batches at once per process (one core each; at most the cores)."""
EMBEDDING_CACHE_SIZE = 20_000
"""Texts whose embeddings stay cached per process (context chunks repeat across items)."""
EMBEDDING_MAX_TOKENS = 256
"""Word pieces per text the encoder reads (all-MiniLM-L6-v2's max_seq_length)."""
SEMANTIC_MATCH_THRESHOLD = 0.5
"""Default ``similarity_threshold`` of ``semantic_list_contains`` (phrase vs the best span of
the output: verbatim words score ~0.9-1, paraphrases ~0.5-0.8, unrelated phrases < 0.4)."""
CUSTOM_JUDGE_MAX_CRITERIA_CHARS = 4000
"""Longest ``criteria`` of the ``custom_judge`` template (a 400 above it)."""
CUSTOM_JUDGE_MAX_CHOICES = 50
"""Most ``choices`` of a ``custom_judge`` with ``output_type: choices``."""

# --- Run store, viewer, diff (fi_evals/runs/) ---
ENV_HOME = "FI_EVALS_HOME"
"""Folder of fi-evals' local state; runs are kept in its ``runs`` subfolder."""
HOME_DIR = ".fi-evals"
"""Default of ``FI_EVALS_HOME``: relative to the working directory, like a project's ``.git``."""
RUNS_SUBDIR = "runs"
RUNS_COMMIT_ROWS = 2_000
"""Rows the run store buffers before one SQLite transaction (also commits at least every
``RUNS_COMMIT_SECONDS``, so a viewer of a running run sees it grow)."""
RUNS_COMMIT_SECONDS = 1.0
RUNS_HISTOGRAM_BINS = 10
"""Bins of the score distribution kept per eval (over 0..1; outliers go to the end bins)."""
VIEW_PAGE_SIZE = 50
"""Rows per page of the viewer's row table."""
VIEW_MAX_PAGE_SIZE = 500
VIEW_TEXT_COUNT_CAP = 10_000
"""A text search counts its matches up to this many (then says "10,000+"): counting every
match of a 1,000,000-row run would scan it all for each keystroke."""
VIEW_EXPORT_ROWS = 1_000
"""Rows a ``fi-evals view --export`` HTML file embeds per run (errored and failing first)."""
DIFF_SHOW = 10
"""Regressed and fixed rows ``fi-evals diff`` lists (``--show N``)."""
