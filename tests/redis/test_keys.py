"""Key layout: one session's keys share a Redis Cluster hash slot (checked by the CRC16 of
the Cluster specification and by a cluster-mode redis-server), and prefixes and session keys
that would break the hash tag are refused or escaped."""

from __future__ import annotations

import coredis
import pytest
from coredis._utils import hash_slot  # the Cluster spec's CRC16 mod 16384, as coredis routes
from coredis.exceptions import ResponseError

from llmpool.redis import RedisState, session_keys

SESSIONS = ["s1", "terminal-42", "a{b}c", "}{", "%7B", "ünï", "x" * 128]


@pytest.mark.parametrize("session", SESSIONS, ids=range(len(SESSIONS)))
def test_a_sessions_keys_hash_to_one_slot(session: str) -> None:
    """The conversation, turn and fence keys carry one hash tag: one slot."""
    keys = session_keys("llmpool", session)
    slots = {hash_slot(key.encode()) for key in keys}
    assert len(slots) == 1, keys


def test_the_layout_is_prefix_tag_and_role() -> None:
    """<prefix>:{<session>}:<role>, braces and % percent-encoded inside the tag."""
    assert session_keys("llmpool", "s1") == (
        "llmpool:{s1}:conversation",
        "llmpool:{s1}:turn",
        "llmpool:{s1}:fence",
    )
    assert session_keys("p", "a{b}%").turn == "p:{a%7Bb%7D%25}:turn"


def test_escaping_keeps_sessions_apart() -> None:
    """A session holding a brace and one holding its escape get different keys."""
    assert session_keys("p", "a{b") != session_keys("p", "a%7Bb")


@pytest.mark.parametrize("prefix", ["", "a{b", "a}b"], ids=["empty", "open", "close"])
def test_a_prefix_that_would_move_the_hash_tag_is_refused(prefix: str) -> None:
    """An empty prefix or one with a brace: ValueError naming it."""
    with pytest.raises(ValueError, match="prefix must"):
        RedisState("redis://127.0.0.1:1/0", prefix=prefix)


def test_an_empty_session_key_is_refused() -> None:
    """'{}' is no hash tag (each key would hash whole): an empty session key is refused."""
    with pytest.raises(ValueError, match="non-empty"):
        session_keys("llmpool", "")


def test_a_url_that_is_not_redis_is_refused() -> None:
    """Only redis://, rediss:// and unix:// URLs."""
    with pytest.raises(ValueError, match="url must be a redis://"):
        RedisState("http://127.0.0.1:6379")


@pytest.mark.anyio
@pytest.mark.integration
async def test_the_scripts_run_on_a_cluster_node(redis_cluster_url: str, prefix: str) -> None:
    """On a cluster-mode redis-server, CLUSTER KEYSLOT agrees with the CRC16 above, and a
    save and a turn (scripts touching two keys each) run; a script over keys of two
    sessions is refused (CROSSSLOT), so the check bites."""
    async with RedisState(redis_cluster_url, prefix=prefix) as state:
        for session in SESSIONS:
            keys = session_keys(prefix, session)
            slots = {await state.client.cluster_keyslot(key) for key in keys}
            assert slots == {hash_slot(keys.turn.encode())}
            async with state.turns.hold(session) as turn:
                await state.conversations.save(session, "{}", version=0, fence=turn.token)
            assert await state.conversations.load(session) == ("{}", 1)
        both = [session_keys(prefix, "s1").turn, session_keys(prefix, "s2").turn]
        assert hash_slot(both[0].encode()) != hash_slot(both[1].encode())
        script = state.client.register_script("return redis.call('EXISTS', KEYS[1], KEYS[2])")
        with pytest.raises(ResponseError, match="don't hash to the same slot"):
            await script(both, [])
    assert isinstance(state.client, coredis.Redis)
