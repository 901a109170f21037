"""What an :class:`~fi_evals.Evaluator` lends to the parts built on it: one frozen value.

The batch engine (:mod:`fi_evals.batch`) and the score logger (:mod:`fi_evals.logger`) work
through the Evaluator's connections, pool and policies. They get them from
:attr:`Evaluator.context <fi_evals.Evaluator.context>` as one :class:`ClientContext`, never by
reading the Evaluator's private attributes, so that what crosses the seam is named, typed and
cannot be rebound behind their back.
"""

from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import dataclass

from fi_evals._retry import PollBackoff, RetryPolicy
from fi_evals._transport import Transport

__all__ = ["ClientContext"]


@dataclass(frozen=True, kw_only=True)
class ClientContext:
    """The Evaluator's shared machinery, as the batch engine and the score logger see it.

    Attributes:
        transport: the Evaluator's HTTP transport (server, keys, timeouts, one session).
        executor: the Evaluator's long-lived thread pool (``max_workers`` threads).
        poll: the poll schedule of waits between status rounds (``Evaluator(poll=...)``).
        retry: the HTTP retry policy of ``transport`` (``Evaluator(retry=...)``).
    """

    transport: Transport
    executor: Executor
    poll: PollBackoff
    retry: RetryPolicy
