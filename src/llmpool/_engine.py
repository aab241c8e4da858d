"""The request path: admission -> queue -> attempt -> classify -> retry, and leases.

The life of a request, step by step, is in docs/design.md ("The life of a request"): admit
(``_admission``), queue for a grant that also reserves its model's budget on a healthy
upstream (``_scheduler``), attempt under ``request_timeout``, learn the headers and settle
the tokens, tell the upstream's health (``_health``), and on failure let ``classify`` decide.
Every path ends in exactly one result or one exception, and one ``RequestFinished`` event
(``_outcomes``).

A ``Lease`` is a request whose one attempt keeps its slot and client after it returned: an
open SDK stream (``PooledStream``) or ``ConnectionManager.lease``. It ends when released.

The engine owns what the request path checks and what shutdown must reach: the lifecycle
state, the registry of active requests and leases, the scheduler and the pool. The manager
(``_manager``) drives its lifecycle; the façade (``_facade``) calls it and never the manager.

The first attempt runs outside tenacity: building an ``AsyncRetrying`` per call made
``run(no-op)`` cost 60-74 µs of CPU against 25-28 µs without it (docs/performance.md), so the
retry loop is entered only after a failure that ``classify`` says to retry.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Awaitable, Callable, Iterable, Mapping
from enum import StrEnum
from typing import TypeVar

import anyio
import anyio.lowlevel
import openai
from tenacity import AsyncRetrying, RetryCallState, stop_after_attempt

from . import _constants as C
from ._admission import apply_options, budget_key, refused, too_large
from ._clock import loop_clock
from ._config import CallOptions, PoolConfig
from ._errors import (
    ManagerClosedError,
    QueueFullError,
    QueueTimeoutError,
    RequestTimeoutError,
)
from ._health import Health
from ._hooks import (
    Hooks,
)
from ._lease import Lease
from ._log import LoggingInstrument
from ._outcomes import Outcomes, attempt_started, queued
from ._pool import ClientPool, PooledClient, Upstream
from ._record import CAPTURE
from ._redact import Redactor
from ._request import Request, validate_session_id
from ._retry import backoff_strategy, classify
from ._scheduler import QueueClosed, QueueEvicted, QueueFull, QueueTimedOut, Scheduler
from ._state import StateStores
from ._stats import StatsRecorder
from ._types import Priority, PriorityLike

__all__ = ["Engine", "Lifecycle"]

T = TypeVar("T")

_UNWIND_TIMEOUT = 5.0  # seconds allowed for cancelled work to unwind at shutdown


class Lifecycle(StrEnum):
    """A manager's state: entered once, closed once."""

    NEW = "new"
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


