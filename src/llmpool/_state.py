"""State stores: where rate-limit budgets, cooldowns and circuits, and conversations live.

Three small protocols, each with an in-memory implementation that is what a manager uses by
default (and behaves exactly as llmpool did before stores existed). A store shared between
processes (``llmpool.redis``) implements the same protocols.

**Admission stays synchronous.** The scheduler's grant decision reads and spends a *local
view*: ``BudgetStore.limits`` returns the token buckets of one (upstream, model) and
``HealthStore.view`` the cooldown and circuit breaker of one upstream, objects the engine
changes in place on the event loop (what happens here is also reported: ``cooled``). A
shared store keeps those views in step in the background, in ``run``, which the manager runs
in its task group from ``__aenter__`` to ``__aexit__``. A shared budget may also answer
``wait_for`` with ``inf`` while it asks the other processes, and then re-runs the grant
decision with the ``wake`` it got in ``attach`` when the answer comes (``llmpool.redis``);
its ``take`` returns a permit that ``refund``/``settle`` hand back.

**Clocks.** Every store says which clock its times are on (``clock``):

- ``"loop"``: the event loop's monotonic clock (``anyio.current_time()``), what the engine
  speaks; in-memory stores use it.
- ``"wall"``: Unix time in seconds (``time.time()``, or the store's own ``TIME`` in Redis),
  the only clock processes on different machines share.

Local views are on the loop clock whatever the store's clock. A store converts at the seam
(``ClockSeam``, handed to ``attach`` when the manager opens): a cooldown deadline goes out as
``store = loop + (wall_now - loop_now)`` and comes back the other way, both clocks read at
each conversion, so neither clock's drift accumulates.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Literal, Protocol, TypeAlias, runtime_checkable

from ._breaker import CircuitBreaker
from ._config import CircuitPolicy, RateLimitPolicy
from ._errors import LLMPoolError
from ._limits import UpstreamLimits

__all__ = [
    "BudgetStore",
    "ClockSeam",
    "ConversationConflictError",
    "ConversationStore",
    "HealthStore",
    "MemoryBudgets",
    "MemoryConversations",
    "MemoryHealth",
    "StateStores",
    "StoreClock",
    "UpstreamHealth",
]

StoreClock: TypeAlias = Literal["loop", "wall"]
"""The clock a store's times are on: the event loop's (``"loop"``) or Unix time (``"wall"``)."""


class ClockSeam:
    """Converts times between the event loop's clock and a store's.

    Args:
        loop: the event loop's clock, seconds.
        wall: Unix time, seconds; ``time.time`` by default.
    """

    __slots__ = ("_loop", "_wall")

    def __init__(self, loop: Callable[[], float], wall: Callable[[], float] = time.time) -> None:
        self._loop = loop
        self._wall = wall

    @property
    def loop(self) -> Callable[[], float]:
        """The event loop's clock, seconds (what the engine reads)."""
        return self._loop

    def to_store(self, at: float, clock: StoreClock) -> float:
        """``at`` (loop clock) on ``clock``. ``0.0`` means "none" and stays ``0.0``."""
        if clock == "loop" or at == 0.0:
            return at
        return at + (self._wall() - self._loop())

    def to_loop(self, at: float, clock: StoreClock) -> float:
        """``at`` (on ``clock``) on the loop clock. ``0.0`` stays ``0.0``."""
        if clock == "loop" or at == 0.0:
            return at
        return at - (self._wall() - self._loop())


@runtime_checkable
class BudgetStore(Protocol):
    """Rate-limit budgets (RPM/TPM) per (upstream, model).

    ``limits`` is called on every admission: it must return the local view at once (create
    it from ``policy`` on first use, full).
    """

    clock: StoreClock

    def limits(self, upstream: str, model: str | None, policy: RateLimitPolicy) -> UpstreamLimits:
        """The local view of ``model``'s budgets on ``upstream`` (the label)."""
        ...

    def models(self, upstream: str) -> Mapping[str | None, UpstreamLimits]:
        """Every budget of ``upstream`` seen so far, by model (for ``stats()``).

        The live mapping: budgets created later by ``limits`` appear in it.
        """
        ...

    def attach(self, seam: ClockSeam, wake: Callable[[], None]) -> None:
        """Take the clock seam and the scheduler's ``wake`` (once, before any request and ``run``).

        ``wake()`` re-runs the scheduler's grant decision: a shared store calls it (on the
        event loop, from ``run``) when budget it was asked for has arrived, or may have: a
        budget view may answer ``wait_for`` with ``inf`` while it asks the other processes,
        and the waiters are then woken by this instead of a timer.
        """
        ...

    async def run(self) -> None:
        """Background reconciliation for the manager's life; return at once if none."""
        ...


class UpstreamHealth:
    """The local view of one upstream's health: its cooldown and its circuit breaker.

    Read and changed in place by the engine on the event loop; a shared ``HealthStore``
    also writes into it from ``run`` (converting its clock with the seam).

    Attributes:
        cooldown_until: when the cooldown ends, on the loop clock; ``0.0`` for none.
        breaker: the circuit breaker, or ``None`` when disabled.
    """

    __slots__ = ("breaker", "cooldown_until")

    def __init__(self, breaker: CircuitBreaker | None) -> None:
        self.cooldown_until = 0.0
        self.breaker = breaker


