"""RedisConversations against a real redis-server: the ConversationStore protocol
(compare-and-set, delete, absent keys) shared by independent clients, as by two instances."""

from __future__ import annotations

import anyio
import pytest

from llmpool import Conversation
from llmpool._state import BudgetStore, ConversationConflictError, ConversationStore, HealthStore
from llmpool.redis import RedisBudgets, RedisConversations, RedisHealth, RedisState

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


class Barrier:
    """Releases its waiters once ``parties`` of them wait."""

    def __init__(self, parties: int) -> None:
        self.parties = parties
        self.arrived = 0
        self.event = anyio.Event()

    async def wait(self) -> None:
        self.arrived += 1
        if self.arrived == self.parties:
            self.event.set()
        await self.event.wait()


async def test_it_is_a_conversation_store_and_stores_put_it_beside_shared_budgets(
    state: RedisState,
) -> None:
    """RedisConversations implements the protocol; stores() has it for conversations, and
    budgets and health on the same Redis, new ones per call (one per manager)."""
    assert isinstance(state.conversations, RedisConversations)
    assert isinstance(state.conversations, ConversationStore)
    stores = state.stores()
    assert stores.conversations is state.conversations
    assert isinstance(stores.budgets, RedisBudgets)
    assert isinstance(stores.budgets, BudgetStore)
    assert isinstance(stores.health, RedisHealth)
    assert isinstance(stores.health, HealthStore)
    assert state.stores().budgets is not stores.budgets


async def test_an_absent_key_loads_as_none_at_version_zero(state: RedisState) -> None:
    """load() of a key never saved: (None, 0)."""
    assert await state.conversations.load("never-saved") == (None, 0)


async def test_saves_from_the_current_version_advance_it(state: RedisState) -> None:
    """save() from the version loaded stores the document as version + 1."""
    store = state.conversations
    assert await store.save("s1", '{"turn": 1}', version=0) == 1
    assert await store.load("s1") == ('{"turn": 1}', 1)
    assert await store.save("s1", '{"turn": 2}', version=1) == 2
    assert await store.load("s1") == ('{"turn": 2}', 2)


async def test_of_two_writers_from_one_version_the_second_conflicts(
    redis_url: str, prefix: str
) -> None:
    """Two instances load version 0; the first save wins; the second is refused with both
    versions in the message, and the stored document is the winner's."""
    async with (
        RedisState(redis_url, prefix=prefix) as first,
        RedisState(redis_url, prefix=prefix) as second,
    ):
        _, version_a = await first.conversations.load("s1")
        _, version_b = await second.conversations.load("s1")
        assert await first.conversations.save("s1", '"a"', version=version_a) == 1
        with pytest.raises(ConversationConflictError, match=r"'s1' is at version 1, not 0"):
            await second.conversations.save("s1", '"b"', version=version_b)
        assert await second.conversations.load("s1") == ('"a"', 1)


async def test_delete_forgets_and_deleting_an_absent_key_is_no_error(state: RedisState) -> None:
    """delete() removes the document; the key then starts again at version 0."""
    store = state.conversations
    await store.save("s1", "{}", version=0)
    await store.delete("s1")
    assert await store.load("s1") == (None, 0)
    await store.delete("s1")
    assert await store.save("s1", "{}", version=0) == 1


async def test_concurrent_savers_of_one_version_have_exactly_one_winner(
    redis_url: str, prefix: str
) -> None:
    """Round after round, 8 tasks on two clients all load the same version, wait for each
    other, then all save: exactly one save succeeds per version, the others conflict."""
    tasks, rounds = 8, 5
    winners: dict[int, list[int]] = {}
    conflicts = 0

    async def writer(index: int, store: RedisConversations, barrier: Barrier) -> None:
        nonlocal conflicts
        _, version = await store.load("s1")
        await barrier.wait()  # every writer has loaded the same version
        try:
            new = await store.save("s1", f'{{"writer": {index}}}', version=version)
        except ConversationConflictError:
            conflicts += 1
        else:
            winners.setdefault(new, []).append(index)

    async with (
        RedisState(redis_url, prefix=prefix) as first,
        RedisState(redis_url, prefix=prefix) as second,
    ):
        for _ in range(rounds):
            barrier = Barrier(tasks)
            async with anyio.create_task_group() as group:
                for index in range(tasks):
                    store = (first, second)[index % 2].conversations
                    group.start_soon(writer, index, store, barrier)
    assert sorted(winners) == list(range(1, rounds + 1))
    assert all(len(indices) == 1 for indices in winners.values()), winners
    assert conflicts == rounds * (tasks - 1)


async def test_a_conversation_continues_on_another_instance(redis_url: str, prefix: str) -> None:
    """A Conversation saved by one instance loads on another equal to what was saved, and its
    next turn is saved from there."""
    conversation = Conversation()
    conversation.add_user("What is the weather in Paris?")
    conversation.items.append(
        {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "Sunny, 21 °C"}],
        }
    )
    conversation.last_response_id = "resp_1"
    conversation.synced = 2
    async with RedisState(redis_url, prefix=prefix) as here:
        version = await here.conversations.save("s1", conversation.to_json(), version=0)
    async with RedisState(redis_url, prefix=prefix) as there:
        document, loaded_version = await there.conversations.load("s1")
        assert document is not None
        assert loaded_version == version == 1
        restored = Conversation.from_json(document)
        assert restored == conversation
        restored.add_user("And tomorrow?")
        assert await there.conversations.save("s1", restored.to_json(), version=1) == 2


async def test_prefixes_are_separate_namespaces(redis_url: str, prefix: str) -> None:
    """The same key under two prefixes is two conversations."""
    async with (
        RedisState(redis_url, prefix=prefix) as first,
        RedisState(redis_url, prefix=f"{prefix}-other") as second,
    ):
        await first.conversations.save("s1", '"first"', version=0)
        assert await second.conversations.load("s1") == (None, 0)
