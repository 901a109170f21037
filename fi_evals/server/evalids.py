"""Eval ids: UUID strings made by the server, in two shapes.

- **Row ids** (:func:`new_eval_ids`): UUIDv7 (RFC 9562: 48-bit Unix ms time, then random
  bits), one per evaluation stored on its own (async work; before issue 20, every evaluation).
  Older databases also hold uuid4 ids; every id that is not a batch id is a row id.
- **Batch ids** (:func:`new_batch_ids`): UUIDv8 (RFC 9562's vendor-specific version), one per
  item of a batch of finished evaluations that a store keeps as one record (a sync request's
  results). The first 31 characters are the batch's key, the last 5 hex digits the item's
  index in it::

      tttttttt-tttt-8rrr-vrrr-rrrrrrriiiii     t: ms time, r: random, v: variant, i: index

  :func:`split_batch_id` turns an id back into (key, index) without any lookup, so reading a
  result finds its batch by key. The key carries 48 bits of time and 54 random bits: keys of
  two requests made in the same millisecond collide with probability 2**-54.

Both shapes are canonical UUID strings (lower-case, hyphenated) with the RFC 9562 variant, so
clients see nothing new: an eval id is an opaque UUID (PROTOCOL.md).
"""

from __future__ import annotations

import os
import time

__all__ = ["BATCH_KEY_LENGTH", "MAX_BATCH_ITEMS", "batch_eval_ids", "new_batch_ids",
           "new_batch_key", "new_eval_ids", "split_batch_id"]

_INDEX_DIGITS = 5
MAX_BATCH_ITEMS = 16 ** _INDEX_DIGITS
"""Items one batch key can number (1,048,576); a larger request uses row ids."""
BATCH_KEY_LENGTH = 36 - _INDEX_DIGITS
"""Characters of a batch key: an eval id without its index digits."""
_BATCH_VERSION = "8"
_VERSION_AT = 14  # "xxxxxxxx-xxxx-V..." : the version digit of a canonical UUID string
_VARIANT = "89ab"  # RFC 9562 variant 10xx: the first hex digit of the fourth group
_SUFFIXES = [f"{i:05x}" for i in range(4096)]  # the index digits of the usual batch sizes


def _time_head() -> str:
    ms = f"{time.time_ns() // 1_000_000 & 0xFFFFFFFFFFFF:012x}"
    return f"{ms[:8]}-{ms[8:12]}-"


def new_eval_ids(n: int) -> list[str]:
    """``n`` fresh row ids: UUIDv7 strings.

    Time-ordered ids land at the right edge of the store's id index instead of random pages,
    which makes inserting a batch of 500 several times cheaper on a large database.
    """
    head = _time_head() + "7"
    raw = bytearray(os.urandom(10 * n))
    ids = []
    for offset in range(0, 10 * n, 10):
        raw[offset + 2] = raw[offset + 2] & 0x3F | 0x80  # RFC variant bits
        h = raw[offset:offset + 10].hex()
        ids.append(f"{head}{h[1:4]}-{h[4:8]}-{h[8:20]}")
    return ids


def new_batch_key() -> str:
    """A fresh batch key (:data:`BATCH_KEY_LENGTH` characters, time-ordered)."""
    h = os.urandom(7).hex()
    return (f"{_time_head()}{_BATCH_VERSION}{h[0:3]}-{_VARIANT[int(h[13], 16) & 3]}{h[3:6]}-"
            f"{h[6:13]}")


def batch_eval_ids(key: str, n: int) -> list[str]:
    """The eval ids of items ``0 .. n-1`` of the batch ``key``.

    Raises:
        ValueError: ``n`` is more than :data:`MAX_BATCH_ITEMS`.
    """
    if n > MAX_BATCH_ITEMS:
        raise ValueError(f"a batch holds at most {MAX_BATCH_ITEMS} items, not {n}")
    if n <= len(_SUFFIXES):
        return [key + suffix for suffix in _SUFFIXES[:n]]
    return [f"{key}{i:05x}" for i in range(n)]


def new_batch_ids(n: int) -> tuple[str, list[str]]:
    """A fresh batch key and the eval ids of its ``n`` items (see :func:`batch_eval_ids`)."""
    key = new_batch_key()
    return key, batch_eval_ids(key, n)


def split_batch_id(eval_id: str) -> tuple[str, int] | None:
    """(batch key, item index) of a canonical batch id; None for a row id (or any other
    UUID string)."""
    if len(eval_id) != 36 or eval_id[_VERSION_AT] != _BATCH_VERSION:
        return None
    try:
        return eval_id[:BATCH_KEY_LENGTH], int(eval_id[BATCH_KEY_LENGTH:], 16)
    except ValueError:
        return None
