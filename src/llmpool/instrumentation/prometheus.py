"""``PrometheusInstrument``: llmpool's events as Prometheus metrics (extra ``prometheus``).

Names follow Prometheus' conventions (https://prometheus.io/docs/practices/naming/): base
units (seconds, tokens), ``_total`` on counters (added by ``prometheus_client``),
``_seconds`` on durations, one ``namespace`` prefix (default ``llmpool``). Labels are bounded
sets: priority, outcome, operation, HTTP status, upstream label, requested model, retry
reason. Never a session id or a request id (unbounded cardinality).

Needs ``prometheus-client`` (``pip install 'llmpool[prometheus]'``); importing this module
without it raises ``MissingExtraError`` naming the extra. ``import llmpool.instrumentation``
does not import this module. The metric table is in docs/instrumentation.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from llmpool import _constants as C
from llmpool._extras import require
from llmpool._hooks import (
    AttemptFinished,
    AttemptStarted,
    CircuitChanged,
    CircuitState,
    CooldownStarted,
    FirstChunk,
    Instrument,
    RequestFinished,
    RequestQueued,
    RetryRefused,
    RetryScheduled,
)

if TYPE_CHECKING:
    import prometheus_client
else:
    prometheus_client = require(
        "prometheus_client", "prometheus", feature="llmpool.instrumentation.prometheus"
    )

__all__ = ["DURATION_BUCKETS", "PrometheusInstrument"]

DURATION_BUCKETS: Final = C.DURATION_BUCKETS
"""Histogram bucket bounds of every ``_seconds`` metric, in seconds: the OpenTelemetry GenAI
conventions' advice for ``gen_ai.client.operation.duration`` (v1.41.0), so both exports bin
alike. Model calls take seconds to minutes; ``prometheus_client``'s default stops at 10 s."""

CIRCUIT_STATES: Final[dict[CircuitState, int]] = {"closed": 0, "half_open": 1, "open": 2}
"""``llmpool_circuit_state``'s values."""


