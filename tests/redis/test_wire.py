"""The budget worker's own connection (``llmpool.redis._wire.Wire``) on a real redis-server:
replies in order, error replies, AUTH and SELECT from the URL, and a connection that is
dropped (cancelled mid-reply, Redis killed) and made again on the next round trip."""

from __future__ import annotations

import uuid
from pathlib import Path

import anyio
import coredis
import pytest

from llmpool.redis._wire import Wire, WireError

from .server import RedisServer

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


def key() -> str:
    return f"wire-{uuid.uuid4().hex[:12]}"


async def test_replies_come_back_in_order_with_their_types(redis_url: str) -> None:
    """One write of several commands: integers, strings, None and lists, in order."""
    wire = Wire(redis_url)
    name = key()
    try:
        replies = await wire.execute(
            [
                ("PING",),
                ("SET", name, "v", "PX", "5000"),
                ("GET", name),
                ("GET", name + "-none"),
                ("RPUSH", name + "-l", "a", "b"),
                ("LRANGE", name + "-l", "0", "-1"),
                ("EVAL", "return {1, 0, -1, 'x'}", "0"),
            ]
        )
        assert replies == ["PONG", "OK", "v", None, 2, ["a", "b"], [1, 0, -1, "x"]]
    finally:
        await wire.aclose()


async def test_an_error_reply_raises_and_the_connection_stays_usable(redis_url: str) -> None:
    """NOSCRIPT is raised as WireError with Redis's text; the commands before it took
    effect (no transaction), and the next round trip works on the same connection."""
    wire = Wire(redis_url)
    name = key()
    try:
        with pytest.raises(WireError, match="NOSCRIPT"):
            await wire.execute([("SET", name, "1"), ("EVALSHA", "0" * 40, "0")])
        assert await wire.execute([("GET", name)]) == ["1"]
    finally:
        await wire.aclose()


async def test_tasks_sharing_it_each_get_their_own_replies(redis_url: str) -> None:
    """Eight tasks, 50 round trips each on one Wire, some cancelled half-way: every reply a
    task reads is the echo of its own command."""
    wire = Wire(redis_url)
    wrong: list[tuple[str, object]] = []

    async def task(index: int) -> None:
        for round_ in range(50):
            mine = f"{index}-{round_}"
            with anyio.move_on_after(0.0005 if round_ % 7 == 3 else 5.0):
                reply = await wire.execute([("ECHO", mine), ("ECHO", mine + "b")])
                if reply != [mine, mine + "b"]:
                    wrong.append((mine, reply))

    try:
        async with anyio.create_task_group() as group:
            for index in range(8):
                group.start_soon(task, index)
    finally:
        await wire.aclose()
    assert wrong == []


async def test_the_db_of_the_url_is_selected(own_redis: RedisServer) -> None:
    url = f"redis://127.0.0.1:{own_redis.port}/3"
    wire = Wire(url)
    name = key()
    try:
        await wire.execute([("SET", name, "in-3")])
    finally:
        await wire.aclose()
    async with coredis.Redis.from_url(url, decode_responses=True) as three:
        assert await three.get(name) == "in-3"
    async with coredis.Redis.from_url(own_redis.url, decode_responses=True) as zero:
        assert await zero.get(name) is None


async def test_a_password_and_a_user_from_the_url(own_redis: RedisServer) -> None:
    """requirepass: the URL's password is sent with AUTH; a wrong one is refused with Redis's
    message; an ACL user logs in with user and password."""
    port = own_redis.port
    admin = Wire(own_redis.url)
    await admin.execute(
        [
            ("ACL", "SETUSER", "alice", "on", ">alice-pw", "~*", "+@all"),
            ("CONFIG", "SET", "requirepass", "s3cret"),
        ]
    )
    await admin.aclose()
    for url in (
        f"redis://:s3cret@127.0.0.1:{port}/0",
        f"redis://alice:alice-pw@127.0.0.1:{port}/0",
    ):
        wire = Wire(url)
        try:
            assert await wire.execute([("PING",)]) == ["PONG"]
        finally:
            await wire.aclose()
    wire = Wire(f"redis://:wrong@127.0.0.1:{port}/0")
    with pytest.raises(WireError, match=r"WRONGPASS|invalid"):
        await wire.execute([("PING",)])
    unauthenticated = Wire(f"redis://127.0.0.1:{port}/0")
    with pytest.raises(WireError, match="NOAUTH"):
        await unauthenticated.execute([("PING",)])
    await unauthenticated.aclose()


async def test_a_round_trip_cut_short_drops_the_connection(redis_url: str) -> None:
    """Cancelled while the reply of a slow script is on its way: the next round trip gets
    its own reply, never the late one."""
    wire = Wire(redis_url)
    try:
        with anyio.move_on_after(0.05) as scope:
            # busy for about 0.3 s on Redis's side, then answers 'late'
            slow = "local t = redis.call('TIME'); local s = t[1] * 1e6 + t[2]; " + (
                "while true do local n = redis.call('TIME'); "
                "if n[1] * 1e6 + n[2] - s > 300000 then break end end; return 'late'"
            )
            await wire.execute([("EVAL", slow, "0")])
        assert scope.cancelled_caught
        with anyio.fail_after(5.0):
            assert await wire.execute([("ECHO", "mine")]) == ["mine"]
    finally:
        await wire.aclose()


async def test_redis_killed_then_back(own_redis: RedisServer) -> None:
    """Redis gone: the round trip fails with a connection error (not a hang, not a wrong
    reply); Redis back on the same port: the next one connects again."""
    wire = Wire(own_redis.url)
    try:
        assert await wire.execute([("PING",)]) == ["PONG"]
        own_redis.kill()
        with pytest.raises((OSError, anyio.BrokenResourceError, anyio.EndOfStream)):
            with anyio.fail_after(2.0):
                await wire.execute([("PING",)])
        with pytest.raises(OSError, match="connection attempts failed"):  # while it is down
            await wire.execute([("PING",)])
        await anyio.to_thread.run_sync(own_redis.restart)
        assert await wire.execute([("PING",)]) == ["PONG"]
    finally:
        await wire.aclose()


async def test_a_unix_socket_url(tmp_path: Path) -> None:
    socket = tmp_path / "redis.sock"
    server = RedisServer(tmp_path, "--unixsocket", str(socket), "--unixsocketperm", "700")
    server.start()
    try:
        wire = Wire(f"unix://{socket}?db=2")
        try:
            assert await wire.execute([("SET", "k", "v"), ("GET", "k")]) == ["OK", "v"]
        finally:
            await wire.aclose()
        async with coredis.Redis.from_url(f"unix://{socket}?db=2", decode_responses=True) as two:
            assert await two.get("k") == "v"
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://127.0.0.1:6379", "redis://, rediss:// or unix://"),
        ("redis://127.0.0.1:6379/x", "db must be an integer"),
    ],
)
def test_a_url_it_cannot_use(url: str, message: str) -> None:
    with pytest.raises(WireError, match=message):
        Wire(url)
