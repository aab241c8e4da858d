"""The window-safe token bucket: the shared budgets' algorithm, in Python.

A token bucket of capacity ``c`` that refills at ``r`` units per second admits at most
``c + r * T`` units in any interval of ``T`` seconds (the (sigma, rho) regulator: R. L. Cruz,
"A calculus for network delay, part I", IEEE Trans. Inf. Theory 37(1), 1991). With
``c = max(1, limit * burst / 60)`` and ``r = (limit - c) / (60 + margin)``, no window of
``60 + margin`` seconds holds more than ``limit``: a provider counting per minute sees no
overshoot even when requests reach it up to ``margin`` seconds after their admission. The
price is goodput ``(limit - c) / limit * 60 / (60 + margin)`` of the limit (97.9 % with one
second of burst and 0.25 s of margin).

The Lua script ``_budget_scripts.ADMIT`` runs the same arithmetic on Redis's clock for every
instance; ``WindowBucket`` runs it alone, in an instance that lost Redis, on its share.
"""

from __future__ import annotations

from llmpool._limits import TokenBucket

from ._constants import DEFAULT_WINDOW_MARGIN

__all__ = ["WindowBucket", "window_allowance", "window_rate"]

_WINDOW = 60.0  # seconds: OpenAI's limits are per minute


def window_rate(limit: float, capacity: float, margin: float) -> float:
    """Units per second so that ``capacity`` plus ``60 + margin`` seconds of refill is ``limit``.

    A limit no larger than the capacity (below 2 per minute with one second of burst) is
    paced at ``limit / (60 + margin)`` instead: at most one bucket over the limit per window.
    """
    rate = (limit - capacity) / (_WINDOW + margin)
    return rate if rate > 0 else limit / (_WINDOW + margin)


def window_allowance(
    limit: int, seconds: float, *, burst: float = 1.0, margin: float = DEFAULT_WINDOW_MARGIN
) -> float:
    """The most requests (or tokens) a shared bucket lets reach a provider in ``seconds``.

    ``c + r * (seconds + margin)``, ``c = max(1, limit * burst / 60)`` and ``r`` the window
    rate: exactly ``limit`` for a 60 s window (the bound a provider counting per minute
    sees, requests arriving up to ``margin`` after their admission).

    Args:
        limit: per minute, >= 1.
        seconds: the window's length at the provider.
        burst: the bucket's capacity in seconds of quota (``RateLimitPolicy.burst``).
        margin: ``SharedBudgetPolicy.window_margin``, seconds.
    """
    capacity = max(1.0, limit * burst / _WINDOW)
    return capacity + window_rate(limit, capacity, margin) * (seconds + margin)


class WindowBucket(TokenBucket):
    """A ``TokenBucket`` whose refill rate keeps every ``60 + margin`` s window within ``limit``.

    Args:
        limit: units per minute, >= 1.
        burst: capacity in seconds of quota.
        margin: seconds added to the window.
        now: the clock's reading, seconds.
        level: units in the bucket at ``now``; full by default (``0.0``: starts empty).
    """

    __slots__ = ("margin",)

    def __init__(
        self, limit: int, burst: float, margin: float, now: float, level: float | None = None
    ) -> None:
        super().__init__(limit, burst, now)
        self.margin = margin
        self.rate = window_rate(limit, self.capacity, margin)
        if level is not None:
            self.level = min(level, self.capacity)

    def relimit(self, limit: int, burst: float, now: float) -> None:
        """Change the limit (see ``TokenBucket.relimit``), with the window-safe rate."""
        super().relimit(limit, burst, now)
        self.rate = window_rate(limit, self.capacity, self.margin)
