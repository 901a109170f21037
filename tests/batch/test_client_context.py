"""The Evaluator lends the batch engine its transport, pool and policies as one frozen value."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from fi_evals import Evaluator, RetryPolicy
from fi_evals._context import ClientContext
from fi_evals._retry import PollBackoff, _Uniform

from .conftest import MAPPING, rows


@dataclass(frozen=True)
class RecordingBackoff(PollBackoff):
    """A poll schedule that notes every wait it is asked for (timing plays no part)."""

    asked: list[int] = field(default_factory=list, compare=False, hash=False)

    def delay(self, poll: int, *, retry_after: float | None = None,
              remaining: float | None = None, rng: _Uniform = random) -> float | None:
        self.asked.append(poll)
        return super().delay(poll, retry_after=retry_after, remaining=remaining, rng=rng)


def test_context_is_the_evaluators_own_machinery_and_frozen(
        live_server: Any, client_factory: Callable[..., Evaluator]) -> None:
    backoff = PollBackoff(initial=0.03, maximum=0.5)
    retry = RetryPolicy(max_attempts=2)
    ev = client_factory(live_server, max_workers=2, poll=backoff, retry=retry)
    context = ev.context
    assert isinstance(context, ClientContext)
    assert context.poll is backoff and context.retry is retry
    assert context.transport.retry is retry
    assert context.transport.base_url == ev.base_url
    assert ev.context is context  # one value for the Evaluator's life
    with pytest.raises(dataclasses.FrozenInstanceError):
        context.poll = PollBackoff()  # type: ignore[misc]
    # Without poll=, the default schedule.
    assert client_factory(live_server).context.poll == PollBackoff()


def test_evaluate_batch_polls_on_the_evaluators_schedule(
        server_factory: Callable[..., Any], client_factory: Callable[..., Evaluator]) -> None:
    server = server_factory(poll_retry_after=0, sim_latency_ms=50, access_log=False)
    backoff = RecordingBackoff(initial=0.02, maximum=0.05)
    ev = client_factory(server, max_workers=2, poll=backoff)
    result = ev.evaluate_batch(rows(12), ["is_json"], key_mapping=MAPPING, is_async=True,
                               chunk_size=4, progress=False)
    assert result.complete and len(result) == 12
    assert all(i.results["is_json"].eval_id for i in result)
    # Every poll round of the batch was spaced by the Evaluator's schedule, not a default one.
    assert backoff.asked, "evaluate_batch did not use Evaluator(poll=...)"
