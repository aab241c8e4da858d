"""client_factory: ``factory(index)`` and ``factory()`` both work; anything else fails at once."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any

import openai
import pytest

from llmpool import ConnectionManager, PoolConfig
from llmpool._pool import adapt_factory

from .helpers import client_factory

BASE = "http://upstream.test/v1"


def client(api_key: str = "k") -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(api_key=api_key, base_url=BASE, max_retries=0)


class Recorder:
    """Records the arguments each call got."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def __call__(self, *args: Any) -> openai.AsyncOpenAI:
        self.calls.append(args)
        return client()


def test_forms_are_read_from_the_signature() -> None:
    """One positional parameter gets the index; none gets no argument."""
    seen: list[tuple[Any, ...]] = []

    def indexed(index: int) -> openai.AsyncOpenAI:
        seen.append((index,))
        return client()

    def zero() -> openai.AsyncOpenAI:
        seen.append(())
        return client()

    def optional(index: int = 7) -> openai.AsyncOpenAI:
        seen.append((index,))
        return client()

    def keyword_only(*, api_key: str = "k") -> openai.AsyncOpenAI:
        seen.append(("kw",))
        return client(api_key)

    def two(index: int, api_key: str) -> openai.AsyncOpenAI:
        seen.append((index, api_key))
        return client(api_key)

    for factory in (indexed, zero, optional, keyword_only, functools.partial(two, api_key="p")):
        adapt_factory(factory)(3)
    assert seen == [(3,), (), (3,), ("kw",), (3, "p")]
    recorder = Recorder()  # def __call__(self, *args): accepts the index
    adapt_factory(recorder)(2)
    assert recorder.calls == [(2,)]


def test_a_signature_that_cannot_be_read_gets_the_index() -> None:
    """No readable signature (a C callable): called as documented, with the index."""

    class Opaque(Recorder):
        @property
        def __signature__(self) -> None:
            raise ValueError("no signature found")

    opaque = Opaque()
    adapt_factory(opaque)(4)
    assert opaque.calls == [(4,)]


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        pytest.param(lambda index, key: client(), "lambda>(index, key) can be called", id="two"),
        pytest.param(lambda *, key: client(), "lambda>(*, key) can be called", id="kw-required"),
        pytest.param(client(), "must be callable, got AsyncOpenAI", id="a-client"),
        pytest.param("sk-...", "must be callable, got str", id="a-string"),
    ],
)
def test_other_factories_fail_at_construction(factory: object, message: str) -> None:
    """Anything else raises TypeError when the manager is built, saying what to write."""
    with pytest.raises(TypeError, match=re.escape(message)) as info:
        ConnectionManager(client_factory=factory)  # type: ignore[arg-type]
    assert "client_factory=lambda index: openai.AsyncOpenAI(...)" in str(info.value)
    assert "client_factory=lambda: openai.AsyncOpenAI(...)" in str(info.value)


async def ping(client: openai.AsyncOpenAI) -> str:
    return str(client.base_url)


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: lambda: client(), id="zero-argument"),
        pytest.param(lambda: client_factory(BASE), id="indexed"),
    ],
)
@pytest.mark.anyio
async def test_both_forms_run_end_to_end(make: Callable[[], Any]) -> None:
    """A manager built with either form enters, runs calls on its clients and closes."""
    async with ConnectionManager(PoolConfig(pool_size=3), client_factory=make()) as m:
        results = [await m.run(ping) for _ in range(4)]
        assert len(m.stats().in_flight_per_client) == 3
    assert results == [f"{BASE}/"] * 4
    assert m.stats().completed_requests == 4


@pytest.mark.anyio
async def test_indexed_factory_gets_every_pool_index() -> None:
    """factory(index) is called once per index, 0 to pool_size - 1."""
    recorder = Recorder()
    async with ConnectionManager(PoolConfig(pool_size=3), client_factory=recorder):
        pass
    assert recorder.calls == [(0,), (1,), (2,)]
