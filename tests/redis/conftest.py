"""Fixtures of llmpool.redis's tests: one real redis-server per test session, and a fresh key
prefix per test so tests share no keys."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from .server import RedisServer


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A redis-server on a free loopback port for the whole session; its URL."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def prefix() -> str:
    """A key prefix of this test's own."""
    return f"test-{uuid.uuid4().hex[:12]}"
