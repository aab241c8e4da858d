"""The bearer token (header or first frame) and the server's log records (loopback)."""

from __future__ import annotations

import json
import logging

import pytest
from pydantic import SecretStr

from llmpool.server import JsonFormatter
from llmpool.testing import SimulatedProvider

from .helpers import chat, served

pytestmark = pytest.mark.anyio

TOKEN = SecretStr("s3cret-token")
BEARER = {"authorization": "Bearer s3cret-token"}


async def test_the_right_header_is_let_in(sim: SimulatedProvider) -> None:
    """Authorization: Bearer <token> from a non-browser client: the socket works."""
    async with served(sim, token=TOKEN) as server, chat(server, headers=BEARER) as client:
        await client.send(type="ping")
        pong = await client.recv()
    assert pong["type"] == "pong"


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"authorization": "Bearer wrong"}, id="wrong-token"),
        pytest.param({"authorization": "Basic czNjcmV0"}, id="other-scheme"),
    ],
)
async def test_a_wrong_header_is_unauthorized_and_1008(
    sim: SimulatedProvider, headers: dict[str, str]
) -> None:
    """A wrong token or scheme gets unauthorized and close 1008, and nothing else."""
    async with served(sim, token=TOKEN) as server, chat(server, headers=headers) as client:
        code, frames = await client.closed()
        metrics = (await server.http.get("/metrics")).text
    assert code == 1008
    assert [f["error"] for f in frames] == ["unauthorized"]
    assert 'llmpool_server_connections_total{outcome="unauthorized"} 1.0' in metrics


async def test_a_browser_authenticates_with_its_first_frame(sim: SimulatedProvider) -> None:
    """Without a header, the first frame {"type": "auth", "token": ...} lets it in."""
    async with served(sim, token=TOKEN) as server, chat(server) as client:
        await client.send(type="auth", token="s3cret-token")
        await client.send(type="ping")
        pong = await client.recv()
    assert pong["type"] == "pong"


@pytest.mark.parametrize(
    "first",
    [
        pytest.param({"type": "auth", "token": "nope"}, id="wrong-token"),
        pytest.param({"type": "message", "message": "hi"}, id="not-auth"),
    ],
)
async def test_a_wrong_or_missing_first_frame_is_1008(
    sim: SimulatedProvider, first: dict[str, str]
) -> None:
    """A first frame that is not the right auth frame: unauthorized, close 1008, and no
    request reaches the provider."""
    async with served(sim, token=TOKEN) as server, chat(server) as client:
        await client.send(**first)
        code, frames = await client.closed()
    assert code == 1008
    assert [f["error"] for f in frames] == ["unauthorized"]
    assert sim.requests == []


async def test_a_silent_unauthenticated_socket_is_closed_after_auth_timeout(
    sim: SimulatedProvider,
) -> None:
    """No auth frame within auth_timeout: unauthorized, close 1008."""
    async with served(sim, token=TOKEN, auth_timeout=0.2) as server, chat(server) as client:
        code, frames = await client.closed(within=3.0)
    assert code == 1008
    assert [f["error"] for f in frames] == ["unauthorized"]


async def test_the_api_routes_need_the_token_and_the_probes_do_not(
    sim: SimulatedProvider,
) -> None:
    """/api/* answers 401 with WWW-Authenticate without the token; probes and metrics stay
    open (scrapers and kubelets carry no token)."""
    async with served(sim, token=TOKEN) as server:
        denied = await server.http.get("/api/connection-stats")
        allowed = await server.http.get("/api/connection-stats", headers=BEARER)
        session = await server.http.get("/api/sessions/nobody", headers=BEARER)
        probes = [
            (await server.http.get(path)).status_code
            for path in ("/health", "/livez", "/readyz", "/metrics", "/metrics.json", "/")
        ]
    assert denied.status_code == 401
    assert denied.headers["www-authenticate"].startswith("Bearer")
    assert allowed.status_code == 200
    assert session.status_code == 404
    assert probes == [200] * 6


async def test_logs_name_connections_and_turns_but_never_the_text(
    sim: SimulatedProvider, caplog: pytest.LogCaptureFixture
) -> None:
    """connect, turn_start, turn_end and disconnect records carry the connection id, the
    session's hash (not its id), the turn and request ids; the message text is in none."""
    caplog.set_level(logging.INFO, logger="llmpool.server")
    async with served(sim) as server, chat(server, "secret-session") as client:
        frames = await client.turn("my private words")
    records = [r for r in caplog.records if r.name == "llmpool.server"]
    events = [getattr(r, "llmpool_event", None) for r in records]
    assert {"connect", "turn_start", "turn_end", "disconnect"} <= set(events)
    end = next(r for r in records if getattr(r, "llmpool_event", None) == "turn_end")
    fields = end.llmpool_fields  # type: ignore[attr-defined]
    assert fields["turn_id"] == frames[0]["turn_id"]
    assert fields["request_id"]
    assert fields["outcome"] == "completed"
    assert len(fields["session"]) == 12
    text = "\n".join(JsonFormatter().format(r) for r in records)
    assert "private" not in text
    assert "secret-session" not in text


def test_the_json_formatter_writes_one_object_per_record() -> None:
    """Each record is one JSON line with time, level, logger, event and its fields."""
    record = logging.LogRecord("llmpool.server", logging.INFO, __file__, 1, "x %s", ("y",), None)
    record.llmpool_event = "connect"
    record.llmpool_fields = {"connection_id": "c1"}
    line = JsonFormatter().format(record)
    data = json.loads(line)
    assert data["event"] == "connect"
    assert data["message"] == "x y"
    assert data["connection_id"] == "c1"
    assert data["level"] == "INFO"
    assert "\n" not in line
