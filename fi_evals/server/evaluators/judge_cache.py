"""The judge cache: identical judge calls are answered once, then from the job store.

A call is identical when the judge endpoint, the model, the template's prompt version, the
sampling settings (temperature, JSON mode), the item's inputs and the request's params are:
:func:`cache_key` hashes exactly these. Only successful, validated outcomes are stored, with a
time to live (``C.JUDGE_CACHE_TTL``, 7 days); failures never are, so a judge that was down is
asked again. Where the outcomes live:

- :class:`SqliteJudgeCache`: a ``judge_cache`` table in the server's SQLite file (the job
  store's file; ``fi-evals run``'s embedded server uses a file in the per-user cache folder,
  :func:`default_cache_path`, so that its cache outlives each run);
- :class:`RedisJudgeCache`: keys with an expiry in the Redis of ``--backend redis://``,
  shared by every API node and worker.

``--judge-cache off`` (``FI_JUDGE_CACHE=off``) turns it off.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Mapping
from typing import Any, Protocol

from fi_evals import _constants as C
from fi_evals._cachedir import user_cache_dir

__all__ = ["JudgeCache", "RedisJudgeCache", "SqliteJudgeCache", "cache_key",
           "default_cache_path", "judge_cache_for"]


def cache_key(*, endpoint: str, model: str, prompt: str, sampling: Mapping[str, Any],
              inputs: Mapping[str, Any], params: Mapping[str, Any]) -> str:
    """The SHA-256 of everything that makes a judge call what it is (canonical JSON)."""
    canonical = json.dumps({"endpoint": endpoint, "model": model, "prompt": prompt,
                            "sampling": dict(sampling), "inputs": dict(inputs),
                            "params": dict(params)},
                           sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                           default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def default_cache_path() -> str:
    """The judge cache file of ``fi-evals run``'s embedded server, in the per-user cache folder
    (the score logger's spool rule: ``$XDG_CACHE_HOME``, else ``~/.cache``), unless
    ``$FI_JUDGE_CACHE_DIR`` names another folder."""
    return os.path.join(user_cache_dir(C.JUDGE_CACHE_SUBDIR, C.ENV_JUDGE_CACHE_DIR),
                        "judge-cache.sqlite3")


class JudgeCache(Protocol):
    """Where judge outcomes are kept: a JSON-able dict per key, until it expires."""

    def get(self, key: str) -> dict[str, Any] | None: ...

    def put(self, key: str, value: Mapping[str, Any]) -> None: ...

    def close(self) -> None: ...


class SqliteJudgeCache:
    """Judge outcomes in a ``judge_cache`` table of a SQLite file (thread-safe)."""

    def __init__(self, path: str | os.PathLike[str], *, ttl: float = C.JUDGE_CACHE_TTL) -> None:
        self.path = os.fspath(path)
        self.ttl = ttl
        folder = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(folder, exist_ok=True)
        self._local = threading.local()
        with self._conn() as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS judge_cache (key TEXT PRIMARY KEY, "
                         "value TEXT NOT NULL, expires REAL NOT NULL)")
            conn.execute("DELETE FROM judge_cache WHERE expires < ?", (time.time(),))

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None,
                                   check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
        return conn

    def get(self, key: str) -> dict[str, Any] | None:
        """The outcome stored under ``key``, None when absent or expired."""
        row = self._conn().execute("SELECT value FROM judge_cache WHERE key=? AND expires>=?",
                                   (key, time.time())).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, value: Mapping[str, Any]) -> None:
        """Keep ``value`` under ``key`` for the TTL (replacing an older one)."""
        self._conn().execute("INSERT OR REPLACE INTO judge_cache (key, value, expires) "
                             "VALUES (?, ?, ?)", (key, json.dumps(dict(value)),
                                                  time.time() + self.ttl))

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def __repr__(self) -> str:
        return f"<SqliteJudgeCache {self.path} ttl={self.ttl:g}s>"


class RedisJudgeCache:
    """Judge outcomes as Redis keys with an expiry (shared by every node and worker).

    Args:
        backend: the ``--backend`` URL (``redis://host:port/db?prefix=...``); keys are
            ``<prefix>judge-cache:<sha256>``, next to the deployment's evaluations.
        ttl: seconds an outcome is kept (Redis expires it).
    """

    def __init__(self, backend: str, *, ttl: float = C.JUDGE_CACHE_TTL) -> None:
        import redis

        from fi_evals.server.redis_backend.settings import BackendURL

        parsed = BackendURL.parse(backend)
        self.ttl = ttl
        self.prefix = parsed.prefix + "judge-cache:"
        self.redis = redis.Redis.from_url(parsed.redis_url, decode_responses=True,
                                          socket_timeout=30)

    def get(self, key: str) -> dict[str, Any] | None:
        value = self.redis.get(self.prefix + key)
        return json.loads(value) if value else None

    def put(self, key: str, value: Mapping[str, Any]) -> None:
        self.redis.set(self.prefix + key, json.dumps(dict(value)),
                       px=max(1, int(self.ttl * 1000)))

    def close(self) -> None:
        self.redis.close()

    def __repr__(self) -> str:
        return f"<RedisJudgeCache {self.prefix}* ttl={self.ttl:g}s>"


def judge_cache_for(config: Any) -> JudgeCache | None:
    """The judge cache a :class:`~fi_evals.server.config.ServerConfig` asks for (None: off).

    ``judge_cache`` is ``"on"`` (default) or ``"off"``; ``judge_cache_path`` names a SQLite
    file of its own (the embedded server's per-user file); else ``--backend redis://`` keeps
    the cache in that Redis, and any other server in its job store's SQLite file.
    """
    if str(getattr(config, "judge_cache", "on") or "on").lower() == "off":
        return None
    ttl = getattr(config, "judge_cache_ttl", None) or C.JUDGE_CACHE_TTL
    path = getattr(config, "judge_cache_path", None)
    if path:
        return SqliteJudgeCache(path, ttl=ttl)
    backend = getattr(config, "backend", None)
    if backend and str(backend).startswith(("redis://", "rediss://")):
        return RedisJudgeCache(backend, ttl=ttl)
    db_path = getattr(config, "db_path", None)
    if not db_path or db_path == ":memory:":
        return None
    return SqliteJudgeCache(db_path, ttl=ttl)
