"""The chat's connection against an in-process server: a socket lost mid-answer is
reopened and resumed, and the answer reads whole, nothing missing, nothing twice."""

from __future__ import annotations

import anyio
import pytest

from llmpool._cli.chat._connection import Connection
from llmpool._cli.chat._options import ChatOptions
from llmpool._cli.chat._policy import ReconnectPolicy
from llmpool._cli.chat._render import FrameRenderer, Note, Text
from llmpool.testing import FaultPlan, SimulatedProvider
from tests.integration.fixtures import simulator_fixtures
from tests.server.helpers import KEY, served

pytestmark = [pytest.mark.integration, pytest.mark.parametrize("anyio_backend", ["asyncio"])]

shared_sim, sim = simulator_fixtures("chat-connection", api_key=KEY)

WORDS = " ".join(f"w{i}" for i in range(30))


@pytest.mark.anyio
async def test_a_lost_socket_is_resumed_mid_answer(sim: SimulatedProvider) -> None:
    """The server drops the socket (no close frame: 1006) while the answer streams; the
    client reconnects after its backoff, resumes after the last frame it saw, and the text
    is the whole answer exactly once."""
    sim.set_fault_plan(FaultPlan(stream_chunk_delay=0.03))
    items: list[object] = []
    async with served(sim) as server:
        options = ChatOptions(url=f"ws://127.0.0.1:{server.port}", session_id="resumed")
        renderer = FrameRenderer(options.session_id)
        connection = Connection(
            options, renderer, items.extend, ReconnectPolicy(initial=0.05, jitter=0.05)
        )

        def text() -> str:
            return "".join(i.text for i in items if isinstance(i, Text))

        async with anyio.create_task_group() as tg:
            tg.start_soon(connection.run)
            renderer.message_sent()
            connection.send({"type": "message", "message": WORDS})
            with anyio.fail_after(10):
                while "w3" not in text():  # noqa: ASYNC110
                    await anyio.sleep(0.01)
                for sock in list(server.runtime.sockets):
                    sock.abort()
                await connection.wait_answered()
            tg.cancel_scope.cancel()
    notes = [i.text for i in items if isinstance(i, Note)]
    assert text() == f"Simulated reply to: {WORDS}"
    assert any(n.startswith("the connection was lost (1006): reconnecting in") for n in notes)
    assert any(n.startswith("session resumed: resuming after frame") for n in notes)
    assert notes[-1].startswith("(done in")
