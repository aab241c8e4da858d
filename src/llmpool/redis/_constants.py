"""``llmpool.redis``'s defaults, once (the core's live in ``llmpool._constants``).

Every duration is a float in seconds.
"""

from __future__ import annotations

from typing import Final

DEFAULT_PREFIX: Final = "llmpool"
"""The first part of every key (``llmpool:{<session>}:conversation``)."""

DEFAULT_TURN_TTL: Final = 30.0
"""Seconds a turn lock lives unless renewed: how long a crashed instance blocks its sessions."""

DEFAULT_TURN_POLL: Final = 0.05
"""Seconds between two tries of a waiting ``acquire`` at most (less when the lock's remaining
time, read on Redis, is shorter). Redis has no blocking lock: a waiter polls, with jitter."""

CLOCK_DRIFT_FACTOR: Final = 0.01
"""Share of a lock's ttl assumed lost to the difference of two clocks' rates, plus
``CLOCK_DRIFT_MIN`` (the Redlock algorithm's allowance, redis.io "Distributed Locks with
Redis"): ``TurnLock.valid_until`` is this much before the lock's own expiry."""

CLOCK_DRIFT_MIN: Final = 0.002
"""Seconds always assumed lost to clock drift (see ``CLOCK_DRIFT_FACTOR``)."""

SHIELD_TIMEOUT: Final = 5.0
"""Seconds a request shielded from cancellation may take: taking a turn lock (so that a lock
granted is always handed back) and releasing it when ``hold`` ends (abandoned after this, the
lease then ends by itself)."""

DEFAULT_LEASE_TTL: Final = 30.0
"""Seconds a global concurrency lease lives unless renewed: how long the slots of an instance
that crashed stay taken."""

DEFAULT_HEARTBEAT: Final = 1.0
"""Seconds between an instance's heartbeats (its registration and the renewal of its leases)."""

DEFAULT_LIVE_HORIZON: Final = 3.0
"""Heartbeats an instance may miss before the others stop counting it as live."""

DEFAULT_WINDOW_MARGIN: Final = 0.25
"""Seconds added to the 60 s window the shared buckets are exact over: what a request may take
between its admission and its arrival at the provider."""

DEFAULT_REDIS_TIMEOUT: Final = 0.25
"""Seconds one round trip to Redis may take before Redis counts as unreachable."""

DEFAULT_PROBE_INTERVAL: Final = 0.25
"""Seconds between two probes of an unreachable Redis."""

SETTLE_LINGER: Final = 0.002
"""Seconds a settlement waits for a question to share its round trip (the next request's
admission usually follows at once); a slot released elsewhere is announced this much later
at most."""
