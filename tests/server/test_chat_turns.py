"""Turns over a real socket: stop, resume, disconnects and upstream failures (loopback)."""

from __future__ import annotations

import anyio
import pytest

from llmpool import PoolConfig, RetryPolicy
from llmpool.testing import FaultPlan, ScriptedFault, SimulatedProvider
from llmpool.testing._payloads import REPLY_PREFIX

from .helpers import RawPeer, chat, eventually, served, text_of

pytestmark = pytest.mark.anyio

LONG = " ".join(f"w{i}" for i in range(30))  # 33 chunks with the reply's prefix


async def test_stop_ends_the_turn_at_once_and_keeps_the_partial_text(
    sim: SimulatedProvider,
) -> None:
    """stop cancels the upstream generation: the slot is free within 100 ms, the turn
    completes with stopped true, and the history keeps the message and the partial text
    (the next turn's request carries both)."""
    sim.set_fault_plan(FaultPlan(stream_chunk_delay=0.1))
    async with served(sim) as server, chat(server, "stopper") as client:
        await client.send(type="message", message=LONG)
        frames = [await client.recv(), await client.recv()]
        manager = server.runtime.manager
        assert manager.stats().active_connections == 1
        await client.send(type="stop")
        stopped_at = anyio.current_time()
        freed = await eventually(lambda: manager.stats().active_connections == 0)
        frames += await client.until("complete")
        took = anyio.current_time() - stopped_at
        session = (await server.http.get("/api/sessions/stopper")).json()
        await client.turn("next")
    assert freed < 0.1  # the slot, measured from the stop frame
    assert took < 0.5  # the complete frame (one stream_chunk_delay is 0.1 s)
    assert frames[-1]["stopped"] is True
    partial = text_of(frames)
    assert partial
    assert (REPLY_PREFIX + LONG).startswith(partial)
    items = session["conversation"]["items"]
    assert items == [
        {"type": "message", "role": "user", "content": LONG},
        {"type": "message", "role": "assistant", "content": partial},
    ]
    sent = sim.requests[-1].body["input"]
    assert [item.get("content") for item in sent][-3:] == [LONG, partial, "next"]


async def test_stop_while_queued_frees_the_place_and_keeps_nothing(
    sim: SimulatedProvider,
) -> None:
    """A turn stopped before any text (still waiting for a slot) completes stopped, and
    leaves no trace in the history (nothing was answered)."""
    sim.set_fault_plan(FaultPlan(stream_chunk_delay=0.1))
    async with (
        served(sim, pool=PoolConfig(max_concurrency=1, shutdown_grace=2.0)) as server,
        chat(server, "first") as first,
        chat(server, "second") as second,
    ):
        await first.send(type="message", message=LONG)
        await first.recv()
        await second.send(type="message", message="me too")
        await eventually(lambda: server.runtime.manager.stats().queued_requests == 1)
        await second.send(type="stop")
        frames = await second.until("complete")
        session = (await server.http.get("/api/sessions/second")).json()
        await first.send(type="stop")
        await first.until("complete")
    assert [f["type"] for f in frames] == ["complete"]
    assert frames[0]["stopped"] is True
    assert session["conversation"]["items"] == []


async def test_resume_after_a_forced_disconnect_loses_and_duplicates_nothing(
    sim: SimulatedProvider,
) -> None:
    """The connection drops without a close frame mid-turn; the turn goes on (the default);
    resuming with the last seq seen gives exactly the frames after it: together they are the
    whole answer, each seq once."""
    sim.set_fault_plan(FaultPlan(stream_chunk_delay=0.02))
    async with served(sim) as server:
        async with RawPeer.connect(server.port, "/ws/chat/flaky") as peer:
            await peer.send(type="message", message=LONG)
            before = [await peer.recv() for _ in range(3)]
        await eventually(lambda: server.runtime.metrics.active == 0)
        await anyio.sleep(0.1)  # frames are produced with no socket attached
        async with chat(server, "flaky") as client:
            await client.send(type="resume", last_seq=before[-1]["seq"])
            after = await client.until("complete")
    frames = before + after
    assert [f["seq"] for f in frames] == list(range(1, len(frames) + 1))
    assert text_of(frames) == REPLY_PREFIX + LONG
    assert len(sim.requests) == 1


async def test_resume_at_connect_with_the_query(sim: SimulatedProvider) -> None:
    """?last_seq=n resumes at connect: the whole turn again from frame n + 1."""
    async with served(sim) as server:
        async with chat(server, "q") as client:
            frames = await client.turn("abc")
        async with chat(server, "q", last_seq="2") as client:
            again = await client.until("complete")
    assert again == frames[2:]


