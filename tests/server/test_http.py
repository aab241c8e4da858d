"""The HTTP routes' shapes, and the app embedded with a manager of the caller's (loopback)."""

from __future__ import annotations

import openai
import pytest

from llmpool import ConnectionManager, PoolConfig
from llmpool.server import ServerConfig, create_app
from llmpool.testing import SimulatedProvider

from .helpers import KEY, chat, serve_app, served

pytestmark = pytest.mark.anyio


async def test_index_health_and_connect_when_there_is_room(sim: SimulatedProvider) -> None:
    """/ names the endpoints; /health is healthy with the capacity; POST /connect is 200
    with the capacity left; /readyz passes; /metrics.json has the documented keys."""
    async with served(sim, max_connections=4) as server, chat(server) as client:
        await client.send(type="ping")
        await client.recv()
        index = (await server.http.get("/")).json()
        health = (await server.http.get("/health")).json()
        connect = await server.http.post("/connect")
        ready = await server.http.get("/readyz")
        metrics = (await server.http.get("/metrics.json")).json()
    assert index["endpoints"]["chat"] == "/ws/chat/{session_id}"
    assert index["endpoints"]["realtime"] == "/v1/realtime?model={model}"
    assert index["status"] == "serving"
    assert health["status"] == "healthy"
    assert health["server_info"] == {
        "active_connections": 1,
        "max_connections": 4,
        "capacity_usage": "25.0%",
    }
    assert connect.status_code == 200
    assert connect.json() == {
        "status": "available",
        "active_connections": 1,
        "max_connections": 4,
        "capacity_left": 3,
    }
    assert ready.status_code == 200
    assert set(metrics) == {"connections", "performance", "timestamp"}
    assert metrics["performance"] == {
        "avg_session_duration": "0.00s",
        "max_connections": 4,
        "connection_timeout": 300.0,
    }


async def test_a_session_can_be_reloaded_over_http(sim: SimulatedProvider) -> None:
    """GET /api/sessions/{id}: the transcript and the seq to resume from."""
    async with served(sim) as server:
        async with chat(server, "reload-me") as client:
            frames = await client.turn("keep this")
        body = (await server.http.get("/api/sessions/reload-me")).json()
    assert body["last_seq"] == frames[-1]["seq"]
    assert body["turn"] is None
    roles = [item.get("role") for item in body["conversation"]["items"]]
    assert roles == ["user", "assistant"]


async def test_metrics_have_the_manager_and_the_server_series(sim: SimulatedProvider) -> None:
    """/metrics: the manager's instrument (requests, tokens) and the server's (turns,
    frames sent, session durations) in one Prometheus text."""
    async with served(sim) as server:
        async with chat(server) as client:
            frames = await client.turn("count me")
        text = (await server.http.get("/metrics")).text
    assert 'llmpool_server_turns_total{outcome="completed"} 1.0' in text
    assert f"llmpool_server_frames_sent_total {float(len(frames))}" in text
    assert "llmpool_requests_total{" in text
    assert "# TYPE llmpool_server_session_duration_seconds histogram" in text


async def test_the_app_can_share_a_manager_of_the_callers(sim: SimulatedProvider) -> None:
    """manager=: the app uses it without closing it; its turns count in the caller's
    stats; the caller's manager still works after the app stopped."""

    def factory() -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=sim.base_url, api_key=KEY, max_retries=0)

    async with ConnectionManager(PoolConfig(), client_factory=factory) as manager:
        app = create_app(ServerConfig(port=0, close_timeout=0.3), manager=manager)
        async with serve_app(app) as server, chat(server) as client:
            await client.turn("shared")
        assert manager.stats().completed_requests == 1
        response = await manager.responses.create(model="m", input="still open")
    assert response.output_text


def test_manager_and_client_factory_together_are_refused() -> None:
    """One or the other: both is a ValueError naming them."""
    with pytest.raises(ValueError, match=r"manager= or client_factory="):
        create_app(ServerConfig(), manager=ConnectionManager(), client_factory=lambda: None)  # type: ignore[arg-type,return-value]
