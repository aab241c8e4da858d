"""Turn locks against a real redis-server: one holder per session across independent
clients (as two instances), fencing tokens that only grow, compare-and-delete, expiry on
Redis's clock."""

from __future__ import annotations

import math

import anyio
import pytest

from llmpool.redis import RedisState, TurnLostError, session_keys

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


async def expire_now(state: RedisState, session: str) -> None:
    """What a lease ending looks like, without waiting for it: the lock key is gone."""
    await state.client.delete([session_keys(state.prefix, session).turn])


async def test_a_held_turn_is_refused_until_released(state: RedisState) -> None:
    """try_acquire gets None while the turn is held, and the turn once it is released."""
    turn = await state.turns.try_acquire("s1", ttl=10.0)
    assert turn is not None
    assert await state.turns.try_acquire("s1", ttl=10.0) is None
    assert await turn.release() is True
    again = await state.turns.try_acquire("s1", ttl=10.0)
    assert again is not None
    await again.release()


async def test_sessions_have_locks_of_their_own(state: RedisState) -> None:
    """Holding one session's turn does not hold another's."""
    async with state.turns.hold("s1") as first, state.turns.hold("s2") as second:
        assert (first.session, second.session) == ("s1", "s2")


async def test_fencing_tokens_only_grow(state: RedisState) -> None:
    """Each turn of a session gets a token greater than every one before, also after an
    expiry; another session counts on its own."""
    tokens = []
    for _ in range(3):
        async with state.turns.hold("s1") as turn:
            tokens.append(turn.token)
    turn = await state.turns.acquire("s1", ttl=10.0)
    await expire_now(state, "s1")
    tokens.append(turn.token)
    async with state.turns.hold("s1") as turn:
        tokens.append(turn.token)
    assert tokens == [1, 2, 3, 4, 5]
    async with state.turns.hold("s2") as other:
        assert other.token == 1


async def test_two_instances_never_hold_one_turn_at_once(redis_url: str, prefix: str) -> None:
    """Six tasks on two independent clients take 5 turns each of one session: never two
    inside at once, every turn taken, tokens 1..30 each granted once."""
    inside = 0
    most_inside = 0
    tokens: list[int] = []

    async def worker(state: RedisState) -> None:
        nonlocal inside, most_inside
        for _ in range(5):
            async with state.turns.hold("s1", ttl=10.0) as turn:
                inside += 1
                most_inside = max(most_inside, inside)
                tokens.append(turn.token)
                await anyio.sleep(0.002)  # let the others run (and try) meanwhile
                inside -= 1

    async with (
        RedisState(redis_url, prefix=prefix, poll_interval=0.005) as first,
        RedisState(redis_url, prefix=prefix, poll_interval=0.005) as second,
        anyio.create_task_group() as group,
    ):
        for index in range(6):
            group.start_soon(worker, (first, second)[index % 2])
    assert most_inside == 1
    assert sorted(tokens) == list(range(1, 31))


async def test_a_stale_holder_can_neither_release_renew_nor_save(
    redis_url: str, prefix: str
) -> None:
    """A's lease ends and B takes the turn: A's release deletes nothing (B still holds it),
    A's renew and A's fenced save raise TurnLostError naming B's token, B's save goes in."""
    async with (
        RedisState(redis_url, prefix=prefix) as a,
        RedisState(redis_url, prefix=prefix) as b,
    ):
        stale = await a.turns.acquire("s1", ttl=10.0)
        _, version = await a.conversations.load("s1")
        await expire_now(a, "s1")
        fresh = await b.turns.acquire("s1", ttl=10.0)
        assert fresh.token == stale.token + 1

        assert await stale.release() is False
        assert await a.turns.try_acquire("s1") is None  # B's lock was left alone
        with pytest.raises(TurnLostError, match=r"token 1 no longer holds the turn: token 2") as e:
            await stale.renew()
        assert (e.value.token, e.value.current, e.value.session_id) == (1, 2, "s1")
        with pytest.raises(TurnLostError, match="token 2 was granted since"):
            await a.conversations.save("s1", '"stale"', version=version, fence=stale.token)
        assert await b.conversations.load("s1") == (None, 0)

        assert await b.conversations.save("s1", '"fresh"', version=version, fence=fresh.token) == 1
        assert await fresh.release() is True


async def test_a_lapsed_lease_with_no_successor_is_lost_too(state: RedisState) -> None:
    """Renewing a lease that ended, nobody holding the turn since, says so."""
    turn = await state.turns.acquire("s1", ttl=10.0)
    await expire_now(state, "s1")
    with pytest.raises(TurnLostError, match="its lock expired and nobody holds it"):
        await turn.renew()
    assert await turn.release() is False


