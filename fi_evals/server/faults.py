"""Fault injection (``--faults``): a test knob that breaks some answers on purpose.

A spec is a comma-separated list of ``kind:probability``; one random draw per ``/sdk/api/``
request picks at most one fault:

- ``500``, ``429``, ``503``: answered before the handler runs (429/503 with ``Retry-After``);
  nothing is evaluated or stored.
- ``500-after``: the handler runs (the work is done and the idempotency record stored), then
  its answer is thrown away and replaced by a 500 error envelope: the failure a client cannot
  tell from a plain 500, where repeating the request without its ``Idempotency-Key`` would run
  the work twice. A retry with the same key is answered ``Idempotent-Replayed: true``.
- ``reset``: the handler runs (the work is done and the idempotency record stored), then the
  connection is dropped without an answer. The gateway aborts the TCP connection with
  SO_LINGER 0, so the client sees a reset rather than a response (see ``middleware.py``).
- ``slow``: the handler runs, then the answer is held for ``fault_slow_seconds``, longer than a
  typical client read timeout.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass

__all__ = ["FAULT_KINDS", "FaultPlan"]

FAULT_KINDS = ("500", "429", "503", "500-after", "reset", "slow")


@dataclass(frozen=True)
class FaultPlan:
    """Probabilities per fault kind; :meth:`draw` picks one fault or None per request."""

    probabilities: tuple[tuple[str, float], ...]
    seed: int | None = None

    @classmethod
    def parse(cls, spec: str, seed: int | None = None) -> FaultPlan:
        """Parse ``"500:0.05,reset:0.01"``.

        Raises:
            ValueError: naming the part that is not ``kind:probability`` with a known kind and a
                probability in [0, 1], or when the probabilities add up to more than 1.
        """
        parts: dict[str, float] = {}
        for raw in spec.split(","):
            part = raw.strip()
            if not part:
                continue
            kind, sep, prob_text = part.partition(":")
            kind = kind.strip().lower()
            if not sep or kind not in FAULT_KINDS:
                raise ValueError(f"bad fault {part!r}: expected KIND:PROBABILITY with KIND one of "
                                 f"{', '.join(FAULT_KINDS)}")
            try:
                prob = float(prob_text)
            except ValueError:
                raise ValueError(f"bad fault {part!r}: {prob_text!r} is not a number") from None
            if not 0.0 <= prob <= 1.0:
                raise ValueError(f"bad fault {part!r}: probability must be within [0, 1]")
            parts[kind] = parts.get(kind, 0.0) + prob
        if sum(parts.values()) > 1.0 + 1e-9:
            raise ValueError(f"fault probabilities of {spec!r} add up to more than 1")
        return cls(tuple(parts.items()), seed)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_rng", random.Random(self.seed))
        object.__setattr__(self, "_lock", threading.Lock())

    def draw(self) -> str | None:
        """The fault for the next request, or None (thread-safe, reproducible with a seed)."""
        with self._lock:  # type: ignore[attr-defined]
            x = self._rng.random()  # type: ignore[attr-defined]
        for kind, prob in self.probabilities:
            if x < prob:
                return kind
            x -= prob
        return None

    def __repr__(self) -> str:
        spec = ",".join(f"{k}:{p:g}" for k, p in self.probabilities)
        return f"FaultPlan({spec!r}, seed={self.seed})"
