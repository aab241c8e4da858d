"""``ConnectionManager``: the pool, the scheduler and the retry loop composed.

Life of a request (``run``): admission (open? valid session id? can its tokens ever fit a
configured limit?) -> queue for a slot (priority, sessions, ``queue_timeout``; a full queue
evicts a lower-priority waiter or, with ``admission="wait"``, makes the caller wait for a
place); the grant also reserves the request and token budget of its model on an upstream
whose circuit lets it through and that is not cooling -> pick that upstream's least busy
client -> attempt under ``request_timeout`` -> learn the rate-limit headers, settle the token
estimate with the usage, tell the circuit breaker -> on failure ``classify`` decides; a retry
(within the retry budget) gives the slot back, waits out the server's hint or the backoff (or,
behind an open circuit, waits in the queue), and queues again ahead of later arrivals. A
``deadline`` (``with_options``) bounds the whole. Every path ends in exactly one result or one
exception.

The first attempt runs outside tenacity: building an ``AsyncRetrying`` per call made
``run(no-op)`` cost 60-74 µs of CPU against 25-28 µs without it (docs/performance.md), so the
retry loop is entered only after a failure that ``classify`` says to retry.
"""

from __future__ import annotations

import itertools
import logging
import secrets
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any, Self, TypeVar, cast

import anyio
import anyio.lowlevel
import openai
from tenacity import AsyncRetrying, RetryCallState, stop_after_attempt

from . import _constants as C
from ._config import Admission, CallOptions, PoolConfig, check_admission
from ._errors import (
    DeadlineExceededError,
    ManagerClosedError,
    QueueFullError,
    QueueTimeoutError,
    RequestTimeoutError,
    RequestTooLargeError,
)
from ._facade import ManagerView, PooledChat, PooledResponses, PooledStream
from ._limits import TokenBucket
from ._pool import ClientFactory, ClientPool, PooledClient, Upstream, adapt_factory, default_client
from ._record import (
    CAPTURE,
    AttemptOutcome,
    Capture,
    RequestOutcome,
    RequestRecord,
    annotate_error,
)
from ._redact import DEFAULT_REDACTOR, Redactor
from ._request import Request, validate_session_id
from ._retry import RetryDecision, backoff_strategy, classify
from ._scheduler import QueueEvicted, QueueFull, Scheduler
from ._stats import ConnectionStats, LatencyStats, StatsRecorder, UpstreamLimitStats
from ._types import Priority, PriorityLike

__all__ = ["ConnectionManager"]

T = TypeVar("T")

_NEW, _OPEN, _CLOSING, _CLOSED = "new", "open", "closing", "closed"
_UNWIND_TIMEOUT = 5.0  # seconds allowed for cancelled work to unwind at shutdown


