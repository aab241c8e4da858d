"""ConnectionManager timing rules on trio's MockClock (autojump): virtual time, exact and
instant. Queue and request timeouts, backoff, Retry-After, cooldowns and the shutdown grace.
"""

from __future__ import annotations

import itertools
from typing import Any

import anyio
import openai
import pytest
from trio.testing import MockClock

from llmpool import (
    ConnectionManager,
    LLMPoolError,
    PoolConfig,
    QueueTimeoutError,
    RequestTimeoutError,
)

from .helpers import client_factory, status_error
from .test_manager import NO_JITTER, Gate, manager

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    """Trio with a fresh virtual clock per test: time jumps whenever every task is blocked."""
    return ("trio", {"clock": MockClock(autojump_threshold=0)})


async def test_queue_timeout() -> None:
    """A request that waits longer than queue_timeout fails with QueueTimeoutError and its
    place is freed."""
    gate = Gate()
    async with manager(max_concurrency=1, queue_timeout=5.0) as m, anyio.create_task_group() as tg:
        tg.start_soon(m.run, gate.fn("holder"))
        await anyio.wait_all_tasks_blocked()
        start = anyio.current_time()
        with pytest.raises(QueueTimeoutError) as info:
            await m.run(gate.fn("late"), priority="low")
        assert anyio.current_time() - start == pytest.approx(5.0)
        assert info.value.waited == pytest.approx(5.0)
        assert info.value.priority == "low"
        stats = m.stats()
        assert (stats.queued_requests, stats.total_timeouts, stats.failed_requests) == (0, 1, 1)
        gate.open.set()
    assert gate.calls == ["holder"]


async def test_request_timeout_is_retried_then_raised() -> None:
    """An attempt longer than request_timeout is cut and retried; the last one raises
    RequestTimeoutError carrying the attempt count."""
    calls: list[float] = []

    async def hang(client: openai.AsyncOpenAI) -> None:
        calls.append(anyio.current_time())
        await anyio.sleep_forever()

    config = {"request_timeout": 10.0, "retry": NO_JITTER.model_copy(update={"max_attempts": 2})}
    async with manager(**config) as m:
        with pytest.raises(RequestTimeoutError) as info:
            await m.run(hang)
    assert info.value.attempts == 2
    assert len(calls) == 2
    assert calls[1] - calls[0] == pytest.approx(10.0 + 1.0)  # timeout, then 1 s backoff
    assert m.stats().total_timeouts == 2


async def test_retries_use_exponential_backoff_then_succeed() -> None:
    """Retryable failures are retried after initial_backoff * 2**n seconds (no jitter here)."""
    times: list[float] = []

    async def flaky(client: openai.AsyncOpenAI) -> str:
        times.append(anyio.current_time())
        if len(times) < 3:
            raise status_error(503)
        return "ok"

    async with manager() as m:
        assert await m.run(flaky) == "ok"
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps == pytest.approx([1.0, 2.0])
    assert m.stats().retries == 2


async def test_retry_after_hint_wins_over_backoff() -> None:
    """A 503 with retry-after-ms waits exactly that long, not the computed backoff."""
    times: list[float] = []

    async def fn(client: openai.AsyncOpenAI) -> str:
        times.append(anyio.current_time())
        if len(times) == 1:
            raise status_error(503, {"retry-after-ms": "3500"})
        return "ok"

    async with manager() as m:
        await m.run(fn)
    assert times[1] - times[0] == pytest.approx(3.5)


async def test_last_error_after_retries_propagates_unchanged() -> None:
    """When attempts run out, the last SDK error is raised as is (tenacity reraise)."""
    errors = [status_error(500) for _ in range(4)]

    async def fn(client: openai.AsyncOpenAI) -> None:
        raise errors.pop(0)

    async with manager() as m:
        with pytest.raises(openai.InternalServerError):
            await m.run(fn)
    assert errors == []
    assert m.stats().failed_requests == 1


async def test_backoff_holds_no_slot() -> None:
    """While a request waits out its backoff, another request uses the only slot."""
    log: list[tuple[str, float]] = []

    async def failing_once(client: openai.AsyncOpenAI) -> None:
        log.append(("a", anyio.current_time()))
        if len(log) == 1:
            raise status_error(500)

    async def other(client: openai.AsyncOpenAI) -> None:
        log.append(("b", anyio.current_time()))

    t0 = anyio.current_time()
    async with manager(max_concurrency=1) as m, anyio.create_task_group() as tg:
        tg.start_soon(m.run, failing_once)
        await anyio.sleep(0.5)  # "a" failed at t0 and backs off until t0 + 1
        tg.start_soon(m.run, other)
    assert [name for name, _ in log] == ["a", "b", "a"]
    assert log[1][1] - t0 < 1.0 <= log[2][1] - t0


