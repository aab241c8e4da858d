"""The client llmpool.redis is built on, coredis 6, on both anyio backends: commands,
scripts and concurrent tasks sharing one client, against the real redis-server. (redis-py's
async client is asyncio-only; this is why the extra is coredis: docs/redis.md.)"""

from __future__ import annotations

import anyio
import coredis
import pytest

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


async def test_coredis_runs_on_this_backend(
    redis_url: str, prefix: str, anyio_backend: str
) -> None:
    """SET/GET, TIME, and one Lua script called from 20 tasks at once through one client,
    on the event loop of the test's backend."""
    # The running loop's cancellation class is asyncio's or trio's own.
    assert anyio.get_cancelled_exc_class().__module__.split(".")[0] == anyio_backend
    client = coredis.Redis.from_url(redis_url, decode_responses=True)
    async with client:
        await client.set(f"{prefix}:k", "v")
        assert await client.get(f"{prefix}:k") == "v"
        assert (await client.time()).year >= 2024
        incr = client.register_script("return redis.call('INCR', KEYS[1])")
        async with anyio.create_task_group() as group:
            for _ in range(20):
                group.start_soon(incr.execute, [f"{prefix}:n"], [])
        assert await client.get(f"{prefix}:n") == "20"
