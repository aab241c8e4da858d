"""What ``stats()`` says about streams: each stream counts once, as its caller saw it.

Below the integration level: the upstream stream is a fake whose reads and close the test
controls, so interleavings are driven with ``wait_all_tasks_blocked``, not sleeps.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import openai
import pytest
import respx

from llmpool import (
    ConnectionManager,
    ManagerClosedError,
    PoolConfig,
    PooledStream,
    Priority,
    RetryPolicy,
    StreamInterruptedError,
    capture_requests,
    stream_response,
)
from llmpool.testing import _payloads as P

from .helpers import client_factory, counts, read_all
from .test_streams import BASE, created, sse, sse_events, sse_response

pytestmark = pytest.mark.anyio


class BlockingUpstream:
    """An upstream stream whose read waits until it is closed. Its first close blocks until
    ``release`` is set (a close that yields, as httpx's does on trio); a second close returns
    at once (already closed)."""

    def __init__(self) -> None:
        self.closing = anyio.Event()
        self.release = anyio.Event()
        self.closes = 0

    def __aiter__(self) -> BlockingUpstream:
        return self

    async def __anext__(self) -> Any:
        await self.closing.wait()
        raise openai.APIConnectionError(request=None)  # type: ignore[arg-type]

    async def close(self) -> None:
        self.closes += 1
        if self.closing.is_set():
            return
        self.closing.set()
        await self.release.wait()


async def open_fake(m: ConnectionManager, upstream: Any) -> PooledStream[Any]:
    engine = m._engine
    request = engine.admit(Priority.NORMAL, None)

    async def fn(client: openai.AsyncOpenAI) -> Any:
        return upstream

    opened, lease = await engine.hold(request, fn, False)
    return PooledStream(lease, opened)


async def test_stream_cut_at_shutdown_counts_as_failed() -> None:
    """A stream the manager closes at shutdown is failed, once, even when its reader, woken
    by the close, closes the stream itself before the manager's close returns."""
    config = PoolConfig(shutdown_grace=0.0)
    m = ConnectionManager(config, client_factory=client_factory())
    seen: list[str] = []
    upstream = BlockingUpstream()
    async with m:
        stream = await open_fake(m, upstream)

        async def read() -> None:
            try:
                async with stream:
                    async for _event in stream:
                        pass
            except ManagerClosedError:
                seen.append("closed")

        async with anyio.create_task_group() as tg:
            tg.start_soon(read)
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(m.aclose)
            await anyio.wait_all_tasks_blocked()  # the abort's close blocks; the reader woke
            upstream.release.set()
    assert seen == ["closed"]
    assert stream.aborted
    stats = m.stats()
    assert (stats.completed_requests, stats.failed_requests) == (0, 1)
    assert stats.active_connections == 0


# -- recovering streams: one request each, as the caller saw it --------------------------------


@pytest.fixture
def mock() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_called=False) as router:
        yield router


def respx_manager(max_attempts: int = 3) -> ConnectionManager:
    def factory(index: int) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(api_key="k", base_url=BASE, http_client=httpx.AsyncClient())

    retry = RetryPolicy(max_attempts=max_attempts, initial_backoff=0.001, jitter=0.0)
    return ConnectionManager(PoolConfig(retry=retry), client_factory=factory)


def response_failed() -> httpx.Response:
    failed = P.response_object({"model": "m"}, response_id="resp_f", output=[], done=False)
    failed |= {"status": "failed", "error": {"code": "server_error", "message": "overloaded"}}
    return sse_response(sse_events(created(), ("response.failed", {"response": failed})))


