"""A real server on a loopback port (uvicorn on asyncio, hypercorn on trio) and a real
WebSocket client (httpx-ws, on anyio), for the server's integration tests."""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import anyio
import httpx
from httpx_ws import AsyncWebSocketSession, WebSocketDisconnect, aconnect_ws
from starlette.applications import Starlette
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Ping, Request, TextMessage

from llmpool import PoolConfig
from llmpool.server import Runtime, ServerConfig, create_app, serve
from llmpool.testing import SimulatedProvider

KEY = "sk-llmpool-server-tests"
TURN_END = ("complete", "error")


@dataclass
class Served:
    """A running server: its port, runtime and an HTTP client on it."""

    port: int
    runtime: Runtime
    stop: anyio.Event
    http: httpx.AsyncClient
    done: anyio.Event

    def ws_url(self, session: str = "s1", **query: str) -> str:
        path = f"http://127.0.0.1:{self.port}/ws/chat/{quote(session, safe='')}"
        return f"{path}?{urlencode(query)}" if query else path


@asynccontextmanager
async def served(sim: SimulatedProvider, **settings: Any) -> AsyncIterator[Served]:
    """Serve ``create_app`` on a free port until the block ends, then drain and stop."""
    pool = settings.pop("pool", PoolConfig(shutdown_grace=2.0))
    # hypercorn keeps a socket whose WebSocket has closed open as an idle keep-alive
    # connection, until the client closes it or the graceful timeout passes.
    settings.setdefault("close_timeout", 0.3)
    config = ServerConfig(base_url=sim.base_url, api_key=KEY, port=0, pool=pool, **settings)
    async with serve_app(create_app(config)) as server:
        yield server


@asynccontextmanager
async def serve_app(app: Starlette) -> AsyncIterator[Served]:
    """Serve ``app`` (its own config) until the block ends, then drain and stop."""
    stop, done = anyio.Event(), anyio.Event()

    async def run(*, task_status: anyio.abc.TaskStatus[int]) -> None:
        try:
            await serve(app, shutdown_trigger=stop.wait, task_status=task_status)
        finally:
            done.set()

    async with anyio.create_task_group() as tg:
        port = await tg.start(run)
        limits = httpx.Limits(max_connections=2000, max_keepalive_connections=50)
        http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=15, limits=limits)
        try:
            yield Served(port, app.state.llmpool, stop, http, done)
        finally:
            # Idle keep-alive connections would hold hypercorn's shutdown for its grace.
            await http.aclose()
            stop.set()


class Chat:
    """One client socket speaking the chat protocol."""

    def __init__(self, ws: AsyncWebSocketSession) -> None:
        self.ws = ws

    async def send(self, **frame: Any) -> None:
        await self.ws.send_text(json.dumps(frame))

    async def send_raw(self, text: str) -> None:
        await self.ws.send_text(text)

    async def recv(self, within: float = 10.0) -> dict[str, Any]:
        frame: dict[str, Any] = json.loads(await self.ws.receive_text(timeout=within))
        return frame

    async def until(self, *types: str, within: float = 10.0) -> list[dict[str, Any]]:
        """Frames up to and including the first of one of ``types``."""
        frames = []
        with anyio.fail_after(within):
            while True:
                frame = await self.recv(within=math.inf)
                frames.append(frame)
                if frame["type"] in types:
                    return frames

    async def turn(self, message: str, within: float = 10.0) -> list[dict[str, Any]]:
        """Send ``message``; its frames up to its complete or error."""
        await self.send(type="message", message=message)
        return await self.until(*TURN_END, within=within)

    async def closed(self, within: float = 10.0) -> tuple[int, list[dict[str, Any]]]:
        """Read until the server closes: ``(close code, frames before it)``."""
        frames = []
        with anyio.fail_after(within):
            while True:
                try:
                    frames.append(json.loads(await self.ws.receive_text()))
                except WebSocketDisconnect as exc:
                    return exc.code, frames


@asynccontextmanager
async def chat(
    server: Served,
    session: str = "s1",
    *,
    headers: dict[str, str] | None = None,
    **query: str,
) -> AsyncIterator[Chat]:
    async with aconnect_ws(
        server.ws_url(session, **query),
        server.http,
        headers=dict(headers or {}),  # httpx-ws adds its upgrade headers to the mapping
        keepalive_ping_interval_seconds=None,
    ) as ws:
        yield Chat(ws)


def text_of(frames: list[dict[str, Any]]) -> str:
    return "".join(f["content"] for f in frames if f["type"] == "chunk")


async def eventually(check: Any, within: float = 5.0, step: float = 0.005) -> float:
    """Wait until ``check()`` is true; the seconds it took (test-side polling only)."""
    start = anyio.current_time()
    with anyio.fail_after(within):
        while not check():  # noqa: ASYNC110  # polls snapshots (stats): no event to wait on
            await anyio.sleep(step)
    return anyio.current_time() - start


class RawPeer:
    """A WebSocket client on a bare TCP stream (wsproto), for what polite clients never do:
    vanish without a close frame, or stop reading and answering pings."""

    def __init__(self, stream: anyio.abc.SocketStream) -> None:
        self.stream = stream
        self.ws = WSConnection(ConnectionType.CLIENT)
        self._texts: list[str] = []

    @classmethod
    @asynccontextmanager
    async def connect(cls, port: int, path: str) -> AsyncIterator[RawPeer]:
        stream = await anyio.connect_tcp("127.0.0.1", port)
        peer = cls(stream)
        try:
            await stream.send(peer.ws.send(Request(host=f"127.0.0.1:{port}", target=path)))
            while not isinstance(await peer._next_event(), AcceptConnection):
                pass
            yield peer
        finally:
            await stream.aclose()  # no close frame: the connection is just gone

    async def _next_event(self) -> object:
        while True:
            for event in self.ws.events():
                if isinstance(event, Ping):
                    await self.stream.send(self.ws.send(event.response()))
                    continue
                return event
            self.ws.receive_data(await self.stream.receive())

    async def send(self, **frame: Any) -> None:
        await self.stream.send(self.ws.send(TextMessage(data=json.dumps(frame))))

    async def recv(self) -> dict[str, Any]:
        parts = []
        while True:
            event = await self._next_event()
            if isinstance(event, TextMessage):
                parts.append(event.data)
                if event.message_finished:
                    frame: dict[str, Any] = json.loads("".join(parts))
                    return frame