class ConnectionManager:
    """A pool of ``openai.AsyncOpenAI`` clients behind one priority scheduler.

    Use it as an async context manager; all work goes through ``run`` (or the SDK-shaped
    façade built on it: ``manager.responses.create``, ``manager.chat.completions.create``,
    and ``manager.with_options(priority=..., session_id=...)`` for per-call settings)::

        async with llmpool.ConnectionManager() as manager:
            reply = await manager.run(
                lambda client: client.responses.create(model="gpt-5", input="hi"),
                priority="high",
                session_id="terminal-1",
            )

    Args:
        config: pool, admission, timeout and retry settings; ``PoolConfig()`` by default.
        client_factory: ``factory(index) -> AsyncOpenAI`` or ``factory() -> AsyncOpenAI``
            (``ClientFactory``), called once per pool index (0 to ``pool_size - 1``) on
            entering the context; the form is read from its signature, and anything else
            (not callable, two required parameters) raises ``TypeError`` here, at
            construction. The default builds ``AsyncOpenAI(max_retries=0)`` from the
            ``OPENAI_*`` environment variables. A client with ``max_retries != 0`` is replaced
            by a copy with ``max_retries=0``. Clients with the same API key and base URL form
            one upstream (shared cooldown). The manager owns the clients and closes them when
            it closes.
    """

    def __init__(
        self, config: PoolConfig | None = None, *, client_factory: ClientFactory | None = None
    ) -> None:
        self.config = config if config is not None else PoolConfig()
        self._factory = default_client if client_factory is None else adapt_factory(client_factory)
        self._scheduler = Scheduler(
            max_concurrency=self.config.max_concurrency,
            max_queue_size=self.config.max_queue_size,
            starvation_limit=self.config.starvation_limit,
            gate=self._gate,
            gate_key=_budget_key,
        )
        self._stats = StatsRecorder()
        self._state = _NEW
        self._pool: ClientPool | None = None
        self._active: dict[Request, anyio.CancelScope] = {}
        self._streams: set[PooledStream[Any]] = set()
        self._idle: anyio.Event | None = None
        self._cancelled_all = False  # set when shutdown cancels the work still running
        self._retrying = 0  # retry attempts in flight now (the retry budget counts them)
        policy = self.config.rate_limit
        self._tpm_configured = policy.tokens_per_minute is not None or any(
            m.tokens_per_minute is not None for m in policy.models.values()
        )
        self._seq = itertools.count()
        self._tag = secrets.token_hex(3)
        self._opened_at = time.monotonic()
        self._default_view = ManagerView(self, Priority.NORMAL, None, None)
        self._backoff = backoff_strategy(self.config.retry)
        # Set on entry: the event loop's CancelScope class. anyio.CancelScope() and
        # move_on_after() look the backend up (sniffio) on every call; a manager lives in one
        # event loop, so its backend's class is built directly (what anyio does itself).
        self._scope: type[anyio.CancelScope] = anyio.CancelScope
        # Set on entry: the event loop's clock. anyio.current_time() looks the backend up on
        # every call (three per request); on asyncio it is the loop's time(), read directly.
        self._now: Callable[[], float] = anyio.current_time
        self._redactor = DEFAULT_REDACTOR  # on entry: also the clients' API keys

    # -- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._state != _NEW:
            raise RuntimeError(
                f"a ConnectionManager can be entered once; this one is {self._state}"
            )
        self._scope = type(anyio.CancelScope())
        self._now = _loop_clock()
        self._pool = ClientPool(
            [self._factory(i) for i in range(self.config.pool_size)],
            rate_limit=self.config.rate_limit,
            circuit=self.config.circuit,
            now=self._now(),
        )
        self._redactor = Redactor.for_clients(pooled.client for pooled in self._pool.clients)
        self._opened_at = time.monotonic()
        self._state = _OPEN
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the manager (also done by leaving its context).

        Admission stops at once (``ManagerClosedError``). Work already admitted (queued,
        backing off or running, streams included) may finish for up to
        ``config.shutdown_grace`` seconds; what is left then is cancelled and its caller gets
        ``ManagerClosedError``. Then the clients are closed. Runs shielded: cancelling the
        caller does not cut the grace period short. Idempotent.
        """
        if self._state in (_CLOSING, _CLOSED):
            return
        self._state = _CLOSING
        with anyio.CancelScope(shield=True):
            with anyio.move_on_after(self.config.shutdown_grace):
                await self._wait_idle()
            self._cancelled_all = True
            for scope in self._active.values():
                scope.cancel()
            for stream in list(self._streams):
                await stream._abort()
            with anyio.move_on_after(_UNWIND_TIMEOUT):
                await self._wait_idle()
            if self._pool is not None:
                await self._pool.aclose()
        self._state = _CLOSED

    async def _wait_idle(self) -> None:
        while self._active or self._streams:
            self._idle = anyio.Event()
            await self._idle.wait()

    def _forget(self, request: Request) -> None:
        del self._active[request]
        self._wake_if_idle()

    def _wake_if_idle(self) -> None:
        if self._idle is not None and not self._active and not self._streams:
            self._idle.set()

    # -- public API ------------------------------------------------------------------------

    async def run(
        self,
        fn: Callable[[openai.AsyncOpenAI], Awaitable[T]],
        *,
        priority: PriorityLike = Priority.NORMAL,
        session_id: str | None = None,
        estimated_tokens: int = 0,
        model: str | None = None,
    ) -> T:
        """Run ``fn(client)`` on a pooled client under the scheduler, with retries.

        ``fn`` is called once per attempt with a client whose requests carry the
        ``x-session-id`` header when ``session_id`` is given. It should make one API call (or
        consume one stream) and return; it is retried as a whole. If the result has
        ``usage.total_tokens`` (``Response``, ``ChatCompletion``), the token budget is settled
        with it. ``run`` cannot see response headers; the façade (``manager.responses``,
        ``manager.chat``) learns rate limits from them.

        Args:
            fn: ``async (AsyncOpenAI) -> T``.
            priority: ``Priority`` or ``"high"`` / ``"normal"`` / ``"low"``; default normal.
            session_id: the caller's session (terminal, user…): round-robin fairness between
                sessions, FIFO within one; sent upstream as ``x-session-id``. 1-128 printable
                ASCII characters, or ``None`` (requests without one share a session).
            estimated_tokens: tokens the call will use (prompt + output), charged to the
                tokens-per-minute budget at admission; default 0 (not counted until usage).
            model: the model ``fn`` calls, for the per-model rate limits (OpenAI's limits are
                per model); default ``None``: the budget of calls whose model is not known.

        Returns:
            What ``fn`` returned.

        Raises:
            QueueFullError: the queue already holds ``max_queue_size`` requests (and none of
                lower priority to evict), or this request was evicted for a higher-priority
                one; with ``admission="wait"`` only when the queue stays full.
            RequestTooLargeError: ``estimated_tokens`` exceed the configured per-minute token
                limit of ``model`` on every upstream.
            QueueTimeoutError: no slot within ``queue_timeout`` seconds (also while waiting
                for the upstream's circuit breaker).
            RequestTimeoutError: the last attempt ran longer than ``request_timeout`` seconds.
            ManagerClosedError: the manager is not open, or closed before the request finished.
            InvalidSessionIdError: ``session_id`` is malformed.
            ValueError: ``priority`` is not a priority.
            openai.APIError: the API's error when it is not retried or retries ran out,
                unchanged (e.g. ``openai.AuthenticationError``, ``openai.RateLimitError``).
        """
        request = self._admit(priority, session_id, estimated_tokens, model)
        return await self._execute(request, fn, inject_session=True)

    def with_options(
        self,
        *,
        priority: PriorityLike = Priority.NORMAL,
        session_id: str | None = None,
        max_attempts: int | None = None,
        queue_timeout: float | None = None,
        request_timeout: float | None = None,
        deadline: float | None = None,
        admission: Admission | None = None,
    ) -> ManagerView:
        """A view of this manager whose calls use these settings.

        The view has ``run``, ``responses.create`` and ``chat.completions.create``, like the
        manager. Nothing is copied: it is cheap to build per call. ``None`` keeps the
        manager's setting (``PoolConfig``); the values are validated like the config's.

        Args:
            priority: ``Priority`` or ``"high"`` / ``"normal"`` / ``"low"``; default normal.
            session_id: the caller's session (see ``run``); default none.
            max_attempts: attempts in all, 1-100 (``RetryPolicy.max_attempts``).
            queue_timeout: longest wait for a slot, per attempt, seconds (> 0).
            request_timeout: longest single attempt, seconds (> 0).
            deadline: total seconds for each call (> 0): queueing, every attempt and every
                backoff; when it passes the call raises ``DeadlineExceededError``. Default none.
            admission: ``"reject"`` or ``"wait"`` when the queue is full
                (``PoolConfig.admission``).

        Raises:
            InvalidSessionIdError: ``session_id`` is malformed.
            ValueError: ``priority`` is not a priority.
            pydantic.ValidationError: an option is out of its bounds (names the option).
            ValueError: ``admission="wait"`` with ``max_queue_size=0``.
        """
        options = None
        if (max_attempts, queue_timeout, request_timeout, deadline, admission) != (None,) * 5:
            options = CallOptions(
                max_attempts=max_attempts,
                queue_timeout=queue_timeout,
                request_timeout=request_timeout,
                deadline=deadline,
                admission=admission,
            )
            check_admission(admission, self.config.max_queue_size)
        return ManagerView(self, Priority.parse(priority), validate_session_id(session_id), options)

    @property
    def responses(self) -> PooledResponses:
        """``responses.create(...)`` at normal priority, no session; see ``with_options``."""
        return self._default_view.responses

    @property
    def chat(self) -> PooledChat:
        """``chat.completions.create(...)`` at normal priority, no session."""
        return self._default_view.chat

    def stats(self) -> ConnectionStats:
        """An immutable snapshot of counters, queue depths and latency percentiles.

        Safe to call at any time, also before entering and after leaving the context. Called
        outside the event loop's thread it reports ``cooling_upstreams=0`` (cooldowns are
        kept on the event loop's clock).
        """
        high, normal, low = self._scheduler.queue_depths()
        pool = self._pool
        now = _loop_time()
        s = self._stats
        return ConnectionStats(
            active_connections=self._scheduler.in_use,
            queued_requests=self._scheduler.queued,
            completed_requests=s.completed,
            failed_requests=s.failed,
            total_timeouts=s.timeouts,
            retries=s.retries,
            rejected_requests=s.rejected,
            cancelled_requests=s.cancelled,
            queue_depth={"high": high, "normal": normal, "low": low},
            in_flight_per_client=[] if pool is None else [c.in_flight for c in pool.clients],
            cooling_upstreams=0
            if pool is None or now is None
            else sum(1 for u in pool.upstreams if u.cooling(now)),
            open_circuits=0
            if pool is None
            else sum(1 for u in pool.upstreams if u.breaker is not None and not u.breaker.closed),
            retry_budget_refusals=s.budget_refusals,
            rate_limits=[] if pool is None or now is None else _limit_stats(pool, now),
            queue_wait=LatencyStats.of(s.queue_wait),
            latency=LatencyStats.of(s.latency),
            timestamp=StatsRecorder.now_utc(),
            uptime=time.monotonic() - self._opened_at,
        )

    # -- the request path --------------------------------------------------------------------

    def _admit(
        self,
        priority: PriorityLike,
        session_id: str | None,
        tokens: int = 0,
        model: str | None = None,
        options: CallOptions | None = None,
    ) -> Request:
        prio = Priority.parse(priority)
        sid = validate_session_id(session_id)
        if not isinstance(tokens, int) or tokens < 0:
            raise ValueError(f"estimated_tokens must be an int >= 0, got {tokens!r}")
        if model is not None and not isinstance(model, str):
            raise ValueError(f"model must be a string or None, got {type(model).__name__}")
        seq = next(self._seq)
        now = self._now()
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
        )
        if options is not None:
            _apply(request, options, now)
        request.redactor = self._redactor  # what it logs hides the API keys
        if self._state != _OPEN:
            self._stats.failed += 1
            reason = "not open yet" if self._state == _NEW else "closed"
            raise request.error(
                ManagerClosedError, f"the manager is {reason}", request.submitted_at
            )
        if tokens:
            self._check_fits(request)
        return request

    def _check_fits(self, request: Request) -> None:
        pool = self._pool
        assert pool is not None
        limits = [u.budget(request.model) for u in pool.upstreams]
        if all(limit.never_fits(request.tokens) for limit in limits):
            largest = max(tpm for limit in limits if (tpm := limit.configured[1]) is not None)
            self._stats.rejected += 1
            self._stats.failed += 1
            error = RequestTooLargeError(
                f"estimated {request.tokens} tokens exceed the configured tokens-per-minute "
                f"limit ({largest}) of every upstream; it could never be admitted",
                tokens=request.tokens,
                limit=largest,
                request_id=request.id,
                session_id=request.session_id,
                priority=request.priority.value,
                waited=0.0,
            )
            request.log(logging.WARNING, "failed", str(error), error="RequestTooLargeError")
            raise error

    def _gate(self, request: Request) -> float:
        """The scheduler's budget check: reserve ``request``'s budget on an upstream."""
        pool = self._pool
        assert pool is not None
        upstream, wait = pool.reserve(
            request.tokens, self._now, avoid=request.last_upstream, model=request.model
        )
        if upstream is None:
            return wait
        request.ticket = upstream
        breaker = upstream.breaker
        if breaker is not None and not breaker.closed and breaker.admit():
            request.probe = upstream  # the half-open circuit's one probe
            request.log(logging.INFO, "probe", f"{upstream.label}: half-open, probing")
        return 0.0

    def _tokens_limited(self) -> bool:
        """Whether any upstream has a token budget (the façade then estimates tokens)."""
        pool = self._pool
        if pool is None:
            return False
        return self._tpm_configured or any(
            b.tokens is not None for u in pool.upstreams for b in u.budgets.values()
        )

    def _learn(
        self, upstream: Upstream, headers: Mapping[str, str], model: str | None = None
    ) -> None:
        """Take ``model``'s limits and budget left from a response's ``x-ratelimit-*`` headers."""
        upstream.budget(model).learn(headers, self._now())

    def _settle(self, request: Request, upstream: Upstream, *, refund: bool) -> None:
        """Correct the attempt's token reservation: with the usage seen, or refunded."""
        if request.tokens == 0 and request.used_tokens is None:
            return
        actual = 0 if refund else request.used_tokens
        if actual is None:
            return  # no usage reported: the estimate stands
        upstream.budget(request.model).settle(request.tokens, actual, self._now())
        if actual < request.tokens:
            self._scheduler.kick()

    async def _execute(
        self,
        request: Request,
        fn: Callable[[openai.AsyncOpenAI], Awaitable[T]],
        *,
        inject_session: bool,
        keep_slot: bool = False,
    ) -> T:
        scope = (
            self._scope() if request.deadline is None else self._scope(deadline=request.deadline)
        )
        self._active[request] = scope
        capture = request.capture = CAPTURE.get()  # capture_requests() blocks, a stream's mark
        if capture is not None and capture.inner is not None:
            capture.inner.append(request)  # an open of a recovering stream, which records itself
        try:
            with scope:
                result = await self._with_retries(request, fn, inject_session, keep_slot)
                if not keep_slot:
                    self._record_success(request)
                return result
            if not self._cancelled_all and request.deadline is not None:
                # The scope's own deadline (only shutdown cancels it otherwise).
                total = request.deadline - request.submitted_at
                raise request.error(
                    DeadlineExceededError,
                    f"the call's deadline of {total:g}s passed",
                    self._now(),
                ) from request.last_error
            # Otherwise the manager cancelled it: at shutdown, after the grace period.
            raise request.error(
                ManagerClosedError,
                "the manager closed before the request finished",
                self._now(),
            )
        except BaseException as exc:
            self._record_failure(request, exc)
            raise
        finally:
            self._forget(request)

    async def _with_retries(
        self,
        request: Request,
        fn: Callable[[openai.AsyncOpenAI], Awaitable[T]],
        inject_session: bool,
        keep_slot: bool,
    ) -> T:
        try:
            return await self._attempt(request, fn, inject_session, keep_slot)
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
        async for attempt in retrying:
            with attempt:
                if first_failure is not None:
                    failure, first_failure = first_failure, None
                    raise failure
                result = await self._attempt(request, fn, inject_session, keep_slot)
        return result

    def _wait(self, request: Request, state: RetryCallState) -> float:
        if self._held_by_circuit(request):
            return 0.0  # wait in the queue, where the circuit holds it (queue_timeout applies)
        decision = request.decision
        if decision is not None and decision.delay is not None:
            pool = self._pool
            healthy_elsewhere = (
                decision.cooldown
                and pool is not None
                and pool.pick(self._now(), avoid=request.last_upstream, peek=True) is not None
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
                and self._may_retry(request)
            )

        return retry

    def _before_sleep(self, request: Request, state: RetryCallState) -> None:
        self._stats.retries += 1
        decision = request.decision
        seconds = state.upcoming_sleep
        reason = "" if decision is None else decision.reason
        request.log(
            logging.INFO,
            "retrying",
            f"{reason}; retrying in {seconds:.3f}s",
            delay=seconds,
            reason=reason,
        )

    async def _attempt(
        self,
        request: Request,
        fn: Callable[[openai.AsyncOpenAI], Awaitable[T]],
        inject_session: bool,
        keep_slot: bool,
    ) -> T:
        try:
            await self._acquire(request)
        except BaseException as exc:
            request.decision = classify(exc)
            if request.ticket is not None:  # granted with budget, then cancelled
                request.ticket.budget(request.model).refund(request.tokens, self._now())
                request.ticket = None
            self._end_probe(request)
            raise
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
                self._retrying += 1
            now = self._now()
            request.attempt_client, request.attempt_started = pooled, now  # for its record
            if request.attempts == 1:  # queue wait: submission to first attempt, cooldowns included
                self._stats.queue_wait.append(now - request.submitted_at)
            request.log(
                logging.DEBUG,
                "executing",
                f"attempt {request.attempts} on client {pooled.index}",
                client=pooled.index,
            )
            client = pooled.client
            if inject_session and request.session_id is not None:
                client = client.with_options(default_headers={C.SESSION_HEADER: request.session_id})
            request.used_tokens = None
            with self._scope(deadline=now + request.request_timeout):
                result = await fn(client)
                succeeded = True
                if keep_slot:
                    request.lease = pooled  # the stream owns slot and client until it ends
                    holds_slot = False
                else:
                    request.used_tokens = _usage_tokens(result, request.used_tokens)
                return result
            self._stats.timeouts += 1
            raise request.error(
                RequestTimeoutError,
                f"attempt exceeded request_timeout={request.request_timeout}s",
                self._now(),
            )
        except BaseException as exc:
            self._on_attempt_failure(request, pooled, exc)
            self._end_attempt(request, exc, self._now())
            raise
        finally:
            if retry_in_flight:
                self._retrying -= 1
            if pooled is not None and succeeded and pooled.upstream.breaker is not None:
                self._upstream_answered(request, pooled.upstream)
            if holds_slot:
                if pooled is not None:
                    pooled.in_flight -= 1
                    # A refused attempt (an HTTP error) spent no tokens; others may have.
                    refused = not succeeded and _refused(request)
                    self._settle(request, pooled.upstream, refund=refused)
                self._scheduler.release()

    async def _acquire(self, request: Request) -> None:
        scheduler = self._scheduler
        retry = request.attempts > 0
        if not scheduler.try_acquire(request):
            if not retry:
                request.log(logging.DEBUG, "queued", f"queued ({scheduler.queued + 1} waiting)")
            rank = request.priority.rank
            # With admission="wait", first wait for a place in a full queue; an evicted
            # waiting-mode request waits for a place again (back-pressure, not an error).
            # Inline, not a helper coroutine: one frame less per queued request.
            waits = request.admission == "wait" and not retry
            with anyio.move_on_after(request.queue_timeout) as scope:
                try:
                    while True:
                        if waits:
                            await scheduler.wait_for_space(rank, request.seq)
                        try:
                            await scheduler.acquire(
                                rank, request.session_key, request.seq, retry=retry, claim=request
                            )
                        except QueueEvicted:
                            if waits:
                                continue
                            raise
                        break
                except QueueFull as exc:
                    self._stats.rejected += 1
                    reason = (
                        "evicted from the full queue to make room for a higher-priority request"
                        if isinstance(exc, QueueEvicted)
                        else "queue full"
                    )
                    raise request.error(
                        QueueFullError,
                        f"{reason}: max_queue_size={self.config.max_queue_size} reached",
                        self._now(),
                    ) from None
            if scope.cancelled_caught:
                self._stats.timeouts += 1
                raise request.error(
                    QueueTimeoutError,
                    f"no slot and budget within queue_timeout={request.queue_timeout}s",
                    self._now(),
                )

    def _upstream_answered(self, request: Request, upstream: Upstream) -> None:
        """An answer that is not a failure: the upstream's circuit closes."""
        request.probe = None
        breaker = upstream.breaker
        if breaker is not None and breaker.record_success():
            request.log(logging.INFO, "circuit_closed", f"{upstream.label}: circuit closed")
            self._scheduler.kick()

    def _upstream_failed(
        self, request: Request, upstream: Upstream, decision: RetryDecision
    ) -> None:
        """A failure that tells about the upstream's health: the circuit breaker counts it."""
        probe, request.probe = request.probe is upstream, None
        breaker = upstream.breaker
        if breaker is None or decision.breaker is None:
            return
        if breaker.record_failure(decision.breaker, self._now(), probe=probe):
            seconds = breaker.open_until - self._now()
            request.log(
                logging.WARNING,
                "circuit_open",
                f"{upstream.label}: circuit open for {seconds:.3f}s ({decision.reason})",
                delay=seconds,
                reason=decision.reason,
            )
            if probe:
                # A failed probe goes behind the other retries of its class, so the next
                # probe is another request's and no single caller spends its attempts on them.
                request.seq = next(self._seq)
            self._scheduler.kick()  # waiters blocked on the probe see the new cooldown

    def _end_probe(self, request: Request) -> None:
        """A probe that got no answer (cancelled, local error): the next request may probe."""
        upstream, request.probe = request.probe, None
        if (
            upstream is not None
            and upstream.breaker is not None
            and upstream.breaker.abandon_probe()
        ):
            self._scheduler.kick()

    def _held_by_circuit(self, request: Request) -> bool:
        """Whether the request's last failure left its upstream's circuit open or half-open."""
        decision, upstream = request.decision, request.last_upstream
        return (
            decision is not None
            and decision.breaker is not None
            and upstream is not None
            and upstream.breaker is not None
            and not upstream.breaker.closed
        )

    def _may_retry(self, request: Request) -> bool:
        """The retry budget (Envoy's ``retry_budget``): may this request retry now?

        Allowed while fewer than ``max(min_retry_concurrency, budget_percent% of active
        requests)`` retry attempts are in flight (sent and unanswered), Envoy's "active
        retries". A request whose upstream's circuit is open waits for it in the queue and
        sends nothing meanwhile: it is not refused.
        """
        policy = self.config.retry
        allowed = max(
            policy.min_retry_concurrency, policy.budget_percent / 100.0 * len(self._active)
        )
        if self._retrying < allowed or self._held_by_circuit(request):
            return True
        self._stats.budget_refusals += 1
        request.log(
            logging.INFO,
            "retry_budget",
            f"not retried: {self._retrying} retries in flight, the budget allows {allowed:g}",
        )
        return False

    def _pick(self, request: Request) -> PooledClient:
        """The least busy client of the upstream whose budget the grant reserved."""
        pool = self._pool
        assert pool is not None  # set on entry; _admit refuses work before
        upstream, request.ticket = request.ticket, None
        # With ``upstream`` given, pick ignores cooldowns, so it needs no clock reading.
        pooled = pool.pick(0.0, avoid=request.last_upstream, upstream=upstream)
        assert pooled is not None  # every upstream has a client
        return pooled

    def _on_attempt_failure(
        self, request: Request, pooled: PooledClient | None, exc: BaseException
    ) -> None:
        decision = classify(exc, max_retry_after=self.config.retry.max_retry_after)
        request.decision = decision
        if isinstance(exc, Exception):
            request.last_error = exc
        if pooled is None:
            self._end_probe(request)
            return
        upstream = pooled.upstream
        request.last_upstream = upstream
        response = getattr(exc, "response", None)
        if isinstance(exc, openai.APIStatusError) and response is not None:
            self._learn(upstream, response.headers, request.model)
        if decision.breaker is not None:
            self._upstream_failed(request, upstream, decision)
        elif decision.status is not None:
            self._upstream_answered(request, upstream)  # a 4xx: the upstream is up
        else:
            self._end_probe(request)  # cancelled or a local error: no news
        if decision.cooldown and decision.delay is not None:
            ClientPool.cool_down(pooled.upstream, self._now() + decision.delay)
            request.log(
                logging.INFO,
                "cooldown",
                f"{pooled.upstream.label} cooling for {decision.delay:.3f}s",
                delay=decision.delay,
            )

    async def _open_stream(
        self, request: Request, fn: Callable[[openai.AsyncOpenAI], Awaitable[T]]
    ) -> T:
        """Open a stream like ``run`` opens a call, keeping the slot: see ``PooledStream``."""
        return await self._execute(request, fn, inject_session=False, keep_slot=True)

    def _track_stream(self, stream: PooledStream[T]) -> PooledStream[T]:
        self._streams.add(stream)
        return stream

    def _end_stream(self, stream: PooledStream[Any], exc: BaseException | None) -> None:
        """Give back a stream's slot and client and record how it ended (called once)."""
        request = stream.request
        pooled = request.lease
        request.lease = None
        if pooled is not None:
            pooled.in_flight -= 1
            self._settle(request, pooled.upstream, refund=False)
            self._scheduler.release()
        if exc is None:
            self._record_success(request)
        else:
            self._record_failure(request, exc)
        self._streams.discard(stream)
        self._wake_if_idle()

    # -- outcomes ------------------------------------------------------------------------------

    # A request whose ``capture.inner`` is set is an open of a recovering stream: its outcome
    # is logged but neither counted nor published; the stream does both once, when it ends.

    def _record_success(self, request: Request) -> None:
        now = request.ended_at = self._now()
        request.outcome = "completed"
        request.log(logging.DEBUG, "completed", "completed", seconds=now - request.submitted_at)
        capture = request.capture
        if capture is not None:
            if capture.inner is not None:
                return
            self._publish(request, capture)
        self._stats.completed += 1
        self._stats.latency.append(now - request.submitted_at)

    def _record_failure(self, request: Request, exc: BaseException) -> None:
        now = request.ended_at = self._now()
        self._end_attempt(request, exc, now)  # a stream's attempt ends with the stream
        cancelled = isinstance(exc, anyio.get_cancelled_exc_class())
        request.outcome = "cancelled" if cancelled else "failed"
        kind = request.failure = type(exc).__name__
        if cancelled:
            request.log(logging.DEBUG, "cancelled", "cancelled by the caller")
        else:
            request.log(logging.WARNING, "failed", f"{kind}: {exc}", error=kind)
        capture = request.capture
        if capture is not None:
            if capture.inner is not None:
                return
            self._publish(request, capture)
        if isinstance(exc, openai.OpenAIError):  # propagates unchanged: say which request
            annotate_error(exc, request.id, request.attempts)
        if cancelled:
            self._stats.cancelled += 1
        else:
            self._stats.failed += 1

    def _end_attempt(self, request: Request, exc: BaseException, now: float) -> None:
        """Close the request's open attempt, if any, with how ``exc`` ended it."""
        if request.attempt_client is None:
            return
        outcome: AttemptOutcome = "error"
        if isinstance(exc, anyio.get_cancelled_exc_class()):
            outcome = "cancelled"
        elif isinstance(exc, RequestTimeoutError):
            outcome = "timeout"
        status = exc.status_code if isinstance(exc, openai.APIStatusError) else None
        request.end_attempt(now, outcome, status, type(exc).__name__)

    def _record_stream(
        self,
        outcome: RequestOutcome | None,
        latency: float,
        record: RequestRecord | None,
        capture: Capture | None,
        exc: BaseException | None,
    ) -> None:
        """A recovering stream's one outcome (its opens were not counted; see ``_streams``).

        ``outcome`` is ``None`` when the stream's last open was refused at submission, which
        counted the failure already; ``record`` is ``None`` when no open reached the manager.
        """
        if record is not None:
            if capture is not None:
                capture.publish(record)
            if isinstance(exc, openai.OpenAIError):
                annotate_error(exc, record.request_id, len(record.attempts))
        if outcome == "completed":
            self._stats.completed += 1
            self._stats.latency.append(latency)
        elif outcome == "failed":
            self._stats.failed += 1
        elif outcome == "cancelled":
            self._stats.cancelled += 1

    def _stream_retried(self) -> None:
        """A recovering stream retries or rebuilds (its own, not an open's retry)."""
        self._stats.retries += 1

    @staticmethod
    def _publish(request: Request, capture: Capture) -> None:
        record = request.record()
        assert record is not None  # the outcome is set before publishing
        capture.publish(record)


def _budget_key(request: Request) -> str | None:
    """The budget a queued request draws on, for the scheduler: its model's."""
    return request.model


def _apply(request: Request, options: CallOptions, now: float) -> None:
    """Per-call overrides (``with_options``) on a new request."""
    if options.max_attempts is not None:
        request.max_attempts = options.max_attempts
    if options.queue_timeout is not None:
        request.queue_timeout = options.queue_timeout
    if options.request_timeout is not None:
        request.request_timeout = options.request_timeout
    if options.deadline is not None:
        request.deadline = now + options.deadline
    if options.admission is not None:
        request.admission = options.admission


def _loop_clock() -> Callable[[], float]:
    """The running event loop's clock, as ``anyio.current_time`` reads it.

    Without anyio's per-call backend lookup: asyncio's ``loop.time`` or ``trio.current_time``
    (trio's own clock, ``MockClock`` included); ``anyio.current_time`` elsewhere.
    """
    token = anyio.lowlevel.current_token().native_token
    loop_time = getattr(token, "time", None)  # asyncio: the token is the loop
    if callable(loop_time):
        return cast(Callable[[], float], loop_time)
    trio = sys.modules.get("trio")
    if trio is not None and type(token).__module__.startswith("trio"):
        return cast(Callable[[], float], trio.current_time)
    return anyio.current_time


def _loop_time() -> float | None:
    """The event loop's clock, or ``None`` when no event loop runs in this thread."""
    try:
        return anyio.current_time()
    except Exception:  # sniffio.AsyncLibraryNotFoundError or a backend's "no loop" error
        return None


def _limit_stats(pool: ClientPool, now: float) -> list[UpstreamLimitStats]:
    stats = []
    for upstream in pool.upstreams:
        for model, budget in upstream.budgets.items():
            requests, tokens = budget.requests, budget.tokens
            if requests is None and tokens is None:
                continue
            stats.append(_budget_stats(upstream, model, requests, tokens, now))
    return stats


def _budget_stats(
    upstream: Upstream,
    model: str | None,
    requests: TokenBucket | None,
    tokens: TokenBucket | None,
    now: float,
) -> UpstreamLimitStats:
    return UpstreamLimitStats(
        upstream=upstream.label,
        model=model,
        requests_per_minute=None if requests is None else requests.limit,
        tokens_per_minute=None if tokens is None else tokens.limit,
        requests_available=None if requests is None else requests.available(now),
        tokens_available=None if tokens is None else tokens.available(now),
    )


def _usage_tokens(result: object, seen: int | None) -> int | None:
    """``result.usage.total_tokens`` if it is an int, else what was seen before."""
    total = getattr(getattr(result, "usage", None), "total_tokens", None)
    return total if isinstance(total, int) else seen


def _refused(request: Request) -> bool:
    """Whether the last attempt was answered with an HTTP error (no tokens generated)."""
    decision = request.decision
    return decision is not None and decision.status is not None
