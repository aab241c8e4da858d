"""ConnectionManager behaviour with plain ``fn``s (no HTTP): concurrency, order, admission,
timeouts, retries, cooldowns, cancellation and shutdown.

Timing rules run on trio's ``MockClock`` (autojump): virtual time, exact and instant. Ordering
rules run on both backends and are sequenced with ``wait_all_tasks_blocked``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import openai
import pytest

from llmpool import (
    ConnectionManager,
    InvalidSessionIdError,
    ManagerClosedError,
    PoolConfig,
    Priority,
    QueueFullError,
    RetryPolicy,
)

from .helpers import client_factory, status_error

pytestmark = pytest.mark.anyio

NO_JITTER = RetryPolicy(initial_backoff=1.0, max_backoff=8.0, jitter=0.0)


def manager(**overrides: Any) -> ConnectionManager:
    config = PoolConfig(retry=NO_JITTER).model_copy(update=overrides)
    return ConnectionManager(config, client_factory=client_factory())


class Gate:
    """An fn whose calls block until opened; records call order and times."""

    def __init__(self) -> None:
        self.open = anyio.Event()
        self.calls: list[str] = []
        self.running = 0
        self.peak = 0

    def fn(self, name: str) -> Callable[[openai.AsyncOpenAI], Awaitable[str]]:
        async def call(client: openai.AsyncOpenAI) -> str:
            self.calls.append(name)
            self.running += 1
            self.peak = max(self.peak, self.running)
            try:
                await self.open.wait()
            finally:
                self.running -= 1
            return name

        return call


async def test_run_returns_fn_result_on_a_pooled_client() -> None:
    """run() awaits fn(client) and returns its value; pooled clients have max_retries=0."""
    seen: list[openai.AsyncOpenAI] = []

    async def fn(client: openai.AsyncOpenAI) -> int:
        seen.append(client)
        return 42

    async with manager() as m:
        assert await m.run(fn) == 42
    assert seen[0].max_retries == 0
    assert m.stats().completed_requests == 1


async def test_clients_with_sdk_retries_are_replaced() -> None:
    """A factory client with the SDK's default max_retries=2 is used with max_retries=0."""
    seen: list[int] = []

    async def fn(client: openai.AsyncOpenAI) -> None:
        seen.append(client.max_retries)

    def factory(index: int) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(api_key="k", base_url="http://upstream.test/v1")

    async with ConnectionManager(client_factory=factory) as m:
        await m.run(fn)
    assert seen == [0]


async def test_concurrency_is_bounded() -> None:
    """At most max_concurrency fns run at once; the rest wait in the queue."""
    gate = Gate()
    async with manager(max_concurrency=3) as m, anyio.create_task_group() as tg:
        for i in range(10):
            tg.start_soon(m.run, gate.fn(f"r{i}"))
        await anyio.wait_all_tasks_blocked()
        stats = m.stats()
        assert (stats.active_connections, stats.queued_requests) == (3, 7)
        assert stats.queue_depth == {"high": 0, "normal": 7, "low": 0}
        gate.open.set()
    assert gate.peak == 3
    assert m.stats().completed_requests == 10


async def test_priority_and_session_order() -> None:
    """Queued work is served HIGH first, then round-robin between sessions, FIFO within one."""
    gate = Gate()
    async with manager(max_concurrency=1) as m, anyio.create_task_group() as tg:
        tg.start_soon(m.run, gate.fn("holder"))
        await anyio.wait_all_tasks_blocked()
        plan = [
            ("low-a", Priority.LOW, "a"),
            ("norm-a1", "normal", "a"),
            ("norm-a2", "normal", "a"),
            ("norm-a3", "normal", "a"),
            ("norm-b1", "normal", "b"),
            ("high-c", "HIGH", "c"),
        ]
        for name, priority, session in plan:
            tg.start_soon(
                lambda n=name, p=priority, s=session: m.run(gate.fn(n), priority=p, session_id=s)
            )
            await anyio.wait_all_tasks_blocked()
        gate.open.set()
    assert gate.calls == ["holder", "high-c", "norm-a1", "norm-b1", "norm-a2", "norm-a3", "low-a"]


