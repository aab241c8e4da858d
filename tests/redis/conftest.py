"""Fixtures of llmpool.redis's tests: a redis-server in cluster mode for the hash-slot test,
and a fresh key prefix per test so tests share no keys (``redis_url``, the session's one real
redis-server, is in tests/conftest.py: the server's tests use it too)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from llmpool.redis import RedisState

from .server import RedisServer


@pytest.fixture(scope="session")
def redis_cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A redis-server in cluster mode, one node that owns all 16384 slots: a script touching
    keys of two slots fails there with CROSSSLOT, as on a real cluster."""
    directory = tmp_path_factory.mktemp("redis-cluster")
    server = RedisServer(
        directory,
        "--cluster-enabled", "yes",
        "--cluster-config-file", str(directory / "nodes.conf"),
    )  # fmt: skip
    server.start()
    try:
        server.own_all_slots()
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own, to kill and restart (the session's is shared)."""
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def prefix() -> str:
    """A key prefix of this test's own."""
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def state(redis_url: str, prefix: str) -> AsyncIterator[RedisState]:
    """An open RedisState on the session's server, under this test's prefix."""
    async with RedisState(redis_url, prefix=prefix) as opened:
        yield opened
