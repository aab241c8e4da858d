"""``RedisHealth``: a cooldown started by one instance holds every instance's requests.

A 429's ``Retry-After`` is the provider's word on the whole key, not on one process: the
instance that got it publishes the cooldown's end (Unix time, ms) on the upstream's channel
and keeps it in ``<prefix>:{u:<upstream>}:cooldown`` (``PX``: it goes when the cooldown
ends). Every instance's release listener (``RedisBudgets``) hands it to this store, which
moves its local view's cooldown to the later of the two ends, converted to its own loop clock
with the seam. Circuit breakers stay per instance (docs/redis.md says why).
"""

from __future__ import annotations

import math

from llmpool._config import CircuitPolicy
from llmpool._state import ClockSeam, MemoryHealth, StoreClock, UpstreamHealth

from ._budgets import RedisBudgets

__all__ = ["RedisHealth"]


class RedisHealth:
    """``HealthStore`` whose cooldowns reach every instance through ``budgets``' channel.

    Args:
        budgets: the budget store of the same manager (its worker sends, its listener
            receives).
    """

    clock: StoreClock = "wall"

    def __init__(self, budgets: RedisBudgets) -> None:
        self._budgets = budgets
        self._local = MemoryHealth()  # the views; this store only adds what crosses Redis
        self._known: set[str] = set()
        self._seam: ClockSeam | None = None
        self.received = 0  # cooldowns from the channel applied to a view
        budgets.cooldown_handlers.append(self._cooled_elsewhere)

    def view(self, upstream: str, policy: CircuitPolicy | None) -> UpstreamHealth:
        """``upstream``'s health, its breaker built from ``policy`` (``None``: disabled)."""
        self._known.add(upstream)
        return self._local.view(upstream, policy)

    def cooled(self, upstream: str, until: float) -> None:
        """Publish a cooldown of ``upstream`` to ``until`` (loop clock) to every instance."""
        seam = self._seam
        if seam is None:
            return
        ttl = until - seam.loop()
        wall = seam.to_store(until, self.clock)
        self._budgets.publish_cooldown(upstream, math.ceil(wall * 1000), math.ceil(ttl * 1000))

    def attach(self, seam: ClockSeam) -> None:
        """Take the seam that converts the loop clock."""
        self._seam = seam

    async def run(self) -> None:
        """Nothing of its own: the budget store's listener delivers the cooldowns."""

    def _cooled_elsewhere(self, upstream: str, until_wall: float) -> None:
        seam = self._seam
        if upstream not in self._known or seam is None:
            return
        view = self._local.view(upstream, None)
        until = seam.to_loop(until_wall, self.clock)
        if until > view.cooldown_until:
            view.cooldown_until = until
            self.received += 1
