"""The chat protocol over a real socket, frame by frame (loopback; uvicorn on asyncio,
hypercorn on trio)."""

from __future__ import annotations

import json

import pytest

from llmpool.testing import FaultPlan, SimulatedProvider
from llmpool.testing._payloads import REPLY_PREFIX

from .helpers import chat, served, text_of

pytestmark = pytest.mark.anyio


async def test_a_turn_streams_chunks_then_usage_then_complete(sim: SimulatedProvider) -> None:
    """Every frame carries seq (1, 2, 3… per session) and the turn's id; the chunks make the
    reply; the last chunk has finish_reason and usage; complete has the usage, stopped
    false and a processing time; the provider saw one request with the session's header."""
    async with served(sim) as server, chat(server, "alice") as client:
        frames = await client.turn("hello there world")
    assert [f["seq"] for f in frames] == list(range(1, len(frames) + 1))
    assert len({f["turn_id"] for f in frames}) == 1
    *chunks, last, complete = frames
    assert {f["type"] for f in chunks} == {"chunk"}
    assert {(f["usage"], f["finish_reason"]) for f in chunks} == {(None, None)}
    assert all(f["tools_used"] == [] for f in chunks)
    assert text_of(frames) == REPLY_PREFIX + "hello there world"
    assert chunks[0]["model"] == "gpt-4o-mini"
    assert (last["type"], last["content"], last["finish_reason"]) == ("chunk", "", "stop")
    assert last["usage"]["total_tokens"] == last["usage"]["prompt_tokens"] + 6
    assert (complete["type"], complete["stopped"]) == ("complete", False)
    assert complete["usage"] == last["usage"]
    assert complete["processing_time_ms"] > 0
    (request,) = sim.requests
    assert request.headers["x-session-id"] == "alice"


async def test_the_original_message_shape_is_accepted(sim: SimulatedProvider) -> None:
    """{"message": "..."} without a type is a message, as in the original protocol."""
    async with served(sim) as server, chat(server) as client:
        await client.send(message="hi")
        frames = await client.until("complete")
    assert text_of(frames) == REPLY_PREFIX + "hi"


async def test_a_session_keeps_its_history_across_turns_and_sockets(
    sim: SimulatedProvider,
) -> None:
    """The second turn, on a new socket of the same session, continues the conversation:
    seq goes on from the first turn, and the request carries the previous response."""
    async with served(sim) as server:
        async with chat(server, "bob") as client:
            first = await client.turn("one")
        async with chat(server, "bob") as client:
            second = await client.turn("two")
    assert second[0]["seq"] == first[-1]["seq"] + 1
    assert second[0]["turn_id"] != first[0]["turn_id"]
    assert [r.body.get("previous_response_id") is not None for r in sim.requests] == [
        False,
        True,
    ]


async def test_ping_is_answered_with_the_current_seq(sim: SimulatedProvider) -> None:
    """pong carries the session's last seq and no turn: it never moves a resume point."""
    async with served(sim) as server, chat(server) as client:
        frames = await client.turn("x")
        await client.send(type="ping")
        pong = await client.recv()
    assert pong == {"type": "pong", "seq": frames[-1]["seq"], "turn_id": None}


@pytest.mark.parametrize(
    ("text", "says"),
    [
        pytest.param("{not json", "not JSON", id="malformed-json"),
        pytest.param("[1, 2]", "JSON object", id="not-an-object"),
        pytest.param('{"type": "dance"}', "unknown type 'dance'", id="unknown-type"),
        pytest.param('{"type": "message", "message": ""}', "message", id="empty-message"),
        pytest.param('{"type": "resume", "last_seq": -1}', "last_seq", id="negative-seq"),
        pytest.param('{"type": "message", "message": 3}', "message", id="not-a-string"),
    ],
)
async def test_a_bad_frame_gets_invalid_message_and_the_socket_stays_open(
    sim: SimulatedProvider, text: str, says: str
) -> None:
    """Bad JSON or an unknown type is answered with invalid_message; the next frame works."""
    async with served(sim) as server, chat(server) as client:
        await client.send_raw(text)
        error = await client.recv()
        await client.send(type="ping")
        pong = await client.recv()
    assert (error["type"], error["error"]) == ("error", "invalid_message")
    assert says in error["error_details"]["message"]
    assert pong["type"] == "pong"
    assert sim.requests == []


