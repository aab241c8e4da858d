"""The simulated Realtime API endpoint: the WebSocket handshake of ``GET /v1/realtime``.

Checks, in order, as the API does before upgrading: the path (any other WebSocket path gets a
404), the key when the provider has an ``api_key`` (``Authorization: Bearer <key>``, or the
browser's subprotocol ``openai-insecure-api-key.<key>``; else a 401 ``invalid_api_key``), the
``model`` query parameter (else a 400 ``missing_required_parameter``), then the next scripted
``RealtimeFault`` (a ``refuse`` answers its HTTP status). Refusals are plain HTTP answers with
an OpenAI-shaped JSON error, sent before any accept (the ASGI WebSocket Denial Response
extension). An accepted socket chooses the subprotocol ``realtime`` when the client offered it
and is served by ``RealtimeSession``. ``OpenAI-Beta: realtime=v1`` is accepted and recorded but
changes nothing: the events are the GA ones.
"""

from __future__ import annotations

import hmac
from urllib.parse import parse_qsl

from starlette.responses import JSONResponse
from starlette.websockets import WebSocket

from . import _payloads as P
from ._engine import format_seconds
from ._realtime_plan import RealtimeFault
from ._realtime_session import RealtimeSession
from ._realtime_state import ConnectionState, RealtimeState

__all__ = ["REALTIME_PATH", "RealtimeEndpoint"]

REALTIME_PATH = "/v1/realtime"
KEY_SUBPROTOCOL = "openai-insecure-api-key."
"""Prefix of the subprotocol carrying a browser's API key."""


class RealtimeEndpoint:
    """The WebSocket endpoints of one simulated provider; see the module docstring.

    Args:
        state: the plan, records and counts shared with the test thread.
        api_key: when set, a handshake must carry this key.
    """

    def __init__(self, state: RealtimeState, *, api_key: str | None) -> None:
        self._state = state
        self._api_key = api_key

    def _connection(self, websocket: WebSocket) -> ConnectionState:
        headers: dict[str, str] = {}
        for name, value in websocket.headers.items():
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        query = dict(parse_qsl(websocket.scope.get("query_string", b"").decode("latin-1")))
        connection = ConnectionState(
            self._state.lock,
            path=websocket.url.path,
            query=query,
            headers=headers,
            subprotocols=list(websocket.scope.get("subprotocols", [])),
        )
        self._state.add(connection)
        return connection

    async def not_found(self, websocket: WebSocket) -> None:
        """Any WebSocket path but ``/v1/realtime``: a 404, recorded as ``not_found``."""
        connection = self._connection(websocket)
        connection.decide("not_found", 404)
        message = f"Invalid URL (GET {websocket.url.path})"
        body = P.error_body(message, "invalid_request_error")
        await websocket.send_denial_response(_json(body, 404))

    async def realtime(self, websocket: WebSocket) -> None:
        """``GET /v1/realtime``: check the handshake, then serve the session or refuse it."""
        connection = self._connection(websocket)
        if not self._authorized(websocket):
            connection.decide("unauthorized", 401)
            body = P.invalid_api_key_body(_offered_key(websocket))
            await websocket.send_denial_response(_json(body, 401))
            return
        model = websocket.query_params.get("model", "")
        if not model:
            connection.decide("missing_model", 400)
            body = P.error_body(
                "Missing required parameter: 'model'.",
                "invalid_request_error",
                param="model",
                code="missing_required_parameter",
            )
            await websocket.send_denial_response(_json(body, 400))
            return
        plan, fault = self._state.take()
        if fault is not None and fault.kind == "refuse":
            connection.decide("refused", fault.status, fault=fault)
            key = _offered_key(websocket) or "sk-simulated"
            await websocket.send_denial_response(_refusal(fault, model, key))
            return
        offered = websocket.scope.get("subprotocols", [])
        subprotocol = "realtime" if "realtime" in offered else None
        connection.decide("accepted", 101, fault=fault, subprotocol=subprotocol)
        with self._state.opened():
            await websocket.accept(subprotocol)
            await RealtimeSession(websocket, connection, plan, fault, model).run()

    def _authorized(self, websocket: WebSocket) -> bool:
        if self._api_key is None:
            return True
        return hmac.compare_digest(_offered_key(websocket).encode(), self._api_key.encode())


def _offered_key(websocket: WebSocket) -> str:
    """The key of the ``Authorization`` header, else of the key subprotocol, else ``""``."""
    scheme, _, key = websocket.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and key.strip():
        return key.strip()
    for subprotocol in websocket.scope.get("subprotocols", []):
        if subprotocol.startswith(KEY_SUBPROTOCOL):
            return str(subprotocol[len(KEY_SUBPROTOCOL) :])
    return ""


def _json(body: P.JSON, status: int, headers: dict[str, str] | None = None) -> JSONResponse:
    headers = {**(headers or {}), "x-request-id": P.new_id("req_", 32)}
    return JSONResponse(body, status_code=status, headers=headers)


def _refusal(fault: RealtimeFault, model: str, key: str) -> JSONResponse:
    headers = (
        {} if fault.retry_after is None else {"retry-after": format_seconds(fault.retry_after)}
    )
    if fault.status == 401:
        body = P.invalid_api_key_body(key)
    elif fault.status == 429:
        body = P.rate_limit_body(model, fault.retry_after, None)
    else:
        body = P.status_error_body(fault.status)
    return _json(body, fault.status, headers)
