"""Handles on submitted evaluations: :class:`EvalHandle` per item, :class:`Submission` per call.

A handle holds only an ``eval_id`` and a way to poll, so ``Evaluator.get_execution(id)``
rebuilds one in any process. The attribute names follow the official client's ``Execution``
(``id``, ``kind``, ``status``, ``result``, ``error_message``, ``is_done()``, ``refresh()``,
``wait()``), so code written against it keeps working.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, overload

from fi_evals._constants import DEFAULT_WAIT_TIMEOUT
from fi_evals._exceptions import EvalFailedError, ItemError
from fi_evals.results import UNSCORED_STATUSES, BatchRunResult, EvalResult

if TYPE_CHECKING:
    from fi_evals.client import Evaluator

__all__ = ["EvalHandle", "Submission", "Waitable", "flatten_waitables"]


class EvalHandle:
    """One submitted evaluation.

    Attributes:
        id: the server's ``eval_id`` (None when the submission itself failed; see ``error``).
        name: the template name.
        status: ``pending``, ``processing``, ``completed``, ``failed`` or ``error``.
        result: the latest :class:`EvalResult` (its ``output`` is set once completed).
    """

    kind = "eval"

    def __init__(self, evaluator: Evaluator, result: EvalResult) -> None:
        self._evaluator = evaluator
        self.result: EvalResult = result

    # ------------------------------------------------------------------ views

    @property
    def id(self) -> str | None:
        return self.result.eval_id

    @property
    def eval_id(self) -> str | None:
        return self.result.eval_id

    @property
    def name(self) -> str:
        return self.result.name

    @property
    def status(self) -> str:
        return self.result.status

    @property
    def error(self) -> ItemError | None:
        return self.result.error

    @property
    def error_message(self) -> str | None:
        return self.result.error.message if self.result.error else None

    @property
    def error_localizer(self) -> dict[str, Any] | None:
        return self.result.error_localizer

    def is_done(self) -> bool:
        """True once finished: completed, failed, or in error."""
        return self.result.finished

    def __repr__(self) -> str:
        return f"<EvalHandle {self.name} {self.id} {self.status}>"

    # ------------------------------------------------------------------ actions

    def refresh(self) -> EvalHandle:
        """Fetch the latest state from the server (one request). Returns self.

        Raises:
            APIError, APIConnectionError: the status could not be read.
        """
        if self.id is not None and not self.is_done():
            self.result = self._evaluator.get_result(self.id, name=self.name)
        return self

    def wait(self, timeout: float = DEFAULT_WAIT_TIMEOUT, *, poll_interval: float | None = None,
             raise_on_failure: bool = True) -> EvalHandle:
        """Poll until finished (backoff with jitter, honouring ``Retry-After``). Returns self.

        Args:
            timeout: seconds to wait at most (``DEFAULT_WAIT_TIMEOUT``).
            poll_interval: accepted for compatibility; the wait uses the client's poll backoff.
            raise_on_failure: raise :class:`EvalFailedError` when the evaluation failed.

        Raises:
            WaitTimeoutError: still unfinished at the deadline (also a ``TimeoutError``).
            EvalFailedError: it failed and ``raise_on_failure`` is true.
        """
        del poll_interval  # the poll schedule is the client's PollBackoff
        self._evaluator.wait_all([self], timeout=timeout)
        if raise_on_failure and self.status in UNSCORED_STATUSES:
            raise EvalFailedError(self.id or "(not submitted)", self.error_message)
        return self


class Submission(Sequence[EvalHandle]):
    """The handles of one ``submit()`` call: one per item (per template), in input order.

    With exactly one handle, it also answers like that handle (``id``, ``status``,
    ``result``, ``wait()``...), so ``ev.submit(...).wait().result.output`` works as with the
    official client.
    """

    def __init__(self, evaluator: Evaluator, handles: Sequence[EvalHandle]) -> None:
        self._evaluator = evaluator
        self.handles: list[EvalHandle] = list(handles)

    @overload
    def __getitem__(self, index: int) -> EvalHandle: ...
    @overload
    def __getitem__(self, index: slice) -> list[EvalHandle]: ...

    def __getitem__(self, index: int | slice) -> EvalHandle | list[EvalHandle]:
        return self.handles[index]

    def __len__(self) -> int:
        return len(self.handles)

    def __iter__(self) -> Iterator[EvalHandle]:
        return iter(self.handles)

    def __repr__(self) -> str:
        counts: dict[str, int] = {}
        for h in self.handles:
            counts[h.status] = counts.get(h.status, 0) + 1
        summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        return f"<Submission of {len(self)} evaluation(s): {summary or 'none'}>"

    @property
    def ids(self) -> list[str | None]:
        """The eval ids, in input order (None where the submission failed)."""
        return [h.id for h in self.handles]

    @property
    def results(self) -> list[EvalResult]:
        """The latest result of every handle, in input order."""
        return [h.result for h in self.handles]

    def is_done(self) -> bool:
        return all(h.is_done() for h in self.handles)

    def refresh(self) -> Submission:
        """One poll round for the unfinished handles (bulk status when offered)."""
        self._evaluator.refresh_all(self.handles)
        return self

    def wait(self, timeout: float = DEFAULT_WAIT_TIMEOUT, *, poll_interval: float | None = None,
             raise_on_failure: bool = True) -> Submission:
        """Poll until every handle is finished. Returns self.

        Raises:
            WaitTimeoutError: names the ids still unfinished at the deadline.
            EvalFailedError: the first failed one, when ``raise_on_failure`` is true (after
                all have finished, so ``results`` is complete).
        """
        del poll_interval
        self._evaluator.wait_all(self.handles, timeout=timeout)
        if raise_on_failure:
            for h in self.handles:
                if h.status in UNSCORED_STATUSES:
                    raise EvalFailedError(h.id or "(not submitted)", h.error_message)
        return self

    # ------------------------------------------------------------------ one-handle view

    def _only(self) -> EvalHandle:
        if len(self.handles) != 1:
            raise AttributeError(f"this submission holds {len(self.handles)} handles: index "
                                 f"it (submission[0]) or use .ids / .results")
        return self.handles[0]

    @property
    def id(self) -> str | None:
        return self._only().id

    @property
    def status(self) -> str:
        return self._only().status

    @property
    def result(self) -> EvalResult:
        return self._only().result

    @property
    def error_message(self) -> str | None:
        return self._only().error_message


Waitable = Submission | EvalHandle | EvalResult | BatchRunResult | str
"""What ``Evaluator.wait_all`` accepts: one of these, or an iterable of them."""

_ACCEPTED = ("a BatchRunResult (from evaluate(..., is_async=True)), a Submission or EvalHandle "
             "(from submit()), an EvalResult, an eval id (str), or a list/tuple/iterable of "
             "these")


def flatten_waitables(value: Waitable | Iterable[Waitable],
                      call: str = "wait_all") -> list[EvalHandle | EvalResult | str]:
    """One entry per evaluation, in the order given: BatchRunResults and Submissions are
    opened (also inside an iterable); a generator is consumed.

    Raises:
        TypeError: ``value`` or one of its entries is none of :data:`Waitable` (an int, a
            dict, None, bytes, a nested list...); nothing has been sent.
    """
    if _is_single(value):
        return _open(value, call, None)
    if isinstance(value, (bytes, bytearray, memoryview, Mapping)) or not isinstance(
            value, Iterable):
        raise TypeError(f"{call}() accepts {_ACCEPTED}; got {_describe(value)}")
    out: list[EvalHandle | EvalResult | str] = []
    for position, entry in enumerate(value):
        if not _is_single(entry):
            raise TypeError(f"{call}() accepts {_ACCEPTED}; got {_describe(entry)} at "
                            f"position {position}")
        out += _open(entry, call, position)
    return out


def _is_single(value: Any) -> bool:
    return isinstance(value, (str, EvalHandle, EvalResult, BatchRunResult, Submission))


def _open(value: Any, call: str, position: int | None) -> list[EvalHandle | EvalResult | str]:
    if isinstance(value, Submission):
        return list(value.handles)
    if not isinstance(value, BatchRunResult):
        return [value]
    missing = [i for i, r in enumerate(value.eval_results) if r is None]
    if missing:
        where = "" if position is None else f" (position {position})"
        raise TypeError(f"{call}() got a BatchRunResult{where} with no result at position(s) "
                        f"{missing[:5]}: only EvalResults can be waited for")
    return list(value.eval_results)  # type: ignore[arg-type]


def _describe(value: Any) -> str:
    if value is None:
        return "None"
    text = repr(value)
    shown = text if len(text) <= 60 else text[:57] + "..."
    return f"{type(value).__name__} {shown}"