@runtime_checkable
class HealthStore(Protocol):
    """Cooldowns (a 429's ``Retry-After``) and circuit breakers per upstream."""

    clock: StoreClock

    def view(self, upstream: str, policy: CircuitPolicy | None) -> UpstreamHealth:
        """The local view of ``upstream``'s health (created on first use)."""
        ...

    def cooled(self, upstream: str, until: float) -> None:
        """A cooldown of ``upstream`` started here, to ``until`` on the loop clock.

        The view already holds it; a shared store tells the other processes (on its own
        clock, converted with the seam it got in ``attach``).
        """
        ...

    def attach(self, seam: ClockSeam) -> None:
        """Take the seam that converts the loop clock (once, before any request and ``run``)."""
        ...

    async def run(self) -> None:
        """Background reconciliation for the manager's life; return at once if none."""
        ...


class ConversationConflictError(LLMPoolError):
    """A conversation was saved by someone else since it was loaded (compare-and-set)."""


@runtime_checkable
class ConversationStore(Protocol):
    """Conversations as versioned JSON documents, saved with compare-and-set."""

    async def load(self, key: str) -> tuple[str | None, int]:
        """``(document, version)``; ``(None, 0)`` when there is none."""
        ...

    async def save(self, key: str, document: str, *, version: int) -> int:
        """Store ``document`` if the stored version is still ``version``; the new version.

        Raises:
            ConversationConflictError: the stored version is not ``version``.
        """
        ...

    async def delete(self, key: str) -> None:
        """Forget ``key`` (no error if absent)."""
        ...


class MemoryBudgets:
    """In-memory ``BudgetStore``: this process's buckets, on the loop clock."""

    clock: StoreClock = "loop"

    def __init__(self) -> None:
        self._limits: dict[str, dict[str | None, UpstreamLimits]] = {}

    def limits(self, upstream: str, model: str | None, policy: RateLimitPolicy) -> UpstreamLimits:
        """The buckets of (``upstream``, ``model``), created full on first use."""
        per_model = self._limits.get(upstream)
        if per_model is None:
            per_model = self._limits[upstream] = {}
        budget = per_model.get(model)
        if budget is None:
            # A new bucket starts full whatever clock reading it is given.
            budget = per_model[model] = UpstreamLimits(policy, 0.0, model)
        return budget

    def models(self, upstream: str) -> Mapping[str | None, UpstreamLimits]:
        """Every budget of ``upstream`` seen so far, by model: the live mapping."""
        return self._limits.setdefault(upstream, {})

    def attach(self, seam: ClockSeam, wake: Callable[[], None]) -> None:
        """Nothing to convert (the loop clock) and nothing to wake for: timers suffice."""

    async def run(self) -> None:
        """Nothing to reconcile."""


class MemoryHealth:
    """In-memory ``HealthStore``: this process's cooldowns and breakers, on the loop clock."""

    clock: StoreClock = "loop"

    def __init__(self) -> None:
        self._views: dict[str, UpstreamHealth] = {}

    def view(self, upstream: str, policy: CircuitPolicy | None) -> UpstreamHealth:
        """``upstream``'s health, its breaker built from ``policy`` (``None``: disabled)."""
        view = self._views.get(upstream)
        if view is None:
            enabled = policy is not None and policy.enabled
            breaker = CircuitBreaker(policy) if policy is not None and enabled else None
            view = self._views[upstream] = UpstreamHealth(breaker)
        return view

    def cooled(self, upstream: str, until: float) -> None:
        """Nothing to tell: one process."""

    def attach(self, seam: ClockSeam) -> None:
        """Nothing to convert: the loop clock."""

    async def run(self) -> None:
        """Nothing to reconcile."""


class MemoryConversations:
    """In-memory ``ConversationStore`` (one process; lost when it exits)."""

    def __init__(self) -> None:
        self._documents: dict[str, tuple[str, int]] = {}

    async def load(self, key: str) -> tuple[str | None, int]:
        """``(document, version)``, or ``(None, 0)``."""
        document, version = self._documents.get(key, (None, 0))
        return document, version

    async def save(self, key: str, document: str, *, version: int) -> int:
        """Compare-and-set: store ``document`` as ``version + 1`` if ``version`` is current.

        Raises:
            ConversationConflictError: the stored version is not ``version``.
        """
        current = self._documents.get(key, (None, 0))[1]
        if current != version:
            raise ConversationConflictError(
                f"conversation {key!r} is at version {current}, not {version}: "
                "it was saved elsewhere since it was loaded"
            )
        self._documents[key] = (document, version + 1)
        return version + 1

    async def delete(self, key: str) -> None:
        """Forget ``key``."""
        self._documents.pop(key, None)


class StateStores:
    """The stores one manager uses; in-memory ones by default.

    Args:
        budgets: rate-limit budgets; default ``MemoryBudgets()``.
        health: cooldowns and circuit breakers; default ``MemoryHealth()``.
        conversations: conversations; default ``MemoryConversations()``.
    """

    __slots__ = ("budgets", "conversations", "health")

    def __init__(
        self,
        *,
        budgets: BudgetStore | None = None,
        health: HealthStore | None = None,
        conversations: ConversationStore | None = None,
    ) -> None:
        self.budgets: BudgetStore = MemoryBudgets() if budgets is None else budgets
        self.health: HealthStore = MemoryHealth() if health is None else health
        self.conversations: ConversationStore = (
            MemoryConversations() if conversations is None else conversations
        )
