"""Rate limits in the manager, on trio's MockClock (virtual, exact time): admission takes the
slot, the request budget and the token budget in one decision."""

from __future__ import annotations

import itertools
from types import SimpleNamespace
from typing import Any

import anyio
import openai
import pytest
from trio.testing import MockClock

from llmpool import (
    ConnectionManager,
    PoolConfig,
    QueueTimeoutError,
    RateLimitPolicy,
    RequestTooLargeError,
)

from .helpers import client_factory, status_error
from .test_manager import NO_JITTER, Gate

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    """Trio with a fresh virtual clock per test."""
    return ("trio", {"clock": MockClock(autojump_threshold=0)})


def limited(rpm: int | None = None, tpm: int | None = None, **overrides: Any) -> ConnectionManager:
    policy = RateLimitPolicy(requests_per_minute=rpm, tokens_per_minute=tpm)
    config = PoolConfig(retry=NO_JITTER, rate_limit=policy).model_copy(update=overrides)
    return ConnectionManager(config, client_factory=client_factory())


class Recorder:
    """fn that records when each call started and returns a result with usage."""

    def __init__(self) -> None:
        self.starts: dict[str, float] = {}

    def fn(self, name: str, used: int | None = None) -> Any:
        async def call(client: openai.AsyncOpenAI) -> Any:
            self.starts[name] = anyio.current_time()
            return SimpleNamespace(name=name, usage=SimpleNamespace(total_tokens=used))

        return call


async def test_requests_per_minute_paces_admission() -> None:
    """60 RPM (burst 1 s = 1 request): one request per second, whatever the concurrency."""
    rec = Recorder()
    async with limited(rpm=60, max_concurrency=8) as m, anyio.create_task_group() as tg:
        start = anyio.current_time()
        for i in range(4):
            tg.start_soon(m.run, rec.fn(f"r{i}"))
    assert sorted(t - start for t in rec.starts.values()) == pytest.approx([0, 1, 2, 3])


async def test_stats_report_the_budgets() -> None:
    """stats().rate_limits shows each limited upstream's limits and what is left now."""
    rec = Recorder()
    async with limited(rpm=120, tpm=6000) as m:
        assert m.stats().rate_limits[0].requests_available == 2
        await m.run(rec.fn("a", used=30), estimated_tokens=50)
        (budget,) = m.stats().rate_limits
        assert (budget.requests_per_minute, budget.tokens_per_minute) == (120, 6000)
        assert budget.requests_available == pytest.approx(1)
        assert budget.tokens_available == pytest.approx(100 - 30)
        dumped = m.stats().model_dump(by_alias=True)
        assert dumped["rateLimits"][0]["requestsPerMinute"] == 120
    async with limited() as unlimited:
        assert unlimited.stats().rate_limits == []


async def test_waiting_for_budget_holds_no_slot() -> None:
    """Requests waiting for request budget are queued, not holding concurrency slots."""
    rec = Recorder()
    async with limited(rpm=60, max_concurrency=8) as m, anyio.create_task_group() as tg:
        for i in range(3):
            tg.start_soon(m.run, rec.fn(f"r{i}"))
        await anyio.wait_all_tasks_blocked()
        stats = m.stats()
        assert (stats.active_connections, stats.queued_requests) == (0, 2)
        assert len(rec.starts) == 1  # trio starts tasks in random order


async def test_usage_below_estimate_is_refunded() -> None:
    """600 TPM (10 tokens/s, bucket 10): a 10-token estimate that used 2 refunds 8, so the
    next 10-token request waits 0.2 s instead of 1 s."""
    rec = Recorder()
    async with limited(tpm=600) as m:
        start = anyio.current_time()
        await m.run(rec.fn("first", used=2), estimated_tokens=10)
        await m.run(rec.fn("second", used=10), estimated_tokens=10)
    assert rec.starts["second"] - start == pytest.approx(0.2)


async def test_usage_above_estimate_is_charged() -> None:
    """A call estimated at 0 tokens that used 20 leaves the bucket 10 in debt: the next
    10-token request waits 2 s."""
    rec = Recorder()
    async with limited(tpm=600) as m:
        start = anyio.current_time()
        await m.run(rec.fn("first", used=20))
        await m.run(rec.fn("second", used=10), estimated_tokens=10)
    assert rec.starts["second"] - start == pytest.approx(2.0)


async def test_request_larger_than_the_minute_fails_at_once() -> None:
    """More tokens than the per-minute limit can never run: RequestTooLargeError, no call."""
    rec = Recorder()
    async with limited(tpm=100) as m:
        with pytest.raises(RequestTooLargeError, match="101 tokens") as info:
            await m.run(rec.fn("huge"), estimated_tokens=101)
        assert (info.value.tokens, info.value.limit) == (101, 100)
        stats = m.stats()
        assert (stats.rejected_requests, stats.failed_requests) == (1, 1)
    assert rec.starts == {}


