"""Compact JSON encoders for the server's hot path (issue 20).

``json.JSONEncoder.encode`` builds a new C encoder object on every call, which costs more than
encoding a row's small ``inputs`` mapping itself. :func:`compact_encoder` makes the C encoder
once and calls it directly (the same object ``JSONEncoder.iterencode`` would build, so the
output is byte for byte what ``json.dumps(..., ensure_ascii=False, separators=(",", ":"))``
gives); without the C accelerator it falls back to ``JSONEncoder.encode``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from json import encoder as _encoder
from typing import Any

__all__ = ["compact_encoder", "encode_string"]

encode_string: Callable[[str], str] = getattr(_encoder, "c_encode_basestring", None) \
    or _encoder.py_encode_basestring
"""A str as a JSON string literal, non-ASCII kept (what the encoders do with strings)."""


def compact_encoder(*, allow_nan: bool = True, sort_keys: bool = False) -> Callable[[Any], str]:
    """A function ``obj -> str``: compact JSON, non-ASCII kept as is.

    Args:
        allow_nan: encode NaN/Infinity as JavaScript does (True), or raise ValueError.
        sort_keys: sort the keys of every mapping.
    """
    fallback = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=allow_nan,
                                sort_keys=sort_keys)
    make = getattr(_encoder, "c_make_encoder", None)
    basestring = getattr(_encoder, "c_encode_basestring", None)
    if make is None or basestring is None:  # pragma: no cover - CPython always has both
        return fallback.encode
    # markers=None: no circular-reference check (the server encodes only what json.loads or
    # its own code built, never a cycle); the rest as JSONEncoder.iterencode passes it.
    c_encode = make(None, fallback.default, basestring, None, ":", ",", sort_keys, False,
                    allow_nan)
    join = "".join

    def encode(obj: Any) -> str:
        if obj.__class__ is str:
            return basestring(obj)
        return join(c_encode(obj, 0))

    return encode
