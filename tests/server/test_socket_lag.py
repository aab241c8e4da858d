"""A socket slower than its session: the interleavings, driven step by step.

The turn and the socket's sender are separate: emitting a frame never waits for a socket.
A socket whose send is stuck while the session's buffer moves on loses its place; it is
told so (``resync_required``) and follows the session from the live end. The WebSocket here
is a controlled peer whose ``send_text`` blocks until the test lets it go.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anyio
import prometheus_client
import pytest

from llmpool import ConnectionManager
from llmpool.server import CloseCode, ErrorCode, ServerConfig
from llmpool.server._protocol import chunk_frame
from llmpool.server._relay import relay_endpoint
from llmpool.server._runtime import Runtime
from llmpool.server._socket import ChatSocket, chat_endpoint

pytestmark = pytest.mark.anyio


class Peer:
    """A WebSocket whose sends wait on ``gate``; what it sent is in ``sent``."""

    headers: dict[str, str] = {}  # noqa: RUF012  # read-only

    def __init__(self) -> None:
        self.gate = anyio.Event()
        self.sent: list[dict[str, Any]] = []
        self.closed: int | None = None
        self.incoming, self._receive = anyio.create_memory_object_stream[dict[str, Any]](10)

    async def accept(self) -> None:
        return None

    async def receive(self) -> dict[str, Any]:
        return await self._receive.receive()

    async def send_text(self, text: str) -> None:
        await self.gate.wait()
        self.sent.append(json.loads(text))

    async def close(self, code: int, reason: str | None = None) -> None:
        self.closed = code

    def shut(self) -> None:
        self.incoming.close()
        self._receive.close()


@pytest.fixture
def peer() -> Iterator[Peer]:
    controlled = Peer()
    yield controlled
    controlled.shut()


def runtime(**settings: Any) -> Runtime:
    config = ServerConfig(session_buffer_frames=64, **settings)
    return Runtime(config, ConnectionManager(), prometheus_client.CollectorRegistry())


def emit(rt: Runtime, count: int) -> None:
    session = rt.sessions.open("s")
    for _ in range(count):
        session.emit(lambda seq: chunk_frame(seq, "turn_x", f"c{seq}", None))


async def test_a_stuck_socket_does_not_hold_the_session_and_is_told_to_resync(peer: Peer) -> None:
    """While the sender is stuck on frame 1, 100 more frames are emitted (past the 64 kept)
    without waiting; once unstuck, the socket gets frame 1, then resync_required naming the
    first frame it missed and the oldest kept, then only frames emitted after that."""
    rt = runtime()
    sock = ChatSocket(rt, peer, "s", rt.manager.with_options(), "c1", 0)  # type: ignore[arg-type]
    async with anyio.create_task_group() as tg:
        tg.start_soon(sock.serve)
        await anyio.wait_all_tasks_blocked()
        emit(rt, 1)
        await anyio.wait_all_tasks_blocked()  # the sender is now stuck sending frame 1
        emit(rt, 100)  # returns at once: nothing waits for the socket
        session = rt.sessions.open("s")
        assert (session.last_seq, session.first_seq) == (101, 38)
        peer.gate.set()
        await anyio.wait_all_tasks_blocked()
        emit(rt, 2)
        await anyio.wait_all_tasks_blocked()
        await peer.incoming.send({"type": "websocket.disconnect", "code": 1000})
    kinds = [(f["type"], f["seq"]) for f in peer.sent]
    assert kinds[0] == ("chunk", 1)
    assert peer.sent[1]["error"] == "resync_required"
    details = peer.sent[1]["error_details"]
    assert (details["missing_from"], details["oldest_seq"], details["last_seq"]) == (2, 38, 101)
    assert kinds[2:] == [("chunk", 102), ("chunk", 103)]


async def test_a_resume_while_a_send_is_in_flight_is_not_overwritten(peer: Peer) -> None:
    """A resume that arrives while the sender is sending frame n moves the cursor; the send's
    completion does not move it back: the replay starts where the resume said."""
    rt = runtime()
    sock = ChatSocket(rt, peer, "s", rt.manager.with_options(), "c1", None)  # type: ignore[arg-type]
    emit(rt, 5)
    async with anyio.create_task_group() as tg:
        tg.start_soon(sock.serve)
        await peer.incoming.send(
            {"type": "websocket.receive", "text": '{"type":"resume","last_seq":3}'}
        )
        await anyio.wait_all_tasks_blocked()  # sending frame 4
        await peer.incoming.send(
            {"type": "websocket.receive", "text": '{"type":"resume","last_seq":1}'}
        )
        await anyio.wait_all_tasks_blocked()
        peer.gate.set()
        await anyio.wait_all_tasks_blocked()
        await peer.incoming.send({"type": "websocket.disconnect", "code": 1000})
    assert [f["seq"] for f in peer.sent] == [4, 2, 3, 4, 5]


async def test_a_close_waits_for_the_frames_already_due(peer: Peer) -> None:
    """close() sends the frames already emitted, then the error, then the close code."""
    rt = runtime()
    peer.gate.set()
    sock = ChatSocket(rt, peer, "s", rt.manager.with_options(), "c1", 0)  # type: ignore[arg-type]
    async with anyio.create_task_group() as tg:
        tg.start_soon(sock.serve)
        await anyio.wait_all_tasks_blocked()
        emit(rt, 3)
        sock.close(CloseCode.SERVICE_RESTART, ErrorCode.SERVER_SHUTTING_DOWN, "bye")
    assert [f["type"] for f in peer.sent] == ["chunk", "chunk", "chunk", "error"]
    assert peer.sent[-1]["error"] == "server_shutting_down"
    assert peer.closed == 1012
    assert sock.close_code == 1012


class VanishingPeer:
    """A client gone before its handshake is answered: accept raises."""

    headers: dict[str, str] = {}  # noqa: RUF012  # read-only
    scope: dict[str, Any] = {"subprotocols": []}  # noqa: RUF012
    query_params: dict[str, str] = {"model": "m"}  # noqa: RUF012
    path_params: dict[str, str] = {"session_id": "s"}  # noqa: RUF012

    async def accept(self, subprotocol: str | None = None) -> None:
        raise OSError("the client left")


@pytest.mark.parametrize("route", ["chat", "relay"])
async def test_a_failed_accept_frees_the_connection_slot(route: str) -> None:
    """The slot taken at admission is given back when accept itself fails (the client
    vanished during its handshake), on both routes."""
    rt = runtime()
    endpoint = chat_endpoint if route == "chat" else relay_endpoint
    async with anyio.create_task_group() as tg:
        rt.start(tg)
        with pytest.raises(OSError, match="the client left"):
            await endpoint(rt, VanishingPeer())  # type: ignore[arg-type]
    assert rt.metrics.active == 0
    assert rt.metrics.total == 1
    assert not rt.sockets