async def test_negative_estimate_is_refused() -> None:
    """estimated_tokens must be a non-negative int; the error names it."""
    async with limited(tpm=100) as m:
        with pytest.raises(ValueError, match="estimated_tokens"):
            await m.run(Recorder().fn("x"), estimated_tokens=-1)


async def test_higher_priority_gets_the_next_budget() -> None:
    """When budget comes back, the scheduler's order holds: HIGH before an earlier LOW."""
    rec = Recorder()
    async with limited(rpm=60, max_concurrency=8) as m, anyio.create_task_group() as tg:
        start = anyio.current_time()
        await m.run(rec.fn("first"))
        tg.start_soon(lambda: m.run(rec.fn("low"), priority="low"))
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(lambda: m.run(rec.fn("high"), priority="high"))
    assert rec.starts["high"] - start == pytest.approx(1.0)
    assert rec.starts["low"] - start == pytest.approx(2.0)


async def test_budget_wait_counts_against_queue_timeout() -> None:
    """Waiting for budget is queueing: queue_timeout bounds it."""
    rec = Recorder()
    async with limited(rpm=6, queue_timeout=6.0) as m:  # one request per 10 s
        await m.run(rec.fn("first"))
        start = anyio.current_time()
        with pytest.raises(QueueTimeoutError):
            await m.run(rec.fn("second"))
        assert anyio.current_time() - start == pytest.approx(6.0)
        third_at = anyio.current_time()
        await m.run(rec.fn("third"))  # the timed-out request spent no budget
    assert rec.starts["third"] - third_at == pytest.approx(4.0)
    assert "second" not in rec.starts


async def test_cancelled_budget_waiter_frees_its_place() -> None:
    """A caller cancelled while waiting for budget leaves the queue; the next one still runs
    when the budget comes back."""
    rec = Recorder()
    async with limited(rpm=60) as m:
        await m.run(rec.fn("first"))
        with anyio.move_on_after(0.5):
            await m.run(rec.fn("cancelled"))
        assert m.stats().queued_requests == 0
        await m.run(rec.fn("next"))
    assert "cancelled" not in rec.starts
    assert rec.starts["next"] == pytest.approx(rec.starts["first"] + 1.0)


async def test_429_headers_teach_the_limit() -> None:
    """x-ratelimit-* headers on an error teach the upstream's limit to later admissions."""
    rec = Recorder()
    headers = {
        "x-ratelimit-limit-requests": "30",
        "x-ratelimit-remaining-requests": "0",
        "retry-after": "1",
    }

    async def refused(client: openai.AsyncOpenAI) -> None:
        raise status_error(429, headers)

    async with limited(retry=NO_JITTER.model_copy(update={"max_attempts": 1})) as m:
        with pytest.raises(openai.RateLimitError):
            await m.run(refused)
        start = anyio.current_time()
        await m.run(rec.fn("a"))  # after the 1 s cooldown (and the empty bucket: 2 s)
        await m.run(rec.fn("b"))  # 30 RPM: 2 s later
    assert rec.starts["a"] - start == pytest.approx(2.0)
    assert rec.starts["b"] - rec.starts["a"] == pytest.approx(2.0)


async def test_cooldown_wait_is_queued_without_a_slot() -> None:
    """While every upstream cools down, a new request waits in the queue holding no slot."""
    gate = Gate()

    async def refused(client: openai.AsyncOpenAI) -> None:
        raise status_error(429, {"retry-after": "10"})

    async with limited(retry=NO_JITTER.model_copy(update={"max_attempts": 1})) as m:
        with pytest.raises(openai.RateLimitError):
            await m.run(refused)
        async with anyio.create_task_group() as tg:
            tg.start_soon(m.run, gate.fn("waits"))
            await anyio.wait_all_tasks_blocked()
            stats = m.stats()
            assert (stats.active_connections, stats.queued_requests) == (0, 1)
            gate.open.set()
    assert gate.calls == ["waits"]


def test_budget_pacing_on_asyncio_real_time() -> None:
    """The same pacing on asyncio's real clock, where a queued waiter parks on a bare future
    and a re-check wait that times out must not consume the signal its grant needs: 600 RPM
    (bucket 10, then one per 0.1 s), 14 calls: the last 4 start 0.1 s apart (0.05 s margin)."""

    done: list[str] = []

    async def main() -> list[float]:
        rec = Recorder()

        async def call(name: str) -> None:
            done.append((await m.run(rec.fn(name))).name)

        async with limited(rpm=600, max_concurrency=16) as m, anyio.create_task_group() as tg:
            for i in range(14):
                tg.start_soon(call, f"r{i}")
        return sorted(rec.starts.values())

    starts = anyio.run(main, backend="asyncio")
    assert sorted(done) == sorted(f"r{i}" for i in range(14))  # every call returned once
    assert starts[9] - starts[0] < 0.05  # the bucket's 10 go at once
    gaps = [b - a for a, b in itertools.pairwise(starts[9:])]
    assert all(0.05 < gap < 0.15 for gap in gaps), gaps
