"""A circuit breaker per upstream: calm when an upstream refuses work without saying for how long.

A 429 with a ``Retry-After`` says how long to wait, and the upstream cools down for exactly that
long (``_pool``). Many gateways send 429s with no hint at all, and an upstream that answers 5xx to
every request is no better: retrying each request on its own backoff keeps hitting it. The
breaker turns those into one decision for the whole upstream (the pattern of Nygard's *Release
It!*, as in Envoy's outlier detection):

* **closed**: work flows. A hintless 429 opens the circuit at once; ``failure_threshold``
  consecutive 5xx answers, connection errors or timeouts open it too.
* **open**: nothing is sent for a cooldown of ``min(initial_cooldown * 2**(n-1) +
  uniform(0, jitter), max_cooldown)`` seconds, ``n`` counting the opens since the circuit last
  closed (tenacity's ``wait_exponential_jitter``). Queued work waits in the queue (it spends
  neither attempts nor slots); failures of attempts sent before the circuit opened are ignored.
* **half-open** (the cooldown is over): exactly one request, the *probe*, is let through; the
  others keep waiting. Its success closes the circuit (and any answer that is not a failure,
  e.g. a 400, proves the upstream is up); its failure opens it again, for a longer cooldown. A
  probe that ends without an answer (cancelled) lets the next request probe.

Pure state on an injected clock (float seconds); the manager reports outcomes and wakes the
queue when the state changes.
"""

from __future__ import annotations

import math
from enum import StrEnum
from typing import Final, Literal

from tenacity import RetryCallState, wait_exponential_jitter

from ._config import CircuitPolicy

__all__ = ["BreakerState", "CircuitBreaker", "FailureKind"]

FailureKind = Literal["trip", "failure"]
"""``"trip"`` opens the circuit at once (a hintless 429); ``"failure"`` counts towards
``failure_threshold`` (5xx, connection error, timeout)."""

_NEVER: Final = math.inf


class BreakerState(StrEnum):
    """The circuit's state."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """One upstream's circuit breaker; see the module docstring.

    Args:
        policy: thresholds and cooldowns.
    """

    __slots__ = (
        "_backoff",
        "_policy",
        "_step",
        "failures",
        "open_until",
        "opens",
        "probing",
        "state",
    )

    def __init__(self, policy: CircuitPolicy) -> None:
        self._policy = policy
        self._backoff = wait_exponential_jitter(
            multiplier=policy.initial_cooldown, max=policy.max_cooldown, jitter=policy.jitter
        )
        # tenacity's wait strategies read only ``attempt_number`` from the retry state.
        self._step = RetryCallState(None, None, (), {})  # type: ignore[arg-type]
        self.state = BreakerState.CLOSED
        self.open_until = 0.0
        self.opens = 0  # opens since the circuit last closed
        self.failures = 0  # consecutive failures while closed
        self.probing = False  # a half-open probe is in flight

    @property
    def closed(self) -> bool:
        """Whether work flows freely (the common case, checked on every admission)."""
        return self.state is BreakerState.CLOSED

    def wait(self, now: float) -> float:
        """Seconds until a request may be sent (0.0: now; ``inf``: after the probe's outcome)."""
        if self.state is BreakerState.CLOSED:
            return 0.0
        if self.state is BreakerState.OPEN:
            if now < self.open_until:
                return self.open_until - now
            self.state = BreakerState.HALF_OPEN
        return _NEVER if self.probing else 0.0

    def admit(self) -> bool:
        """Record that a request is being sent; ``True`` if it is the half-open probe."""
        if self.state is BreakerState.HALF_OPEN and not self.probing:
            self.probing = True
            return True
        return False

    def record_success(self) -> bool:
        """An answer that is not a failure: close. Returns whether the state changed."""
        if self.state is BreakerState.CLOSED and not self.failures:
            return False  # the common case: nothing to reset
        changed = self.state is not BreakerState.CLOSED
        self.state = BreakerState.CLOSED
        self.opens = self.failures = 0
        self.probing = False
        return changed

    def record_failure(self, kind: FailureKind, now: float, *, probe: bool) -> bool:
        """A failure of an attempt; ``probe``: it was the half-open probe.

        Returns whether the circuit opened (the queue should be woken to see the cooldown).
        """
        if self.state is BreakerState.CLOSED:
            if kind == "trip":
                self._open(now)
                return True
            self.failures += 1
            if self.failures >= self._policy.failure_threshold:
                self._open(now)
                return True
            return False
        if probe:
            self._open(now)
            return True
        return False  # sent before the circuit opened: already accounted for

    def abandon_probe(self) -> bool:
        """The probe ended without an answer (cancelled): the next request may probe."""
        if self.probing:
            self.probing = False
            return True
        return False

    def _open(self, now: float) -> None:
        self.opens += 1
        self._step.attempt_number = self.opens
        self.open_until = now + float(self._backoff(self._step))
        self.state = BreakerState.OPEN
        self.probing = False
        self.failures = 0