async def test_queue_full_is_rejected_at_once() -> None:
    """With max_queue_size requests waiting, one more fails at once with QueueFullError."""
    gate = Gate()
    async with manager(max_concurrency=1, max_queue_size=2) as m, anyio.create_task_group() as tg:
        for i in range(3):
            tg.start_soon(m.run, gate.fn(f"r{i}"))
        await anyio.wait_all_tasks_blocked()
        with pytest.raises(QueueFullError) as info:
            await m.run(gate.fn("extra"), session_id="s9")
        assert info.value.session_id == "s9"
        assert "max_queue_size=2" in str(info.value)
        assert m.stats().rejected_requests == 1
        gate.open.set()
    assert "extra" not in gate.calls


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
async def test_non_retryable_errors_propagate_unchanged(status: int) -> None:
    """A 4xx that is not retryable reaches the caller as the very SDK exception, after one call."""
    error = status_error(status)
    calls = 0

    async def fn(client: openai.AsyncOpenAI) -> None:
        nonlocal calls
        calls += 1
        raise error

    async with manager() as m:
        with pytest.raises(openai.APIStatusError) as info:
            await m.run(fn)
    assert info.value is error
    assert calls == 1


async def test_insufficient_quota_is_not_retried() -> None:
    """A 429 whose code is insufficient_quota is billing, not load: raised after one call."""
    calls = 0

    async def fn(client: openai.AsyncOpenAI) -> None:
        nonlocal calls
        calls += 1
        raise status_error(429, {"retry-after": "1"}, code="insufficient_quota")

    async with manager() as m:
        with pytest.raises(openai.RateLimitError):
            await m.run(fn)
    assert calls == 1


async def test_cancelled_caller_frees_its_place() -> None:
    """A queued caller that is cancelled leaves the queue at once and counts as cancelled;
    the next waiter, not the cancelled one, gets the slot."""
    gate = Gate()
    waiting = anyio.CancelScope()

    async def cancellable() -> None:
        with waiting:
            await m.run(gate.fn("cancelled"))

    async with manager(max_concurrency=1, max_queue_size=1) as m, anyio.create_task_group() as tg:
        tg.start_soon(m.run, gate.fn("holder"))
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(cancellable)
        await anyio.wait_all_tasks_blocked()
        assert m.stats().queued_requests == 1
        waiting.cancel()
        await anyio.wait_all_tasks_blocked()
        stats = m.stats()
        assert (stats.queued_requests, stats.cancelled_requests) == (0, 1)
        tg.start_soon(m.run, gate.fn("next"))  # fits: the place is free (max_queue_size=1)
        await anyio.wait_all_tasks_blocked()
        gate.open.set()
    assert gate.calls == ["holder", "next"]
    assert m.stats().completed_requests == 2


async def test_cancelled_running_caller_frees_its_slot() -> None:
    """Cancelling a caller whose fn is running gives the slot to the next waiter."""
    gate = Gate()
    async with manager(max_concurrency=1) as m:
        async with anyio.create_task_group() as tg:
            tg.start_soon(m.run, gate.fn("stuck"))
            await anyio.wait_all_tasks_blocked()
            tg.cancel_scope.cancel()
        gate.open.set()
        assert await m.run(gate.fn("next")) == "next"
        stats = m.stats()
    assert (stats.cancelled_requests, stats.completed_requests, stats.active_connections) == (
        1,
        1,
        0,
    )


async def test_closed_manager_refuses_work() -> None:
    """run() before entering or after leaving the context raises ManagerClosedError."""
    gate = Gate()
    m = manager()
    with pytest.raises(ManagerClosedError, match="not open"):
        await m.run(gate.fn("early"))
    async with m:
        pass
    with pytest.raises(ManagerClosedError, match="closed"):
        await m.run(gate.fn("late"))
    assert gate.calls == []


