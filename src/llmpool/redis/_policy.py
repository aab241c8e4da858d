"""``SharedBudgetPolicy``: how budgets are shared through Redis, and what happens without it."""

from __future__ import annotations

from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ._constants import (
    DEFAULT_HEARTBEAT,
    DEFAULT_LEASE_TTL,
    DEFAULT_PROBE_INTERVAL,
    DEFAULT_REDIS_TIMEOUT,
    DEFAULT_WINDOW_MARGIN,
)

__all__ = ["SharedBudgetPolicy"]


class SharedBudgetPolicy(BaseModel):
    """Budgets shared by every instance on one Redis (``RedisState(budget=...)``).

    The rate limits themselves are the manager's (``PoolConfig.rate_limit``: RPM and TPM per
    upstream and model, and what ``x-ratelimit-*`` headers teach); this adds a global cap on
    requests in flight per upstream and says how Redis is used. docs/redis.md has the
    algorithms.

    Attributes:
        concurrency: requests in flight at once per upstream, across every instance; ``None``
            (default): no global cap (each manager's ``max_concurrency`` still applies).
        lease_ttl: seconds a concurrency lease lasts unless renewed (default 30.0): the
            slots of an instance that crashed come back after this.
        heartbeat_interval: seconds between an instance's heartbeats, which register it and
            renew its leases (default 1.0). An instance missing 3 is no longer counted live.
        window_margin: seconds added to the 60 s window that the buckets keep exact
            (default 0.25): the most a request may take from its admission to the provider.
        redis_timeout: seconds one round trip may take before Redis counts as unreachable
            (default 0.25).
        probe_interval: seconds between two probes of an unreachable Redis (default 0.25).
        fail_closed: without Redis, hold every request (they fail with ``QueueTimeoutError``
            after ``queue_timeout``) instead of admitting this instance's share of each limit
            (``limit / live instances``); default ``False``.

    Raises:
        pydantic.ValidationError: a value out of range, or ``lease_ttl`` not above two
            heartbeat intervals (a lease would expire between two renewals).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    concurrency: int | None = Field(
        default=None, ge=1, description="Requests in flight per upstream, all instances."
    )
    lease_ttl: float = Field(
        default=DEFAULT_LEASE_TTL, gt=0, description="Seconds a concurrency lease lasts."
    )
    heartbeat_interval: float = Field(
        default=DEFAULT_HEARTBEAT, gt=0, description="Seconds between heartbeats."
    )
    window_margin: float = Field(
        default=DEFAULT_WINDOW_MARGIN, ge=0, le=60, description="Seconds added to the window."
    )
    redis_timeout: float = Field(
        default=DEFAULT_REDIS_TIMEOUT, gt=0, description="Seconds a Redis round trip may take."
    )
    probe_interval: float = Field(
        default=DEFAULT_PROBE_INTERVAL, gt=0, description="Seconds between probes of Redis."
    )
    fail_closed: bool = Field(
        default=False, description="Hold requests while Redis is unreachable."
    )

    @model_validator(mode="after")
    def _renewed_in_time(self) -> Self:
        if self.lease_ttl <= 2 * self.heartbeat_interval:
            raise ValueError(
                f"lease_ttl ({self.lease_ttl} s) must exceed two heartbeat intervals "
                f"({self.heartbeat_interval} s each), or leases expire between renewals"
            )
        return self
