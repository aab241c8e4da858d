"""RedisState: a context that opens the client, and leaves the block's outcome as it was."""

from __future__ import annotations

import anyio
import pytest

from llmpool.redis import RedisState
from llmpool.redis._replies import pair

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


async def test_an_error_in_the_block_propagates_unchanged(redis_url: str, prefix: str) -> None:
    """An exception raised inside `async with RedisState(...)` comes out as itself, not in
    the exception group of the client's task group."""

    async def use_then_fail(state: RedisState) -> None:
        await state.conversations.load("s1")  # a live connection in the client's pool
        raise KeyError("boom")

    with pytest.raises(KeyError) as caught:
        async with RedisState(redis_url, prefix=prefix) as state:
            await use_then_fail(state)
    assert type(caught.value) is KeyError


async def test_an_outer_cancel_scope_cancels_the_block(redis_url: str, prefix: str) -> None:
    """A cancel scope around the block cancels it and catches its own cancellation."""
    with anyio.move_on_after(0.05) as scope:
        async with RedisState(redis_url, prefix=prefix) as state:
            await state.conversations.load("s1")
            await anyio.sleep_forever()
    assert scope.cancelled_caught


async def test_it_can_be_opened_again(redis_url: str, prefix: str) -> None:
    """Closed, the same RedisState opens again (the coredis pool is re-entered)."""
    state = RedisState(redis_url, prefix=prefix)
    async with state:
        await state.conversations.save("s1", "{}", version=0)
    async with state:
        assert await state.conversations.load("s1") == ("{}", 1)


def test_it_keeps_its_url_and_prefix() -> None:
    """url and prefix as given; the default prefix is "llmpool"."""
    state = RedisState("redis://127.0.0.1:1/0")
    assert (state.url, state.prefix) == ("redis://127.0.0.1:1/0", "llmpool")
    assert state.conversations.prefix == "llmpool"


def test_the_public_names_are_pinned_and_read_llmpool_redis() -> None:
    """llmpool.redis exports exactly these names, each shown as llmpool.redis.<name>."""
    import llmpool.redis

    assert llmpool.redis.__all__ == [
        "RedisBudgets",
        "RedisConversations",
        "RedisHealth",
        "RedisState",
        "SessionKeys",
        "SharedBudgetPolicy",
        "TurnLock",
        "TurnLocks",
        "TurnLostError",
        "session_keys",
        "window_allowance",
    ]
    for name in llmpool.redis.__all__:
        assert getattr(llmpool.redis, name).__module__ == "llmpool.redis", name


@pytest.mark.parametrize("interval", [0, -0.1], ids=["zero", "negative"])
def test_a_poll_interval_that_is_not_positive_is_refused(interval: float) -> None:
    """poll_interval must be positive seconds: ValueError naming it."""
    with pytest.raises(ValueError, match="poll_interval must be positive seconds"):
        RedisState("redis://127.0.0.1:1/0", poll_interval=interval)


@pytest.mark.parametrize("reply", [None, [1], [1, "2"], "12"], ids=["none", "one", "str", "text"])
def test_a_script_reply_that_is_not_two_integers_is_a_type_error(reply: object) -> None:
    """A script and its caller that disagree fail loudly, naming the reply."""
    with pytest.raises(TypeError, match="two integers"):
        pair(reply)