async def test_429_retry_after_cools_the_upstream_down() -> None:
    """After a 429 with Retry-After, no queued work is sent to that upstream until it ends."""
    starts: list[tuple[str, float]] = []

    async def rate_limited_once(client: openai.AsyncOpenAI) -> None:
        starts.append(("a", anyio.current_time()))
        if len(starts) == 1:
            raise status_error(429, {"retry-after": "4"})

    async def queued(client: openai.AsyncOpenAI) -> None:
        starts.append(("b", anyio.current_time()))

    t0 = anyio.current_time()
    async with manager(max_concurrency=2) as m, anyio.create_task_group() as tg:
        tg.start_soon(m.run, rate_limited_once)
        await anyio.sleep(1.0)
        tg.start_soon(m.run, queued)  # arrives during the cooldown, slots are free
    assert starts[0] == ("a", t0)
    assert sorted(name for name, _ in starts) == ["a", "a", "b"]
    assert all(t - t0 >= 4.0 for _, t in starts[1:])
    assert m.stats().cooling_upstreams == 0


async def test_work_moves_to_a_healthy_upstream() -> None:
    """With two upstreams, a 429 on one sends the retry and later work to the other at once."""
    served: list[tuple[str, float]] = []

    async def fn(client: openai.AsyncOpenAI) -> None:
        host = client.base_url.host
        served.append((host, anyio.current_time()))
        if host == "a.test":
            raise status_error(429, {"retry-after": "30"})

    config = PoolConfig(pool_size=2, retry=NO_JITTER.model_copy(update={"max_retry_after": 60}))
    factory = client_factory("http://a.test/v1", "http://b.test/v1")
    async with ConnectionManager(config, client_factory=factory) as m:
        await m.run(fn)
        await m.run(fn)
        assert m.stats().cooling_upstreams == 1
    hosts = [host for host, _ in served]
    assert hosts == ["a.test", "b.test", "b.test"]
    assert served[1][1] - served[0][1] == pytest.approx(1.0)  # backoff, not the 30 s hint


async def test_shutdown_grace_then_typed_error() -> None:
    """Leaving the context lets work finish within shutdown_grace; what is left then fails
    with ManagerClosedError, queued work included. Nothing is lost or answered twice."""
    outcomes: dict[str, str] = {}

    async def work(name: str, seconds: float, m: ConnectionManager) -> None:
        async def fn(client: openai.AsyncOpenAI) -> str:
            await anyio.sleep(seconds)
            return name

        try:
            outcomes[name] = await m.run(fn)
        except LLMPoolError as exc:
            outcomes[name] = type(exc).__name__

    async with anyio.create_task_group() as tg:
        async with manager(max_concurrency=2, shutdown_grace=5.0) as m:
            for name, seconds in [
                ("quick", 1.0),
                ("slow", 100.0),
                ("queued-quick", 1.0),  # starts at t=1, done at t=2
                ("queued-slow", 100.0),
            ]:
                tg.start_soon(work, name, seconds, m)
                await anyio.wait_all_tasks_blocked()  # trio starts tasks in random order
            start = anyio.current_time()
        closed_after = anyio.current_time() - start
    assert closed_after == pytest.approx(5.0)
    assert outcomes == {
        "quick": "quick",
        "queued-quick": "queued-quick",
        "slow": "ManagerClosedError",
        "queued-slow": "ManagerClosedError",
    }
    stats = m.stats()
    assert (stats.completed_requests, stats.failed_requests, stats.active_connections) == (2, 2, 0)


async def test_cancelled_while_waiting_out_a_cooldown_frees_the_slot() -> None:
    """A request waiting (queued, no slot) for every upstream's cooldown frees its place if
    cancelled; the next request runs when the cooldown ends."""

    async def limited(client: openai.AsyncOpenAI) -> None:
        raise status_error(429, {"retry-after": "10"})

    gate = Gate()
    config = {"max_concurrency": 1, "retry": NO_JITTER.model_copy(update={"max_attempts": 1})}
    async with manager(**config) as m:
        with pytest.raises(openai.RateLimitError):
            await m.run(limited)  # the only upstream now cools for 10 s
        with anyio.move_on_after(2.0):
            await m.run(gate.fn("waits-for-cooldown"))
        assert m.stats().active_connections == 0
        assert m.stats().cancelled_requests == 1
        gate.open.set()
        start = anyio.current_time()
        assert await m.run(gate.fn("after")) == "after"
        assert anyio.current_time() - start == pytest.approx(8.0)  # the rest of the cooldown
    assert gate.calls == ["after"]