class Engine:
    """The request path of one ``ConnectionManager`` (see the module docstring).

    Args:
        config: the manager's config.
        factory: builds the pool's clients on ``open``.
        instruments: the caller's instruments, registered after the built-in ones (logging,
            then ``stats()``).
        state: where budgets, cooldowns, breakers and conversations live; in memory by
            default.
    """

    def __init__(
        self,
        config: PoolConfig,
        factory: Callable[[int], openai.AsyncOpenAI],
        instruments: Iterable[object] = (),
        state: StateStores | None = None,
    ) -> None:
        self.config = config
        self.stores = StateStores() if state is None else state
        self._factory = factory
        self.scheduler = Scheduler(
            max_concurrency=config.max_concurrency,
            max_queue_size=config.max_queue_size,
            starvation_limit=config.starvation_limit,
            gate=self._gate,
            gate_key=budget_key,
        )
        self.logging = LoggingInstrument()
        self.stats = StatsRecorder()
        self.hooks = Hooks([self.logging, self.stats, *instruments], trusted=2)
        self.outcomes = Outcomes(self.hooks, anyio.current_time)
        self.state = Lifecycle.NEW
        self.pool: ClientPool | None = None
        # Requests in progress, each with the scope shutdown cancels (None between two).
        self.active: dict[Request, anyio.CancelScope | None] = {}
        self.leases: set[Lease] = set()
        self._idle: anyio.Event | None = None
        self._cancelled_all = False  # set when shutdown cancels the work still running
        policy = config.rate_limit
        self._tpm_configured = policy.tokens_per_minute is not None or any(
            m.tokens_per_minute is not None for m in policy.models.values()
        )
        self.seq = itertools.count()
        self.health = Health(
            config.retry,
            self.hooks,
            self.scheduler,
            self.seq,
            lambda: self.now(),
            self.active,
        )
        self._tag = secrets.token_hex(3)
        self._backoff = backoff_strategy(config.retry)
        # Set on open: the event loop's CancelScope class. anyio.CancelScope() and
        # move_on_after() look the backend up (sniffio) on every call; an engine lives in one
        # event loop, so its backend's class is built directly (what anyio does itself).
        self._scope: type[anyio.CancelScope] = anyio.CancelScope
        # Set on open: the event loop's clock. anyio.current_time() looks the backend up on
        # every call (three per request); on asyncio it is the loop's time(), read directly.
        self.now: Callable[[], float] = anyio.current_time

    # -- lifecycle -----------------------------------------------------------------------------

    def open(self) -> None:
        """Build the pool on the running event loop; admission opens."""
        self._scope = type(anyio.CancelScope())
        self.now = self.outcomes.now = loop_clock()
        self.pool = self.health.pool = ClientPool(
            [self._factory(i) for i in range(self.config.pool_size)],
            rate_limit=self.config.rate_limit,
            circuit=self.config.circuit,
            now=self.now(),
            budgets=self.stores.budgets,
            health=self.stores.health,
        )
        self.logging.redactor = Redactor.for_clients(p.client for p in self.pool.clients)
        self.state = Lifecycle.OPEN

    async def close(self) -> None:
        """Stop admission, let admitted work finish for the grace period, cancel the rest.

        Runs shielded: cancelling the caller does not cut the grace period short.
        """
        self.state = Lifecycle.CLOSING
        with anyio.CancelScope(shield=True):
            with anyio.move_on_after(self.config.shutdown_grace):
                await self._wait_idle()
            self._cancelled_all = True
            self.scheduler.close()  # queued requests wake with ManagerClosedError
            for scope in self.active.values():
                if scope is not None:
                    scope.cancel()
            for lease in list(self.leases):
                if lease.abort is not None:
                    await lease.abort()
                elif lease.scope is not None:
                    lease.scope.cancel()
            with anyio.move_on_after(_UNWIND_TIMEOUT):
                await self._wait_idle()
            if self.pool is not None:
                await self.pool.aclose()
        self.state = Lifecycle.CLOSED

    @property
    def cancelled_all(self) -> bool:
        """Whether shutdown has cancelled the work that was still running."""
        return self._cancelled_all

    async def _wait_idle(self) -> None:
        while self.active or self.leases:
            self._idle = anyio.Event()
            await self._idle.wait()

    def _wake_if_idle(self) -> None:
        if self._idle is not None and not self.active and not self.leases:
            self._idle.set()

    # -- admission -------------------------------------------------------------------------------

    def admit(
        self,
        priority: PriorityLike,
        session_id: str | None,
        tokens: int = 0,
        model: str | None = None,
        options: CallOptions | None = None,
        operation: str | None = None,
    ) -> Request:
        """A new request, or the error that refuses it at once.

        Raises:
            ManagerClosedError: the manager is not open.
            RequestTooLargeError: ``tokens`` exceed every upstream's configured limit.
            InvalidSessionIdError: ``session_id`` is malformed.
            ValueError: ``priority``, ``tokens`` or ``model`` is invalid.
        """
        prio = Priority.parse(priority)
        sid = validate_session_id(session_id)
        if not isinstance(tokens, int) or tokens < 0:
            raise ValueError(f"estimated_tokens must be an int >= 0, got {tokens!r}")
        if model is not None and not isinstance(model, str):
            raise ValueError(f"model must be a string or None, got {type(model).__name__}")
        seq = next(self.seq)
        now = self.now()
        config = self.config
        request = Request(
            id=f"req_{self._tag}{seq:06x}",
            priority=prio,
            session_id=sid,
            seq=seq,
            now=now,
            tokens=tokens,
            model=model,
            max_attempts=config.retry.max_attempts,
            queue_timeout=config.queue_timeout,
            request_timeout=config.request_timeout,
            admission=config.admission,
            operation=operation,
        )
        if options is not None:
            apply_options(request, options, now)
        if self.state != Lifecycle.OPEN:
            reason = "not open yet" if self.state == Lifecycle.NEW else "closed"
            error = request.error(ManagerClosedError, f"the manager is {reason}", now)
            self.outcomes.finish(request, error)
            raise error
        if tokens and self._tpm_configured:  # only a configured limit ever refuses
            self._check_fits(request)
        return request

    def _check_fits(self, request: Request) -> None:
        assert self.pool is not None
        error = too_large(self.pool, request)
        if error is not None:
            self.outcomes.finish(request, error)
            raise error

    def _gate(self, request: Request) -> float:
        """The scheduler's budget check: reserve ``request``'s budget on an upstream."""
        pool = self.pool
        assert pool is not None
        upstream, wait, permit = pool.reserve(
            request.tokens, self.now, avoid=request.last_upstream, model=request.model
        )
        if upstream is None:
            return wait
        request.ticket = upstream
        request.permit = permit
        breaker = upstream.breaker
        if breaker is not None and not breaker.closed and breaker.admit():
            self.health.probing(request, upstream)
        return 0.0

    def tokens_limited(self) -> bool:
        """Whether any upstream has a token budget (the façade then estimates tokens)."""
        pool = self.pool
        if pool is None:
            return False
        return self._tpm_configured or any(
            b.tokens is not None for u in pool.upstreams for b in u.budgets.values()
        )

    def learn(
        self, upstream: Upstream, headers: Mapping[str, str], model: str | None = None
    ) -> None:
        """Take ``model``'s limits and budget left from a response's ``x-ratelimit-*`` headers."""
        upstream.budget(model).learn(headers, self.now())

    def _settle(self, request: Request, upstream: Upstream, *, refund: bool) -> None:
        """Correct the attempt's token reservation: with the usage seen, or refunded.

        A reservation with a permit (a shared budget's) is always settled: that also ends
        its lease there.
        """
        permit, request.permit = request.permit, None
        if permit is None and request.tokens == 0 and request.used_tokens is None:
            return
        actual = 0 if refund else request.used_tokens
        if actual is None:
            if permit is None:
                return  # no usage reported: the estimate stands
            actual = request.tokens
        upstream.budget(request.model).settle(request.tokens, actual, self.now(), permit)
        if actual < request.tokens:
            self.scheduler.kick()

    # -- execution -------------------------------------------------------------------------------

    async def execute(
        self,
        request: Request,
        fn: Callable[[openai.AsyncOpenAI], Awaitable[T]],
        inject_session: bool,
        keep_slot: bool = False,
    ) -> T:
        """Run ``fn`` for an admitted request, with retries; see ``ConnectionManager.run``.

        With ``keep_slot``, the attempt that succeeds keeps its slot and client in
        ``request.lease`` (``hold`` turns it into a ``Lease``).
        """
        # No cancel scope of its own (one per request cost 1-2 µs and ~0.9 KB queued): the
        # registry holds the request's innermost scope (queue wait, attempt, backoff), which
        # shutdown cancels; a deadline adds one around the whole.
        self.active[request] = None
        capture = request.capture = CAPTURE.get()  # capture_requests() blocks, a stream's mark
        if capture is not None and capture.inner is not None:
            capture.inner.append(request)  # an open of a recovering stream, which records itself
        try:
            if request.deadline is None:
                # The first wait for a slot happens here, not deeper: a queued request is
                # then three coroutine frames (run, execute, _queue) on top of the scheduler.
                if not self.scheduler.try_acquire(request):
                    await self._queue(request)
                result = await self._with_retries(request, fn, inject_session, keep_slot, True)
            else:
                result = await self._within_deadline(request, fn, inject_session, keep_slot)
            if not keep_slot:
                self.outcomes.finish(request, None)
            return result
        except BaseException as exc:
            if request.outcome is None:
                self.outcomes.finish(request, exc)
            raise
        finally:
            del self.active[request]
            self._wake_if_idle()

    async def _within_deadline(
        self,
        request: Request,
        fn: Callable[[openai.AsyncOpenAI], Awaitable[T]],
        inject_session: bool,
        keep_slot: bool,
    ) -> T:
        with self._scope(deadline=request.deadline):  # type: ignore[arg-type]  # not None here
            return await self._with_retries(request, fn, inject_session, keep_slot)
        raise self.cancelled_error(request)

    def _enter(self, request: Request, scope: anyio.CancelScope) -> anyio.CancelScope | None:
        """Make ``scope`` the one shutdown cancels for ``request``; returns the previous one."""
        active = self.active
        previous = active[request]
        active[request] = scope
        if self._cancelled_all:
            scope.cancel()  # shutdown already cancelled the others
        return previous

    async def hold(
        self,
        request: Request,
        fn: Callable[[openai.AsyncOpenAI], Awaitable[T]],
        inject_session: bool,
    ) -> tuple[T, Lease]:
        """Like ``execute``, but the successful attempt keeps its slot and client: a lease.

        The caller owns the returned ``Lease`` and must ``release`` it.
        """
        result = await self.execute(request, fn, inject_session, True)
        pooled = request.lease
        assert pooled is not None  # set by the attempt that succeeded
        client = pooled.client
        if inject_session and request.session_id is not None:
            client = client.with_options(default_headers={C.SESSION_HEADER: request.session_id})
        lease = Lease(self, request, pooled, client)
        self.leases.add(lease)
        return result, lease

    def cancelled_error(self, request: Request) -> Exception:
        """The error of a request whose scope was cancelled by its deadline or by shutdown."""
        if not self._cancelled_all and request.deadline is not None:
            return request.deadline_error(self.now())  # the scope's own deadline
        return request.closed_error(self.now())

    def closed_error(self, request: Request) -> Exception:
        """The error of a request that shutdown cancelled after the grace period."""
        return request.closed_error(self.now())

    async def _with_retries(
        self,
        request: Request,
        fn: Callable[[openai.AsyncOpenAI], Awaitable[T]],
        inject_session: bool,
        keep_slot: bool,
        acquired: bool = False,
    ) -> T:
        try:
            return await self._attempt(request, fn, inject_session, keep_slot, acquired)
        except Exception as exc:
            decision = request.decision
            if decision is None or not decision.retry or request.max_attempts < 2:
                raise
            first_failure: Exception | None = exc
        # Slow path: tenacity owns the retries. Its first iteration replays the failure of
        # the attempt above, so waits, stop and before_sleep count it like any other.
        retrying = AsyncRetrying(
            stop=stop_after_attempt(request.max_attempts),
            wait=lambda state: self._wait(request, state),
            retry=self._retry_predicate(request),
            before_sleep=lambda state: self._before_sleep(request, state),
            sleep=anyio.sleep,
            reraise=True,
        )
        with self._scope() as scope:  # the backoff sleeps: shutdown cancels this one
            previous = self._enter(request, scope)
            try:
                async for attempt in retrying:
                    with attempt:
                        if first_failure is not None:
                            failure, first_failure = first_failure, None
                            raise failure
                        result = await self._attempt(request, fn, inject_session, keep_slot)
                return result
            finally:
                self.active[request] = previous
        raise self.closed_error(request)

    def _wait(self, request: Request, state: RetryCallState) -> float:
        if self.health.held_by_circuit(request):
            return 0.0  # wait in the queue, where the circuit holds it (queue_timeout applies)
        decision = request.decision
        if decision is not None and decision.delay is not None:
            pool = self.pool
            healthy_elsewhere = (
                decision.cooldown
                and pool is not None
                and pool.pick(self.now(), avoid=request.last_upstream, peek=True) is not None
            )
            if not healthy_elsewhere:
                return decision.delay  # the server's hint binds this upstream only
        return float(self._backoff(state))

    def _retry_predicate(self, request: Request) -> Callable[[RetryCallState], bool]:
        def retry(state: RetryCallState) -> bool:
            outcome = state.outcome
            return (
                outcome is not None
                and outcome.failed
                and request.decision is not None
                and request.decision.retry
                and self.health.may_retry(request)
            )

        return retry

    def _before_sleep(self, request: Request, state: RetryCallState) -> None:
        decision = request.decision
        self.outcomes.retry_scheduled(
            request,
            state.upcoming_sleep,
            "" if decision is None else decision.reason,
            decision is not None and decision.cooldown,
        )

    async def _attempt(
        self,
        request: Request,
        fn: Callable[[openai.AsyncOpenAI], Awaitable[T]],
        inject_session: bool,
        keep_slot: bool,
        acquired: bool = False,
    ) -> T:
        if not acquired and not self.scheduler.try_acquire(request):
            await self._queue(request)
        pooled: PooledClient | None = None
        holds_slot = True
        succeeded = False
        retry_in_flight = False  # this attempt is a retry: the retry budget counts it
        try:
            pooled = self._pick(request)
            request.current_upstream = pooled.upstream
            pooled.in_flight += 1
            request.attempts += 1
            if request.attempts > 1:
                retry_in_flight = True
                self.health.retrying += 1
            now = self.now()
            request.attempt_client, request.attempt_started = pooled, now  # for its record
            hook = self.hooks.on_attempt_started
            if hook is not None:
                hook(attempt_started(request, pooled))
            client = pooled.client
            if inject_session and request.session_id is not None and not keep_slot:
                client = client.with_options(default_headers={C.SESSION_HEADER: request.session_id})
            request.used_tokens = None
            with self._scope(deadline=now + request.request_timeout) as scope:
                previous = self._enter(request, scope)
                try:
                    result = await fn(client)
                finally:
                    self.active[request] = previous
                succeeded = True
                if keep_slot:
                    request.lease = pooled  # the lease owns slot and client until released
                    holds_slot = False
                else:
                    request.read_usage(result)
                    self.outcomes.attempt_finished(request, pooled, "ok", None, None, self.now())
                return result
            if self._cancelled_all:
                raise self.closed_error(request)
            raise request.error(
                RequestTimeoutError,
                f"attempt exceeded request_timeout={request.request_timeout}s",
                self.now(),
            )
        except BaseException as exc:
            self.health.attempt_failed(request, pooled, exc)
            self.outcomes.end_attempt(request, exc, self.now())
            raise
        finally:
            if retry_in_flight:
                self.health.retrying -= 1
            if pooled is not None and succeeded and pooled.upstream.breaker is not None:
                self.health.answered(request, pooled.upstream)
            if holds_slot:
                if pooled is not None:
                    pooled.in_flight -= 1
                    # A refused attempt (an HTTP error) spent no tokens; others may have.
                    spent_nothing = not succeeded and refused(request)
                    self._settle(request, pooled.upstream, refund=spent_nothing)
                self.scheduler.release()

    async def _queue(self, request: Request) -> None:
        """Wait in the queue for a slot and budget (``try_acquire`` found none).

        Raises:
            QueueFullError: refused or evicted (see ``ConnectionManager.run``).
            QueueTimeoutError: no grant within ``queue_timeout``.
            ManagerClosedError: shutdown cancelled the wait.
        """
        try:
            scheduler = self.scheduler
            retry = request.attempts > 0
            if not retry:
                hook = self.hooks.on_request_queued
                if hook is not None:
                    hook(queued(request, scheduler.queued + 1))
            rank = request.priority.rank
            # With admission="wait", first wait for a place in a full queue; an evicted
            # waiting-mode request waits for a place again (back-pressure, not an error).
            # Inline, not a helper coroutine: one frame less per queued request.
            waits = request.admission == "wait" and not retry
            # The queue timeout is a deadline the scheduler keeps (one timer for all, in the
            # manager's task group), not a cancel scope per waiter; shutdown closes the
            # scheduler, which wakes every waiter.
            deadline = self.now() + request.queue_timeout
            try:
                while True:
                    if waits:
                        await scheduler.wait_for_space(rank, request.seq, deadline=deadline)
                    try:
                        await scheduler.acquire(
                            rank,
                            request.session_key,
                            request.seq,
                            retry=retry,
                            claim=request,
                            deadline=deadline,
                        )
                    except QueueEvicted:
                        if waits:
                            continue
                        raise
                    break
            except QueueFull as exc:
                reason = (
                    "evicted from the full queue to make room for a higher-priority request"
                    if isinstance(exc, QueueEvicted)
                    else "queue full"
                )
                raise request.error(
                    QueueFullError,
                    f"{reason}: max_queue_size={self.config.max_queue_size} reached",
                    self.now(),
                ) from None
            except QueueTimedOut:
                raise request.error(
                    QueueTimeoutError,
                    f"no slot and budget within queue_timeout={request.queue_timeout}s",
                    self.now(),
                ) from None
            except QueueClosed:
                raise self.closed_error(request) from None
        except BaseException as exc:
            request.decision = classify(exc)
            if request.ticket is not None:  # granted with budget, then cancelled
                permit, request.permit = request.permit, None
                request.ticket.budget(request.model).refund(request.tokens, self.now(), permit)
                request.ticket = None
            self.health.end_probe(request)
            raise

    def _pick(self, request: Request) -> PooledClient:
        """The least busy client of the upstream whose budget the grant reserved."""
        pool = self.pool
        assert pool is not None  # set on open; admit refuses work before
        upstream, request.ticket = request.ticket, None
        # With ``upstream`` given, pick ignores cooldowns, so it needs no clock reading.
        pooled = pool.pick(0.0, avoid=request.last_upstream, upstream=upstream)
        assert pooled is not None  # every upstream has a client
        return pooled

    # -- leases ----------------------------------------------------------------------------------

    def lease_first_chunk(self, request: Request) -> None:
        """A lease's stream handed its first event to the caller."""
        self.outcomes.first_chunk(request)

    def release_lease(self, lease: Lease, pooled: PooledClient, exc: BaseException | None) -> None:
        """Give back a lease's slot and client and record how it ended (called once)."""
        request = lease.request
        if exc is None and request.attempt_client is not None:
            self.outcomes.attempt_finished(request, pooled, "ok", None, None, self.now())
        request.lease = None
        pooled.in_flight -= 1
        self._settle(request, pooled.upstream, refund=False)
        self.scheduler.release()
        self.outcomes.finish(request, exc)
        self.leases.discard(lease)
        self._wake_if_idle()
