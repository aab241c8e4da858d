"""``ConnectionManager``: lifecycle, configuration and the public API over the engine.

The request path (admission, queue, attempts, retries, leases) is ``_engine``'s; the manager
builds the engine, opens and closes it with its context (and the task group that background
work runs in), and offers ``run``, ``lease``, the SDK-shaped façade (``_facade``), instruments
and ``stats()``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Self, TypeVar

import anyio
import openai

from ._clock import loop_time
from ._config import Admission, CallOptions, PoolConfig, check_admission
from ._engine import Engine, Lifecycle
from ._facade import ManagerView, PooledChat, PooledEmbeddings, PooledResponses
from ._lease import Lease
from ._limits import TokenBucket
from ._pool import ClientFactory, ClientPool, Upstream, adapt_factory, default_client
from ._request import validate_session_id
from ._state import ClockSeam, StateStores
from ._stats import ConnectionStats, LatencyStats, StatsRecorder, UpstreamLimitStats
from ._types import Priority, PriorityLike

__all__ = ["ConnectionManager"]

T = TypeVar("T")


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
        instruments: objects receiving llmpool's events (``llmpool.instrumentation``):
            each defines some ``on_*`` hooks of ``Instrument``. Default none; more can be
            added with ``add_instrument``.
        state: where rate-limit budgets, cooldowns and circuit breakers (and conversations,
            for the server) live: ``StateStores`` of in-memory stores by default; a shared
            store (``llmpool.redis``) spreads them over several processes. Stores with
            background work run in the manager's task group while it is open.

    Raises:
        TypeError: ``client_factory`` has an unusable signature, or an instrument defines
            no hook.
        ValueError: an instrument is given twice.
    """

    def __init__(
        self,
        config: PoolConfig | None = None,
        *,
        client_factory: ClientFactory | None = None,
        instruments: Iterable[object] = (),
        state: StateStores | None = None,
    ) -> None:
        self.config = config if config is not None else PoolConfig()
        factory = default_client if client_factory is None else adapt_factory(client_factory)
        self._engine = Engine(self.config, factory, instruments, state)
        self._opened_at = time.monotonic()
        self._default_view = ManagerView(self._engine, Priority.NORMAL, None, None)
        self._task_group: anyio.abc.TaskGroup | None = None

    # -- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        engine = self._engine
        if engine.state != Lifecycle.NEW:
            raise RuntimeError(
                f"a ConnectionManager can be entered once; this one is {engine.state}"
            )
        # The manager's task group lives from here to __aexit__: background work (state
        # stores reconciling, timers) runs in it, never as a fire-and-forget task.
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group = task_group
        engine.open()
        seam = ClockSeam(engine.now)
        stores = engine.stores
        stores.budgets.attach(seam, engine.scheduler.kick)
        stores.health.attach(seam)
        # One timer enforces every queued request's queue_timeout (not a scope per waiter).
        task_group.start_soon(engine.scheduler.run_timer, name="llmpool queue timer")
        task_group.start_soon(stores.budgets.run, name="llmpool budget store")
        task_group.start_soon(stores.health.run, name="llmpool health store")
        self._opened_at = time.monotonic()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self.aclose()
        finally:
            task_group, self._task_group = self._task_group, None
            if task_group is not None:
                task_group.cancel_scope.cancel()  # background work ends with the manager
                # The block's own exception propagates unchanged (never in an exception
                # group); a cancellation is handed over, so a scope swallows its own.
                if isinstance(exc, anyio.get_cancelled_exc_class()):
                    await task_group.__aexit__(exc_type, exc, tb)
                else:
                    await task_group.__aexit__(None, None, None)

    async def aclose(self) -> None:
        """Close the manager (also done by leaving its context).

        Admission stops at once (``ManagerClosedError``). Work already admitted (queued,
        backing off or running, streams and leases included) may finish for up to
        ``config.shutdown_grace`` seconds; what is left then is cancelled and its caller gets
        ``ManagerClosedError``. Then the clients are closed. Runs shielded: cancelling the
        caller does not cut the grace period short. Idempotent.
        """
        if self._engine.state in (Lifecycle.CLOSING, Lifecycle.CLOSED):
            return
        await self._engine.close()

    # -- instruments -----------------------------------------------------------------------

    def add_instrument(self, instrument: object) -> None:
        """Register an instrument (see ``llmpool.instrumentation``); it gets later events.

        Raises:
            TypeError: it defines none of ``Instrument``'s ``on_*`` hooks.
            ValueError: it is already registered.
        """
        self._engine.hooks.add(instrument)

    def remove_instrument(self, instrument: object) -> None:
        """Unregister an instrument added with ``instruments=`` or ``add_instrument``.

        Raises:
            ValueError: it is not registered, or it is one of the manager's own (logging,
                ``stats()``).
        """
        engine = self._engine
        if instrument is engine.logging or instrument is engine.stats:
            raise ValueError("the manager's own logging and stats instruments stay registered")
        engine.hooks.remove(instrument)

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
        engine = self._engine
        request = engine.admit(priority, session_id, estimated_tokens, model)
        return await engine.execute(request, fn, True)

    def lease(
        self,
        *,
        priority: PriorityLike = Priority.NORMAL,
        session_id: str | None = None,
        model: str | None = None,
        estimated_tokens: int = 0,
    ) -> AbstractAsyncContextManager[Lease]:
        """Hold one concurrency slot and one pooled client for a long-lived operation.

        ``async with manager.lease(priority="high", session_id="ws-7") as lease:`` waits in
        the same queue as ``run``, under the same rules (priority, fairness between sessions,
        rate-limit budgets of ``model``, cooldowns and circuit breakers, ``queue_timeout``,
        a full queue), then holds the slot and ``lease.client`` until the block exits: a
        WebSocket's life, a relay session, a batch of calls made directly on the client.
        Calls made on ``lease.client`` are not retried, paced or counted by llmpool (the
        lease is the one request); ``lease.learn(headers)`` and ``lease.record_usage(...)``
        feed what they saw back to the budgets. ``request_timeout`` does not apply to a
        lease; a ``deadline`` (``with_options``) does. The lease counts in ``stats()`` as
        one request: completed when the block exits normally, failed or cancelled with
        what the block raised.

        Args:
            priority: ``Priority`` or ``"high"`` / ``"normal"`` / ``"low"``; default normal.
            session_id: the caller's session (see ``run``); sent as ``x-session-id`` by
                ``lease.client``.
            model: the model the lease's calls use, for its rate-limit budgets.
            estimated_tokens: tokens charged to the per-minute budget on grant; default 0.

        Returns:
            An async context manager yielding the ``Lease``.

        Raises:
            QueueFullError: the queue is full (see ``run``).
            QueueTimeoutError: no slot within ``queue_timeout`` seconds.
            RequestTooLargeError: ``estimated_tokens`` can never fit a configured limit.
            ManagerClosedError: the manager is not open, or shutdown ended the lease after
                the grace period (raised from the ``async with`` block).
            InvalidSessionIdError: ``session_id`` is malformed.
            ValueError: ``priority`` is not a priority.
        """
        return self._default_view.lease(
            priority=priority, session_id=session_id, model=model, estimated_tokens=estimated_tokens
        )

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
        return ManagerView(
            self._engine, Priority.parse(priority), validate_session_id(session_id), options
        )

    @property
    def responses(self) -> PooledResponses:
        """``responses.create`` / ``responses.parse`` at normal priority, no session."""
        return self._default_view.responses

    @property
    def chat(self) -> PooledChat:
        """``chat.completions.create`` / ``.parse`` at normal priority, no session."""
        return self._default_view.chat

    @property
    def embeddings(self) -> PooledEmbeddings:
        """``embeddings.create`` at normal priority, no session."""
        return self._default_view.embeddings

    def stats(self) -> ConnectionStats:
        """An immutable snapshot of counters, queue depths and latency percentiles.

        Safe to call at any time, also before entering and after leaving the context. Called
        outside the event loop's thread it reports ``cooling_upstreams=0`` (cooldowns are
        kept on the event loop's clock).
        """
        engine = self._engine
        scheduler = engine.scheduler
        high, normal, low = scheduler.queue_depths()
        pool = engine.pool
        now = loop_time()
        s: StatsRecorder = engine.stats
        return ConnectionStats(
            active_connections=scheduler.in_use,
            queued_requests=scheduler.queued,
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
