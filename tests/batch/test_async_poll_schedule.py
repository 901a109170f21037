"""The async batch's poll schedule (issue 20): a round whose ids were all finished is followed
by the next one at once; a round with unfinished ids waits the poll delay, as before."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fi_evals import Evaluator
from fi_evals._retry import PollBackoff

ROWS = [{"text": "{}" if i % 3 else "["} for i in range(1_500)]


@dataclass(frozen=True)
class CountingBackoff(PollBackoff):
    """The default schedule, counting the delays asked of it."""

    asked: list[int] = field(default_factory=list)

    def delay(self, poll: int, **kwargs: Any) -> float | None:
        self.asked.append(poll)
        return super().delay(poll, **kwargs)


def _run(server: Any) -> tuple[Any, CountingBackoff]:
    backoff = CountingBackoff(initial=0.05, maximum=0.1)
    with Evaluator(server.api_key, server.secret_key, server.url, poll=backoff) as ev:
        result = ev.evaluate_batch(ROWS, ["is_json"], is_async=True, chunk_size=50,
                                   progress=False)
    return result, backoff


def test_rounds_of_finished_ids_are_not_followed_by_a_poll_delay(server_factory: Any) -> None:
    result, backoff = _run(server_factory())  # is_json async: evaluated at submit
    assert result.stats.outcomes == len(ROWS) and result.stats.errors == 0
    assert [item.results["is_json"].output for item in list(result)[:3]] == [
        "Failed", "Passed", "Passed"]
    assert backoff.asked == []


def test_rounds_with_unfinished_ids_wait_the_poll_delay(server_factory: Any) -> None:
    server = server_factory(inline_cheap_async=False, sim_latency_ms=1)  # the workers run it
    result, backoff = _run(server)
    assert result.stats.outcomes == len(ROWS) and result.stats.errors == 0
    assert backoff.asked  # some round found pending ids and waited
