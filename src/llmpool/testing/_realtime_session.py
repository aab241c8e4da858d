"""One accepted Realtime WebSocket: reads client events, answers them, applies its fault.

Two tasks share the socket. The reader records every client frame the moment it arrives (so
the record keeps arrival order even while an answer is being streamed or the session stalls)
and queues it; on the client's close, or a connection lost, it ends the session. The responder
sends ``session.created`` after the plan's delay, then answers the queued events in order.
Every server event goes through ``_send``, which counts it and applies a ``close`` or ``stall``
fault once ``after_frames`` events were sent.

Client events answered: ``session.update`` (``session.updated``, or ``error`` under an
``update_error`` fault), ``conversation.item.create`` (``conversation.item.added`` and
``.done``), ``response.create`` (the text response sequence of ``_realtime_events``). The
API's other client events are recorded and ignored; an unknown ``type``, a frame that is not a
JSON object, and a binary frame get an ``error`` event, as the API answers them.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Mapping
from typing import Any

import anyio
from anyio import CancelScope
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from starlette.websockets import WebSocket, WebSocketDisconnect

from . import _payloads as P
from . import _realtime_events as E
from ._realtime_plan import RealtimeFault, RealtimePlan
from ._realtime_state import ConnectionState
from ._records import RecordedFrame

__all__ = ["RealtimeSession"]

JSON = dict[str, Any]
_SUPPORTED = ", ".join(f"'{name}'" for name in sorted(E.CLIENT_EVENT_TYPES))


class _Closed(Exception):
    """The responder closed the socket (a ``close`` fault): the session is over."""


class RealtimeSession:
    """The conversation over one accepted WebSocket.

    Args:
        websocket: the accepted socket.
        state: its record (frames, counts, close), shared with the test thread.
        plan: the plan in force at the handshake (delays).
        fault: the scripted fault this connection consumed, or ``None``.
        model: the ``model`` query parameter of the handshake.
    """

    def __init__(
        self,
        websocket: WebSocket,
        state: ConnectionState,
        plan: RealtimePlan,
        fault: RealtimeFault | None,
        model: str,
    ) -> None:
        self._ws = websocket
        self._state = state
        self._plan = plan
        self._fault = fault
        self._session = E.session_object(model)
        self._conversation_id = P.new_id("conv_", 22)
        self._items: list[JSON] = []
        self._sent = 0
        state.set_session_id(self._session["id"])

    async def run(self) -> None:
        """Serve the socket until the client leaves or a fault closes it."""
        send, receive = anyio.create_memory_object_stream[RecordedFrame](math.inf)
        with send, receive:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._read, send, tg.cancel_scope)
                # Closed by a fault, or the client left while an event was being sent.
                with contextlib.suppress(_Closed, WebSocketDisconnect):
                    await self._respond(receive)
                tg.cancel_scope.cancel()

    # -- reading ---------------------------------------------------------------------------

    async def _read(self, inbox: MemoryObjectSendStream[RecordedFrame], scope: CancelScope) -> None:
        while True:
            message = await self._ws.receive()
            if message["type"] == "websocket.disconnect":
                self._state.close(int(message.get("code", 1005)), by="client")
                scope.cancel()
                return
            if message["type"] != "websocket.receive":
                continue
            text, data = message.get("text"), message.get("bytes")
            frame = RecordedFrame(
                text=text, data=data if text is None else None, received_at=time.monotonic()
            )
            self._state.add_frame(frame)
            inbox.send_nowait(frame)

    # -- answering -------------------------------------------------------------------------

    async def _send(self, event: JSON) -> None:
        await self._apply_fault()
        await self._ws.send_text(json.dumps(event, separators=(",", ":")))
        self._sent += 1
        self._state.count_sent()

    async def _apply_fault(self) -> None:
        fault = self._fault
        if fault is None or fault.kind not in ("close", "stall") or self._sent < fault.after_frames:
            return
        if fault.kind == "stall":
            await anyio.sleep_forever()  # the reader still records; the client's close ends it
        self._state.close(fault.close_code, by="server")
        await self._ws.close(fault.close_code, fault.close_reason)
        raise _Closed

    async def _respond(self, inbox: MemoryObjectReceiveStream[RecordedFrame]) -> None:
        await self._apply_fault()  # after_frames=0: before the delay, right after the accept
        if self._plan.session_created_delay > 0.0:
            await anyio.sleep(self._plan.session_created_delay)
        await self._send(E.server_event("session.created", session=self._session))
        async for frame in inbox:
            await self._answer(frame)

    async def _answer(self, frame: RecordedFrame) -> None:
        event = frame.event
        if frame.text is None:
            message = "Binary frames are not supported: send client events as JSON text."
            await self._send(E.error_event(message, code="invalid_request"))
            return
        if not isinstance(event, Mapping):
            message = "The client event is not a JSON object."
            await self._send(E.error_event(message, code="invalid_json"))
            return
        kind = event.get("type")
        if kind == "session.update":
            await self._session_update(event)
        elif kind == "conversation.item.create":
            await self._item_create(event)
        elif kind == "response.create":
            await self._response_create(event)
        elif not isinstance(kind, str):
            await self._missing(event, "type")
        elif kind not in E.CLIENT_EVENT_TYPES:
            message = f"Invalid value: '{kind}'. Supported values are: {_SUPPORTED}."
            error = E.error_event(
                message, code="invalid_value", param="type", client_event_id=event.get("event_id")
            )
            await self._send(error)
        # any other client event of the API: recorded, not simulated, not answered

    async def _missing(self, event: Mapping[str, Any], param: str) -> None:
        message = f"Missing required parameter: '{param}'."
        error = E.error_event(
            message,
            code="missing_required_parameter",
            param=param,
            client_event_id=event.get("event_id"),
        )
        await self._send(error)

    async def _session_update(self, event: Mapping[str, Any]) -> None:
        fault = self._fault
        if fault is not None and fault.kind == "update_error":
            message = f"Simulated error for session.update (code '{fault.error_code}')."
            error = E.error_event(
                message,
                code=fault.error_code,
                param="session",
                client_event_id=event.get("event_id"),
            )
            await self._send(error)
            return
        update = event.get("session")
        if not isinstance(update, Mapping):
            await self._missing(event, "session")
            return
        self._session = E.merged_session(self._session, update)
        await self._send(E.server_event("session.updated", session=self._session))

    async def _item_create(self, event: Mapping[str, Any]) -> None:
        item = event.get("item")
        if not isinstance(item, Mapping):
            await self._missing(event, "item")
            return
        stored = E.user_item(item)
        previous = self._items[-1]["id"] if self._items else None
        self._items.append(stored)
        for answer in E.item_events(stored, previous):
            await self._send(answer)

    async def _response_create(self, event: Mapping[str, Any]) -> None:
        params = event.get("response")
        params = params if isinstance(params, Mapping) else {}
        out_of_band = isinstance(params.get("input"), list)
        conversation = (
            [dict(item) for item in params["input"] if isinstance(item, Mapping)]
            if out_of_band
            else self._items
        )
        conversation_id = None if params.get("conversation") == "none" else self._conversation_id
        events, item = E.response_events(
            conversation=conversation,
            instructions=params.get("instructions", self._session.get("instructions")),
            conversation_id=conversation_id,
            session=self._session,
        )
        if not out_of_band and conversation_id is not None:
            self._items.append(item)
        deltas = 0
        for answer in events:
            if answer["type"] == "response.output_text.delta":
                if deltas and self._plan.delta_delay > 0.0:
                    await anyio.sleep(self._plan.delta_delay)
                deltas += 1
            await self._send(answer)
