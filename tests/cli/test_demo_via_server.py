"""``llmpool demo --via-server``'s terminal: one chat session's socket, reconnect and resume.

The tests run ``ChatTerminal`` against a served app (``tests/server/helpers``) and break its
socket mid-turn: closed with 1012, cut without a close frame (1006, through a TCP proxy),
refused at capacity (1013).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest
from anyio.abc import SocketAttribute, SocketStream

from llmpool._cli.chat._policy import ReconnectPolicy
from llmpool._cli.demo._client import ChatTerminal, TurnEnd
from llmpool.server import CloseCode
from llmpool.testing import FaultPlan, SimulatedProvider
from llmpool.testing._payloads import REPLY_PREFIX
from tests.integration.fixtures import simulator_fixtures
from tests.server.helpers import KEY, Served, chat, eventually, served

QUICK = ReconnectPolicy(initial=0.01, maximum=0.05, jitter=0.0)
"""Reconnects within 10-50 ms: the tests' sockets come back at once."""
LONG = " ".join(f"w{i}" for i in range(30))  # 33 chunks with the reply's prefix

shared_sim, sim = simulator_fixtures("demo-via-server", api_key=KEY)


# -- the terminal: reconnect and resume --------------------------------------------------------


async def _turn_counts(server: Served) -> dict[str, float]:
    """``llmpool_server_turns_total`` by outcome, from ``/metrics``."""
    text = (await server.http.get("/metrics")).text
    return {
        m[1]: float(m[2])
        for m in re.finditer(r'^llmpool_server_turns_total\{outcome="(\w+)"\} (\S+)$', text, re.M)
    }


async def _mid_turn(server: Served, session: str, frames: int = 3) -> None:
    """Wait until the session's running turn has sent ``frames`` frames."""

    def far_enough() -> bool:
        found = server.runtime.sessions.get(session)
        return found is not None and found.turn is not None and found.last_seq >= frames

    await eventually(far_enough)


def _assert_whole_once(end: TurnEnd) -> None:
    assert end.ok, end
    assert end.text == REPLY_PREFIX + LONG  # every chunk once: nothing lost, nothing twice


@pytest.mark.anyio
async def test_a_turn_closed_with_1012_resumes_and_is_counted_once(
    sim: SimulatedProvider,
) -> None:
    """The server closes the socket with 1012 mid-turn; the terminal reconnects, resumes
    after the last seq it saw and gets the rest: the whole answer once, one turn run, two
    connections."""
    sim.set_fault_plan(FaultPlan(stream_chunk_delay=0.01))
    async with served(sim) as server:
        terminal = ChatTerminal(server.http, server.ws_url("t1"), QUICK)
        ends: list[TurnEnd] = []

        async def run() -> None:
            async with terminal:  # one task opens, uses and closes its sockets
                ends.append(await terminal.turn(LONG))

        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            await _mid_turn(server, "t1")
            for sock in list(server.runtime.sockets):
                sock.close(CloseCode.SERVICE_RESTART, None, "restarting")
        turns = await _turn_counts(server)
        connections = (await server.http.get("/metrics.json")).json()["connections"]
    _assert_whole_once(ends[0])
    assert (terminal.opened, terminal.reconnects) == (2, 1)
    assert turns == {"completed": 1.0}
    assert connections["total"] == 2
    assert len(sim.requests) == 1


class _Proxy:
    """A TCP proxy to the server whose connections ``cut()`` drops (no close frame: 1006)."""

    def __init__(self, target: int) -> None:
        self._target = target
        self._scopes: set[anyio.CancelScope] = set()
        self.port = 0

    async def handle(self, client: SocketStream) -> None:
        async with client, await anyio.connect_tcp("127.0.0.1", self._target) as upstream:
            with anyio.CancelScope() as scope:
                self._scopes.add(scope)
                async with anyio.create_task_group() as tg:

                    async def pipe(source: SocketStream, sink: SocketStream) -> None:
                        async for data in source:
                            await sink.send(data)
                        tg.cancel_scope.cancel()

                    tg.start_soon(pipe, client, upstream)
                    tg.start_soon(pipe, upstream, client)
            self._scopes.discard(scope)

    def cut(self) -> None:
        for scope in self._scopes:
            scope.cancel()


@asynccontextmanager
async def _proxy(target: int) -> AsyncIterator[_Proxy]:
    proxy = _Proxy(target)
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    proxy.port = listener.extra(SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, proxy.handle)
        try:
            yield proxy
        finally:
            tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_a_connection_lost_without_a_close_frame_resumes(sim: SimulatedProvider) -> None:
    """The TCP connection drops mid-turn (1006 on both sides); the terminal reconnects and
    resumes: the whole answer once, one turn run."""
    sim.set_fault_plan(FaultPlan(stream_chunk_delay=0.01))
    async with served(sim) as server, _proxy(server.port) as proxy:
        url = server.ws_url("t2").replace(f":{server.port}/", f":{proxy.port}/")
        terminal = ChatTerminal(server.http, url, QUICK)
        ends: list[TurnEnd] = []

        async def run() -> None:
            async with terminal:  # one task opens, uses and closes its sockets
                ends.append(await terminal.turn(LONG))

        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            await _mid_turn(server, "t2")
            proxy.cut()
        await eventually(lambda: server.runtime.metrics.active == 0)
        turns = await _turn_counts(server)
        prometheus = (await server.http.get("/metrics")).text
    _assert_whole_once(ends[0])
    assert terminal.reconnects == 1
    assert turns == {"completed": 1.0}
    closes = {
        m[1]: float(m[2])
        for m in re.finditer(
            r'^llmpool_server_disconnects_total\{code="(\d+)"\} (\S+)$', prometheus, re.M
        )
    }
    # The dropped connection has no close status: uvicorn says 1005, hypercorn 1006; the
    # second socket closed normally (1000; hypercorn says 1006, see the command's test).
    assert sum(closes.values()) == 2
    assert closes.get("1005", 0) + closes.get("1006", 0) >= 1
    assert set(closes) <= {"1000", "1005", "1006"}
    assert len(sim.requests) == 1


@pytest.mark.anyio
async def test_at_capacity_the_terminal_waits_then_sends_its_message_once(
    sim: SimulatedProvider,
) -> None:
    """The server is full (1 slot, held): the terminal's message is refused with 1013 before
    it is read; the terminal waits the server's retry_after, reconnects, learns from the
    pong that the message never arrived, and sends it again, once the slot is free."""
    async with served(sim, max_connections=1, retry_after=0.02) as server:
        async with anyio.create_task_group() as tg:
            ends: list[TurnEnd] = []
            async with chat(server, "holder") as holder:
                await holder.send(type="ping")
                await holder.recv()
                terminal = ChatTerminal(server.http, server.ws_url("t3"), QUICK)

                async def run() -> None:
                    async with terminal:
                        ends.append(await terminal.turn(LONG))

                tg.start_soon(run)
                await eventually(lambda: server.runtime.metrics.rejected >= 2)
        turns = await _turn_counts(server)
        connections = (await server.http.get("/metrics.json")).json()["connections"]
    _assert_whole_once(ends[0])
    assert terminal.opened >= 3  # refused at least twice, then accepted
    assert turns == {"completed": 1.0}
    assert (connections["total"], connections["peak"]) == (2, 1)  # the holder, then t3
    assert connections["rejected"] == terminal.opened - 1
    assert len(sim.requests) == 1
