"""Errors of the batch engine, under the SDK's root :class:`~fi_evals._exceptions.FiEvalsError`.

::

    FiEvalsError
    ├── TaskError                 the caller's ``task`` raised on an item (recorded, not raised)
    │   └── TaskTimeoutError      (also TimeoutError) the task ran past ``item_timeout``
    ├── MetricError               a function metric raised on an item (recorded, not raised)
    │   ├── MetricResultError     (also TypeError) it returned no bool, 0-1 score or
    │   │                         (value, reason)
    │   └── MetricTimeoutError    (also TimeoutError) it ran past ``item_timeout``
    ├── BatchStoppedError         the item was not finished when the batch stopped
    │   ├── DeadlineExceededError (also TimeoutError) the batch ``deadline`` passed
    │   └── BatchInterruptedError Ctrl-C (KeyboardInterrupt)
    └── JournalError              (also ValueError) the journal cannot be used for this batch
        └── JournalMismatchError  it was written for other items, evals or settings

Only :class:`JournalError` is raised by ``evaluate_batch`` (before anything is sent); the
others are recorded on the items they concern as :class:`~fi_evals._exceptions.ItemError`
values whose ``type`` is the class name.
"""

from __future__ import annotations

from fi_evals._exceptions import FiEvalsError, ItemError

__all__ = [
    "BatchInterruptedError",
    "BatchStoppedError",
    "DeadlineExceededError",
    "JournalError",
    "JournalMismatchError",
    "MetricError",
    "MetricResultError",
    "MetricTimeoutError",
    "TaskError",
    "TaskTimeoutError",
    "item_error",
]


class TaskError(FiEvalsError):
    """The ``task`` callable raised on this item; its evals were not run."""


class TaskTimeoutError(TaskError, TimeoutError):
    """The ``task`` callable did not return within ``item_timeout``."""


class MetricError(FiEvalsError):
    """A function metric raised on this item (the message names the exception)."""


class MetricResultError(MetricError, TypeError):
    """A function metric returned something other than a bool, a score from 0 to 1, or a
    ``(value, reason)`` pair."""


class MetricTimeoutError(MetricError, TimeoutError):
    """A function metric did not return within ``item_timeout``."""


class BatchStoppedError(FiEvalsError):
    """The batch stopped before this item's evaluation finished."""


class DeadlineExceededError(BatchStoppedError, TimeoutError):
    """The batch's ``deadline`` passed before this item's evaluation finished."""


class BatchInterruptedError(BatchStoppedError):
    """The batch was interrupted (Ctrl-C) before this item's evaluation finished."""


class JournalError(FiEvalsError, ValueError):
    """The journal file cannot be used (unreadable header, written by a newer version...)."""


class JournalMismatchError(JournalError):
    """The journal was written for another batch (other evals, chunk size or items)."""


_RETRYABLE = (TaskTimeoutError, MetricTimeoutError, BatchStoppedError)


def item_error(exc: BaseException) -> ItemError:
    """The error value recorded on an item for one of these exceptions (or any other)."""
    error = ItemError.from_exception(exc)
    if isinstance(exc, _RETRYABLE) and not error.retryable:
        return ItemError(error.type, error.message, error.status_code, True)
    return error
