"""The simulated Realtime API (WebSocket /v1/realtime) with a real WebSocket client on loopback.

httpx-ws runs on anyio, so every async test runs on asyncio and on trio; the server is uvicorn
(wsproto) in the simulator's own thread. A bare-socket wsproto peer vanishes without a close
frame; the openai SDK's own (sync) Realtime client checks that the events parse.
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import openai
import pydantic
import pytest
from httpx_ws import AsyncWebSocketSession, WebSocketDisconnect, WebSocketUpgradeError, aconnect_ws
from openai.types.realtime import RealtimeServerEvent
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Request, TextMessage

from llmpool.testing import RealtimeFault, RealtimePlan, SimulatedProvider

from .fixtures import simulator_fixtures

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

KEY = "sk-realtime-tests"
MODEL = "gpt-realtime"
SERVER_EVENT = pydantic.TypeAdapter(RealtimeServerEvent)
RESPONSE_TYPES = [
    "response.created",
    "response.output_item.added",
    "conversation.item.added",
    "response.content_part.added",
    # one response.output_text.delta per word, then:
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "conversation.item.done",
    "response.done",
    "rate_limits.updated",
]

shared_sim, sim = simulator_fixtures("realtime", api_key=KEY)


def ws_url(sim: SimulatedProvider, **query: str) -> str:
    """httpx speaks http://; the WebSocket upgrade is the same GET."""
    url = sim.realtime_url.replace("ws://", "http://", 1)
    return str(httpx.URL(url, params=query)) if query else url


class Peer:
    """One Realtime client: JSON events in and out."""

    def __init__(self, ws: AsyncWebSocketSession) -> None:
        self.ws = ws

    async def send(self, **event: Any) -> None:
        await self.ws.send_text(json.dumps(event))

    async def recv(self, within: float = 5.0) -> dict[str, Any]:
        event: dict[str, Any] = json.loads(await self.ws.receive_text(timeout=within))
        return event

    async def until(self, kind: str, within: float = 5.0) -> list[dict[str, Any]]:
        """Events up to and including the first of type ``kind``."""
        events = []
        with anyio.fail_after(within):
            while not events or events[-1]["type"] != kind:
                events.append(await self.recv(within=within))
        return events

    async def closed(self, within: float = 5.0) -> tuple[WebSocketDisconnect, list[Any]]:
        """Read until the server closes: ``(its close, the events before it)``."""
        events = []
        with anyio.fail_after(within):
            while True:
                try:
                    events.append(await self.recv(within=within))
                except WebSocketDisconnect as close:
                    return close, events

    async def say(self, text: str) -> None:
        content = [{"type": "input_text", "text": text}]
        item = {"type": "message", "role": "user", "content": content}
        await self.send(type="conversation.item.create", item=item)


@asynccontextmanager
async def connect(
    sim: SimulatedProvider,
    *,
    key: str | None = KEY,
    subprotocols: list[str] | None = None,
    headers: dict[str, str] | None = None,
    model: str = MODEL,
) -> AsyncIterator[Peer]:
    headers = dict(headers or {})
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    async with (
        httpx.AsyncClient(timeout=5) as http,
        aconnect_ws(
            ws_url(sim, model=model),
            http,
            headers=headers,
            subprotocols=subprotocols,
            keepalive_ping_interval_seconds=None,
        ) as ws,
    ):
        yield Peer(ws)


async def handshake(url: str, headers: dict[str, str] | None = None) -> httpx.Response:
    """A bare upgrade request, so that a refusal's status, headers and body can be read."""
    upgrade = {
        "connection": "upgrade",
        "upgrade": "websocket",
        "sec-websocket-version": "13",
        "sec-websocket-key": base64.b64encode(os.urandom(16)).decode(),
    }
    async with httpx.AsyncClient(timeout=5) as http:
        return await http.get(url, headers={**upgrade, **(headers or {})})


async def eventually(check: Callable[[], bool], within: float = 5.0) -> None:
    """Poll a snapshot of the simulator (a test-thread read: no event to wait on)."""
    with anyio.fail_after(within):
        while not check():  # noqa: ASYNC110
            await anyio.sleep(0.005)


