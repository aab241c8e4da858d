"""The connection cap, stale cleanup and draining, over real sockets (loopback)."""

from __future__ import annotations

import json
from contextlib import AsyncExitStack

import anyio
import pytest

from llmpool import PoolConfig
from llmpool.testing import FaultPlan, SimulatedProvider

from .helpers import Chat, RawPeer, chat, eventually, served, text_of

pytestmark = pytest.mark.anyio

LONG = " ".join(f"w{i}" for i in range(20))


async def test_the_26th_connection_is_refused_while_health_and_metrics_answer(
    sim: SimulatedProvider,
) -> None:
    """25 sockets are accepted; the 26th gets server_at_capacity with retry_after_ms and
    close 1013. Meanwhile /health, /metrics, /metrics.json and /livez answer 200 within a
    second, /readyz and POST /connect answer 503 (with Retry-After)."""
    async with served(sim, retry_after=7.0) as server, AsyncExitStack() as stack:
        clients: list[Chat] = []
        for i in range(25):
            client = await stack.enter_async_context(chat(server, f"s{i}"))
            await client.send(type="ping")
            await client.recv()
            clients.append(client)
        async with chat(server, "one-too-many") as extra:
            code, frames = await extra.closed()
        timings = {}
        for path in ("/health", "/metrics", "/metrics.json", "/livez", "/readyz"):
            start = anyio.current_time()
            response = await server.http.get(path)
            timings[path] = (response.status_code, anyio.current_time() - start)
        connect = await server.http.post("/connect")
        health = (await server.http.get("/health")).json()
        metrics = (await server.http.get("/metrics.json")).json()
        prometheus = (await server.http.get("/metrics")).text
    assert code == 1013
    (error,) = frames
    assert error["error"] == "server_at_capacity"
    assert error["error_details"]["retry_after_ms"] == 7000
    assert {path: status for path, (status, _) in timings.items()} == {
        "/health": 200,
        "/metrics": 200,
        "/metrics.json": 200,
        "/livez": 200,
        "/readyz": 503,
    }
    assert max(seconds for _, seconds in timings.values()) < 1.0
    assert connect.status_code == 503
    assert connect.headers["retry-after"] == "7"
    assert connect.json()["capacity_left"] == 0
    assert health["server_info"] == {
        "active_connections": 25,
        "max_connections": 25,
        "capacity_usage": "100.0%",
    }
    assert metrics["connections"] == {
        "total": 25,
        "active": 25,
        "peak": 25,
        "rejected": 1,
        "capacity_used": "100.0%",
    }
    assert "llmpool_server_connections_active 25.0" in prometheus
    assert 'llmpool_server_connections_total{outcome="at_capacity"} 1.0' in prometheus


async def test_ready_when_full_keeps_readyz_passing(sim: SimulatedProvider) -> None:
    """ready_when_full: /readyz stays 200 at capacity (e.g. behind a queueing proxy)."""
    async with (
        served(sim, max_connections=1, ready_when_full=True) as server,
        chat(server) as client,
    ):
        await client.send(type="ping")
        await client.recv()
        ready = await server.http.get("/readyz")
        connect = await server.http.post("/connect")
    assert ready.status_code == 200
    assert connect.status_code == 503


async def test_a_thousand_connect_disconnect_cycles_leave_active_at_zero(
    sim: SimulatedProvider,
) -> None:
    """1,000 connections in waves of 10: afterwards active is 0, peak is exactly 10, total
    is 1,000, and every one was counted as a disconnect (by close code: 1000 on uvicorn;
    hypercorn reports 1006 for this client, which drops TCP right after its close frame)."""

    async def one(i: int) -> None:
        async with chat(server, f"cycle-{i % 37}") as client:
            await client.send(type="ping")
            await client.recv()

    async with served(sim) as server:
        for wave in range(100):
            async with anyio.create_task_group() as tg:
                for i in range(10):
                    tg.start_soon(one, wave * 10 + i)
        await eventually(lambda: server.runtime.metrics.active == 0)
        metrics = (await server.http.get("/metrics.json")).json()["connections"]
        prometheus = (await server.http.get("/metrics")).text
    assert metrics == {
        "total": 1000,
        "active": 0,
        "peak": 10,
        "rejected": 0,
        "capacity_used": "0.0%",
    }
    disconnects = [
        float(line.rsplit(" ", 1)[1])
        for line in prometheus.splitlines()
        if line.startswith("llmpool_server_disconnects_total{")
    ]
    assert sum(disconnects) == 1000
    assert "llmpool_server_session_duration_seconds_count 1000.0" in prometheus


async def test_a_client_that_leaves_frees_its_slot_for_the_next_one(
    sim: SimulatedProvider,
) -> None:
    """At capacity, a client that leaves frees its slot at once for the next one."""
    async with served(sim, max_connections=1) as server:
        async with chat(server, "a") as client:
            await client.send(type="ping")
            await client.recv()
        await eventually(lambda: server.runtime.metrics.active == 0)
        async with chat(server, "b") as client:
            await client.send(type="ping")
            pong = await client.recv()
    assert pong["type"] == "pong"


async def test_an_idle_socket_is_closed_with_1001(sim: SimulatedProvider) -> None:
    """No client frame and no turn for connection_timeout: idle_timeout, then close 1001
    (0.3 s here; the margin covers a loaded machine)."""
    async with served(sim, connection_timeout=0.3) as server, chat(server) as client:
        start = anyio.current_time()
        code, frames = await client.closed()
        waited = anyio.current_time() - start
    assert code == 1001
    assert [f["error"] for f in frames] == ["idle_timeout"]
    assert 0.25 <= waited < 2.0