async def test_resume_from_too_far_back_is_resync_required(sim: SimulatedProvider) -> None:
    """Frames older than the session's buffer are gone: resume gets resync_required with
    the oldest seq kept, and the socket follows the session from its current seq."""
    async with served(sim, session_buffer_frames=64) as server, chat(server, "old") as client:
        for _ in range(3):  # 35 frames each
            last = (await client.turn(LONG))[-1]
        await client.send(type="resume", last_seq=1)
        error = await client.recv()
        frames = await client.turn("more")
    assert error["error"] == "resync_required"
    details = error["error_details"]
    assert details["oldest_seq"] == last["seq"] - 63
    assert details["missing_from"] == 2
    assert frames[0]["seq"] == last["seq"] + 1


async def test_resume_ahead_of_the_session_is_invalid(sim: SimulatedProvider) -> None:
    """A last_seq the session never reached is invalid_message."""
    async with served(sim) as server, chat(server) as client:
        await client.send(type="resume", last_seq=99)
        error = await client.recv()
    assert error["error"] == "invalid_message"
    assert "ahead" in error["error_details"]["message"]


async def test_cancel_on_disconnect_stops_the_turn_when_the_last_socket_goes(
    sim: SimulatedProvider,
) -> None:
    """With cancel_on_disconnect, the turn is stopped when its last socket closes: the
    upstream stream ends (the slot is free) and the turn is kept as stopped."""
    sim.set_fault_plan(FaultPlan(stream_chunk_delay=0.1))
    async with served(sim, cancel_on_disconnect=True) as server:
        async with chat(server, "gone") as client:
            await client.send(type="message", message=LONG)
            await client.recv()
        manager = server.runtime.manager
        await eventually(lambda: manager.stats().active_connections == 0, within=1.0)
        async with chat(server, "gone", last_seq="0") as client:
            frames = await client.until("complete")
    assert frames[-1]["stopped"] is True


@pytest.mark.parametrize(
    ("fault", "code", "status"),
    [
        pytest.param(ScriptedFault(kind="status", status=500), "upstream_error", 500, id="500"),
        pytest.param(
            ScriptedFault(kind="rate_limit", retry_after=2.0), "rate_limited", 429, id="429"
        ),
        pytest.param(ScriptedFault(kind="status", status=400), "upstream_error", 400, id="400"),
    ],
)
async def test_an_upstream_failure_is_an_error_frame_with_a_stable_code(
    sim: SimulatedProvider, fault: ScriptedFault, code: str, status: int
) -> None:
    """Retries run out (one attempt here): the turn ends with one error frame naming the
    code, the HTTP status, llmpool's request id and, for a 429, the server's wait; the
    history keeps nothing of the turn."""
    sim.set_fault_plan(FaultPlan(scripted=[fault]))
    pool = PoolConfig(retry=RetryPolicy(max_attempts=1), shutdown_grace=2.0)
    async with served(sim, pool=pool) as server, chat(server, "err") as client:
        frames = await client.turn("hi")
        session = (await server.http.get("/api/sessions/err")).json()
    (error,) = frames
    assert error["error"] == code
    details = error["error_details"]
    assert details["status"] == status
    assert details["request_id"]
    if code == "rate_limited":
        assert details["retry_after_ms"] == 2000
    assert session["conversation"]["items"] == []


async def test_a_stream_cut_after_output_is_stream_interrupted(sim: SimulatedProvider) -> None:
    """A disconnect after text was sent is never retried (it would duplicate text): the
    turn ends with stream_interrupted after the chunks it had."""
    sim.set_fault_plan(
        FaultPlan(scripted=[ScriptedFault(kind="stream_disconnect", after_events=8)])
    )
    async with served(sim) as server, chat(server) as client:
        frames = await client.turn(LONG)
    assert frames[-1]["type"] == "error"
    assert frames[-1]["error"] == "stream_interrupted"
    assert text_of(frames)


async def test_a_full_queue_is_queue_full(sim: SimulatedProvider) -> None:
    """One slot, a queue of one: a third session's turn is refused with queue_full."""
    sim.set_fault_plan(FaultPlan(stream_chunk_delay=0.05))
    pool = PoolConfig(max_concurrency=1, max_queue_size=1, shutdown_grace=2.0)
    async with (
        served(sim, pool=pool) as server,
        chat(server, "a") as a,
        chat(server, "b") as b,
        chat(server, "c") as c,
    ):
        await a.send(type="message", message=LONG)
        await a.recv()
        await b.send(type="message", message="b")
        await eventually(lambda: server.runtime.manager.stats().queued_requests == 1)
        frames = await c.turn("c")
        for client in (a, b):
            await client.send(type="stop")
    assert [f["error"] for f in frames] == ["queue_full"]
