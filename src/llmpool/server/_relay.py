"""``/v1/realtime``: a WebSocket relay to the Realtime API that never drops, reorders or leaks.

Browsers must not hold the API key, so they talk to the relay, which holds it. One relay
session is one client socket, one ``manager.lease(...)`` (a concurrency slot and a pooled
client's endpoint and key, for the session's life) and one upstream socket:

1. Admission before accept (draining, the model, the server's token, the connection cap);
   the client is then accepted at once (with the ``realtime`` subprotocol if it asked).
2. Every client frame goes through the readiness gate (``_relay_gate``): held, in order and
   within bounds, until the upstream has sent ``session.created`` and answered the relay's
   own ``session.update`` (when ``RelayConfig.session`` is set), then sent in arrival order
   after it. Frames pass unchanged both ways, unknown event types included.
3. Upstream -> client waits on each client send (back-pressure up to the upstream's socket);
   a send slower than ``max_client_lag`` ends the session (``client_lagging``, 4008).
4. Either side's close ends the other at once (the task group is cancelled); a refused or
   failed upstream is one ``error`` event to the client, then a mapped close code
   (``_relay_events``). ``response.done`` usage is settled into the lease's token budget.

The upstream WebSocket client is httpx-ws (wsproto on anyio streams, so the relay runs on
asyncio and trio alike; the openai SDK's realtime client is asyncio-only).
"""

from __future__ import annotations

import contextlib
import json
import math
from typing import Any

import anyio
import httpx
from anyio.abc import TaskGroup
from httpx_ws import AsyncWebSocketSession, WebSocketDisconnect, WebSocketUpgradeError, aconnect_ws
from starlette.websockets import WebSocket
from wsproto.events import BytesMessage, TextMessage

from llmpool import (
    InvalidSessionIdError,
    Lease,
    LLMPoolError,
    ManagerClosedError,
    ManagerView,
)

from ._auth import bearer, from_subprotocols, token_matches
from ._config import RelayConfig
from ._logs import log_event, session_hash
from ._protocol import CloseCode, ErrorCode
from ._relay_events import (
    CLIENT_LAGGING,
    RelayCode,
    handshake_close_code,
    passed_close_code,
    relay_error,
)
from ._relay_gate import Gate, GateOverflowError
from ._runtime import Lifecycle, Runtime
from ._socket import send_final

__all__ = ["RelaySession", "relay_endpoint"]


async def _refuse(
    ws: WebSocket, protocol: str | None, code: int, error: RelayCode, text: str
) -> None:
    await ws.accept(subprotocol=protocol)
    await send_final(ws, code, relay_error(error, text), text)


async def relay_endpoint(runtime: Runtime, ws: WebSocket) -> None:
    """The ``/v1/realtime?model=...`` route (bound to its runtime with ``functools.partial``)."""
    config = runtime.config
    metrics = runtime.metrics
    connection_id = runtime.connection_id()
    offered = ws.scope.get("subprotocols") or []
    protocol = "realtime" if "realtime" in offered else None
    if runtime.state is not Lifecycle.SERVING:
        metrics.refused("draining")
        await _refuse(ws, protocol, 1012, RelayCode.SERVER_SHUTTING_DOWN, "the relay is restarting")
        return
    offered_token = bearer(ws.headers)
    if offered_token is None:  # a browser: the key subprotocol carries the server's token
        offered_token = from_subprotocols(offered)
    if not token_matches(config.token, offered_token):
        metrics.refused("unauthorized")
        log_event("reject", connection_id=connection_id, reason="unauthorized", route="relay")
        await _refuse(ws, protocol, 1008, RelayCode.UNAUTHORIZED, "a valid token is required")
        return
    model = ws.query_params.get("model")
    session_id = ws.query_params.get("session_id") or f"relay-{connection_id}"
    try:
        if not model:
            raise ValueError("the model query parameter is required: /v1/realtime?model=...")
        view = runtime.view(ws.query_params.get("priority"), session_id)
    except (InvalidSessionIdError, ValueError) as exc:
        metrics.refused("invalid")
        await _refuse(ws, protocol, 1008, RelayCode.INVALID_REQUEST, str(exc))
        return
    if not metrics.try_connect():
        log_event("reject", connection_id=connection_id, reason="at_capacity", route="relay")
        await _refuse(ws, protocol, 1013, RelayCode.SERVER_AT_CAPACITY, "the relay is at capacity")
        return
    relay = RelaySession(runtime, ws, model, connection_id, session_id)
    runtime.sockets.add(relay)
    try:  # from here the slot is freed whatever happens, a failed accept included
        await ws.accept(subprotocol=protocol)
        log_event(
            "connect", connection_id=connection_id, session=session_hash(session_id), route="relay"
        )
        await relay.run(view)
    finally:
        runtime.sockets.discard(relay)
        relay.finished.set()
        metrics.disconnected(relay.close_code, runtime.now() - relay.opened_at)
        log_event(
            "disconnect",
            connection_id=connection_id,
            session=session_hash(session_id),
            code=relay.close_code,
            route="relay",
        )