async def test_a_binary_frame_is_invalid(sim: SimulatedProvider) -> None:
    """The protocol is JSON text: a binary frame is invalid_message."""
    async with served(sim) as server, chat(server) as client:
        await client.ws.send_bytes(b'{"type": "ping"}')
        error = await client.recv()
    assert error["error"] == "invalid_message"


async def test_a_second_message_during_a_turn_is_session_busy(sim: SimulatedProvider) -> None:
    """One generation at a time per session: the second message is refused with
    session_busy (naming the running turn), and only one request reaches the provider."""
    sim.set_fault_plan(FaultPlan(stream_chunk_delay=0.05))
    async with served(sim) as server, chat(server) as client:
        await client.send(type="message", message="first answer please")
        first = await client.recv()
        await client.send(type="message", message="second")
        frames = await client.until("complete")
    busy = [f for f in frames if f["type"] == "error"]
    assert [f["error"] for f in busy] == ["session_busy"]
    assert busy[0]["turn_id"] == first["turn_id"]
    assert first["turn_id"] in busy[0]["error_details"]["message"]
    assert len(sim.requests) == 1


async def test_two_sockets_on_one_session_see_the_same_frames(sim: SimulatedProvider) -> None:
    """A second socket that follows the session receives the very frames of the first's
    turn, in order, as the same JSON text."""
    sim.set_fault_plan(FaultPlan(stream_chunk_delay=0.01))
    async with served(sim) as server, chat(server, "shared") as a, chat(server, "shared") as b:
        await b.send(type="resume", last_seq=0)
        await a.send(type="ping")
        await a.recv()
        await a.send(type="message", message="both of you")
        seen_a = await a.until("complete")
        seen_b = await b.until("complete")
    assert seen_a == seen_b
    assert text_of(seen_a) == REPLY_PREFIX + "both of you"


async def test_an_oversized_frame_is_message_too_big_and_close_1009(
    sim: SimulatedProvider,
) -> None:
    """A frame over max_message_bytes gets message_too_big (with both sizes), then 1009."""
    async with served(sim, max_message_bytes=1024) as server, chat(server) as client:
        await client.send(type="message", message="x" * 2000)
        code, frames = await client.closed()
    assert code == 1009
    (error,) = frames
    assert error["error"] == "message_too_big"
    assert "1024" in error["error_details"]["message"]
    assert sim.requests == []


@pytest.mark.parametrize(
    ("session", "query", "says"),
    [
        pytest.param("bad\x01id", {}, "control", id="control-character"),
        pytest.param("x" * 200, {}, "128", id="too-long"),
        pytest.param("ok", {"priority": "urgent"}, "urgent", id="bad-priority"),
        pytest.param("ok", {"last_seq": "-3"}, "last_seq", id="bad-last-seq"),
    ],
)
async def test_an_invalid_session_or_query_is_closed_with_1008(
    sim: SimulatedProvider, session: str, query: dict[str, str], says: str
) -> None:
    """Session ids are validated like llmpool's; a bad one (or a bad priority) gets
    invalid_message and close 1008, and takes no connection slot."""
    async with served(sim) as server:
        async with chat(server, session, **query) as client:
            code, frames = await client.closed()
        metrics = (await server.http.get("/metrics.json")).json()
    assert code == 1008
    assert frames[0]["error"] == "invalid_message"
    assert says in frames[0]["error_details"]["message"]
    assert metrics["connections"]["total"] == 0


async def test_frames_are_json_text_with_unicode_kept(sim: SimulatedProvider) -> None:
    """Non-ASCII text travels as UTF-8, not as escapes."""
    async with served(sim) as server, chat(server) as client:
        await client.send(type="message", message="héllo wörld")
        raw = await client.ws.receive_text(timeout=10)
        while '"complete"' not in raw:
            if "héllo" in raw or "wörld" in raw:
                break
            raw = await client.ws.receive_text(timeout=10)
        await client.until("complete")
    assert "\\u00" not in raw
    assert json.loads(raw)["type"] == "chunk"


async def test_priority_from_the_query_reaches_the_manager(sim: SimulatedProvider) -> None:
    """?priority=high: the turn is a high-priority request in the manager's metrics."""
    async with served(sim) as server, chat(server, priority="high") as client:
        await client.turn("hurry")
        metrics = (await server.http.get("/metrics")).text
        stats = (await server.http.get("/api/connection-stats")).json()
    labels = 'model="gpt-4o-mini",operation="responses",outcome="completed",priority="high"'
    assert f"llmpool_requests_total{{{labels}}} 1.0" in metrics
    assert stats["completedRequests"] == 1
