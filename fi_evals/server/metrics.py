"""Prometheus metrics of one server (``GET /metrics``), in a per-app registry.

Names (tests and dashboards rely on them):

- ``fi_evals_evaluations_total{template,outcome}``: evaluator runs, outcome ``completed`` or
  ``failed``. A retried request that replays its first answer adds nothing here.
- ``fi_evals_http_requests_total{route,status}``: answers by route template and status code.
- ``fi_evals_queue_depth``: pending + processing evaluations (gauge, read at scrape time).
- ``fi_evals_idempotent_replays_total``: answers replayed for a repeated ``Idempotency-Key``.
- ``fi_evals_faults_injected_total{kind}``: ``--faults`` injections.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    disable_created_metrics,
    generate_latest,
)

from fi_evals.protocol import EvalStatus

__all__ = ["CONTENT_TYPE_LATEST", "ServerMetrics"]


class ServerMetrics:
    """The counters and gauges of one app; :meth:`render` produces the exposition text."""

    def __init__(self, queue_depth: Callable[[], float]) -> None:
        # The *_created series only add noise to every scrape (process-wide switch).
        disable_created_metrics()
        self.registry = CollectorRegistry(auto_describe=True)
        self.evaluations = Counter(
            "fi_evals_evaluations", "Evaluator runs by template and outcome.",
            ["template", "outcome"], registry=self.registry)
        self.http_requests = Counter(
            "fi_evals_http_requests", "HTTP answers by route and status code.",
            ["route", "status"], registry=self.registry)
        self.idempotent_replays = Counter(
            "fi_evals_idempotent_replays", "Answers replayed for a repeated Idempotency-Key.",
            registry=self.registry)
        self.faults = Counter(
            "fi_evals_faults_injected", "Faults injected by --faults, by kind.", ["kind"],
            registry=self.registry)
        self.queue_depth = Gauge(
            "fi_evals_queue_depth", "Evaluations pending or processing.", registry=self.registry)
        self.queue_depth.set_function(queue_depth)

    def count_evaluations(self, template: str, completed: int, failed: int) -> None:
        """Add one batch's evaluator runs (one call per batch keeps the hot path cheap)."""
        if completed:
            self.evaluations.labels(template, EvalStatus.COMPLETED).inc(completed)
        if failed:
            self.evaluations.labels(template, EvalStatus.FAILED).inc(failed)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def __repr__(self) -> str:
        return "<ServerMetrics>"
