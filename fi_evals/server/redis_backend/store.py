"""The Redis job store: evaluations, idempotency records and cluster-wide counters in Redis.

Every API node and every worker of a deployment talks to the same keys (all under one prefix,
see ``settings.py``)::

    {P}e:{eval_id}        hash   t template, s status, i inputs, p params, m model, o output,
                                 r reason, rt runtime, err error, w worker that claimed it
    {P}depth              int    evaluations pending or processing (the queue depth)
    {P}outbox             zset   async evaluations stored but whose task is not confirmed sent
    {P}idem:{scope}:{key} hash   h body hash, st reserved|done, code, body
    {P}m:evals            hash   "template<US>outcome" -> evaluations stored (cluster-wide)
    {P}m:starts           int    evaluations claimed by a worker (re-runs after a crash too)
    {P}m:duplicates       int    results dropped because the evaluation was already finished
    {P}m:replays          int    idempotent replays

Every transition is one Lua script, so it is atomic across nodes: reserving an
Idempotency-Key (reserve-then-answer), claiming a chunk (only unfinished evaluations), and
finishing (only the *first* result of an evaluation is stored and counted; later ones, from a
task that was re-delivered after its worker died, are dropped and counted as duplicates).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import redis

from fi_evals import _constants as C
from fi_evals.protocol import UNFINISHED_STATUSES
from fi_evals.server.jsonenc import compact_encoder
from fi_evals.server.redis_backend.settings import BackendURL
from fi_evals.server.store import (
    ClaimedJob,
    FinishedJob,
    IdempotencyAnswer,
    IdempotencyReservation,
    JobStore,
    NewJob,
    StoredEval,
)

__all__ = ["RedisJobStore", "connect"]

log = logging.getLogger("fi_evals.server.store")

_US = "\x1f"  # separates template and outcome in the m:evals hash fields
_FIELDS = ("t", "s", "i", "m", "o", "r", "rt", "err")

# KEYS[1] starts counter, KEYS[2..] evaluations; ARGV[1] owner.
# Returns [index, template, inputs, params, model, ...] for each claimed evaluation.
_CLAIM = """
local out, n = {}, 0
for i = 2, #KEYS do
  local s = redis.call('HGET', KEYS[i], 's')
  if s == 'pending' or s == 'processing' then
    redis.call('HSET', KEYS[i], 's', 'processing', 'w', ARGV[1])
    local v = redis.call('HMGET', KEYS[i], 't', 'i', 'p', 'm')
    out[#out + 1] = i - 1
    out[#out + 1] = v[1]
    out[#out + 1] = v[2]
    out[#out + 1] = v[3]
    out[#out + 1] = v[4] or ''
    n = n + 1
  end
end
if n > 0 then redis.call('INCRBY', KEYS[1], n) end
return out
"""

# KEYS[1] depth, [2] m:evals, [3] m:duplicates, [4] outbox, [5..] evaluations;
# ARGV[i] = JSON {"id":..., "f": {field: value}} of KEYS[i + 4].
# Returns {stored, duplicates, missing} (missing: the evaluation expired or was deleted).
_FINISH = """
local stored, dup, missing = 0, 0, 0
for i = 5, #KEYS do
  local item = cjson.decode(ARGV[i - 4])
  local v = redis.call('HMGET', KEYS[i], 's', 't')
  if v[1] == 'pending' or v[1] == 'processing' then
    local args = {}
    for k, val in pairs(item.f) do
      args[#args + 1] = k
      args[#args + 1] = val
    end
    redis.call('HSET', KEYS[i], unpack(args))
    redis.call('HINCRBY', KEYS[2], v[2] .. '\\31' .. item.f.s, 1)
    redis.call('ZREM', KEYS[4], item.id)
    stored = stored + 1
  elseif v[1] then
    dup = dup + 1
  else
    missing = missing + 1
  end
end
if stored > 0 then redis.call('DECRBY', KEYS[1], stored) end
if dup > 0 then redis.call('INCRBY', KEYS[3], dup) end
return {stored, dup, missing}
"""

# KEYS[1] the record; ARGV body hash, reservation ttl.
_RESERVE = """
local v = redis.call('HMGET', KEYS[1], 'h', 'st', 'code', 'body')
if not v[1] then
  redis.call('HSET', KEYS[1], 'h', ARGV[1], 'st', 'reserved')
  redis.call('EXPIRE', KEYS[1], ARGV[2])
  return {'reserved'}
end
if v[1] ~= ARGV[1] then return {'mismatch'} end
if v[2] == 'done' then return {'replay', v[3], v[4]} end
return {'in_progress'}
"""

_RELEASE = """
if redis.call('HGET', KEYS[1], 'st') == 'reserved' then return redis.call('DEL', KEYS[1]) end
return 0
"""

_dumps = compact_encoder()


def connect(url: str) -> redis.Redis:
    """A thread-safe client (its own connection pool) that answers ``str``."""
    return redis.Redis.from_url(url, decode_responses=True, socket_timeout=30,
                                socket_connect_timeout=10, health_check_interval=30)


class RedisJobStore(JobStore):
    """:class:`JobStore` in Redis (see the module docstring for the keys and scripts).

    ``dispatch`` is called with the ids of newly stored async evaluations after their
    transaction committed (the Celery executor sends them as tasks, then calls
    :meth:`dispatched`); the ``outbox`` keeps them until then, so that an API node dying in
    between loses nothing (see ``executor.py``).
    """

    def __init__(self, backend: BackendURL, *, idempotency_ttl: float,
                 client: redis.Redis | None = None) -> None:
        self.backend = backend
        self.prefix = backend.prefix
        self.idempotency_ttl = int(idempotency_ttl)
        self.redis = client if client is not None else connect(backend.redis_url)
        self.dispatch: Callable[[list[str]], None] | None = None
        self._claim = self.redis.register_script(_CLAIM)
        self._finish = self.redis.register_script(_FINISH)
        self._reserve = self.redis.register_script(_RESERVE)
        self._release = self.redis.register_script(_RELEASE)
        self.k_depth = self.prefix + "depth"
        self.k_outbox = self.prefix + "outbox"
        self.k_evals = self.prefix + "m:evals"
        self.k_starts = self.prefix + "m:starts"
        self.k_duplicates = self.prefix + "m:duplicates"
        self.k_replays = self.prefix + "m:replays"

    def key(self, eval_id: str) -> str:
        return f"{self.prefix}e:{eval_id}"

    def _idem_key(self, scope: str, key: str) -> str:
        return f"{self.prefix}idem:{scope}:{key}"

    # ------------------------------------------------------------------ evaluations

    def insert(self, jobs: Sequence[NewJob],
               idempotency: tuple[str, str, IdempotencyAnswer] | None = None) -> None:
        now = time.time()
        pending: list[str] = []
        params_text: dict[int, str] = {}  # a batch shares one params object: encode it once
        pipe = self.redis.pipeline(transaction=True)
        for job in jobs:
            params = params_text.get(id(job.params))
            if params is None:
                params = params_text[id(job.params)] = _dumps(job.params)
            fields: dict[Any, str | int | float] = {  # redis-py types keys as bytes | str
                "t": job.template, "s": job.status, "i": _dumps(job.inputs), "p": params,
                "rt": job.runtime, "c": now}
            if job.model is not None:
                fields["m"] = job.model
            if job.output is not None:
                fields["o"] = _dumps(job.output)
            if job.reason is not None:
                fields["r"] = job.reason
            if job.error_message is not None:
                fields["err"] = job.error_message
            key = self.key(job.eval_id)
            pipe.hset(key, mapping=fields)
            if self.backend.result_ttl:
                pipe.expire(key, self.backend.result_ttl)
            if job.status in UNFINISHED_STATUSES:
                pending.append(job.eval_id)
        if pending:
            pipe.zadd(self.k_outbox, dict.fromkeys(pending, now))
            pipe.incrby(self.k_depth, len(pending))
        if idempotency is not None:
            self._set_answer(pipe, *idempotency)
        pipe.execute()
        if pending and self.dispatch is not None:
            self.dispatch(pending)

    def dispatched(self, eval_ids: Sequence[str]) -> None:
        """The tasks of these evaluations are with the broker: take them off the outbox."""
        if eval_ids:
            self.redis.zrem(self.k_outbox, *eval_ids)

    def stale_outbox(self, older_than: float, limit: int) -> list[str]:
        """Outbox entries older than ``older_than`` seconds, oldest first; they are stamped
        again, so that the next sweep leaves them alone for as long."""
        ids = [str(i) for i in self.redis.zrangebyscore(
            self.k_outbox, "-inf", time.time() - older_than, start=0, num=limit)]
        if ids:
            self.redis.zadd(self.k_outbox, dict.fromkeys(ids, time.time()), xx=True)
        return ids

    def claim(self, limit: int) -> list[ClaimedJob]:
        raise NotImplementedError("evaluations in Redis are claimed by id by the Celery tasks "
                                  "(RedisJobStore.claim_ids); run `fi-evals worker`")

    def claim_ids(self, eval_ids: Sequence[str], owner: str) -> list[ClaimedJob]:
        """Atomically take the unfinished ones among ``eval_ids`` (pending, or processing by a
        worker that died: their task came back), marking them processing by ``owner``."""
        if not eval_ids:
            return []
        flat = self._claim(keys=[self.k_starts, *map(self.key, eval_ids)], args=[owner])
        claimed = []
        for n in range(0, len(flat), 5):
            index, template, inputs, params, model = flat[n:n + 5]
            claimed.append(ClaimedJob(eval_id=eval_ids[int(index) - 1], template=template,
                                      inputs=json.loads(inputs), params=json.loads(params),
                                      model=model or None))
        return claimed

    def finish(self, results: Sequence[FinishedJob]) -> None:
        self.finish_counted(results)

    def finish_counted(self, results: Sequence[FinishedJob]) -> tuple[int, int, int]:
        """Store results; only the first result of an evaluation counts.

        Returns:
            (stored, duplicates, missing): results written, results dropped because their
            evaluation was already finished, and results of evaluations that no longer exist
            (expired or deleted).
        """
        if not results:
            return 0, 0, 0
        keys = [self.k_depth, self.k_evals, self.k_duplicates, self.k_outbox]
        args = []
        for r in results:
            fields: dict[str, Any] = {"s": r.status, "rt": str(r.runtime)}
            if r.output is not None:
                fields["o"] = _dumps(r.output)
            if r.reason is not None:
                fields["r"] = r.reason
            if r.error_message is not None:
                fields["err"] = r.error_message
            keys.append(self.key(r.eval_id))
            args.append(_dumps({"id": r.eval_id, "f": fields}))
        stored, duplicates, missing = self._finish(keys=keys, args=args)
        return int(stored), int(duplicates), int(missing)

    def release(self, eval_ids: Sequence[str]) -> None:
        # Nothing to do: an unstarted evaluation stays claimed until its task (which was not
        # acknowledged) is delivered again, and the claim script takes processing ones.
        return None

    def get_many(self, eval_ids: Sequence[str]) -> dict[str, StoredEval]:
        unique = list(dict.fromkeys(eval_ids))
        pipe = self.redis.pipeline(transaction=False)
        for eval_id in unique:
            pipe.hmget(self.key(eval_id), _FIELDS)
        found: dict[str, StoredEval] = {}
        for eval_id, row in zip(unique, pipe.execute(), strict=True):
            template, status, inputs, model, output, reason, runtime, error = row
            if status is None:
                continue
            found[eval_id] = StoredEval(
                eval_id=eval_id, template=template, status=status, inputs=json.loads(inputs),
                model=model, output=None if output is None else json.loads(output),
                reason=reason, runtime=int(runtime or 0), error_message=error)
        return found

    def queue_depth(self) -> int:
        return int(self.redis.get(self.k_depth) or 0)

    # ------------------------------------------------------------------ idempotency

    def reserve_idempotency(self, scope: str, key: str, body_hash: str,
                            ttl_seconds: float) -> IdempotencyReservation:
        reply = self._reserve(keys=[self._idem_key(scope, key)],
                              args=[body_hash, C.IDEMPOTENCY_RESERVATION_TTL])
        state = reply[0]
        if state == "replay":
            return IdempotencyReservation("replay", IdempotencyAnswer(int(reply[1]),
                                                                      reply[2].encode()))
        return IdempotencyReservation(state)

    def store_answer(self, scope: str, key: str, answer: IdempotencyAnswer) -> None:
        pipe = self.redis.pipeline(transaction=True)
        self._set_answer(pipe, scope, key, answer)
        pipe.execute()

    def _set_answer(self, pipe: Any, scope: str, key: str, answer: IdempotencyAnswer) -> None:
        record = self._idem_key(scope, key)
        pipe.hset(record, mapping={"st": "done", "code": answer.status,
                                   "body": answer.body.decode()})
        pipe.expire(record, self.idempotency_ttl)

    def release_idempotency(self, scope: str, key: str) -> None:
        self._release(keys=[self._idem_key(scope, key)])

    # ------------------------------------------------------------------ counters

    def count(self, template: str, completed: int, failed: int) -> None:
        """Add evaluations run outside the workers (sync requests) to the cluster counters."""
        pipe = self.redis.pipeline(transaction=False)
        if completed:
            pipe.hincrby(self.k_evals, f"{template}{_US}completed", completed)
        if failed:
            pipe.hincrby(self.k_evals, f"{template}{_US}failed", failed)
        pipe.execute()

    def count_replay(self) -> None:
        self.redis.incr(self.k_replays)

    def counters(self) -> dict[str, Any]:
        """Cluster-wide counters: ``evaluations`` {(template, outcome): n}, ``starts``,
        ``duplicates``, ``replays``."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(self.k_evals)
        pipe.mget(self.k_starts, self.k_duplicates, self.k_replays)
        evals, (starts, duplicates, replays) = pipe.execute()
        return {
            "evaluations": {tuple(field.split(_US, 1)): int(n) for field, n in evals.items()},
            "starts": int(starts or 0), "duplicates": int(duplicates or 0),
            "replays": int(replays or 0),
        }

    # ------------------------------------------------------------------ life cycle

    def recover(self) -> int:
        # Nothing is process-local here: a dead worker's tasks come back from the broker, a
        # dead API node's unsent tasks from the outbox sweep, its reservations expire.
        self.redis.ping()
        return 0

    def close(self) -> None:
        self.redis.close()

    def __repr__(self) -> str:
        return f"<RedisJobStore {self.backend}>"
