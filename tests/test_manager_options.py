"""Per-call options on a view: ``with_options(max_attempts=, queue_timeout=, request_timeout=,
deadline=, admission=)``, validated like the config; a total deadline across queueing, every
attempt and every backoff (trio's MockClock: exact virtual times)."""

from __future__ import annotations

from typing import Any

import anyio
import openai
import pydantic
import pytest
from trio.testing import MockClock

from llmpool import DeadlineExceededError, QueueTimeoutError, RequestTimeoutError

from .helpers import status_error
from .test_manager import Gate, manager

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return ("trio", {"clock": MockClock(autojump_threshold=0)})


def failing(status: int, calls: list[float]) -> Any:
    async def fn(client: openai.AsyncOpenAI) -> None:
        calls.append(anyio.current_time())
        raise status_error(status)

    return fn


async def test_max_attempts_override() -> None:
    """max_attempts=1 on a view: a 503 is not retried; the manager's default still is."""
    one: list[float] = []
    default: list[float] = []
    async with manager() as m:
        with pytest.raises(openai.InternalServerError):
            await m.with_options(max_attempts=1).run(failing(503, one))
        with pytest.raises(openai.InternalServerError):
            await m.run(failing(503, default))
    assert (len(one), len(default)) == (1, 4)


async def test_queue_and_request_timeout_overrides() -> None:
    """queue_timeout and request_timeout on a view replace the config's for that call."""
    gate = Gate()

    async def hang(client: openai.AsyncOpenAI) -> None:
        await anyio.sleep_forever()

    async with (
        manager(max_concurrency=1, queue_timeout=100.0) as m,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(m.run, gate.fn("holder"))
        await anyio.wait_all_tasks_blocked()
        start = anyio.current_time()
        with pytest.raises(QueueTimeoutError, match=r"queue_timeout=2\.5s"):
            await m.with_options(queue_timeout=2.5).run(gate.fn("late"))
        assert anyio.current_time() - start == pytest.approx(2.5)
        gate.open.set()
        await anyio.wait_all_tasks_blocked()
        start = anyio.current_time()
        with pytest.raises(RequestTimeoutError, match=r"request_timeout=3\.0s"):
            await m.with_options(request_timeout=3.0, max_attempts=1).run(hang)
        assert anyio.current_time() - start == pytest.approx(3.0)


async def test_deadline_spans_attempts_and_backoff() -> None:
    """deadline=5: attempts at 0, 1 (1 s backoff), 3 (2 s backoff); the 4 s backoff is cut
    at 5 s by DeadlineExceededError chained to the last 503."""
    calls: list[float] = []
    async with manager() as m:
        start = anyio.current_time()
        with pytest.raises(DeadlineExceededError) as info:
            await m.with_options(deadline=5.0).run(failing(503, calls))
        assert anyio.current_time() - start == pytest.approx(5.0)
    assert [t - start for t in calls] == pytest.approx([0.0, 1.0, 3.0])
    assert isinstance(info.value.__cause__, openai.InternalServerError)
    assert info.value.attempts == 3
    assert info.value.last_status == 503
    assert "deadline of 5s passed" in str(info.value)
    stats = m.stats()
    assert (stats.failed_requests, stats.active_connections) == (1, 0)


async def test_deadline_covers_the_queue() -> None:
    """A deadline shorter than queue_timeout ends a queued call at the deadline."""
    gate = Gate()
    async with manager(max_concurrency=1) as m, anyio.create_task_group() as tg:
        tg.start_soon(m.run, gate.fn("holder"))
        await anyio.wait_all_tasks_blocked()
        start = anyio.current_time()
        with pytest.raises(DeadlineExceededError) as info:
            await m.with_options(deadline=1.5).run(gate.fn("late"))
        assert anyio.current_time() - start == pytest.approx(1.5)
        assert info.value.__cause__ is None
        assert m.stats().queued_requests == 0
        gate.open.set()
    assert gate.calls == ["holder"]


async def test_deadline_met_returns_normally() -> None:
    """A call that finishes inside its deadline returns its result."""
    async with manager() as m:

        async def fn(client: openai.AsyncOpenAI) -> int:
            await anyio.sleep(1.0)
            return 7

        assert await m.with_options(deadline=2.0).run(fn) == 7


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_attempts": 101}, "max_attempts"),
        ({"queue_timeout": 0}, "queue_timeout"),
        ({"request_timeout": -1.0}, "request_timeout"),
        ({"deadline": 0.0}, "deadline"),
        ({"admission": "later"}, "admission"),
    ],
    ids=["attempts-0", "attempts-101", "queue-0", "request-neg", "deadline-0", "admission"],
)
async def test_options_are_validated_like_the_config(options: dict[str, Any], field: str) -> None:
    """An out-of-bounds option fails at once, naming the option."""
    async with manager() as m:
        with pytest.raises(pydantic.ValidationError, match=field):
            m.with_options(**options)
