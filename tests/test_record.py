"""One request's story without a logging handler: ``capture_requests`` and ``RequestRecord``,
with plain ``fn``s (no HTTP), and the llmpool context an unchanged SDK error carries."""

from __future__ import annotations

from typing import Any

import anyio
import openai
import pytest
from trio.testing import MockClock

import llmpool
from llmpool import (
    AttemptRecord,
    ConnectionManager,
    PoolConfig,
    Priority,
    QueueFullError,
    RequestRecord,
    RetryPolicy,
    capture_requests,
)

from .helpers import client_factory, status_error
from .test_manager import Gate

pytestmark = pytest.mark.anyio

FAST = RetryPolicy(initial_backoff=0.001, max_backoff=0.002, jitter=0.0)


def two_upstreams(**overrides: Any) -> ConnectionManager:
    config = PoolConfig(pool_size=2, retry=FAST).model_copy(update=overrides)
    return ConnectionManager(
        config, client_factory=client_factory("http://a.test/v1", "http://b.test/v1")
    )


def failing(*errors: Exception) -> Any:
    """An fn that raises ``errors`` in turn, then returns "done"."""
    pending = list(errors)

    async def fn(client: openai.AsyncOpenAI) -> str:
        if pending:
            raise pending.pop(0)
        return "done"

    return fn


async def test_run_records_each_attempt() -> None:
    """A 503 then a success: one record, completed, two attempts — the first an error with
    its status and class on upstream a, the retry ok on upstream b."""
    async with two_upstreams() as m:
        with capture_requests() as records:
            assert await m.run(failing(status_error(503)), session_id="t1", priority="high") == (
                "done"
            )
    [record] = records
    assert isinstance(record, RequestRecord)
    assert record.request_id.startswith("req_")
    assert (record.session_id, record.priority) == ("t1", Priority.HIGH)
    assert record.outcome == "completed"
    assert record.error is None
    assert record.retries == 1
    first, second = record.attempts
    assert isinstance(first, AttemptRecord)
    assert (first.number, first.outcome, first.status, first.error, first.client) == (
        1,
        "error",
        503,
        "InternalServerError",
        0,
    )
    assert (second.number, second.outcome, second.status, second.error, second.client) == (
        2,
        "ok",
        None,
        None,
        1,
    )
    assert "a.test" in first.upstream
    assert "b.test" in second.upstream
    assert {a.request_id for a in record.attempts} == {record.request_id}
    assert record.queue_wait is not None
    assert record.queue_wait >= 0.0
    assert record.latency >= first.duration + second.duration
    assert (record.estimated_tokens, record.used_tokens) == (0, None)


async def test_sdk_error_carries_the_request_id_and_attempts() -> None:
    """An SDK error that reaches the caller unchanged names its llmpool request and attempt
    count: attributes and one PEP 678 note (not repeated when it passes a second manager)."""
    error = status_error(503)
    async with two_upstreams() as m:
        with capture_requests() as records, pytest.raises(openai.InternalServerError) as info:
            await m.run(failing(*[status_error(503)] * 3, error))
        assert info.value is error
        [record] = records
        assert error.llmpool_request_id == record.request_id  # type: ignore[attr-defined]
        assert error.llmpool_attempts == 4  # type: ignore[attr-defined]
        assert error.__notes__ == [f"llmpool: request {record.request_id} after 4 attempts"]
        assert (record.outcome, record.error, len(record.attempts)) == (
            "failed",
            "InternalServerError",
            4,
        )
        assert [a.status for a in record.attempts] == [503] * 4

        async def reraise(client: openai.AsyncOpenAI) -> None:
            raise error

        with pytest.raises(openai.InternalServerError):
            await m.run(reraise)
    assert len(error.__notes__) == 1


async def test_single_attempt_note_is_singular() -> None:
    """A 401 (never retried): "after 1 attempt"."""
    async with two_upstreams() as m:
        with pytest.raises(openai.AuthenticationError) as info:
            await m.run(failing(status_error(401)))
    assert info.value.__notes__[0].endswith(" after 1 attempt")
    assert info.value.llmpool_attempts == 1  # type: ignore[attr-defined]


