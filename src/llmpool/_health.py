"""What an attempt's outcome tells about its upstream: circuit breaker, cooldown, retry budget.

Used by the engine (``_engine``) on every failed attempt and on answers while a circuit is not
closed. The rules themselves are pure and live below: ``classify`` (``_retry``) decides what a
failure is, ``CircuitBreaker`` (``_breaker``) counts them. This module applies a decision to
the upstream's state, tells the scheduler when waiters may run again, and reports each change
as an event (``CooldownStarted``, ``CircuitChanged``, ``RetryRefused``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sized

import openai

from ._config import RetryPolicy
from ._hooks import CircuitChanged, CircuitState, CooldownStarted, Hooks, RetryRefused
from ._pool import ClientPool, PooledClient, Upstream
from ._request import Request
from ._retry import RetryDecision, classify
from ._scheduler import Scheduler

__all__ = ["Health"]


class Health:
    """Upstream health bookkeeping of one engine.

    Args:
        retry: the retry policy (``max_retry_after``, the retry budget).
        hooks: where events go.
        scheduler: kicked when an upstream may take work again.
        seq: the engine's arrival counter (a failed probe goes behind later retries).
        now: the event loop's clock, read when a decision needs it.
        active: the engine's registry of active requests (the retry budget is a share of it).
    """

    __slots__ = ("_active", "_hooks", "_now", "_retry", "_scheduler", "_seq", "pool", "retrying")

    def __init__(
        self,
        retry: RetryPolicy,
        hooks: Hooks,
        scheduler: Scheduler,
        seq: itertools.count[int],
        now: Callable[[], float],
        active: Sized,
    ) -> None:
        self._retry = retry
        self._hooks = hooks
        self._scheduler = scheduler
        self._seq = seq
        self._now = now
        self._active = active
        self.retrying = 0  # retry attempts in flight now (the engine counts them)
        self.pool: ClientPool | None = None  # the engine's, set on open

    def _circuit(
        self,
        request: Request,
        upstream: Upstream,
        state: CircuitState,
        cooldown: float | None,
        reason: str | None,
    ) -> None:
        hook = self._hooks.on_circuit_changed
        if hook is not None:
            hook(
                CircuitChanged(
                    upstream.label,
                    state,
                    cooldown,
                    reason,
                    request.id,
                    request.session_id,
                    request.priority,
                    request.attempts,
                )
            )

    def probing(self, request: Request, upstream: Upstream) -> None:
        """``request`` is the half-open circuit's one probe of ``upstream``."""
        request.probe = upstream
        self._circuit(request, upstream, "half_open", None, None)

    def answered(self, request: Request, upstream: Upstream) -> None:
        """An answer that is not a failure: the upstream's circuit closes."""
        request.probe = None
        breaker = upstream.breaker
        if breaker is not None and breaker.record_success():
            self._circuit(request, upstream, "closed", None, None)
            self._scheduler.kick()

    def _failed(self, request: Request, upstream: Upstream, decision: RetryDecision) -> None:
        """A failure that tells about the upstream's health: the circuit breaker counts it."""
        probe, request.probe = request.probe is upstream, None
        breaker = upstream.breaker
        if breaker is None or decision.breaker is None:
            return
        now = self._now()
        if breaker.record_failure(decision.breaker, now, probe=probe):
            self._circuit(request, upstream, "open", breaker.open_until - now, decision.reason)
            if probe:
                # A failed probe goes behind the other retries of its class, so the next
                # probe is another request's and no single caller spends its attempts on them.
                request.seq = next(self._seq)
            self._scheduler.kick()  # waiters blocked on the probe see the new cooldown

    def end_probe(self, request: Request) -> None:
        """A probe that got no answer (cancelled, local error): the next request may probe."""
        upstream, request.probe = request.probe, None
        if (
            upstream is not None
            and upstream.breaker is not None
            and upstream.breaker.abandon_probe()
        ):
            self._scheduler.kick()

    def held_by_circuit(self, request: Request) -> bool:
        """Whether the request's last failure left its upstream's circuit open or half-open."""
        decision, upstream = request.decision, request.last_upstream
        return (
            decision is not None
            and decision.breaker is not None
            and upstream is not None
            and upstream.breaker is not None
            and not upstream.breaker.closed
        )

    def may_retry(self, request: Request) -> bool:
        """The retry budget (Envoy's ``retry_budget``): may this request retry now?

        Allowed while fewer than ``max(min_retry_concurrency, budget_percent% of active
        requests)`` retry attempts are in flight (sent and unanswered), Envoy's "active
        retries". A request whose upstream's circuit is open waits for it in the queue and
        sends nothing meanwhile: it is not refused.
        """
        policy = self._retry
        allowed = max(
            policy.min_retry_concurrency, policy.budget_percent / 100.0 * len(self._active)
        )
        retrying = self.retrying
        if retrying < allowed or self.held_by_circuit(request):
            return True
        hook = self._hooks.on_retry_refused
        if hook is not None:
            hook(
                RetryRefused(
                    request.id,
                    request.session_id,
                    request.priority,
                    request.model,
                    request.attempts,
                    retrying,
                    allowed,
                )
            )
        return False

    def attempt_failed(
        self,
        request: Request,
        pooled: PooledClient | None,
        exc: BaseException,
    ) -> None:
        """Classify an attempt's failure and apply it to its upstream."""
        decision = classify(exc, max_retry_after=self._retry.max_retry_after)
        request.decision = decision
        if isinstance(exc, Exception):
            request.last_error = exc
        if pooled is None:
            self.end_probe(request)
            return
        upstream = pooled.upstream
        request.last_upstream = upstream
        response = getattr(exc, "response", None)
        if isinstance(exc, openai.APIStatusError) and response is not None:
            # The answer's x-ratelimit-* headers tell this model's limits, failure or not.
            upstream.budget(request.model).learn(response.headers, self._now())
        if decision.breaker is not None:
            self._failed(request, upstream, decision)
        elif decision.status is not None:
            self.answered(request, upstream)  # a 4xx: the upstream is up
        else:
            self.end_probe(request)  # cancelled or a local error: no news
        if decision.cooldown and decision.delay is not None:
            assert self.pool is not None  # set on open, before any attempt
            self.pool.cool_down(upstream, self._now() + decision.delay)
            hook = self._hooks.on_cooldown_started
            if hook is not None:
                hook(
                    CooldownStarted(
                        upstream.label,
                        decision.delay,
                        decision.reason,
                        request.id,
                        request.session_id,
                        request.priority,
                        request.attempts,
                    )
                )
