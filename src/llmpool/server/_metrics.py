"""The server's connection and turn metrics: counters for ``/metrics.json`` and Prometheus.

The JSON shapes follow the capacity-limited voice server the protocol comes from
(``capacity_usage: "48.0%"``, ``avg_session_duration: "125.50s"``), so its dashboards keep
working; ``/metrics`` has the same figures as Prometheus series, next to the manager's
(``PrometheusInstrument`` on the same registry). Gauges are read at scrape time: a
connection costs two counter increments, a frame one.
"""

from __future__ import annotations

import time
from typing import Any

import prometheus_client as p

__all__ = ["ServerMetrics"]

# Seconds: a chat session lasts from seconds to hours.
_SESSION_BUCKETS = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 14400.0)


def percent(part: float, whole: float) -> str:
    """``"48.0%"``."""
    return f"{100.0 * part / whole:.1f}%"


class ServerMetrics:
    """Counts connections, refusals, disconnects, turns and frames of one server.

    Args:
        registry: where the Prometheus series are registered (one registry per app).
        max_connections: the cap, reported as a gauge.
        namespace: prefix of every series name (``llmpool_server_connections_active``).

    Attributes:
        active: open WebSocket connections holding a slot, count.
        peak: the most ever open at once, count.
        total: connections accepted under the cap, count.
        rejected: connections refused (at capacity or draining), count.
    """

    def __init__(
        self, registry: p.CollectorRegistry, max_connections: int, *, namespace: str = "llmpool"
    ) -> None:
        self.max_connections = max_connections
        self.active = 0
        self.peak = 0
        self.total = 0
        self.rejected = 0
        self._durations = 0.0
        self._ended = 0
        ns: dict[str, Any] = {"namespace": namespace, "subsystem": "server", "registry": registry}
        p.Gauge("connections_active", "Open WebSocket connections.", **ns).set_function(
            lambda: self.active
        )
        p.Gauge("connections_max", "The cap on open WebSocket connections.", **ns).set(
            max_connections
        )
        p.Gauge(
            "connections_peak", "The most WebSocket connections open at once.", **ns
        ).set_function(lambda: self.peak)
        self._connections = p.Counter(
            "connections",
            "WebSocket connection attempts, by outcome (accepted, at_capacity, draining, "
            "invalid, unauthorized).",
            ["outcome"],
            **ns,
        )
        self._disconnects = p.Counter(
            "disconnects", "Closed WebSocket connections, by close code.", ["code"], **ns
        )
        self._turns = p.Counter(
            "turns",
            "Chat turns ended, by outcome (completed, stopped, or the error code).",
            ["outcome"],
            **ns,
        )
        self._duration = p.Histogram(
            "session_duration_seconds",
            "Seconds a WebSocket connection stayed open.",
            buckets=_SESSION_BUCKETS,
            **ns,
        )
        self._frames = p.Counter("frames_sent", "Frames sent to clients.", **ns)
        self.frame_sent = self._frames.inc
        """Count one frame sent (the hot path: one bound method call)."""

    def try_connect(self) -> bool:
        """Take a slot if one is free (counted ``accepted``), else count a refusal."""
        if self.active >= self.max_connections:
            self.refused("at_capacity")
            return False
        self.active += 1
        self.total += 1
        self.peak = max(self.peak, self.active)
        self._connections.labels("accepted").inc()
        return True

    def refused(self, outcome: str) -> None:
        """Count a refused connection attempt.

        Before it took a slot: ``at_capacity``, ``draining``, ``invalid``; after:
        ``unauthorized``.
        """
        if outcome in ("at_capacity", "draining"):
            self.rejected += 1
        self._connections.labels(outcome).inc()

    def disconnected(self, code: int, seconds: float) -> None:
        """A connection that held a slot closed with ``code`` after ``seconds``."""
        self.active -= 1
        self._durations += seconds
        self._ended += 1
        self._duration.observe(seconds)
        self._disconnects.labels(str(code)).inc()

    def turn_ended(self, outcome: str) -> None:
        """A turn ended: ``completed``, ``stopped`` or an error code."""
        self._turns.labels(outcome).inc()

    def capacity_usage(self) -> str:
        """Open connections over the cap, as ``"48.0%"``."""
        return percent(self.active, self.max_connections)

    def server_info(self) -> dict[str, Any]:
        """``/health``'s ``server_info``."""
        return {
            "active_connections": self.active,
            "max_connections": self.max_connections,
            "capacity_usage": self.capacity_usage(),
        }

    def to_json(self, connection_timeout: float) -> dict[str, Any]:
        """``/metrics.json``: ``connections``, ``performance`` and ``timestamp``."""
        average = self._durations / self._ended if self._ended else 0.0
        return {
            "connections": {
                "total": self.total,
                "active": self.active,
                "peak": self.peak,
                "rejected": self.rejected,
                "capacity_used": self.capacity_usage(),
            },
            "performance": {
                "avg_session_duration": f"{average:.2f}s",
                "max_connections": self.max_connections,
                "connection_timeout": connection_timeout,
            },
            "timestamp": time.time(),
        }
