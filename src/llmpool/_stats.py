"""Live statistics: counters and latency windows, and the immutable ``ConnectionStats`` snapshot.

``ConnectionStats.model_dump(by_alias=True)`` gives every field under a camelCase key
(``activeConnections``, ``queuedRequests``, ``completedRequests``, ``failedRequests``,
``totalTimeouts``, ``timestamp``, ``uptime``, ...), ready for a JSON stats endpoint.
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Final

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from . import _constants as C
from ._errors import QueueFullError, QueueTimeoutError, RequestTooLargeError
from ._hooks import AttemptFinished, Instrument, RequestFinished, RetryRefused, RetryScheduled

__all__ = ["ConnectionStats", "LatencyStats", "StatsRecorder", "UpstreamLimitStats"]

_SNAPSHOT = ConfigDict(frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True)


class LatencyStats(BaseModel):
    """Percentiles of a duration over the most recent requests, in seconds.

    ``count`` is the number of samples (at most ``LATENCY_WINDOW``, 2048); with no samples
    every percentile is 0.0.
    """

    model_config = _SNAPSHOT

    count: int = Field(description="Samples in the window.")
    p50: float = Field(description="Median, seconds.")
    p95: float = Field(description="95th percentile, seconds.")
    p99: float = Field(description="99th percentile, seconds.")
    max: float = Field(description="Largest sample, seconds.")

    @classmethod
    def of(cls, samples: Iterable[float]) -> LatencyStats:
        """Summarise ``samples`` (seconds)."""
        data = sorted(samples)
        if not data:
            return cls(count=0, p50=0.0, p95=0.0, p99=0.0, max=0.0)
        if len(data) == 1:
            only = data[0]
            return cls(count=1, p50=only, p95=only, p99=only, max=only)
        cuts = statistics.quantiles(data, n=100, method="inclusive")
        return cls(count=len(data), p50=cuts[49], p95=cuts[94], p99=cuts[98], max=data[-1])


class UpstreamLimitStats(BaseModel):
    """One (upstream, model) pair's rate-limit budgets (``None``: no such limit known)."""

    model_config = _SNAPSHOT

    upstream: str = Field(description="Base URL and a hash of the API key (never the key).")
    model: str | None = Field(
        default=None, description="The model these budgets are for; None: calls of unknown model."
    )
    requests_per_minute: int | None = Field(description="RPM limit in force, requests/min.")
    tokens_per_minute: int | None = Field(description="TPM limit in force, tokens/min.")
    requests_available: float | None = Field(description="Request budget left now, requests.")
    tokens_available: float | None = Field(
        description="Token budget left now (negative: in debt), tokens."
    )


class ConnectionStats(BaseModel):
    """A snapshot of a manager's state. Durations are seconds."""

    model_config = _SNAPSHOT

    active_connections: int = Field(description="Attempts holding a concurrency slot now.")
    queued_requests: int = Field(description="Requests waiting for a slot now.")
    completed_requests: int = Field(description="Requests that returned a result.")
    failed_requests: int = Field(description="Requests that ended in an error (any kind).")
    total_timeouts: int = Field(description="Queue timeouts plus request (attempt) timeouts.")
    retries: int = Field(description="Attempts that were retries.")
    rejected_requests: int = Field(
        description="Requests refused at admission (QueueFullError, RequestTooLargeError)."
    )
    cancelled_requests: int = Field(description="Requests whose caller cancelled them.")
    queue_depth: dict[str, int] = Field(description="Waiting requests per priority class.")
    in_flight_per_client: list[int] = Field(description="Attempts in flight, by pool index.")
    cooling_upstreams: int = Field(description="Upstreams in a 429 cooldown now.")
    open_circuits: int = Field(
        default=0, description="Upstreams whose circuit breaker is open or half-open now."
    )
    retry_budget_refusals: int = Field(
        default=0, description="Failures not retried because the retry budget was spent."
    )
    rate_limits: list[UpstreamLimitStats] = Field(
        default_factory=list, description="Budgets of the upstreams that have a limit."
    )
    queue_wait: LatencyStats = Field(
        description="Time from submission to first attempt (queue and cooldown), seconds."
    )
    latency: LatencyStats = Field(description="Time from submission to result, seconds.")
    timestamp: datetime = Field(description="When the snapshot was taken (UTC).")
    uptime: float = Field(description="Seconds since the manager was opened.")


_REJECTED: Final = (QueueFullError, RequestTooLargeError)


class StatsRecorder(Instrument):
    """The counters behind ``ConnectionStats``: an instrument every manager registers.

    ``completed``/``failed``/``cancelled`` and the latency windows come from
    ``RequestFinished``; ``rejected`` counts requests that ended in ``QueueFullError`` or
    ``RequestTooLargeError``; ``timeouts`` counts attempts over ``request_timeout`` and
    requests that ended in ``QueueTimeoutError``; ``retries`` and ``budget_refusals`` count
    ``RetryScheduled`` and ``RetryRefused``.
    """

    __slots__ = (
        "budget_refusals",
        "cancelled",
        "completed",
        "failed",
        "latency",
        "queue_wait",
        "rejected",
        "retries",
        "timeouts",
    )

    def __init__(self) -> None:
        self.completed = 0
        self.failed = 0
        self.timeouts = 0
        self.retries = 0
        self.rejected = 0
        self.cancelled = 0
        self.budget_refusals = 0
        self.queue_wait: deque[float] = deque(maxlen=C.LATENCY_WINDOW)
        self.latency: deque[float] = deque(maxlen=C.LATENCY_WINDOW)

    def on_request_finished(self, event: RequestFinished) -> None:
        """Count the request's outcome; keep its latency and queue wait."""
        if event.superseded:
            return  # a recovering stream's replaced open: the stream counts once
        outcome = event.outcome
        if outcome == "completed":
            self.completed += 1
            self.latency.append(event.latency)
        elif outcome == "cancelled":
            self.cancelled += 1
        else:
            self.failed += 1
            error = event.exception
            if isinstance(error, _REJECTED):
                self.rejected += 1
            elif isinstance(error, QueueTimeoutError):
                self.timeouts += 1
        if event.queue_wait is not None:
            self.queue_wait.append(event.queue_wait)

    def on_attempt_finished(self, event: AttemptFinished) -> None:
        """Count an attempt over ``request_timeout``."""
        if event.outcome == "timeout":
            self.timeouts += 1

    def on_retry_scheduled(self, event: RetryScheduled) -> None:
        """Count a retry."""
        self.retries += 1

    def on_retry_refused(self, event: RetryRefused) -> None:
        """Count a retry the budget refused."""
        self.budget_refusals += 1

    @staticmethod
    def now_utc() -> datetime:
        """The wall-clock time for ``timestamp``."""
        return datetime.now(UTC)