class RelaySession:
    """One relay session (see the module docstring).

    Attributes:
        close_code: how the client's socket closed (its code, ours, or 1006 if lost).
        finished: set when it has ended.
        sent_upstream: client frames sent upstream, count.
        sent_client: upstream frames sent to the client, count.
    """

    def __init__(
        self, runtime: Runtime, ws: WebSocket, model: str, connection_id: str, session_id: str
    ) -> None:
        self._runtime = runtime
        self._config = runtime.config.relay
        self._ws = ws
        self._model = model
        self.connection_id = connection_id
        self.session_id = session_id
        self._gate = Gate(
            max_frames=self._config.max_buffer_frames, max_bytes=self._config.max_buffer_bytes
        )
        self._task_group: TaskGroup | None = None
        self._closing: tuple[int, str | None] | None = None  # (code, error event) decided
        self._client_gone = False
        self.opened_at = runtime.now()
        self.close_code = 1006
        self.finished = anyio.Event()
        self.sent_upstream = 0
        self.sent_client = 0
        self.usage = Usage()
        self._send_lock = anyio.Lock()

    # -- for the runtime (drain) -------------------------------------------------------------

    def close(self, code: CloseCode, error: ErrorCode | None, message: str) -> None:
        """Drain: end the session with ``server_shutting_down`` and ``code``."""
        self._end(int(code), relay_error(RelayCode.SERVER_SHUTTING_DOWN, message))

    def abort(self) -> None:
        """End now."""
        if self._task_group is not None:
            self._task_group.cancel_scope.cancel()

    def _end(self, code: int, event: str | None) -> None:
        if self._closing is None:
            self._closing = (code, event)
        self.abort()

    # -- the session -------------------------------------------------------------------------

    async def run(self, view: ManagerView) -> None:
        """Relay until either side ends, then close the client as decided.

        The client's frames are read (into the gate) from the start, also while the session
        waits for its lease (a slot of the manager, in its queue).
        """
        try:
            async with anyio.create_task_group() as tg:
                self._task_group = tg
                tg.start_soon(self._read_client)
                tg.start_soon(self._expire)
                await self._leased(view)
                tg.cancel_scope.cancel()
        finally:
            await self._close_client()

    async def _leased(self, view: ManagerView) -> None:
        try:
            async with view.lease(model=self._model) as lease:
                await self._relay(lease)
        except LLMPoolError as exc:  # no slot: the queue is full or timed out; shutdown
            code = 1012 if isinstance(exc, ManagerClosedError) else 1013
            message = f"no upstream slot: {exc}"
            self._closing = self._closing or (
                code,
                relay_error(RelayCode.UPSTREAM_UNAVAILABLE, message),
            )

    async def _close_client(self) -> None:
        if self._client_gone:
            return
        self._client_gone = True
        code, event = self._closing or (1000, None)
        with anyio.CancelScope(shield=True), anyio.move_on_after(self._config.max_client_lag):
            try:
                if event is not None:
                    await self._ws.send_text(event)
                await self._ws.close(code)
                self.close_code = code
            except Exception:  # the client left first
                return

    async def _expire(self) -> None:
        config = self._config
        warn_at = max(0.0, config.max_session_seconds - config.warning_seconds)
        await anyio.sleep(warn_at)
        if config.warning_seconds > 0:
            remaining = config.max_session_seconds - warn_at
            warning = relay_error(
                RelayCode.SESSION_EXPIRING,
                f"the session ends in {remaining:g} s",
                warning=True,
                expires_in_ms=round(remaining * 1000),
            )
            await self._send_client(warning)
            await anyio.sleep(remaining)
        self._end(1001, relay_error(RelayCode.SESSION_EXPIRED, "the session reached its limit"))

    async def _read_client(self) -> None:
        limit = self._config.max_message_bytes
        while True:
            message = await self._ws.receive()
            if message["type"] == "websocket.disconnect":
                self._client_gone = True
                self.close_code = message.get("code", 1005)
                self.abort()
                return
            text, data = message.get("text"), message.get("bytes")
            frame: str | bytes = text if text is not None else (data or b"")
            size = _size(frame)
            if size > limit:
                self._end(
                    1009,
                    relay_error(
                        RelayCode.INVALID_REQUEST, f"a frame of {size} bytes is over {limit}"
                    ),
                )
                return
            try:
                await self._gate.put(frame, size)
            except GateOverflowError as exc:
                self._end(1013, relay_error(RelayCode.BUFFER_FULL, str(exc)))
                return

    async def _relay(self, lease: Lease) -> None:
        url, headers = upstream_target(self._config, lease, self._model)
        config = self._config
        deadline = anyio.CancelScope(deadline=anyio.current_time() + config.connect_timeout)
        with deadline:
            try:
                async with aconnect_ws(
                    url,
                    self._runtime.relay_http(),
                    headers=headers,
                    max_message_size_bytes=config.max_message_bytes,
                    queue_size=64,
                    keepalive_ping_interval_seconds=None,
                    session_class=AsyncWebSocketSession,
                ) as upstream:
                    await self._session(upstream, lease, deadline)
            except WebSocketUpgradeError as exc:
                status = exc.response.status_code
                self._closing = self._closing or (
                    handshake_close_code(status),
                    relay_error(
                        RelayCode.UPSTREAM_REFUSED,
                        f"the upstream refused the session: HTTP {status}",
                        status=status,
                    ),
                )
            except (httpx.TransportError, OSError) as exc:
                self._closing = self._closing or (
                    1011,
                    relay_error(
                        RelayCode.UPSTREAM_UNAVAILABLE, f"the upstream is unreachable: {exc!r}"
                    ),
                )
        if deadline.cancelled_caught:
            self._closing = self._closing or (
                1013,
                relay_error(
                    RelayCode.UPSTREAM_TIMEOUT,
                    f"the upstream was not ready within {config.connect_timeout:g} s",
                ),
            )

    async def _session(
        self, upstream: AsyncWebSocketSession, lease: Lease, deadline: anyio.CancelScope
    ) -> None:
        """Everything inside the upstream socket's block.

        No exception leaves it: httpx-ws would wrap it in an exception group.
        """
        try:
            if not await self._ready(upstream, deadline):
                return
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._write_upstream, upstream)
                await self._read_upstream(upstream, lease)
                tg.cancel_scope.cancel()
        except WebSocketDisconnect as exc:
            self._closing = self._closing or (passed_close_code(exc.code), None)
        except Exception as exc:  # the upstream connection broke
            self._closing = self._closing or (
                1011,
                relay_error(RelayCode.UPSTREAM_UNAVAILABLE, f"the upstream failed: {exc!r}"),
            )
        finally:
            if self._client_gone and self.close_code in range(1000, 1015):
                with (
                    anyio.CancelScope(shield=True),
                    anyio.move_on_after(1),
                    contextlib.suppress(Exception),  # closing anyway
                ):
                    await upstream.close(passed_close_code(self.close_code))

    async def _ready(self, upstream: AsyncWebSocketSession, deadline: anyio.CancelScope) -> bool:
        """Forward the upstream's first frames until it is ready, then open the gate.

        Ready: ``session.created``, and the answer to the relay's own ``session.update``. The
        gate opens before the frame that made it ready is forwarded: a client that answers
        that frame at once finds its frames sent, not held against the bound.

        Returns:
            ``False`` if the upstream refused that update.
        """
        policy = self._config.session
        while True:
            text = await upstream.receive_text()
            kind = _event_type(text)
            if kind == "error" and policy is not None:
                self._closing = (
                    1011,
                    relay_error(
                        RelayCode.SESSION_UPDATE_REFUSED,
                        "the upstream refused the relay's session.update",
                        upstream_error=json.loads(text).get("error"),
                    ),
                )
                return False
            ready = (kind == "session.created" and policy is None) or (
                kind == "session.updated" and policy is not None
            )
            if ready:
                deadline.deadline = math.inf
                self._gate.open()
            await self._send_client(text)
            if ready:
                return True
            if kind == "session.created" and policy is not None:
                update = {"type": "session.update", "session": policy}
                await upstream.send_text(json.dumps(update))

    async def _write_upstream(self, upstream: AsyncWebSocketSession) -> None:
        try:
            await self._forward_client(upstream)
        except Exception as exc:  # the upstream socket broke: end the session
            self._closing = self._closing or (
                1011,
                relay_error(RelayCode.UPSTREAM_UNAVAILABLE, f"the upstream failed: {exc!r}"),
            )
            self.abort()

    async def _forward_client(self, upstream: AsyncWebSocketSession) -> None:
        while True:
            frame = await self._gate.take()
            if isinstance(frame, str):
                await upstream.send_text(frame)
            else:
                await upstream.send_bytes(frame)
            self.sent_upstream += 1

    async def _read_upstream(self, upstream: AsyncWebSocketSession, lease: Lease) -> None:
        try:
            await self._forward_upstream(upstream, lease)
        except WebSocketDisconnect as exc:  # here, not in the task group's exception group
            self._closing = self._closing or (passed_close_code(exc.code), None)

    async def _forward_upstream(self, upstream: AsyncWebSocketSession, lease: Lease) -> None:
        while True:
            event = await upstream.receive()
            if isinstance(event, TextMessage):
                text = event.data
                await self._send_client(text)
                if '"response.done"' in text:
                    self.usage.settle(lease, text)
            elif isinstance(event, BytesMessage):
                await self._send_client(bytes(event.data))

    async def _send_client(self, frame: str | bytes) -> None:
        # One sender at a time: upstream frames and the relay's own warning share the socket.
        with anyio.move_on_after(self._config.max_client_lag) as lag:
            async with self._send_lock:
                if isinstance(frame, str):
                    await self._ws.send_text(frame)
                else:
                    await self._ws.send_bytes(frame)
        if lag.cancelled_caught:
            self._end(
                CLIENT_LAGGING,
                relay_error(
                    RelayCode.CLIENT_LAGGING,
                    f"a frame waited more than {self._config.max_client_lag:g} s to be sent",
                ),
            )
            await anyio.sleep_forever()  # cancelled by _end
        self.sent_client += 1


