"""The realtime relay over real sockets: client (httpx-ws) -> llmpool.server -> the simulated
Realtime upstream, on asyncio (uvicorn) and trio (hypercorn)."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from httpx_ws import AsyncWebSocketSession, WebSocketDisconnect, aconnect_ws
from pydantic import SecretStr

from llmpool import PoolConfig
from llmpool.server import RelayConfig
from llmpool.testing import RealtimeFault, RealtimePlan, SimulatedProvider

from .helpers import KEY, RawPeer, Served, eventually, served

pytestmark = pytest.mark.anyio

MODEL = "gpt-realtime"


def append(i: int) -> dict[str, Any]:
    return {"type": "input_audio_buffer.append", "audio": f"chunk-{i}"}


@asynccontextmanager
async def relay(
    server: Served,
    *,
    protocols: list[str] | None = None,
    headers: dict[str, str] | None = None,
    **query: str,
) -> AsyncIterator[AsyncWebSocketSession]:
    params = "&".join(f"{k}={v}" for k, v in {"model": MODEL, **query}.items())
    async with aconnect_ws(
        f"http://127.0.0.1:{server.port}/v1/realtime?{params}",
        server.http,
        subprotocols=protocols,
        headers=dict(headers or {}),
        keepalive_ping_interval_seconds=None,
        max_message_size_bytes=32 * 1024 * 1024,
    ) as ws:
        yield ws


async def events_until(ws: AsyncWebSocketSession, kind: str) -> list[dict[str, Any]]:
    events = []
    with anyio.fail_after(10):
        while not events or events[-1]["type"] != kind:
            events.append(json.loads(await ws.receive_text()))
    return events


async def closed(ws: AsyncWebSocketSession) -> tuple[int, list[dict[str, Any]]]:
    events = []
    with anyio.fail_after(10):
        while True:
            try:
                events.append(json.loads(await ws.receive_text()))
            except WebSocketDisconnect as exc:
                return exc.code, events


def upstream_types(sim: SimulatedProvider) -> list[list[str | None]]:
    return [[frame.type for frame in s.frames] for s in sim.realtime_sessions if s.status == 101]


async def test_frames_sent_before_session_created_arrive_in_order_after_it(
    sim: SimulatedProvider,
) -> None:
    """The upstream is ready 0.3 s after the handshake; the client sends 40 appends and a
    response.create at once: all reach the upstream, once each, in order; the client gets
    session.created first, then the response."""
    sim.set_realtime_plan(RealtimePlan(session_created_delay=0.3))
    async with served(sim) as server, relay(server) as ws:
        for i in range(40):
            await ws.send_text(json.dumps(append(i)))
        await ws.send_text(json.dumps({"type": "response.create"}))
        events = await events_until(ws, "response.done")
    assert events[0]["type"] == "session.created"
    (session,) = sim.realtime_sessions
    texts = [json.loads(frame.text) for frame in session.frames if frame.text]
    assert texts == [append(i) for i in range(40)] + [{"type": "response.create"}]
    assert events[-1]["response"]["usage"]["total_tokens"] > 0


async def test_the_relays_own_session_update_goes_first(sim: SimulatedProvider) -> None:
    """With RelayConfig.session, the upstream gets the relay's session.update before any
    client frame, and the client's frames only after session.updated."""
    sim.set_realtime_plan(RealtimePlan(session_created_delay=0.1))
    policy = RelayConfig(session={"instructions": "Be brief."})
    async with served(sim, relay=policy) as server, relay(server) as ws:
        await ws.send_text(json.dumps({"type": "session.update", "session": {"voice": "x"}}))
        await ws.send_text(json.dumps(append(0)))
        events = await events_until(ws, "session.updated")
        events += await events_until(ws, "session.updated")
    (session,) = sim.realtime_sessions
    sent = [json.loads(frame.text) for frame in session.frames if frame.text]
    assert sent[0] == {"type": "session.update", "session": {"instructions": "Be brief."}}
    assert sent[1:] == [{"type": "session.update", "session": {"voice": "x"}}, append(0)]
    assert [e["type"] for e in events][:2] == ["session.created", "session.updated"]