class PrometheusInstrument(Instrument):
    """Counts llmpool's requests, attempts, retries, cooldowns and tokens for Prometheus.

    Register it with ``ConnectionManager(instruments=[PrometheusInstrument()])`` and expose
    the registry as usual (``prometheus_client.start_http_server``, ``make_asgi_app``,
    ``generate_latest``). One instance may serve several managers: their series add up.

    Args:
        registry: where the metrics are registered. Default ``prometheus_client.REGISTRY``,
            the global one that ``start_http_server`` and ``make_asgi_app`` expose by
            default; a second instance on the same registry fails (pass each its own
            ``CollectorRegistry``, as tests do).
        namespace: the prefix of every metric name (``"llmpool"`` gives
            ``llmpool_requests_total``); ``""`` for none.

    Raises:
        ValueError: a metric of the same name is already in ``registry`` (from
            ``prometheus_client``).
    """

    def __init__(
        self,
        registry: prometheus_client.CollectorRegistry | None = None,
        *,
        namespace: str = "llmpool",
    ) -> None:
        reg = prometheus_client.REGISTRY if registry is None else registry
        p = prometheus_client
        self.requests = p.Counter(
            "requests",
            "Requests ended, by how the caller saw them end.",
            ["priority", "outcome", "operation", "model"],
            namespace=namespace,
            registry=reg,
        )
        self.request_duration = p.Histogram(
            "request_duration_seconds",
            "Seconds from a request's submission to its end (queueing and retries included).",
            ["priority", "outcome", "model"],
            buckets=DURATION_BUCKETS,
            namespace=namespace,
            registry=reg,
        )
        self.queue_wait = p.Histogram(
            "queue_wait_seconds",
            "Seconds from a request's submission to its first attempt.",
            ["priority"],
            buckets=DURATION_BUCKETS,
            namespace=namespace,
            registry=reg,
        )
        self.queued = p.Gauge(
            "queued_requests",
            "Requests waiting in the queue for their first attempt.",
            ["priority"],
            namespace=namespace,
            registry=reg,
        )
        self.attempts = p.Counter(
            "attempts",
            "Attempts ended, by upstream, outcome and HTTP status ('' if none).",
            ["upstream", "model", "outcome", "status"],
            namespace=namespace,
            registry=reg,
        )
        self.attempt_duration = p.Histogram(
            "attempt_duration_seconds",
            "Seconds from an attempt's start to its end (a stream's: to its release).",
            ["upstream", "model"],
            buckets=DURATION_BUCKETS,
            namespace=namespace,
            registry=reg,
        )
        self.attempts_in_progress = p.Gauge(
            "attempts_in_progress",
            "Attempts running now (slots held), by upstream.",
            ["upstream"],
            namespace=namespace,
            registry=reg,
        )
        self.retries = p.Counter(
            "retries",
            "Retries scheduled, by reason (e.g. 'status 429', 'connection').",
            ["reason"],
            namespace=namespace,
            registry=reg,
        )
        self.retry_refusals = p.Counter(
            "retry_budget_refusals",
            "Retryable failures not retried because the retry budget was spent.",
            namespace=namespace,
            registry=reg,
        )
        self.cooldowns = p.Counter(
            "cooldowns",
            "Cooldowns started (a 429 or 503 with a Retry-After-style hint), by upstream.",
            ["upstream"],
            namespace=namespace,
            registry=reg,
        )
        self.circuit_state = p.Gauge(
            "circuit_state",
            "Circuit breaker state by upstream: 0 closed, 1 half-open, 2 open "
            "(set from the first change on).",
            ["upstream"],
            namespace=namespace,
            registry=reg,
        )
        self.tokens = p.Counter(
            "tokens",
            "Tokens the API reported in usage, by requested model and type (input, output).",
            ["model", "type"],
            namespace=namespace,
            registry=reg,
        )
        self.time_to_first_chunk = p.Histogram(
            "time_to_first_chunk_seconds",
            "Seconds from a stream's submission to its first event for the caller.",
            ["priority", "model"],
            buckets=DURATION_BUCKETS,
            namespace=namespace,
            registry=reg,
        )
        # The gauges' members, so each returns to 0 whatever the order of the events: a
        # queued request leaves the queue at its first attempt or at its end, an attempt
        # counts once however many times its end is reported.
        self._waiting: dict[str, str] = {}  # request id -> priority label
        self._running: dict[tuple[str, int], str] = {}  # (request id, attempt) -> upstream

    def on_request_queued(self, event: RequestQueued) -> None:
        """``queued_requests`` +1."""
        if event.request_id not in self._waiting:
            priority = self._waiting[event.request_id] = event.priority.value
            self.queued.labels(priority).inc()

    def on_attempt_started(self, event: AttemptStarted) -> None:
        """``queued_requests`` -1 (its first attempt), ``attempts_in_progress`` +1."""
        self._dequeue(event.request_id)
        key = (event.request_id, event.attempt)
        if key not in self._running:
            self._running[key] = event.upstream
            self.attempts_in_progress.labels(event.upstream).inc()

    def on_attempt_finished(self, event: AttemptFinished) -> None:
        """``attempts_total``, ``attempt_duration_seconds``; ``attempts_in_progress`` -1."""
        upstream = event.upstream
        model = event.model or ""
        status = "" if event.status is None else str(event.status)
        self.attempts.labels(upstream, model, event.outcome, status).inc()
        self.attempt_duration.labels(upstream, model).observe(event.duration)
        if self._running.pop((event.request_id, event.attempt), None) is not None:
            self.attempts_in_progress.labels(upstream).dec()

    def on_retry_scheduled(self, event: RetryScheduled) -> None:
        """``retries_total``."""
        self.retries.labels(event.reason).inc()

    def on_retry_refused(self, event: RetryRefused) -> None:
        """``retry_budget_refusals_total``."""
        self.retry_refusals.inc()

    def on_cooldown_started(self, event: CooldownStarted) -> None:
        """``cooldowns_total``."""
        self.cooldowns.labels(event.upstream).inc()

    def on_circuit_changed(self, event: CircuitChanged) -> None:
        """``circuit_state``."""
        self.circuit_state.labels(event.upstream).set(CIRCUIT_STATES[event.state])

    def on_first_chunk(self, event: FirstChunk) -> None:
        """``time_to_first_chunk_seconds``."""
        self.time_to_first_chunk.labels(event.priority.value, event.model or "").observe(
            event.seconds
        )

    def on_request_finished(self, event: RequestFinished) -> None:
        """``requests_total``, ``request_duration_seconds``, ``queue_wait_seconds``, tokens."""
        self._dequeue(event.request_id)
        if event.superseded:
            return  # a recovering stream's replaced open: the stream's own end counts
        priority = event.priority.value
        model = event.model or ""
        self.requests.labels(priority, event.outcome, event.operation or "run", model).inc()
        self.request_duration.labels(priority, event.outcome, model).observe(event.latency)
        if event.queue_wait is not None:
            self.queue_wait.labels(priority).observe(event.queue_wait)
        if event.input_tokens is not None:
            self.tokens.labels(model, "input").inc(event.input_tokens)
        if event.output_tokens is not None:
            self.tokens.labels(model, "output").inc(event.output_tokens)

    def _dequeue(self, request_id: str) -> None:
        priority = self._waiting.pop(request_id, None)
        if priority is not None:
            self.queued.labels(priority).dec()