def _size(frame: str | bytes) -> int:
    """A frame's size in bytes.

    UTF-8 is only encoded for non-ASCII text: ``isascii`` is O(1) in CPython, and a 15 MiB
    base64 audio append is ASCII.
    """
    if isinstance(frame, bytes):
        return len(frame)
    return len(frame) if frame.isascii() else len(frame.encode())


def upstream_target(config: RelayConfig, lease: Lease, model: str) -> tuple[str, dict[str, str]]:
    """The upstream Realtime URL (with ``model``) and handshake headers.

    From the lease's pooled client (its base URL and key), unless ``config.url`` names the
    endpoint.

    The key is only ever in these headers: nothing of the client's handshake (its
    ``Authorization`` header, its ``openai-insecure-api-key.*`` subprotocol) is forwarded.
    """
    client = lease.client
    base = config.url or str(client.base_url).rstrip("/") + "/realtime"
    url = str(httpx.URL(base).copy_merge_params({"model": model}))
    headers = {"Authorization": f"Bearer {client.api_key}"}
    if config.beta:
        headers["OpenAI-Beta"] = "realtime=v1"
    return url, headers


def _event_type(text: str) -> str | None:
    try:
        event = json.loads(text)
    except ValueError:
        return None
    kind = event.get("type") if isinstance(event, dict) else None
    return kind if isinstance(kind, str) else None


class Usage:
    """The session's token usage so far, from its ``response.done`` events."""

    __slots__ = ("input", "output", "total")

    def __init__(self) -> None:
        self.total = self.input = self.output = 0

    def settle(self, lease: Lease, text: str) -> None:
        """Add ``response.done``'s usage and report the session's total to the lease."""
        try:
            event: dict[str, Any] = json.loads(text)
        except ValueError:
            return
        if event.get("type") != "response.done":
            return
        usage = (event.get("response") or {}).get("usage") or {}
        total = usage.get("total_tokens")
        if not isinstance(total, int):
            return
        self.total += total
        self.input += int(usage.get("input_tokens") or 0)
        self.output += int(usage.get("output_tokens") or 0)
        lease.record_usage(self.total, input_tokens=self.input, output_tokens=self.output)