async def test_a_refused_session_update_ends_the_session_with_its_reason(
    sim: SimulatedProvider,
) -> None:
    """The upstream answers the relay's update with error: the client gets
    session_update_refused (with the upstream's error) and close 1011; none of its frames
    went upstream."""
    sim.set_realtime_plan(RealtimePlan(scripted=[RealtimeFault(kind="update_error")]))
    policy = RelayConfig(session={"instructions": "x"})
    async with served(sim, relay=policy) as server, relay(server) as ws:
        await ws.send_text(json.dumps(append(0)))
        code, events = await closed(ws)
    assert code == 1011
    assert events[-1]["error"]["code"] == "session_update_refused"
    assert events[-1]["error"]["upstream_error"]["code"] == "invalid_value"
    assert upstream_types(sim) == [["session.update"]]


async def test_overflow_before_ready_is_relay_buffer_full_and_1013(
    sim: SimulatedProvider,
) -> None:
    """Six frames while the upstream is not ready and the relay holds five: one
    relay_buffer_full error, close 1013, nothing sent upstream, and its socket closed."""
    sim.set_realtime_plan(RealtimePlan(session_created_delay=2.0))
    bounds = RelayConfig(max_buffer_frames=5)
    async with served(sim, relay=bounds) as server, relay(server) as ws:
        for i in range(6):
            await ws.send_text(json.dumps(append(i)))
        code, events = await closed(ws)
        await eventually(lambda: sim.realtime_open == 0)
    assert code == 1013
    assert [e["error"]["code"] for e in events if e["type"] == "error"] == ["relay_buffer_full"]
    assert upstream_types(sim) in ([], [[]])


@pytest.mark.parametrize(
    ("fault", "code"),
    [
        pytest.param(RealtimeFault(kind="refuse", status=429), 1013, id="429"),
        pytest.param(RealtimeFault(kind="refuse", status=401), 1008, id="401"),
        pytest.param(RealtimeFault(kind="refuse", status=500), 1011, id="500"),
    ],
)
async def test_a_refused_handshake_is_upstream_refused_with_a_mapped_code(
    sim: SimulatedProvider, fault: RealtimeFault, code: int
) -> None:
    sim.set_realtime_plan(RealtimePlan(scripted=[fault]))
    async with served(sim) as server, relay(server) as ws:
        got, events = await closed(ws)
    assert got == code
    (event,) = events
    assert event["error"]["code"] == "upstream_refused"
    assert event["error"]["status"] == fault.status


async def test_an_upstream_that_is_never_ready_is_upstream_timeout(
    sim: SimulatedProvider,
) -> None:
    """No session.created within connect_timeout: upstream_timeout, close 1013, in time."""
    sim.set_realtime_plan(RealtimePlan(session_created_delay=5.0))
    async with served(sim, relay=RelayConfig(connect_timeout=0.3)) as server, relay(server) as ws:
        start = anyio.current_time()
        code, events = await closed(ws)
        took = anyio.current_time() - start
        await eventually(lambda: sim.realtime_open == 0)
    assert code == 1013
    assert events[-1]["error"]["code"] == "upstream_timeout"
    assert 0.2 < took < 2.0  # from the client's accept; the deadline starts just before


@pytest.mark.parametrize(("upstream", "client"), [(1001, 1001), (4000, 1011), (1011, 1011)])
async def test_an_upstream_close_reaches_the_client(
    sim: SimulatedProvider, upstream: int, client: int
) -> None:
    """The upstream closes after session.created (when it would answer the next client
    event): the client gets the code (a registered one as is, any other as 1011)."""
    fault = RealtimeFault(kind="close", close_code=upstream, after_frames=1)
    sim.set_realtime_plan(RealtimePlan(scripted=[fault]))
    async with served(sim) as server, relay(server) as ws:
        await ws.send_text(json.dumps({"type": "response.create"}))
        code, events = await closed(ws)
    assert code == client
    assert events[0]["type"] == "session.created"