def validated(event: dict[str, Any]) -> Any:
    """The event parsed by the openai SDK's own Realtime server-event models."""
    return SERVER_EVENT.validate_python(event)


# -- handshake -------------------------------------------------------------------------------


async def test_accepted_handshake_sends_session_created(sim: SimulatedProvider) -> None:
    """A bearer key and a model get the upgrade, then session.created with a GA session
    echoing the model; the handshake is recorded with its path, query and headers."""
    async with connect(sim, headers={"x-trace": "t1"}) as peer:
        assert peer.ws.subprotocol is None
        created = await peer.recv()
    assert created["type"] == "session.created"
    assert created["event_id"].startswith("event_")
    assert created["session"]["model"] == MODEL
    assert created["session"]["type"] == "realtime"
    assert validated(created).session.model == MODEL
    [record] = sim.realtime_sessions
    assert (record.outcome, record.status, record.fault) == ("accepted", 101, None)
    assert (record.path, record.query) == ("/v1/realtime", {"model": MODEL})
    assert record.headers["authorization"] == f"Bearer {KEY}"
    assert record.headers["x-trace"] == "t1"
    assert record.session_id == created["session"]["id"]


async def test_browser_subprotocol_key_is_accepted(sim: SimulatedProvider) -> None:
    """A browser's key subprotocol authorises the handshake; the endpoint chooses 'realtime'.
    The beta header is accepted too (and changes nothing)."""
    offered = ["realtime", f"openai-insecure-api-key.{KEY}", "openai-beta.realtime-v1"]
    async with connect(
        sim, key=None, subprotocols=offered, headers={"OpenAI-Beta": "realtime=v1"}
    ) as peer:
        assert peer.ws.subprotocol == "realtime"
        assert (await peer.recv())["type"] == "session.created"
    [record] = sim.realtime_sessions
    assert (record.subprotocols, record.subprotocol) == (offered, "realtime")
    assert record.headers["openai-beta"] == "realtime=v1"


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        pytest.param({}, None, id="no-key"),
        pytest.param({"authorization": "Bearer sk-wrong"}, "invalid_api_key", id="wrong-bearer"),
        pytest.param(
            {"sec-websocket-protocol": "realtime, openai-insecure-api-key.sk-wrong"},
            "invalid_api_key",
            id="wrong-subprotocol",
        ),
    ],
)
async def test_handshake_without_the_key_is_a_401(
    sim: SimulatedProvider, headers: dict[str, str], code: str | None
) -> None:
    """Without the simulator's key the handshake is answered 401 before any accept, with the
    API's JSON error; it does not consume a scripted fault."""
    sim.set_realtime_plan(RealtimePlan(scripted=[RealtimeFault(kind="refuse", status=503)]))
    response = await handshake(ws_url(sim, model=MODEL), headers)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert response.headers["x-request-id"].startswith("req_")
    assert [(r.outcome, r.status) for r in sim.realtime_sessions] == [("unauthorized", 401)]
    with pytest.raises(WebSocketUpgradeError) as refused:  # the script is still whole
        async with connect(sim):
            pass
    assert refused.value.response.status_code == 503
    assert sim.realtime_open == 0