async def test_queue_full_is_recorded_without_attempts() -> None:
    """A call refused by a full queue is failed with no attempt and no queue wait."""
    gate = Gate()
    async with (
        two_upstreams(max_concurrency=1, max_queue_size=0) as m,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(m.run, gate.fn("holder"))
        await anyio.wait_all_tasks_blocked()
        with capture_requests() as records, pytest.raises(QueueFullError) as info:
            await m.run(gate.fn("refused"))
        gate.open.set()
    [record] = records
    assert record.request_id == info.value.request_id
    assert (record.outcome, record.error, record.attempts, record.queue_wait) == (
        "failed",
        "QueueFullError",
        (),
        None,
    )


async def test_cancelled_call_is_recorded_as_cancelled() -> None:
    """A caller cancelled during its attempt: outcome cancelled, the attempt cancelled."""
    gate = Gate()
    async with two_upstreams() as m:
        with capture_requests() as records:
            with anyio.move_on_after(0.01):
                await m.run(gate.fn("slow"))
    [record] = records
    assert record.outcome == "cancelled"
    [attempt] = record.attempts
    assert attempt.outcome == "cancelled"
    assert m.stats().cancelled_requests == 1


async def test_captures_nest_and_reach_child_tasks() -> None:
    """Each block gets the calls made inside it, child tasks started there included; calls
    outside every block are not recorded anywhere."""
    async with two_upstreams() as m:
        await m.run(failing())
        with capture_requests() as outer:
            await m.run(failing())
            with capture_requests() as inner:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(m.run, failing())
                    tg.start_soon(m.run, failing())
            await m.run(failing())
        await m.run(failing())
    assert len(inner) == 2
    assert len(outer) == 4
    assert {r.request_id for r in inner} < {r.request_id for r in outer}
    assert outer.by_id(inner[0].request_id) is inner[0]
    assert outer.by_id("req_nope") is None
    assert outer[-1] is outer[3]
    assert list(outer[1:3]) == [inner[0], inner[1]]
    assert "CapturedRequests([RequestRecord(" in repr(outer)


async def test_without_a_capture_nothing_is_kept() -> None:
    """No active block: the call leaves no record behind (the context holds nothing)."""
    async with two_upstreams() as m:
        await m.run(failing())
    assert llmpool._record.CAPTURE.get() is None


class TestTimes:
    """Durations on trio's MockClock: exact."""

    @pytest.fixture
    def anyio_backend(self) -> tuple[str, dict[str, Any]]:
        return ("trio", {"clock": MockClock(autojump_threshold=0)})

    async def test_queue_wait_attempt_durations_and_latency(self) -> None:
        """Waiting 5 s for the slot, a 2 s attempt failing with 503, a 1 s backoff, a 3 s
        attempt: queue_wait 5, durations 2 and 3, latency 11 seconds."""
        durations = [2.0, 3.0]

        async def fn(client: openai.AsyncOpenAI) -> str:
            await anyio.sleep(durations.pop(0))
            if durations:
                raise status_error(503)
            return "ok"

        async def holder(client: openai.AsyncOpenAI) -> None:
            await anyio.sleep(5.0)

        config = PoolConfig(max_concurrency=1, retry=RetryPolicy(initial_backoff=1.0, jitter=0.0))
        async with (
            ConnectionManager(config, client_factory=client_factory()) as m,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(m.run, holder)
            await anyio.wait_all_tasks_blocked()
            with capture_requests() as records:
                await m.run(fn, estimated_tokens=7)
        record = records[0]
        assert record.queue_wait == pytest.approx(5.0)
        assert [a.duration for a in record.attempts] == pytest.approx([2.0, 3.0])
        assert record.latency == pytest.approx(11.0)
        assert record.estimated_tokens == 7