async def test_a_socket_with_a_running_turn_is_never_reaped(sim: SimulatedProvider) -> None:
    """A turn longer than connection_timeout runs to its end on a silent socket; the idle
    clock starts when the turn ends."""
    sim.set_fault_plan(FaultPlan(stream_chunk_delay=0.05))  # ~1.2 s of streaming
    async with served(sim, connection_timeout=0.3) as server, chat(server) as client:
        await client.send(type="message", message=LONG)
        frames = await client.until("complete")
        ended = anyio.current_time()
        code, after = await client.closed()
        idle = anyio.current_time() - ended
    assert text_of(frames).endswith(LONG)
    assert code == 1001
    assert [f["error"] for f in after] == ["idle_timeout"]
    assert 0.2 <= idle < 2.0


async def test_a_silent_peer_is_dropped_after_ping_interval_and_timeout(
    sim: SimulatedProvider,
) -> None:
    """A peer that completes the handshake and then never reads nor answers a ping is
    dropped: within ping_interval + ping_timeout on uvicorn (0.4 s here); hypercorn counts
    whole seconds of silence (1 s here)."""
    async with (
        served(sim, ping_interval=0.2, ping_timeout=0.2) as server,
        RawPeer.connect(server.port, "/ws/chat/silent"),  # and then silence
    ):
        await eventually(lambda: server.runtime.metrics.active == 1)
        gone = await eventually(lambda: server.runtime.metrics.active == 0, within=5.0)
    assert gone < 3.0


async def test_draining_finishes_running_turns_then_closes_with_1012(
    sim: SimulatedProvider,
) -> None:
    """On shutdown: /readyz fails at once and new sockets are refused (1012); a running
    turn still streams to its end; a new message on an open socket is refused; then every
    socket gets server_shutting_down and close 1012."""
    sim.set_fault_plan(FaultPlan(stream_chunk_delay=0.05))
    async with served(sim, pool=PoolConfig(shutdown_grace=10.0)) as server:
        async with chat(server, "busy") as busy, chat(server, "idle") as idle:
            await idle.send(type="ping")
            await idle.recv()
            await busy.send(type="message", message=LONG)
            first = await busy.recv()
            server.stop.set()
            await eventually(lambda: server.runtime.state.value == "draining")
            ready = await server.http.get("/readyz")
            async with chat(server, "late") as late:
                late_code, late_frames = await late.closed()
            await idle.send(type="message", message="now?")
            refused = await idle.recv()
            frames = [first, *await busy.until("complete")]
            busy_code, busy_last = await busy.closed()
            idle_code, idle_last = await idle.closed()
        with anyio.fail_after(10):
            await server.done.wait()
    assert ready.status_code == 503
    assert ready.json() == {"status": "not_ready", "reason": "draining"}
    assert late_code == 1012
    assert [f["error"] for f in late_frames] == ["server_shutting_down"]
    assert refused["error"] == "server_shutting_down"
    assert text_of(frames).endswith(LONG)
    assert (busy_code, idle_code) == (1012, 1012)
    assert [f["error"] for f in busy_last + idle_last] == ["server_shutting_down"] * 2


async def test_a_turn_past_the_grace_ends_with_server_shutting_down(
    sim: SimulatedProvider,
) -> None:
    """A turn still running when the grace ends gets one error frame, then close 1012."""
    sim.set_fault_plan(FaultPlan(stream_chunk_delay=0.2))
    pool = PoolConfig(shutdown_grace=0.3)
    async with served(sim, pool=pool) as server, chat(server, "slow") as client:
        await client.send(type="message", message=LONG)
        await client.recv()
        server.stop.set()
        code, frames = await client.closed()
    assert code == 1012
    errors = [f for f in frames if f["type"] == "error"]
    assert [f["error"] for f in errors] == ["server_shutting_down"] * 2
    assert errors[0]["turn_id"] is not None


async def test_a_refused_client_that_already_sent_frames_still_gets_the_close_code(
    sim: SimulatedProvider,
) -> None:
    """A browser sends its first frames as soon as the socket opens, before it reads the
    refusal: it still gets the error frame and the close frame with 1013, not a reset
    connection (which a browser reports as 1006)."""
    from wsproto.events import CloseConnection, TextMessage

    async with served(sim, max_connections=1) as server, chat(server, "a") as holder:
        await holder.send(type="ping")
        await holder.recv()
        for _ in range(20):
            async with RawPeer.connect(server.port, "/ws/chat/b") as peer:
                for index in range(8):
                    await peer.send(type="message", message=f"early {index} " + "x" * 2000)
                events = []
                with anyio.fail_after(5):
                    while True:
                        try:
                            event = await peer._next_event()
                        except (anyio.EndOfStream, anyio.BrokenResourceError, OSError) as exc:
                            events.append(type(exc).__name__)
                            break
                        events.append(event)
                        if isinstance(event, CloseConnection):
                            break
            texts = [e for e in events if isinstance(e, TextMessage)]
            closes = [e.code for e in events if isinstance(e, CloseConnection)]
            assert [json.loads(t.data)["error"] for t in texts] == ["server_at_capacity"]
            assert closes == [1013], events