async def test_a_save_with_a_token_never_granted_is_refused(state: RedisState) -> None:
    """A fence greater than the last token granted is misuse (no such turn): ValueError."""
    with pytest.raises(ValueError, match=r"fence 7 was never granted for 's1' \(the last token"):
        await state.conversations.save("s1", "{}", version=0, fence=7)


async def test_renew_extends_the_lease_on_redis(state: RedisState) -> None:
    """renew(ttl) sets the lease to ttl from now on Redis's clock (PTTL), and becomes the
    lock's ttl."""
    turn = await state.turns.acquire("s1", ttl=10.0)
    key = session_keys(state.prefix, "s1").turn
    assert 9_000 < await state.client.pttl(key) <= 10_000
    await turn.renew(60.0)
    assert 59_000 < await state.client.pttl(key) <= 60_000
    assert turn.ttl == 60.0
    await turn.release()


async def test_valid_until_is_before_the_lease_ends(state: RedisState) -> None:
    """valid_until is ttl after the request was sent, less 1 % + 2 ms for clock drift."""
    before = anyio.current_time()
    turn = await state.turns.acquire("s1", ttl=10.0)
    after = anyio.current_time()
    assert before + 10.0 - 0.102 <= turn.valid_until <= after + 10.0 - 0.102
    await turn.release()


async def test_a_crashed_holders_lock_comes_back_after_its_ttl(redis_url: str, prefix: str) -> None:
    """A holder that never releases (a crashed instance) blocks the turn for its ttl only:
    a waiter on another client gets it between ttl and ttl + margin after it was taken.

    Real time. Lower bound: the lease starts on Redis after the request that took it was
    sent, so the waiter cannot get the turn sooner than ttl after `before` (less 5 ms for
    the two clocks' millisecond rounding). Upper bound: ttl + one poll (0.05 s) + 0.5 s for a
    loaded 2-core machine."""
    ttl = 0.3
    async with (
        RedisState(redis_url, prefix=prefix) as crashed,
        RedisState(redis_url, prefix=prefix) as survivor,
    ):
        before = anyio.current_time()
        await crashed.turns.acquire("s1", ttl=ttl)  # never released
        with anyio.fail_after(ttl + 5.0):
            turn = await survivor.turns.acquire("s1", ttl=10.0)
        waited = anyio.current_time() - before
        assert ttl - 0.005 <= waited <= ttl + 0.05 + 0.5
        assert turn.token == 2
        await turn.release()


async def test_hold_releases_when_its_block_raises(state: RedisState) -> None:
    """The turn is released when the block fails, and the error propagates unchanged."""
    with pytest.raises(KeyError):
        async with state.turns.hold("s1"):
            raise KeyError("boom")
    turn = await state.turns.try_acquire("s1")
    assert turn is not None
    await turn.release()


async def test_hold_releases_when_cancelled(state: RedisState) -> None:
    """A block cancelled by an outer cancel scope still releases the turn (shielded)."""
    with anyio.move_on_after(0.05):
        async with state.turns.hold("s1"):
            await anyio.sleep_forever()
    turn = await state.turns.try_acquire("s1")
    assert turn is not None
    await turn.release()


async def test_a_cancelled_waiter_takes_nothing(state: RedisState) -> None:
    """acquire waits while another holds the turn; cancelled, it leaves the lock as it was
    and no token was drawn."""
    holder = await state.turns.acquire("s1", ttl=10.0)
    with anyio.move_on_after(0.2) as scope:
        await state.turns.acquire("s1", ttl=10.0)
    assert scope.cancelled_caught
    assert await holder.release() is True
    async with state.turns.hold("s1") as turn:
        assert turn.token == holder.token + 1


@pytest.mark.parametrize(
    "ttl", [0, -1.0, math.nan, math.inf], ids=["zero", "negative", "nan", "inf"]
)
async def test_a_ttl_that_is_not_positive_seconds_is_refused(state: RedisState, ttl: float) -> None:
    """ttl must be a positive, finite number of seconds."""
    with pytest.raises(ValueError, match="ttl must be a positive number of seconds"):
        await state.turns.acquire("s1", ttl=ttl)


async def test_a_turn_shows_its_session_token_and_ttl(state: RedisState) -> None:
    """repr(turn) names what identifies it (never a key or a URL)."""
    async with state.turns.hold("s1", ttl=10.0) as turn:
        assert repr(turn) == "TurnLock(session='s1', token=1, ttl=10.0)"