@pytest.mark.parametrize(
    "session_id",
    ["", "x" * 129, "tab\there", "new\nline", "nul\x00", "caf\u00e9", 12],
    ids=["empty", "129-chars", "tab", "newline", "nul", "non-ascii", "not-a-string"],
)
async def test_bad_session_ids_are_rejected(session_id: Any) -> None:
    """A session id must be 1-128 printable ASCII characters; the error says what is wrong."""
    async with manager() as m:
        with pytest.raises(InvalidSessionIdError) as info:
            await m.run(Gate().fn("x"), session_id=session_id)
        assert isinstance(info.value, ValueError)
        with pytest.raises(InvalidSessionIdError):
            m.with_options(session_id=session_id)


async def test_session_id_of_128_chars_is_accepted() -> None:
    """The limit is inclusive: 128 characters are fine."""
    async with manager() as m:
        result = await m.run(_const("ok"), session_id="s" * 128)
    assert result == "ok"


async def test_bad_priority_is_rejected() -> None:
    """An unknown priority fails at once with a ValueError listing the valid ones."""
    async with manager() as m:
        with pytest.raises(ValueError, match="'high', 'normal', 'low'"):
            await m.run(_const(1), priority="urgent")


async def test_session_header_reaches_the_client() -> None:
    """fn's client sends x-session-id when the request has a session id."""
    headers: list[dict[str, str]] = []

    async def fn(client: openai.AsyncOpenAI) -> None:
        headers.append(dict(client.default_headers))  # type: ignore[arg-type]

    async with manager() as m:
        await m.run(fn, session_id="terminal-7")
        await m.run(fn)
    assert headers[0]["x-session-id"] == "terminal-7"
    assert "x-session-id" not in headers[1]


async def test_stats_have_the_seed_keys() -> None:
    """stats().model_dump(by_alias=True) has seed 000's keys plus llmpool's own."""
    async with manager() as m:
        await m.run(_const(1))
        dumped = m.stats().model_dump(by_alias=True, mode="json")
    seed_keys = {
        "activeConnections",
        "queuedRequests",
        "completedRequests",
        "failedRequests",
        "totalTimeouts",
        "timestamp",
        "uptime",
    }
    assert seed_keys <= dumped.keys()
    assert {"retries", "rejectedRequests", "cancelledRequests", "queueDepth"} <= dumped.keys()
    assert {"inFlightPerClient", "queueWait", "latency"} <= dumped.keys()
    assert dumped["completedRequests"] == 1
    assert dumped["inFlightPerClient"] == [0] * 5
    assert dumped["latency"]["count"] == 1
    assert dumped["timestamp"].endswith("Z")


async def test_log_records_carry_the_ids(caplog: pytest.LogCaptureFixture) -> None:
    """Events are logged on 'llmpool' with request and session ids in extra."""
    calls = 0

    async def flaky(client: openai.AsyncOpenAI) -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise status_error(500, {"retry-after-ms": "1"})
        return "ok"

    caplog.set_level(logging.DEBUG, logger="llmpool")
    async with manager() as m:
        await m.run(flaky, session_id="t1", priority="high")
        with pytest.raises(openai.AuthenticationError):
            await m.run(_raise(status_error(401)), session_id="t2")
    events = [(r.llmpool_event, r.session_id) for r in caplog.records]  # type: ignore[attr-defined]
    assert events == [
        ("executing", "t1"),
        ("retrying", "t1"),
        ("executing", "t1"),
        ("completed", "t1"),
        ("executing", "t2"),
        ("failed", "t2"),
    ]
    ids = {r.request_id for r in caplog.records}  # type: ignore[attr-defined]
    assert len(ids) == 2
    assert all(i.startswith("req_") for i in ids)
    assert caplog.records[0].priority == "high"  # type: ignore[attr-defined]


def _const(value: Any) -> Callable[[openai.AsyncOpenAI], Awaitable[Any]]:
    async def fn(client: openai.AsyncOpenAI) -> Any:
        return value

    return fn


def _raise(exc: BaseException) -> Callable[[openai.AsyncOpenAI], Awaitable[Any]]:
    async def fn(client: openai.AsyncOpenAI) -> Any:
        raise exc

    return fn
