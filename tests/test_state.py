"""State stores: in-memory defaults, compare-and-set conversations, a wall-clock store shared
by two managers (the clock seam), and the stores a manager runs in its task group."""

from __future__ import annotations

import time
from typing import Any

import anyio
import openai
import pytest

from llmpool import ConnectionManager, PoolConfig, QueueTimeoutError, RetryPolicy
from llmpool._state import (
    BudgetStore,
    ClockSeam,
    ConversationConflictError,
    ConversationStore,
    HealthStore,
    MemoryBudgets,
    MemoryConversations,
    MemoryHealth,
    StateStores,
)

from .helpers import client_factory, status_error
from .stores import Hub, SharedHealth

pytestmark = pytest.mark.anyio


def test_the_memory_stores_implement_the_protocols() -> None:
    """Each in-memory store is its protocol (runtime-checkable), and StateStores defaults to
    them."""
    stores = StateStores()
    assert isinstance(stores.budgets, MemoryBudgets)
    assert isinstance(stores.budgets, BudgetStore)
    assert isinstance(stores.health, MemoryHealth)
    assert isinstance(stores.health, HealthStore)
    assert isinstance(stores.conversations, MemoryConversations)
    assert isinstance(stores.conversations, ConversationStore)


def test_the_seam_converts_both_ways_and_keeps_none() -> None:
    """loop -> wall -> loop returns the same time (both clocks read at each conversion); 0.0
    (no cooldown) stays 0.0; a loop-clock store is never converted."""
    loop = [100.0]
    wall = [1_700_000_000.0]
    seam = ClockSeam(lambda: loop[0], lambda: wall[0])
    assert seam.to_store(130.0, "wall") == 1_700_000_030.0
    loop[0] += 5.0
    wall[0] += 5.0  # both clocks moved together
    assert seam.to_loop(1_700_000_030.0, "wall") == 130.0
    assert seam.to_store(0.0, "wall") == 0.0
    assert seam.to_loop(0.0, "wall") == 0.0
    assert seam.to_store(42.0, "loop") == 42.0


async def test_conversations_are_compare_and_set() -> None:
    """save() stores version + 1 only from the current version; a stale save is refused."""
    store = MemoryConversations()
    assert await store.load("s1") == (None, 0)
    assert await store.save("s1", '{"turn": 1}', version=0) == 1
    with pytest.raises(ConversationConflictError, match="version 1, not 0"):
        await store.save("s1", '{"turn": 1, "other": true}', version=0)
    assert await store.save("s1", '{"turn": 2}', version=1) == 2
    assert await store.load("s1") == ('{"turn": 2}', 2)
    await store.delete("s1")
    assert await store.load("s1") == (None, 0)


async def test_a_cooldown_reaches_the_other_manager_through_a_wall_clock_store() -> None:
    """Manager A's 429 with retry-after 30 s cools the upstream in manager B too: the hub
    carries it in Unix time, B converts it to its own loop clock; B's request then waits
    (queue timeout) instead of reaching the upstream."""
    hub = Hub()
    sent: list[str] = []

    def fn(name: str, fail: bool) -> Any:
        async def call(client: openai.AsyncOpenAI) -> str:
            sent.append(name)
            if fail:
                raise status_error(429, headers={"retry-after": "30"})
            return name

        return call

    config = PoolConfig(pool_size=1, queue_timeout=0.2, retry=RetryPolicy(max_attempts=1))
    a_store, b_store = SharedHealth(hub), SharedHealth(hub)
    factory = client_factory("http://shared.test/v1")
    before = time.time()
    async with (
        ConnectionManager(config, client_factory=factory, state=StateStores(health=a_store)) as a,
        ConnectionManager(config, client_factory=factory, state=StateStores(health=b_store)) as b,
    ):
        with pytest.raises(openai.RateLimitError):
            await a.run(fn("a", fail=True))
        ((_upstream, until_wall),) = hub.published
        assert before + 30 <= until_wall <= time.time() + 30
        await anyio.wait_all_tasks_blocked()
        assert b_store.applied == 1
        assert b.stats().cooling_upstreams == 1
        with pytest.raises(QueueTimeoutError):
            await b.run(fn("b", fail=False))
    assert sent == ["a"]  # B never sent its request into the cooldown
