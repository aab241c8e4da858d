"""``SharedLimits``: the local view of one budget shared through Redis, and its permits.

A view answers the scheduler synchronously: a permit Redis admitted is here (``ready``), or a
question is on its way to the store's worker (``inf``), or, while Redis is unreachable, the
view's own buckets hold this instance's share (the in-memory arithmetic). The store
(``RedisBudgets``) does the asking; the module ``_budgets`` has the algorithms.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from llmpool._config import RateLimitPolicy
from llmpool._limits import UpstreamLimits

from ._keys import UpstreamKeys
from ._policy import SharedBudgetPolicy
from ._window import WindowBucket

__all__ = ["Permit", "SharedLimits"]


class Permit:
    """One admission: a request, its tokens and (with a global cap) a concurrency lease.

    Attributes:
        lease: the lease's id, unique per instance.
        tokens: tokens reserved, at least the request's estimate.
        shared: the lease is on Redis (admitted there, or adopted on the way back).
        at: when it was admitted, event-loop clock, seconds.
    """

    __slots__ = ("at", "lease", "shared", "tokens")

    def __init__(self, lease: str, tokens: int, *, shared: bool, at: float) -> None:
        self.lease = lease
        self.tokens = tokens
        self.shared = shared
        self.at = at


@dataclass(slots=True)
class _Ask:
    view: SharedLimits
    tokens: int
    lease: str
    epoch: int


@dataclass(slots=True)
class _Settle:
    view: SharedLimits
    lease: str  # '' for none
    requests: int  # given back (negative: charged)
    tokens: int
    tell: bool


@dataclass(slots=True)
class _Command:
    """A plain command (learned limits, a cooldown) that nothing waits for."""

    name: str
    args: tuple[Any, ...] = field(default_factory=tuple)


_Op = _Ask | _Settle | _Command


class _Store(Protocol):
    """What a view needs of its store (``RedisBudgets``)."""

    policy: SharedBudgetPolicy
    alone: bool

    def hears(self, upstream: str) -> bool: ...
    def ask(self, view: SharedLimits, tokens: int) -> None: ...
    def hold(self, view: SharedLimits, permit: Permit) -> None: ...
    def hand_back(self, view: SharedLimits, permit: Permit) -> None: ...
    def end(self, view: SharedLimits, permit: Permit, *, requests: int, tokens: int) -> None: ...
    def share_limits(self, view: SharedLimits, limits: tuple[int, int]) -> None: ...
    def alone_wait(self, view: SharedLimits, tokens: int, now: float) -> float: ...
    def alone_take(self, view: SharedLimits, tokens: int) -> Permit: ...


class SharedLimits(UpstreamLimits):
    """The local view of one (upstream, model) budget shared through Redis.

    ``requests`` and ``tokens`` mirror the shared buckets as the last admission left them
    (for ``stats()``), or are this instance's own share while Redis is unreachable.
    """

    __slots__ = (
        "_mirror",
        "_store",
        "asking",
        "blocked",
        "keys",
        "ready",
        "upstream",
    )

    def __init__(
        self,
        store: _Store,
        upstream: str,
        model: str | None,
        policy: RateLimitPolicy,
        keys: UpstreamKeys,
    ) -> None:
        super().__init__(policy, 0.0, model)
        self._store = store
        self.upstream = upstream
        self.keys = keys
        self.ready: Permit | None = None  # admitted by Redis, not taken yet
        self.asking = False  # a question is on its way
        self.blocked = False  # Redis said wait: a timer or a release message ends it
        self._mirror: tuple[Any, Any] = (self.requests, self.tokens)

    @property
    def limited(self) -> bool:
        """Whether any limit applies: RPM or TPM (configured or learned) or the global cap."""
        return (
            self.requests is not None
            or self.tokens is not None
            or self._store.policy.concurrency is not None
        )

    # -- the scheduler's side (synchronous) ----------------------------------------------------

    def wait_for(self, tokens: int, now: float) -> float:
        """0.0 when a permit for ``tokens`` is here; else ``inf`` while Redis is asked."""
        if not self.limited:
            return 0.0
        store = self._store
        if store.alone:
            return store.alone_wait(self, tokens, now)
        ready = self.ready
        if ready is not None:
            if ready.tokens >= tokens:
                return 0.0
            self.ready = None  # too small for this head: hand it back, ask for the right one
            store.hand_back(self, ready)
        if not self.asking and not self.blocked and store.hears(self.upstream):
            self.asking = True
            store.ask(self, tokens)
        return math.inf

    def take(self, tokens: int) -> object | None:
        """The permit ``wait_for`` found (or, alone, one from this instance's share).

        With no limit at all there is nothing to share: ``None``, like an in-memory budget.
        """
        if not self.limited:
            return None
        store = self._store
        if store.alone:
            return store.alone_take(self, tokens)
        permit = self.ready
        assert permit is not None  # wait_for returned 0.0 just before, on the same turn
        self.ready = None
        store.hold(self, permit)
        return permit

    def refund(self, tokens: int, now: float, permit: object | None = None) -> None:
        """A permit granted but never used: its request and tokens go back."""
        if isinstance(permit, Permit):
            self._store.end(self, permit, requests=1, tokens=permit.tokens)
        else:
            super().refund(tokens, now, permit)

    def settle(self, estimated: int, actual: int, now: float, permit: object | None = None) -> None:
        """The attempt ended: its lease ends and its tokens are corrected with ``actual``."""
        if isinstance(permit, Permit):
            self._store.end(self, permit, requests=0, tokens=permit.tokens - actual)
        else:
            super().settle(estimated, actual, now, permit)

    def learn(self, headers: Mapping[str, str], now: float) -> bool:
        """Learn limits from ``x-ratelimit-*`` headers and share them (see the base class).

        Alone, the buckets hold this instance's share: what is learned goes to the mirrors
        (used again on the way back), never to the share, which a header's limit (the whole
        key's) would otherwise raise to the full limit.
        """
        if self._store.alone:
            share = (self.requests, self.tokens)
            self.requests, self.tokens = self._mirror
            try:
                seen = super().learn(headers, now)
                self._mirror = (self.requests, self.tokens)
            finally:
                self.requests, self.tokens = share
            return seen
        before = self._limits()
        seen = super().learn(headers, now)
        after = self._limits()
        if seen and after != before:
            self._store.share_limits(self, after)
        return seen

    # -- the store's side ----------------------------------------------------------------------

    def _limits(self) -> tuple[int, int]:
        requests, tokens = self.requests, self.tokens
        return (
            0 if requests is None else int(requests.limit),
            0 if tokens is None else int(tokens.limit),
        )

    def configured_limits(self) -> tuple[int, int]:
        """``(rpm, tpm)`` as configured, ``0`` for none (the script takes learned ones too)."""
        rpm, tpm = self.configured
        return (rpm or 0, tpm or 0)

    def go_alone(self, share: int, now: float) -> None:
        """Redis is unreachable: take 1 / ``share`` of every limit, in buckets that start empty."""
        policy, margin = self.policy, self._store.policy.window_margin
        self._mirror = (self.requests, self.tokens)
        rpm, tpm = self._limits()
        self.requests = self.tokens = None
        if rpm:
            self.requests = WindowBucket(max(1, rpm // share), policy.burst, margin, now, 0.0)
        if tpm:
            self.tokens = WindowBucket(max(1, tpm // share), policy.burst, margin, now, 0.0)
        self.ready = None  # its lease ends by itself (ttl); its budget stays spent
        self.asking = self.blocked = False

    def alone_wait(self, tokens: int, now: float) -> float:
        """Seconds until this instance's own share admits one request of ``tokens``.

        Alone, ``requests`` and ``tokens`` are the share's buckets: the in-memory arithmetic.
        """
        return UpstreamLimits.wait_for(self, tokens, now)

    def alone_take(self, permit: Permit) -> None:
        """Spend this instance's own share for ``permit``."""
        UpstreamLimits.take(self, permit.tokens)

    def alone_give(self, requests: int, tokens: int, now: float) -> None:
        """Give back to this instance's own share."""
        if requests and self.requests is not None:
            self.requests.give(requests, now)
        if tokens and self.tokens is not None:
            self.tokens.give(tokens, now)

    def come_back(self) -> None:
        """Redis is back (and charged): the mirrors return, the shared budget decides."""
        self.requests, self.tokens = self._mirror
        self.asking = self.blocked = False

    def admitted(self, permit: Permit, left: tuple[int, int], now: float) -> None:
        """Redis admitted ``permit``: it waits here for the head to take it."""
        self.asking = False
        self.ready = permit
        for bucket, units in zip((self.requests, self.tokens), left, strict=True):
            if bucket is not None and units >= 0:
                bucket.level = float(units)
                bucket.updated = now
