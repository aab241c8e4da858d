"""Property: under random priorities, sessions, faults, timeouts, cancellations and rate
limits, every request ends in exactly one result or one typed error, and the manager's books
balance.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import anyio
import openai
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from trio.testing import MockClock

from llmpool import (
    ConnectionManager,
    DeadlineExceededError,
    ModelRateLimit,
    PoolConfig,
    QueueFullError,
    QueueTimeoutError,
    RateLimitPolicy,
    RequestTimeoutError,
    RetryPolicy,
)
from llmpool._state import StateStores

from .helpers import client_factory, status_error
from .stores import Hub, SharedHealth

BEHAVIOURS = ["ok", "slow", "flaky", "always-500", "auth", "hang", "hintless-429", "cooling-429"]
EXPECTED_ERRORS = {
    cls.__name__
    for cls in (
        QueueFullError,
        QueueTimeoutError,
        RequestTimeoutError,
        openai.InternalServerError,
        openai.AuthenticationError,
        openai.RateLimitError,
        DeadlineExceededError,
    )
}


@dataclass
class Spec:
    priority: str
    session: str | None
    behaviour: str
    start: float
    cancel_after: float | None
    tokens: int
    deadline: float | None = None  # with_options(deadline=...), units
    admission: str = "reject"


specs = st.lists(
    st.builds(
        Spec,
        priority=st.sampled_from(["high", "normal", "low"]),
        session=st.sampled_from([None, "a", "b", "c"]),
        behaviour=st.sampled_from(BEHAVIOURS),
        # Whole units make events coincide (a grant and a cancellation in the same instant).
        start=st.integers(0, 5).map(float) | st.floats(0, 5),
        cancel_after=st.none() | st.integers(0, 20).map(float) | st.floats(0, 20),
        tokens=st.integers(0, 6),
        deadline=st.none() | st.integers(1, 12).map(float),
        admission=st.sampled_from(["reject", "wait"]),
    ),
    min_size=1,
    max_size=30,
)


# Rate limits per time unit: None (unlimited) or (requests, tokens) per unit.
rates = st.none() | st.tuples(st.integers(1, 3), st.integers(4, 12))


async def scenario(
    requests: list[Spec],
    concurrency: int,
    queue: int,
    unit: float,
    rate: tuple[int, int] | None = None,
    store: str = "memory",
) -> dict[str, Any]:
    """Run every spec through one manager; ``unit`` scales all durations (seconds).

    ``store``: ``"memory"`` (the default stores) or ``"shared-wall"`` (a health store on the
    wall clock, its cooldowns round-tripped through the clock seam, as a shared store's are).
    """
    per_minute = 60.0 / unit
    limits = (
        RateLimitPolicy()
        if rate is None
        else RateLimitPolicy(
            requests_per_minute=round(rate[0] * per_minute),
            tokens_per_minute=round(rate[1] * per_minute),
        )
    )
    config = PoolConfig(
        rate_limit=limits,
        pool_size=2,
        max_concurrency=concurrency,
        max_queue_size=queue,
        queue_timeout=8 * unit,
        request_timeout=4 * unit,
        shutdown_grace=0,
        retry=RetryPolicy(max_attempts=3, initial_backoff=unit, max_backoff=2 * unit, jitter=unit),
    )
    outcomes: dict[int, list[str]] = {i: [] for i in range(len(requests))}
    calls: Counter[int] = Counter()
    returned: Counter[int] = Counter()

    def make_fn(i: int, behaviour: str) -> Any:
        async def fn(client: openai.AsyncOpenAI) -> int:
            calls[i] += 1
            if behaviour == "slow":
                await anyio.sleep(2 * unit)
            elif behaviour == "flaky" and calls[i] == 1:
                raise status_error(503)
            elif behaviour == "cooling-429" and calls[i] == 1:
                # A hint of 2 units: the upstream cools down (through the health store).
                ms = f"{2000 * unit:.0f}"
                raise status_error(429, headers={"retry-after-ms": ms})
            elif behaviour == "hintless-429" and calls[i] <= 2:
                raise status_error(429)  # no hint: opens the upstream's circuit
            elif behaviour == "always-500":
                raise status_error(500)
            elif behaviour == "auth":
                raise status_error(401)
            elif behaviour == "hang":
                await anyio.sleep_forever()
            await anyio.sleep(unit / 10)
            returned[i] += 1
            return i

        return fn

    async def caller(i: int, spec: Spec, m: ConnectionManager) -> None:
        await anyio.sleep(spec.start * unit)
        with anyio.CancelScope() as scope:
            if spec.cancel_after is not None:
                scope.deadline = anyio.current_time() + spec.cancel_after * unit
            try:
                view = m.with_options(
                    priority=spec.priority,
                    session_id=spec.session,
                    deadline=None if spec.deadline is None else spec.deadline * unit,
                    admission="wait" if spec.admission == "wait" else "reject",
                )
                value = await view.run(make_fn(i, spec.behaviour), estimated_tokens=spec.tokens)
                outcomes[i].append("ok" if value == i else f"wrong result {value}")
            except Exception as exc:
                outcomes[i].append(type(exc).__name__)
        if scope.cancelled_caught:
            outcomes[i].append("cancelled")

    stores = StateStores(health=SharedHealth(Hub())) if store == "shared-wall" else StateStores()
    factory = client_factory("http://x.test/v1")
    async with ConnectionManager(config, client_factory=factory, state=stores) as m:
        async with anyio.create_task_group() as tg:
            for i, spec in enumerate(requests):
                tg.start_soon(caller, i, spec, m)
        stats = m.stats()
    return {"outcomes": outcomes, "calls": calls, "returned": returned, "stats": stats}


def check(requests: list[Spec], result: dict[str, Any]) -> None:
    outcomes, calls, returned, stats = (
        result["outcomes"],
        result["calls"],
        result["returned"],
        result["stats"],
    )
    for i, spec in enumerate(requests):
        assert len(outcomes[i]) == 1, f"request {i} ended {outcomes[i]} ({spec})"
        assert outcomes[i][0] in {"ok", "cancelled"} | EXPECTED_ERRORS, outcomes[i]
        assert calls[i] <= 3, "never more attempts than max_attempts"
        if outcomes[i] == ["ok"]:
            assert returned[i] == 1, "a result is produced once"
        if spec.behaviour == "auth":
            assert calls[i] <= 1, "a 401 is never retried"
    final = Counter(o[0] for o in outcomes.values())
    assert stats.active_connections == 0
    assert stats.queued_requests == 0
    assert stats.in_flight_per_client == [0, 0]
    assert stats.completed_requests == final["ok"]
    assert stats.cancelled_requests == final["cancelled"]
    assert stats.failed_requests == sum(n for k, n in final.items() if k not in ("ok", "cancelled"))
    assert stats.rejected_requests == final["QueueFullError"]


@settings(max_examples=60)
@given(requests=specs, concurrency=st.integers(1, 4), queue=st.integers(1, 30), rate=rates)
def test_nothing_lost_or_duplicated_virtual_time(
    requests: list[Spec], concurrency: int, queue: int, rate: tuple[int, int] | None
) -> None:
    """On trio's virtual clock (1 unit = 1 s), every request ends exactly once."""
    result = anyio.run(
        scenario,
        requests,
        concurrency,
        queue,
        1.0,
        rate,
        backend="trio",
        backend_options={"clock": MockClock(autojump_threshold=0)},
    )
    check(requests, result)


@pytest.mark.parametrize("store", ["memory", "shared-wall"])
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@settings(max_examples=15)
@given(requests=specs, concurrency=st.integers(1, 4), queue=st.integers(1, 30), rate=rates)
def test_nothing_lost_or_duplicated_real_time(
    backend: str,
    store: str,
    requests: list[Spec],
    concurrency: int,
    queue: int,
    rate: tuple[int, int] | None,
) -> None:
    """On the real clock (1 unit = 5 ms), every request ends exactly once, on both backends,
    with the in-memory stores and with a wall-clock health store behind the clock seam."""
    result = anyio.run(scenario, requests, concurrency, queue, 0.005, rate, store, backend=backend)
    check(requests, result)


async def stall_before_polls(m: ConnectionManager, rng: random.Random, stalls: list[int]) -> None:
    """Block the event loop for 1-4 ms just before the blocked head waiter's gate re-check
    deadline, again and again (one entry in ``stalls`` per stall)."""
    while True:
        poller = m._engine.scheduler._poller
        at = None if poller is None else poller.poll_at
        if at is None:
            await anyio.sleep(0.001)
            continue
        await anyio.sleep_until(at - rng.uniform(0.0, 0.002))
        time.sleep(rng.uniform(0.001, 0.004))  # noqa: ASYNC251 (a busy callback: the loop stalls)
        stalls.append(1)


async def stalled_run(seed: int, requests: int = 240) -> dict[str, Any]:
    """``requests`` calls paced by a small request bucket (every grant waits on a gate
    re-check), while a staller blocks the event loop for 1-4 ms just before the blocked head
    waiter's re-check deadline: its timeout, finished attempts' releases and new arrivals then
    all come due in one loop iteration, the interleaving that lost wake-ups on asyncio."""
    rng = random.Random(seed)
    config = PoolConfig(
        pool_size=2,
        max_concurrency=4,
        max_queue_size=requests,
        queue_timeout=10.0,
        # 6000 RPM with a 0.05 s bucket: 5 at once, then one every 10 ms.
        rate_limit=RateLimitPolicy(requests_per_minute=6000, burst=0.05),
    )
    delays = [rng.uniform(0.0, 0.006) for _ in range(requests)]
    outcomes: Counter[str] = Counter()

    async def call(i: int, m: ConnectionManager) -> None:
        async def fn(client: openai.AsyncOpenAI) -> int:
            await anyio.sleep(delays[i])
            return i

        await anyio.sleep(delays[-1 - i])
        try:
            outcomes["ok" if await m.run(fn) == i else "wrong"] += 1
        except Exception as exc:
            outcomes[type(exc).__name__] += 1

    stalled: list[int] = []

    started = time.perf_counter()
    async with ConnectionManager(config, client_factory=client_factory()) as m:
        async with anyio.create_task_group() as tg:
            tg.start_soon(stall_before_polls, m, rng, stalled)
            async with anyio.create_task_group() as callers:
                for i in range(requests):
                    callers.start_soon(call, i, m)
            tg.cancel_scope.cancel()
        stats = m.stats()
    return {
        "outcomes": outcomes,
        "stats": stats,
        "stalls": len(stalled),
        "seconds": time.perf_counter() - started,
    }


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_no_lost_wakeup_under_event_loop_stalls(backend: str, seed: int) -> None:
    """Real time, both backends: with the event loop stalled just before gate re-check
    deadlines, every request is granted and completes; none waits out queue_timeout. 240
    requests at 100/s need ~2.4 s; the bound of 8 s leaves 3x margin for a busy machine while
    a single lost wake-up costs the full 10 s queue timeout."""
    result = anyio.run(stalled_run, seed, backend=backend)
    assert result["outcomes"] == Counter({"ok": 240}), result["outcomes"]
    assert result["stalls"] > 20, "the staller must actually have stalled the loop"
    stats = result["stats"]
    assert (stats.completed_requests, stats.total_timeouts, stats.queued_requests) == (240, 0, 0)
    assert result["seconds"] < 8.0, result["seconds"]


async def stalled_admission_run(seed: int, requests: int = 200) -> dict[str, Any]:
    """Like ``stalled_run``, with a queue of 24 that overflows: two models with their own
    budgets, random priorities, LOW callers
    waiting for a place (``admission="wait"``), HIGH and NORMAL evicting the newest LOW,
    random cancellations, while the loop stalls before re-check deadlines."""
    rng = random.Random(seed)
    # Two models with their own budgets ("big" paced harder): waiters of one overtake a head
    # blocked on the other's budget.
    config = PoolConfig(
        pool_size=2,
        max_concurrency=3,
        max_queue_size=24,
        queue_timeout=10.0,
        rate_limit=RateLimitPolicy(
            requests_per_minute=6000,
            burst=0.05,
            models={"big": ModelRateLimit(requests_per_minute=3000)},
        ),
    )
    models = [rng.choice(["big", "small"]) for _ in range(requests)]
    plan = [
        (
            rng.choice(["high", "normal", "low"]),
            rng.random() < 0.5,  # wait for a place when full
            rng.uniform(0.0, 1.5),  # start, seconds
            rng.uniform(0.0, 0.006),  # service time, seconds
            rng.uniform(0.05, 1.0) if rng.random() < 0.1 else None,  # cancel after
        )
        for _ in range(requests)
    ]
    outcomes: dict[int, list[str]] = {i: [] for i in range(requests)}

    async def call(i: int, m: ConnectionManager) -> None:
        priority, wait, start, service, cancel_after = plan[i]

        async def fn(client: openai.AsyncOpenAI) -> int:
            await anyio.sleep(service)
            return i

        await anyio.sleep(start)
        view = m.with_options(priority=priority, admission="wait" if wait else "reject")
        with anyio.CancelScope() as scope:
            if cancel_after is not None:
                scope.deadline = anyio.current_time() + cancel_after
            try:
                outcomes[i].append("ok" if await view.run(fn, model=models[i]) == i else "wrong")
            except Exception as exc:
                outcomes[i].append(type(exc).__name__)
        if scope.cancelled_caught:
            outcomes[i].append("cancelled")

    async with ConnectionManager(config, client_factory=client_factory()) as m:
        async with anyio.create_task_group() as tg:
            tg.start_soon(stall_before_polls, m, rng, [])
            async with anyio.create_task_group() as callers:
                for i in range(requests):
                    callers.start_soon(call, i, m)
            tg.cancel_scope.cancel()
        stats = m.stats()
    return {"outcomes": outcomes, "stats": stats, "plan": plan}


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.parametrize("seed", [1, 2])
def test_full_queue_admission_under_event_loop_stalls(backend: str, seed: int) -> None:
    """Every request ends exactly once: a result, QueueFullError (refused or evicted), or its
    caller's cancellation; no QueueTimeoutError (10 s) ever; the books balance."""
    result = anyio.run(stalled_admission_run, seed, backend=backend)
    outcomes, stats = result["outcomes"], result["stats"]
    for i, ended in outcomes.items():
        assert len(ended) == 1, f"request {i} ended {ended}"
        assert ended[0] in {"ok", "QueueFullError", "cancelled"}, (ended, result["plan"][i])
    final = Counter(o[0] for o in outcomes.values())
    assert final["ok"] > 100
    assert (stats.queued_requests, stats.active_connections, stats.total_timeouts) == (0, 0, 0)
    assert stats.completed_requests == final["ok"]
    assert stats.rejected_requests == final["QueueFullError"]
    assert stats.cancelled_requests == final["cancelled"]