async def test_the_key_goes_upstream_and_nothing_of_the_client(sim: SimulatedProvider) -> None:
    """The upstream handshake has the server's key; the client's Authorization header and
    key subprotocol are not forwarded, and no frame to the client carries the key."""
    async with (
        served(sim) as server,
        relay(
            server,
            protocols=["realtime", "openai-insecure-api-key.sk-client-secret"],
            headers={"authorization": "Bearer sk-client-secret", "x-extra": "1"},
        ) as ws,
    ):
        await ws.send_text(json.dumps({"type": "response.create"}))
        events = await events_until(ws, "response.done")
    (session,) = sim.realtime_sessions
    assert session.headers["authorization"] == f"Bearer {KEY}"
    assert "x-extra" not in session.headers
    assert not any("sk-client" in p for p in session.subprotocols)
    assert KEY not in json.dumps(events)
    assert ws.subprotocol == "realtime"


async def test_the_servers_token_is_checked_before_accepting(sim: SimulatedProvider) -> None:
    """With a token: none -> unauthorized, 1008 and no upstream socket; the token as the
    browser's key subprotocol -> relayed."""
    async with served(sim, token=SecretStr("relay-token")) as server:
        async with relay(server) as ws:
            code, events = await closed(ws)
        async with relay(
            server, protocols=["realtime", "openai-insecure-api-key.relay-token"]
        ) as ok:
            first = json.loads(await ok.receive_text())
    assert code == 1008
    assert events[0]["error"]["code"] == "unauthorized"
    assert first["type"] == "session.created"
    assert len([s for s in sim.realtime_sessions if s.status == 101]) == 1


async def test_a_session_holds_one_lease_and_settles_its_usage(sim: SimulatedProvider) -> None:
    """A relay session holds one slot of the manager for its life; response.done's usage
    reaches the token metrics; the slot is free once the client leaves."""
    async with served(sim) as server:
        manager = server.runtime.manager
        async with relay(server) as ws:
            await ws.send_text(json.dumps({"type": "response.create"}))
            done = (await events_until(ws, "response.done"))[-1]
            assert manager.stats().active_connections == 1
        await eventually(lambda: manager.stats().active_connections == 0)
        metrics = (await server.http.get("/metrics")).text
    usage = done["response"]["usage"]
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"] > 0
    tokens = f'llmpool_tokens_total{{model="{MODEL}",type='
    assert f'{tokens}"input"}} {float(usage["input_tokens"])}' in metrics
    assert f'{tokens}"output"}} {float(usage["output_tokens"])}' in metrics


async def test_a_session_ends_at_its_limit_after_a_warning(sim: SimulatedProvider) -> None:
    """max_session_seconds 0.6, warning 0.3 s before: session_expiring (a relay_warning),
    then session_expired and close 1001."""
    limits = RelayConfig(max_session_seconds=0.6, warning_seconds=0.3)
    async with served(sim, relay=limits) as server, relay(server) as ws:
        code, events = await closed(ws)
    errors = [e["error"] for e in events if e["type"] == "error"]
    assert [(e["type"], e["code"]) for e in errors] == [
        ("relay_warning", "session_expiring"),
        ("relay_error", "session_expired"),
    ]
    assert code == 1001


async def test_clients_that_vanish_close_their_upstream_at_once(sim: SimulatedProvider) -> None:
    """500 clients per backend (1,000 in the suite) drop their TCP connection without a close
    frame: every upstream socket is closed, p99 within 50 ms of its client's drop (loopback;
    the assertion allows 250 ms for a loaded machine), and the process is left with no more
    file descriptors than before (the relay's and the provider's sockets are all in this
    process). hypercorn closes a vanished client's socket at its next ping (ping_interval),
    hence 0.3 s here."""
    took = []
    async with served(sim, max_connections=100, ping_interval=0.3, ping_timeout=0.3) as server:
        async with RawPeer.connect(server.port, f"/v1/realtime?model={MODEL}") as peer:
            await peer.recv()  # warm: the pooled client and the relay's HTTP client exist
        await eventually(lambda: sim.realtime_open == 0)
        before = len(os.listdir("/proc/self/fd"))
        for _ in range(500):
            async with RawPeer.connect(server.port, f"/v1/realtime?model={MODEL}") as peer:
                assert (await peer.recv())["type"] == "session.created"
                opened = sim.realtime_open
            start = anyio.current_time()
            await eventually(lambda opened=opened: sim.realtime_open < opened, step=0.001)
            took.append(anyio.current_time() - start)
        await eventually(lambda: sim.realtime_open == 0)
        await eventually(lambda: server.runtime.metrics.active == 0)
        await eventually(lambda: len(os.listdir("/proc/self/fd")) <= before + 2, within=5.0)
        after = len(os.listdir("/proc/self/fd"))
    took.sort()
    assert took[int(len(took) * 0.99) - 1] < 0.25
    assert after <= before + 2  # keep-alive sockets of the test's own HTTP client