async def test_handshake_without_a_model_is_a_400(sim: SimulatedProvider) -> None:
    """The model query parameter is required: 400 missing_required_parameter, param model."""
    response = await handshake(ws_url(sim), {"authorization": f"Bearer {KEY}"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error["param"]) == ("missing_required_parameter", "model")
    assert [r.outcome for r in sim.realtime_sessions] == ["missing_model"]


async def test_other_websocket_paths_are_a_404(sim: SimulatedProvider) -> None:
    """A WebSocket handshake on another path is refused with a 404 and recorded."""
    url = f"http://127.0.0.1:{sim.port}/v1/realtime/other?model={MODEL}"
    response = await handshake(url, {"authorization": f"Bearer {KEY}"})
    assert response.status_code == 404
    assert response.json()["error"]["message"] == "Invalid URL (GET /v1/realtime/other)"
    assert [(r.outcome, r.path) for r in sim.realtime_sessions] == [
        ("not_found", "/v1/realtime/other")
    ]


async def test_scripted_refusals_come_first_one_per_connection(sim: SimulatedProvider) -> None:
    """Scripted faults are used one per handshake, in order: a 429 with retry-after and a
    rate_limit_exceeded body, a 401 invalid_api_key, then connections are served."""
    refusals = [
        RealtimeFault(kind="refuse", status=429, retry_after=1.5),
        RealtimeFault(kind="refuse", status=401),
    ]
    sim.set_realtime_plan(RealtimePlan(scripted=refusals))
    headers = {"authorization": f"Bearer {KEY}"}
    rate_limited = await handshake(ws_url(sim, model=MODEL), headers)
    assert rate_limited.status_code == 429
    assert rate_limited.headers["retry-after"] == "1.5"
    assert rate_limited.json()["error"]["code"] == "rate_limit_exceeded"
    unauthorized = await handshake(ws_url(sim, model=MODEL), headers)
    assert unauthorized.status_code == 401
    assert unauthorized.json()["error"]["code"] == "invalid_api_key"
    async with connect(sim) as peer:
        assert (await peer.recv())["type"] == "session.created"
    records = sim.realtime_sessions
    assert [(r.outcome, r.status, r.fault) for r in records] == [
        ("refused", 429, "refuse"),
        ("refused", 401, "refuse"),
        ("accepted", 101, None),
    ]


# -- session ---------------------------------------------------------------------------------


async def test_session_created_waits_for_the_plans_delay(sim: SimulatedProvider) -> None:
    """session.created comes session_created_delay seconds after the accept (margin: not
    earlier than 0.3 s less 10 ms of clock granularity, not over 1 s later on a busy host)."""
    sim.set_realtime_plan(RealtimePlan(session_created_delay=0.3))
    async with connect(sim) as peer:
        accepted = time.monotonic()
        created = await peer.recv()
        waited = time.monotonic() - accepted
    assert created["type"] == "session.created"
    assert 0.29 <= waited < 1.3


async def test_session_update_answers_the_merged_session(sim: SimulatedProvider) -> None:
    """session.update answers session.updated with the full session, the update merged in
    (nested objects key by key); the model and id do not change."""
    async with connect(sim) as peer:
        created = (await peer.recv())["session"]
        update = {
            "type": "realtime",
            "instructions": "Be brief.",
            "output_modalities": ["text"],
            "audio": {"output": {"voice": "cedar"}},
            "model": "another-model",
        }
        await peer.send(type="session.update", event_id="evt_1", session=update)
        updated = await peer.recv()
    assert updated["type"] == "session.updated"
    session = updated["session"]
    assert session["instructions"] == "Be brief."
    assert session["output_modalities"] == ["text"]
    assert session["audio"]["output"] == {**created["audio"]["output"], "voice": "cedar"}
    assert session["audio"]["input"] == created["audio"]["input"]
    assert (session["id"], session["model"]) == (created["id"], MODEL)
    validated(updated)


async def test_update_error_answers_every_session_update_with_an_error(
    sim: SimulatedProvider,
) -> None:
    """Under update_error each session.update gets an error event carrying the scripted code
    and the client's event_id; the session stays open and answers other events."""
    fault = RealtimeFault(kind="update_error", error_code="invalid_value")
    sim.set_realtime_plan(RealtimePlan(scripted=[fault]))
    async with connect(sim) as peer:
        await peer.recv()
        await peer.send(type="session.update", event_id="evt_a", session={"type": "realtime"})
        first = await peer.recv()
        await peer.send(type="session.update", event_id="evt_b", session={"type": "realtime"})
        second = await peer.recv()
        await peer.say("still there?")
        added = await peer.recv()
    assert first["type"] == second["type"] == "error"
    assert first["error"]["type"] == "invalid_request_error"
    assert first["error"]["code"] == "invalid_value"
    assert first["error"]["param"] == "session"
    assert (first["error"]["event_id"], second["error"]["event_id"]) == ("evt_a", "evt_b")
    assert first["event_id"] != second["event_id"]
    assert validated(first).error.code == "invalid_value"
    assert added["type"] == "conversation.item.added"


async def test_response_create_streams_a_text_response_with_usage(
    sim: SimulatedProvider,
) -> None:
    """response.create answers the GA text sequence: response.created, the item and part
    events, one output_text.delta per word rebuilding the reply to the last user message,
    response.done with usage (input + output = total); every event has its own event_id and
    parses with the openai SDK's models."""
    async with connect(sim) as peer:
        await peer.recv()
        await peer.say("first words")
        await peer.say("hello there")
        items = await peer.until("conversation.item.done")
        items += await peer.until("conversation.item.done")
        await peer.send(type="response.create")
        events = await peer.until("rate_limits.updated")
    deltas = [event["delta"] for event in events if event["type"] == "response.output_text.delta"]
    text = "Simulated reply to: hello there"
    assert "".join(deltas) == text
    assert len(deltas) == 5
    types = [event["type"] for event in events if event["type"] != "response.output_text.delta"]
    assert types == RESPONSE_TYPES
    assert [event["type"] for event in events[4 : 4 + len(deltas)]] == [
        "response.output_text.delta"
    ] * len(deltas)
    done = next(event for event in events if event["type"] == "response.done")["response"]
    assert done["status"] == "completed"
    assert done["output"][0]["content"] == [{"type": "output_text", "text": text}]
    usage = done["usage"]
    assert usage["output_tokens"] == 5
    assert usage["input_tokens"] >= 4  # both user messages, and the instructions
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    everything = items + events
    assert len({event["event_id"] for event in everything}) == len(everything)
    for event in everything:
        validated(event)
    assert items[0]["item"]["id"] == items[1]["item"]["id"]  # added, then done
    assert items[2]["previous_item_id"] == items[0]["item"]["id"]


async def test_delta_delay_spaces_the_deltas(sim: SimulatedProvider) -> None:
    """delta_delay seconds pass before every delta after the first: 5 deltas take at least
    4 x 0.05 s (less 10 ms of clock granularity)."""
    sim.set_realtime_plan(RealtimePlan(delta_delay=0.05))
    async with connect(sim) as peer:
        await peer.recv()
        await peer.say("hello there")
        await peer.until("conversation.item.done")
        await peer.send(type="response.create")
        await peer.until("response.output_text.delta")
        first = time.monotonic()
        await peer.until("response.output_text.done")
        spread = time.monotonic() - first
    assert spread >= 4 * 0.05 - 0.01


async def test_frames_are_recorded_verbatim_in_order(sim: SimulatedProvider) -> None:
    """Every frame the client sent is recorded as sent, in order, with arrival times, while
    the connection is still open and after it closed (by the client, code 1000)."""
    frames = [
        json.dumps({"type": "session.update", "session": {"type": "realtime"}}),
        json.dumps({"type": "input_audio_buffer.append", "audio": "AAAA"}),
        json.dumps({"type": "conversation.item.create", "item": {"type": "message"}}),
        json.dumps({"type": "response.create", "event_id": "evt_9"}),
    ]
    async with connect(sim) as peer:
        await peer.recv()
        for frame in frames:
            await peer.ws.send_text(frame)
        await peer.until("response.done")
        [live] = sim.realtime_sessions
        assert [frame.text for frame in live.frames] == frames
        assert live.closed_at is None
    await eventually(lambda: sim.realtime_sessions[0].closed_at is not None)
    [record] = sim.realtime_sessions
    assert record.types == [
        "session.update",
        "input_audio_buffer.append",
        "conversation.item.create",
        "response.create",
    ]
    times = [frame.received_at for frame in record.frames]
    assert times == sorted(times)
    assert record.opened_at <= times[0]
    assert (record.closed_by, record.close_code) == ("client", 1000)
    # session.created, session.updated, the item's two, the response's (3 deltas: the item
    # has no text, so the reply is "Simulated reply to: ")
    assert record.events_sent == 1 + 1 + 2 + len(RESPONSE_TYPES) + 3


async def test_unknown_and_malformed_events_get_error_events(sim: SimulatedProvider) -> None:
    """An unknown type gets invalid_value (param type) echoing the client's event_id, a frame
    that is not a JSON object invalid_json; the API's other client events get no answer.
    All are recorded."""
    async with connect(sim) as peer:
        await peer.recv()
        await peer.send(type="input_audio_buffer.commit")  # of the API, not simulated
        await peer.send(type="no.such.event", event_id="evt_x")
        unknown = await peer.recv()
        await peer.ws.send_text("not json")
        malformed = await peer.recv()
    assert unknown["type"] == "error"
    assert (unknown["error"]["code"], unknown["error"]["param"]) == ("invalid_value", "type")
    assert unknown["error"]["event_id"] == "evt_x"
    assert "'response.create'" in unknown["error"]["message"]
    assert malformed["error"]["code"] == "invalid_json"
    [record] = sim.realtime_sessions
    assert record.types == ["input_audio_buffer.commit", "no.such.event", None]
    assert record.frames[-1].text == "not json"


# -- faults ----------------------------------------------------------------------------------


async def test_scripted_close_reaches_the_client_after_n_frames(sim: SimulatedProvider) -> None:
    """A close fault sends after_frames events, then closes with its code and reason, even
    in the middle of a response; the record says the server closed it."""
    fault = RealtimeFault(kind="close", close_code=4001, close_reason="simulated", after_frames=6)
    sim.set_realtime_plan(RealtimePlan(scripted=[fault]))
    async with connect(sim) as peer:
        await peer.say("hello there")
        await peer.send(type="response.create")
        close, received = await peer.closed()
    assert (close.code, close.reason) == (4001, "simulated")
    assert [event["type"] for event in received] == [
        "session.created",
        "conversation.item.added",
        "conversation.item.done",
        "response.created",
        "response.output_item.added",
        "conversation.item.added",
    ]
    await eventually(lambda: sim.realtime_open == 0)
    [record] = sim.realtime_sessions
    assert (record.fault, record.closed_by, record.close_code) == ("close", "server", 4001)
    assert record.events_sent == 6


async def test_close_after_zero_frames_closes_right_after_the_accept(
    sim: SimulatedProvider,
) -> None:
    """after_frames=0: the socket is accepted, then closed before session.created."""
    fault = RealtimeFault(kind="close", close_code=1013, after_frames=0)
    sim.set_realtime_plan(RealtimePlan(session_created_delay=5.0, scripted=[fault]))
    async with connect(sim) as peer:
        close, received = await peer.closed()
    assert (close.code, received) == (1013, [])


async def test_stall_stops_answering_but_keeps_recording(sim: SimulatedProvider) -> None:
    """A stall sends after_frames events and then nothing, whatever the client sends; the
    frames are still recorded and the socket stays open until the client leaves."""
    sim.set_realtime_plan(RealtimePlan(scripted=[RealtimeFault(kind="stall", after_frames=1)]))
    async with connect(sim) as peer:
        assert (await peer.recv())["type"] == "session.created"
        await peer.say("anyone?")
        await peer.send(type="response.create")
        with pytest.raises(TimeoutError):
            await peer.recv(within=0.3)
        assert sim.realtime_sessions[0].types == ["conversation.item.create", "response.create"]
        assert sim.realtime_open == 1
    await eventually(lambda: sim.realtime_open == 0)
    [record] = sim.realtime_sessions
    assert (record.fault, record.events_sent, record.closed_by) == ("stall", 1, "client")


async def test_open_count_returns_to_zero_when_clients_leave(sim: SimulatedProvider) -> None:
    """realtime_open counts accepted connections until they end: three at once, then none."""
    async with connect(sim) as a, connect(sim) as b, connect(sim) as c:
        for peer in (a, b, c):
            await peer.recv()
        assert sim.realtime_open == 3
    await eventually(lambda: sim.realtime_open == 0)
    assert [r.closed_by for r in sim.realtime_sessions] == ["client"] * 3


async def test_an_abrupt_tcp_close_frees_the_connection(sim: SimulatedProvider) -> None:
    """A client that vanishes without a close frame ends its connection, also in the middle
    of a stall: realtime_open goes back to 0. (uvicorn reports the lost connection as 1005,
    no status, rather than RFC 6455's 1006.)"""
    sim.set_realtime_plan(RealtimePlan(scripted=[RealtimeFault(kind="stall", after_frames=1)]))
    stream = await anyio.connect_tcp("127.0.0.1", sim.port)
    async with stream:
        conn = WSConnection(ConnectionType.CLIENT)
        target = f"/v1/realtime?model={MODEL}"
        headers = [(b"authorization", f"Bearer {KEY}".encode())]
        request = Request(host=f"127.0.0.1:{sim.port}", target=target, extra_headers=headers)
        await stream.send(conn.send(request))
        texts: list[str] = []
        accepted = False
        with anyio.fail_after(5):
            while not texts:
                conn.receive_data(await stream.receive())
                for event in conn.events():
                    accepted = accepted or isinstance(event, AcceptConnection)
                    if isinstance(event, TextMessage):
                        texts.append(event.data)
        assert accepted
        assert json.loads(texts[0])["type"] == "session.created"
        await stream.send(conn.send(TextMessage(data=json.dumps({"type": "response.create"}))))
        await eventually(lambda: sim.realtime_sessions[0].types == ["response.create"])
        assert sim.realtime_open == 1
    # the TCP stream is closed here, with no close frame
    await eventually(lambda: sim.realtime_open == 0)
    [record] = sim.realtime_sessions
    assert (record.closed_by, record.close_code) == ("client", 1005)


# -- the openai SDK's client, and the plan -----------------------------------------------------


# openai's sync Realtime client calls websockets' connect() outside a with block, which
# websockets 17 deprecates (an SDK/websockets matter, not the simulator's).
@pytest.mark.filterwarnings(
    "ignore:connect\\(\\) must be used as a context manager:DeprecationWarning"
)
def test_the_openai_sdk_realtime_client_talks_to_the_simulator() -> None:
    """openai's own Realtime client (sync, websockets) connects with the provider's base_url
    and key, and parses session.created and a text response up to response.done."""
    with SimulatedProvider(api_key=KEY, name="sdk-realtime") as simulator:
        client = openai.OpenAI(base_url=simulator.base_url, api_key=KEY)
        with client.realtime.connect(model=MODEL) as connection:
            assert connection.recv().type == "session.created"
            content = [{"type": "input_text", "text": "hello sdk"}]
            connection.conversation.item.create(
                item={"type": "message", "role": "user", "content": content}  # type: ignore[list-item]
            )
            connection.response.create()
            events = []
            while not events or events[-1].type != "response.done":
                events.append(connection.recv())
        done = events[-1]
        assert done.type == "response.done"
        assert done.response.output is not None
        assert done.response.usage is not None
        assert done.response.usage.output_tokens == 5
        deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
        assert "".join(deltas) == "Simulated reply to: hello sdk"
        [record] = simulator.realtime_sessions
        assert record.query == {"model": MODEL}
        assert record.types == ["conversation.item.create", "response.create"]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        pytest.param({"session_created_delay": -1.0}, "session_created_delay", id="negative"),
        pytest.param({"surprise": 1}, "surprise", id="unknown-field"),
        pytest.param({"scripted": [{"kind": "explode"}]}, "kind", id="unknown-kind"),
        pytest.param(
            {"scripted": [{"kind": "close", "close_code": 1006}]}, "close_code", id="1006"
        ),
        pytest.param({"scripted": [{"kind": "refuse", "status": 200}]}, "status", id="status"),
    ],
)
def test_realtime_plan_validation_names_the_field(kwargs: dict[str, Any], field: str) -> None:
    """Invalid plans fail at construction, naming the field."""
    with pytest.raises(pydantic.ValidationError, match=field):
        RealtimePlan(**kwargs)


def test_realtime_plans_are_frozen() -> None:
    """A plan and its faults are immutable; variants are made with model_copy."""
    plan = RealtimePlan(delta_delay=0.1)
    with pytest.raises(pydantic.ValidationError):
        plan.delta_delay = 0.2  # type: ignore[misc]
    assert plan.model_copy(update={"delta_delay": 0.2}).delta_delay == 0.2
    with pytest.raises(pydantic.ValidationError):
        RealtimeFault(kind="close").close_code = 1000  # type: ignore[misc]
