"""What ``stats()`` says about streams: each stream counts once, as its caller saw it.

Below the integration level: the upstream stream is a fake whose reads and close the test
controls, so interleavings are driven with ``wait_all_tasks_blocked``, not sleeps.
"""

from __future__ import annotations

from typing import Any

import anyio
import openai
import pytest

from llmpool import ConnectionManager, ManagerClosedError, PoolConfig, PooledStream, Priority

from .helpers import client_factory

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
    request = m._admit(Priority.NORMAL, None)

    async def fn(client: openai.AsyncOpenAI) -> Any:
        return upstream

    opened = await m._open_stream(request, fn)
    return m._track_stream(PooledStream(m, request, opened))


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