async def test_an_upstream_close_reaches_the_client_at_once(sim: SimulatedProvider) -> None:
    """The other way: 50 upstream closes, each seen by its client p99 within 50 ms of the
    client event that triggered it (the margin allows 250 ms)."""
    took = []
    async with served(sim) as server:
        for _ in range(50):
            fault = RealtimeFault(kind="close", close_code=1001, after_frames=1)
            sim.set_realtime_plan(RealtimePlan(scripted=[fault]))
            async with relay(server) as ws:
                await ws.receive_text()
                start = anyio.current_time()
                await ws.send_text(json.dumps({"type": "response.create"}))
                code, _ = await closed(ws)
                took.append(anyio.current_time() - start)
            assert code == 1001
    took.sort()
    assert took[int(len(took) * 0.99) - 1] < 0.25


async def test_frames_sent_in_answer_to_session_created_are_not_held_against_the_bound(
    sim: SimulatedProvider,
) -> None:
    """The gate opens before session.created is forwarded: a client that holds two frames
    (the bound) and answers session.created at once with five more gets them all through,
    in order, with no relay_buffer_full."""
    sim.set_realtime_plan(RealtimePlan(session_created_delay=0.1))
    async with served(sim, relay=RelayConfig(max_buffer_frames=2)) as server, relay(server) as ws:
        for i in range(2):
            await ws.send_text(json.dumps(append(i)))
        assert json.loads(await ws.receive_text())["type"] == "session.created"
        for i in range(2, 7):
            await ws.send_text(json.dumps(append(i)))
        await ws.send_text(json.dumps({"type": "response.create"}))
        events = await events_until(ws, "response.done")
    assert "error" not in [e["type"] for e in events]
    (session,) = sim.realtime_sessions
    texts = [json.loads(frame.text) for frame in session.frames if frame.text]
    assert texts == [append(i) for i in range(7)] + [{"type": "response.create"}]


@pytest.mark.parametrize(("text", "code"), [("é" * 600, 1009), ("e" * 600, None)])
async def test_the_frame_limit_counts_utf8_bytes(
    sim: SimulatedProvider, text: str, code: int | None
) -> None:
    """max_message_bytes is in UTF-8 bytes: 600 'é' (1,200 bytes) is over 1,024 and closes
    with 1009 and invalid_request; 600 ASCII letters pass."""
    async with (
        served(sim, relay=RelayConfig(max_message_bytes=1024)) as server,
        relay(server) as ws,
    ):
        await ws.receive_text()  # session.created
        await ws.send_text(json.dumps({"type": "conversation.item.create", "x": text}))
        if code is None:
            await ws.send_text(json.dumps({"type": "response.create"}))
            assert (await events_until(ws, "response.done"))[-1]["type"] == "response.done"
        else:
            got, events = await closed(ws)
            assert got == code
            assert events[-1]["error"]["code"] == "invalid_request"


async def test_more_than_a_hundred_sessions_relay_at_once(sim: SimulatedProvider) -> None:
    """120 sessions open together all get their session.created: the relay's HTTP client
    has no pool limit of its own (httpx's default of 100 held the 101st in its queue)."""
    ready = []

    async def one() -> None:
        async with relay(server) as ws:
            ready.append(json.loads(await ws.receive_text())["type"])
            await done.wait()

    done = anyio.Event()
    pool = PoolConfig(max_concurrency=150, shutdown_grace=2.0)
    async with (
        served(sim, max_connections=150, pool=pool) as server,
        anyio.create_task_group() as tg,
    ):
        for _ in range(120):
            tg.start_soon(one)
        await eventually(lambda: len(ready) == 120, within=20)
        done.set()
    assert ready == ["session.created"] * 120