async def test_response_failed_events_count_one_failure(mock: respx.MockRouter) -> None:
    """Three transient response.failed events (max_attempts=3): three requests reach the
    server, and stats() counts one failed stream with two retries, nothing completed."""
    route = mock.post("/responses").mock(side_effect=[response_failed() for _ in range(3)])
    async with respx_manager() as m:
        stream = stream_response(m, model="m", input="q")
        with capture_requests() as records, pytest.raises(StreamInterruptedError):
            await read_all(stream)
        assert route.call_count == 3
        assert counts(m) == (0, 1, 0, 2)
        assert m.stats().latency.count == 0
    [record] = records
    assert record is stream.record
    assert (record.outcome, record.error, len(record.attempts)) == (
        "failed",
        "StreamInterruptedError",
        3,
    )
    assert [a.number for a in record.attempts] == [1, 2, 3]
    assert [a.error for a in record.attempts] == ["StreamFailure"] * 3
    assert len({a.request_id for a in record.attempts}) == 3
    assert record.request_id == record.attempts[-1].request_id == stream.request_id


async def test_success_after_one_retry_counts_once(mock: respx.MockRouter) -> None:
    """A response.failed before output, then the answer: one completed stream, one retry,
    one latency sample from the first open to the end."""
    mock.post("/responses").mock(side_effect=[response_failed(), sse_response(sse({"input": "q"}))])
    async with respx_manager() as m:
        with capture_requests() as records:
            async with stream_response(m, model="m", input="q") as stream:
                events = [event async for event in stream]
        assert events[0].type == "recovered"
        assert events[-1].type == "complete"
        assert counts(m) == (1, 0, 0, 1)
        assert m.stats().latency.count == 1
    [record] = records
    assert record.outcome == "completed"
    assert [a.outcome for a in record.attempts] == ["error", "ok"]
    assert record.retries == 1
    assert record.latency >= sum(a.duration for a in record.attempts)
    assert record.used_tokens == 5  # usage.total_tokens: "q" in, "Simulated reply to: q" out


async def test_error_event_counts_as_failed(mock: respx.MockRouter) -> None:
    """on_error="event": a stream ended by an `error` event is failed, not completed."""
    mock.post("/responses").mock(side_effect=[response_failed() for _ in range(2)])
    async with respx_manager(max_attempts=2) as m:
        async with stream_response(m, on_error="event", model="m", input="q") as stream:
            events = [event async for event in stream]
        assert [e.type for e in events] == ["error"]
        assert counts(m) == (0, 1, 0, 1)


async def test_stream_closed_before_its_end_counts_as_cancelled(mock: respx.MockRouter) -> None:
    """Closed by its caller after the first chunk: cancelled, once; a stream never iterated
    sends nothing and counts nothing."""
    mock.post("/responses").mock(return_value=sse_response(sse({"input": "a b c"})))
    async with respx_manager() as m:
        async with stream_response(m, model="m", input="a b c") as stream:
            async for event in stream:
                assert event.type == "chunk"
                break
        await stream.aclose()
        async with stream_response(m, model="m", input="never"):
            pass
        assert counts(m) == (0, 0, 1, 0)
        assert m.stats().active_connections == 0
    assert stream.record is not None
    assert stream.record.outcome == "cancelled"


async def test_stream_refused_at_submission_counts_once(mock: respx.MockRouter) -> None:
    """A manager closed before the stream starts: one failure (counted at submission), no
    record, no request sent."""
    route = mock.post("/responses")
    m = respx_manager()
    async with m:
        pass
    with capture_requests() as records, pytest.raises(ManagerClosedError):
        async for _event in stream_response(m, model="m", input="q"):
            pass
    assert route.call_count == 0
    assert counts(m) == (0, 1, 0, 0)
    assert list(records) == []


async def test_view_max_attempts_bounds_the_streams_own_retries(mock: respx.MockRouter) -> None:
    """with_options(max_attempts=1): a transient response.failed before output is not retried
    by the recovering stream either (the manager's default would allow three)."""
    route = mock.post("/responses").mock(side_effect=[response_failed() for _ in range(3)])
    async with respx_manager() as m:
        stream = stream_response(m.with_options(max_attempts=1), model="m", input="q")
        with pytest.raises(StreamInterruptedError):
            await read_all(stream)
        assert route.call_count == 1
        assert counts(m) == (0, 1, 0, 0)
