"""``Wire``: one Redis connection for the budget worker's round trips, RESP through hiredis.

Every admission waits for one round trip, so its cost is the added admission latency. On
loopback coredis 6.9 spends about 250 to 350 µs of CPU per command (a writer task and a reader
task hand each command and reply over memory streams: six or seven event-loop turns), where
the round trip itself takes about 50 µs. The worker sends one batch at a time and waits for
its replies, so it needs no pool, no multiplexing and no push messages: this is a plain
socket (anyio, so asyncio and trio alike) with hiredis's ``pack_command`` and ``Reader`` (the
C encoder and parser that redis-py uses) for RESP2 (the Redis serialization protocol,
https://redis.io/docs/latest/develop/reference/protocol-spec/). Everything else (scripts
loading, heartbeats, pub/sub, conversations) stays on coredis.

A round trip cut short (a timeout, a cancellation, a broken socket) leaves replies in
flight: the connection is dropped then, and the next round trip opens a new one.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

import anyio
import anyio.abc

from llmpool._extras import require

if TYPE_CHECKING:
    import hiredis
else:
    hiredis = require("hiredis", "redis", feature="llmpool.redis")

__all__ = ["Wire", "WireError"]

_CHUNK = 65536


class WireError(Exception):
    """Redis answered a command with an error, or the URL cannot be used.

    The message is Redis's (``NOSCRIPT …``, ``WRONGTYPE …``, ``NOAUTH …``) or says what is
    wrong with the URL.
    """


class Wire:
    """A connection to the Redis of ``url``, opened on first use.

    Args:
        url: ``redis://[[user]:password@]host[:port][/db]``, ``rediss://…`` (TLS, the
            system's trust store) or ``unix://[[user]:password@]/path[?db=N]``, as coredis
            takes them.

    Raises:
        WireError: the URL's scheme is none of these, or its db is not an integer.
    """

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss", "unix"):
            raise WireError(f"a Redis URL is redis://, rediss:// or unix://, got {url!r}")
        self._parts = parts
        query = parse_qs(parts.query)
        db = query.get("db", [parts.path.lstrip("/") if parts.scheme != "unix" else ""])[0]
        try:
            self._db = int(db) if db else 0
        except ValueError:
            raise WireError(f"the Redis URL's db must be an integer, got {db!r}") from None
        self._user = unquote(parts.username) if parts.username else None
        self._password = unquote(parts.password) if parts.password is not None else None
        self._stream: anyio.abc.ByteStream | None = None
        self._reader = hiredis.Reader(replyError=WireError, encoding="utf-8")
        # One round trip at a time: two tasks reading one socket would take each other's
        # replies. Uncontended (the worker alone), it costs no checkpoint.
        self._lock = anyio.Lock(fast_acquire=True)

    async def execute(self, commands: Sequence[Sequence[str]]) -> list[Any]:
        """Send ``commands`` in one write; their replies, in order.

        Each command is its name and arguments; a reply is an integer, a string, a list or
        ``None``. The caller bounds the time (a cancel scope); nothing is retried here.
        Calls from several tasks take turns.

        Raises:
            WireError: Redis answered one of them with an error (the others' effects stand,
                as in a pipeline without a transaction).
            OSError, anyio.BrokenResourceError, anyio.EndOfStream: the connection failed.
        """
        async with self._lock:
            stream = self._stream
            setup: list[tuple[str, ...]] = []
            if stream is None:  # a new connection: AUTH and SELECT ride with the commands
                stream = await self._connect()
                setup = self._setup()
            try:
                await stream.send(b"".join(_pack(command) for command in [*setup, *commands]))
                replies = await self._read(stream, len(setup) + len(commands))
            except BaseException:
                await self.aclose()  # replies may still be on their way: never reuse it
                raise
            for reply in replies[: len(setup)]:
                if isinstance(reply, WireError):  # not logged in: the next call tries again
                    await self.aclose()
                    raise reply
        replies = replies[len(setup) :]
        for reply in replies:
            if isinstance(reply, WireError):
                raise reply
        return replies

    async def aclose(self) -> None:
        """Close the connection (the next ``execute`` opens a new one)."""
        stream, self._stream = self._stream, None
        self._reader = hiredis.Reader(replyError=WireError, encoding="utf-8")
        if stream is not None:
            with anyio.CancelScope(shield=True):
                await stream.aclose()

    async def _read(self, stream: anyio.abc.ByteStream, count: int) -> list[Any]:
        reader = self._reader
        replies: list[Any] = []
        while len(replies) < count:
            reply = reader.gets()
            if reply is False:
                reader.feed(await stream.receive(_CHUNK))
            else:
                replies.append(reply)
        return replies

    async def _connect(self) -> anyio.abc.ByteStream:
        parts = self._parts
        stream: anyio.abc.ByteStream
        if parts.scheme == "unix":
            stream = await anyio.connect_unix(parts.path)
        else:
            host, port = parts.hostname or "localhost", parts.port or 6379
            if parts.scheme == "rediss":
                stream = await anyio.connect_tcp(
                    host, port, ssl_context=ssl.create_default_context()
                )
            else:
                stream = await anyio.connect_tcp(host, port)
        self._stream = stream
        return stream

    def _setup(self) -> list[tuple[str, ...]]:
        """What a new connection sends first: AUTH and SELECT, as the URL says."""
        setup: list[tuple[str, ...]] = []
        if self._password is not None:
            user = () if self._user is None else (self._user,)
            setup.append(("AUTH", *user, self._password))
        if self._db:
            setup.append(("SELECT", str(self._db)))
        return setup


def _pack(command: Sequence[str]) -> bytes:
    """One command in RESP (an array of bulk strings)."""
    # hiredis's stub types the argument as a tuple of one item; it takes any length.
    return bytes(hiredis.pack_command(tuple(command)))  # type: ignore[arg-type]
