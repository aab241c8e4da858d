"""The manager under hintless 429 storms and 5xx bursts (circuit breaker), the retry budget,
and per-model rate limits; trio's MockClock (virtual time, exact)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import anyio
import openai
import pytest
from trio.testing import MockClock

from llmpool import (
    CircuitPolicy,
    ConnectionManager,
    ModelRateLimit,
    PoolConfig,
    RateLimitPolicy,
    RetryPolicy,
)

from .helpers import client_factory, status_error

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return ("trio", {"clock": MockClock(autojump_threshold=0)})


class Storm:
    """An upstream that answers hintless 429s until ``until`` (virtual seconds from start)."""

    def __init__(self, until: float, service: float = 0.05) -> None:
        self.start = 0.0
        self.until = until
        self.service = service
        self.calls: list[float] = []

    async def fn(self, client: openai.AsyncOpenAI) -> str:
        await anyio.sleep(self.service)
        now = anyio.current_time() - self.start
        self.calls.append(now)
        if now < self.until:
            raise status_error(429)
        return "ok"


async def storm_run(
    circuit: CircuitPolicy, callers: int = 30, concurrency: int = 10
) -> tuple[Storm, list[str], ConnectionManager]:
    storm = Storm(until=5.0)
    config = PoolConfig(max_concurrency=concurrency, queue_timeout=60.0, circuit=circuit)
    outcomes: list[str] = []

    async def call(m: ConnectionManager) -> None:
        try:
            outcomes.append(await m.run(storm.fn))
        except Exception as exc:
            outcomes.append(type(exc).__name__)

    async with ConnectionManager(config, client_factory=client_factory()) as m:
        storm.start = anyio.current_time()
        async with anyio.create_task_group() as tg:
            for _ in range(callers):
                tg.start_soon(call, m)
    return storm, outcomes, m


async def test_hintless_429_storm_every_caller_succeeds_and_load_stays_low() -> None:
    """30 callers, 5 s of 429s without a hint, then 200s, queue_timeout 60 s: every caller
    succeeds and the upstream sees at most 15 requests during the storm (the first wave of
    10, then one probe per cooldown of 0.5-1, 1-1.5, 2-2.5 s ...)."""
    storm, outcomes, m = await storm_run(CircuitPolicy())
    during = [t for t in storm.calls if t < storm.until]
    assert outcomes == ["ok"] * 30
    assert len(during) <= 15, during
    assert len(storm.calls) == len(during) + 30  # after the storm: one attempt per caller
    stats = m.stats()
    assert (stats.completed_requests, stats.failed_requests, stats.open_circuits) == (30, 0, 0)


async def test_without_the_breaker_the_storm_spends_attempts() -> None:
    """The contrast: with the circuit disabled the same storm sends several times more
    requests and callers run out of attempts."""
    storm, outcomes, _ = await storm_run(CircuitPolicy(enabled=False))
    during = [t for t in storm.calls if t < storm.until]
    assert len(during) > 30
    assert outcomes.count("RateLimitError") > 0


async def test_a_burst_of_5xx_opens_the_circuit() -> None:
    """failure_threshold consecutive 503s open the circuit: the next request waits out the
    cooldown instead of being sent at once."""
    calls: list[float] = []

    async def fn(client: openai.AsyncOpenAI) -> str:
        calls.append(anyio.current_time())
        if len(calls) <= 3:
            raise status_error(503)
        return "ok"

    circuit = CircuitPolicy(failure_threshold=3, initial_cooldown=2.0, jitter=0.0)
    retry = RetryPolicy(max_attempts=1)
    config = PoolConfig(circuit=circuit, retry=retry)
    async with ConnectionManager(config, client_factory=client_factory()) as m:
        start = anyio.current_time()
        for _ in range(3):
            with pytest.raises(openai.InternalServerError):
                await m.run(fn)
        assert m.stats().open_circuits == 1
        assert await m.run(fn) == "ok"  # the probe, after the 2 s cooldown
        assert calls[-1] - start == pytest.approx(2.0)
        assert m.stats().open_circuits == 0


async def test_a_cancelled_probe_lets_another_request_probe() -> None:
    """The probe's caller is cancelled mid-flight: the next queued request probes instead
    (and closes the circuit); nobody waits for an outcome that will never come."""
    calls: list[str] = []

    def fn(name: str) -> Any:
        async def call(client: openai.AsyncOpenAI) -> str:
            calls.append(name)
            if name == "first":
                raise status_error(429)
            if name == "probe":
                await anyio.sleep_forever()
            return name

        return call

    circuit = CircuitPolicy(initial_cooldown=1.0, jitter=0.0)
    config = PoolConfig(circuit=circuit, retry=RetryPolicy(max_attempts=1))
    async with ConnectionManager(config, client_factory=client_factory()) as m:
        with pytest.raises(openai.RateLimitError):
            await m.run(fn("first"))  # opens the circuit for 1 s
        start = anyio.current_time()
        results: list[str] = []
        probe_scope = anyio.CancelScope()

        async def probe() -> None:
            with probe_scope:
                await m.run(fn("probe"))

        async def second() -> None:
            results.append(await m.run(fn("second")))

        async with anyio.create_task_group() as tg:
            tg.start_soon(probe)
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(second)
            await anyio.sleep(1.5)  # the probe is in flight; "second" waits for its outcome
            assert calls == ["first", "probe"]
            assert m.stats().queued_requests == 1
            probe_scope.cancel()
        assert results == ["second"]
        assert anyio.current_time() - start == pytest.approx(1.5)
        stats = m.stats()
        assert (stats.open_circuits, stats.cancelled_requests) == (0, 1)


async def test_retry_budget_limits_retries_in_flight() -> None:
    """Retry attempts in flight are bounded by max(3, 20 % of 10 active) = 3. Requests 0-2
    fail at once and retry within 1.5 s; their retries take 10 s. Requests 3-9 fail at 3 s,
    while those 3 retries are in flight: none of them is retried (the 503 is raised at once),
    and requests that failed while fewer were in flight were retried."""
    calls: dict[int, int] = {}

    def fn(i: int) -> Any:
        async def call(client: openai.AsyncOpenAI) -> int:
            calls[i] = calls.get(i, 0) + 1
            if calls[i] == 1:
                await anyio.sleep(0.0 if i < 3 else 3.0)
                raise status_error(503)
            await anyio.sleep(10.0)
            return i

        return call

    config = PoolConfig(max_concurrency=10, circuit=CircuitPolicy(failure_threshold=100))
    outcomes: dict[int, str] = {}
    async with ConnectionManager(config, client_factory=client_factory()) as m:

        async def call(i: int) -> None:
            try:
                outcomes[i] = str(await m.run(fn(i)))
            except openai.InternalServerError:
                outcomes[i] = "503"

        async with anyio.create_task_group() as tg:
            for i in range(10):
                tg.start_soon(call, i)
        stats = m.stats()
    assert outcomes == {i: str(i) if i < 3 else "503" for i in range(10)}
    assert calls == {i: 2 if i < 3 else 1 for i in range(10)}
    assert (stats.retries, stats.retry_budget_refusals, stats.completed_requests) == (3, 7, 3)


async def test_retry_budget_does_not_count_retries_waiting_out_their_backoff() -> None:
    """10 requests fail together: no retry is in flight at that moment (a retry waiting out
    its backoff sends nothing), so all 10 are retried and succeed."""
    calls: dict[int, int] = {}

    def fn(i: int) -> Any:
        async def call(client: openai.AsyncOpenAI) -> int:
            calls[i] = calls.get(i, 0) + 1
            if calls[i] == 1:
                raise status_error(503)
            return i

        return call

    config = PoolConfig(max_concurrency=10, circuit=CircuitPolicy(failure_threshold=100))
    async with ConnectionManager(config, client_factory=client_factory()) as m:
        async with anyio.create_task_group() as tg:
            for i in range(10):
                tg.start_soon(m.run, fn(i))
        stats = m.stats()
    assert (stats.completed_requests, stats.retry_budget_refusals, stats.retries) == (10, 0, 10)


def usage(name: str) -> Any:
    async def call(client: openai.AsyncOpenAI) -> Any:
        return SimpleNamespace(name=name, usage=None)

    return call


async def test_one_models_exhausted_budget_does_not_slow_another() -> None:
    """Per-model limits: "big" at 60 RPM (one per second) is paced; "small" calls on the same
    key are not held back by it; stats show each (upstream, model)."""
    policy = RateLimitPolicy(models={"big": ModelRateLimit(requests_per_minute=60)})
    config = PoolConfig(rate_limit=policy, max_concurrency=8)
    starts: dict[str, float] = {}

    def fn(name: str) -> Any:
        async def call(client: openai.AsyncOpenAI) -> str:
            starts[name] = anyio.current_time()
            return name

        return call

    async with ConnectionManager(config, client_factory=client_factory()) as m:
        start = anyio.current_time()
        async with anyio.create_task_group() as tg:
            for i in range(3):
                tg.start_soon(lambda i=i: m.run(fn(f"big-{i}"), model="big"))
            await anyio.wait_all_tasks_blocked()
            for i in range(3):
                tg.start_soon(lambda i=i: m.run(fn(f"small-{i}"), model="small"))
        rows = {(r.model, r.requests_per_minute) for r in m.stats().rate_limits}
    assert sorted(starts[f"big-{i}"] - start for i in range(3)) == pytest.approx([0, 1, 2])
    assert all(starts[f"small-{i}"] - start == 0.0 for i in range(3))
    assert rows == {("big", 60)}


async def test_learned_limits_are_per_model() -> None:
    """Headers learned from one model's response budget that model only."""
    config = PoolConfig(max_concurrency=8)
    async with ConnectionManager(config, client_factory=client_factory()) as m:
        assert m._engine.pool is not None
        upstream = m._engine.pool.upstreams[0]
        m._engine.learn(
            upstream,
            {"x-ratelimit-limit-requests": "60", "x-ratelimit-remaining-requests": "0"},
            "big",
        )
        start = anyio.current_time()
        await m.run(usage("small"), model="small")
        assert anyio.current_time() == start  # not held back
        await m.run(usage("big"), model="big")
        assert anyio.current_time() - start == pytest.approx(1.0)  # one request refilled
        rows = {(r.model, r.requests_per_minute) for r in m.stats().rate_limits}
    assert rows == {("big", 60)}
