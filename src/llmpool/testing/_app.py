"""The simulated provider's ASGI application: routes, fault injection, storage, recording.

``SimulatorApp`` is a Starlette app wrapped in ``FinishLayer`` (which stamps each record's
``finished_at`` once its answer is over) and ``DropLayer`` (see ``_drops``). Its state
(recorded requests, stored responses, the fault engine, the Realtime endpoint's ``realtime``
state) belongs to the instance and is guarded by a ``threading.Lock``: the app runs on the
server thread's event loop while tests read that state from their own thread. WebSocket
handshakes go to ``_realtime``.
"""

from __future__ import annotations

import hmac
import json
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import _payloads as P
from ._drops import DropLayer, SimulatedDrop, sse_body
from ._engine import Decision, FaultEngine
from ._faults import FaultPlan
from ._realtime import REALTIME_PATH, RealtimeEndpoint
from ._realtime_plan import RealtimePlan
from ._realtime_state import RealtimeState
from ._records import RecordedRequest

__all__ = ["FinishLayer", "SimulatorApp"]

JSON = dict[str, Any]
_ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
_PRODUCED_PREFIXES = ("rs_", "msg_", "fc_")
_FINISH_KEY = "llmpool.testing.finish"  # scope key: what to call once the answer is over


class _Answer(Exception):
    """An early answer (error) and its outcome, raised from the request pipeline."""

    def __init__(self, outcome: str, response: Response) -> None:
        super().__init__(outcome)
        self.outcome = outcome
        self.response = response


class FinishLayer:
    """ASGI middleware calling, once an HTTP answer is over, what the endpoint asked for.

    An endpoint appends callables to the list at ``scope[_FINISH_KEY]``; each gets
    ``time.monotonic()`` once, when the answer's last body message is handed to the server
    (so a client never sees a whole answer before it is stamped), or when the app returns or
    raises without one (a simulated drop, a client gone mid-stream).

    Args:
        app: the wrapped ASGI application.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        callbacks: list[Callable[[float], None]] = []
        scope[_FINISH_KEY] = callbacks

        def finish() -> None:
            finished_at = time.monotonic()
            while callbacks:
                callbacks.pop(0)(finished_at)

        async def send_stamped(message: Message) -> None:
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                finish()
            await send(message)

        try:
            await self.app(scope, receive, send_stamped)
        finally:
            finish()


class _Slot:
    """Where one request's record is kept: replaced by its finished copy when it ends."""

    __slots__ = ("record",)

    def __init__(self, record: RecordedRequest) -> None:
        self.record = record


class _Call:
    """One request on its way through the pipeline."""

    def __init__(self, request: Request, body: Any, received_at: float) -> None:
        self.request = request
        self.body = body
        self.received_at = received_at
        self.request_id = P.new_id("req_", 32)
        self.extra_headers: dict[str, str] = {}
        self.usage_tokens: int | None = None  # set by a handler that answered in full

    @property
    def data(self) -> Mapping[str, Any]:
        return self.body if isinstance(self.body, Mapping) else {}

    @property
    def stream(self) -> bool:
        return self.data.get("stream") is True

    def headers(self) -> dict[str, str]:
        return {**self.extra_headers, "x-request-id": self.request_id}

    def json(self, body: JSON, status: int = 200) -> JSONResponse:
        return JSONResponse(body, status_code=status, headers=self.headers())

    def error(self, outcome: str, status: int, body: JSON) -> _Answer:
        return _Answer(outcome, self.json(body, status))


class SimulatorApp:
    """ASGI app of one simulated provider; see the module docstring.

    Args:
        plan: the initial fault plan.
        api_key: when set, requests must carry ``Authorization: Bearer <api_key>``.
        realtime: the initial plan of the Realtime endpoint; default ``RealtimePlan()``.

    Attributes:
        realtime: the Realtime endpoint's plan, records and open-connection count.
    """

    def __init__(
        self,
        plan: FaultPlan,
        *,
        api_key: str | None = None,
        realtime: RealtimePlan | None = None,
    ) -> None:
        self._lock = threading.Lock()
        self._engine = FaultEngine(plan)
        self._api_key = api_key
        self.realtime = RealtimeState(realtime or RealtimePlan(), self._lock)
        self._realtime = RealtimeEndpoint(self.realtime, api_key=api_key)
        self._records: list[_Slot] = []
        self._responses: dict[str, JSON] = {}
        self._item_ids: set[str] = set()
        self._asgi = DropLayer(FinishLayer(self._starlette_app()))

    def _starlette_app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/responses", self._endpoint(self._create_response), methods=["POST"]),
                Route(
                    "/v1/responses/{response_id}",
                    self._endpoint(self._get_response),
                    methods=["GET"],
                ),
                Route("/v1/chat/completions", self._endpoint(self._chat), methods=["POST"]),
                WebSocketRoute(REALTIME_PATH, self._realtime.realtime),
                Route(
                    "/{path:path}",
                    self._endpoint(self._not_found, faults=False),
                    methods=_ALL_METHODS,
                ),
                WebSocketRoute("/{path:path}", self._realtime.not_found),
            ]
        )

    # -- state shared with the test thread -------------------------------------------------

    @property
    def fault_plan(self) -> FaultPlan:
        """The fault plan in force."""
        return self._engine.plan

    def set_fault_plan(self, plan: FaultPlan) -> None:
        """Replace the plan; its RNG, script and rpm window start afresh."""
        engine = FaultEngine(plan)
        with self._lock:
            self._engine = engine

    def records(self) -> list[RecordedRequest]:
        """A copy of the recorded requests, in arrival order."""
        with self._lock:
            records = [slot.record for slot in self._records]
        return sorted(records, key=lambda record: record.received_at)

    def clear_records(self) -> None:
        """Forget the recorded requests."""
        with self._lock:
            self._records.clear()

    def stored_response_ids(self) -> list[str]:
        """Ids of the responses this instance stored, oldest first."""
        with self._lock:
            return list(self._responses)

    # -- ASGI ------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._asgi(scope, receive, send)

    # -- pipeline --------------------------------------------------------------------------

    def _endpoint(
        self,
        handler: Callable[[_Call, Decision], Awaitable[tuple[str, Response]]],
        *,
        faults: bool = True,
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            received_at = time.monotonic()
            raw = await request.body()
            try:
                body: Any = json.loads(raw) if raw else None
            except ValueError:
                body = None
                invalid_json = True
            else:
                invalid_json = False
            call = _Call(request, body, received_at)
            decision = Decision(kind="ok", latency=0.0)
            try:
                self._authorize(call)
                if not faults:
                    outcome, response = await handler(call, decision)
                else:
                    if invalid_json:
                        message = "We could not parse the JSON body of your request."
                        raise call.error(
                            "status:400", 400, P.error_body(message, "invalid_request_error")
                        )
                    with self._lock:
                        engine = self._engine
                    decision = engine.decide(
                        stream=call.stream, now=received_at, tokens=_charged_tokens(call.data)
                    )
                    call.extra_headers.update(decision.headers)
                    outcome, response = await self._apply(call, decision, handler)
            except _Answer as answer:
                outcome, response = answer.outcome, answer.response
            self._record(call, outcome)
            if decision.latency > 0.0:
                await anyio.sleep(decision.latency)
            if outcome == "drop":
                raise SimulatedDrop
            return response

        return endpoint

    def _record(self, call: _Call, outcome: str) -> None:
        request = call.request
        headers: dict[str, str] = {}
        for name, value in request.headers.items():
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        record = RecordedRequest(
            method=request.method,
            path=request.url.path,
            headers=headers,
            body=call.body,
            received_at=call.received_at,
            outcome=outcome,
            usage_tokens=call.usage_tokens if outcome == "ok" else None,
        )
        slot = _Slot(record)
        with self._lock:
            self._records.append(slot)
        callbacks = request.scope.get(_FINISH_KEY)
        if isinstance(callbacks, list):
            callbacks.append(lambda finished_at: self._finish(slot, finished_at))

    def _finish(self, slot: _Slot, finished_at: float) -> None:
        with self._lock:  # a slot forgotten by clear_records meanwhile is updated unseen
            slot.record = slot.record.model_copy(update={"finished_at": finished_at})

    def _authorize(self, call: _Call) -> None:
        if self._api_key is None:
            return
        header = call.request.headers.get("authorization", "")
        scheme, _, key = header.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(key.strip(), self._api_key):
            return
        body = P.invalid_api_key_body(key.strip())
        raise call.error("unauthorized", 401, body)

    async def _apply(
        self,
        call: _Call,
        decision: Decision,
        handler: Callable[[_Call, Decision], Awaitable[tuple[str, Response]]],
    ) -> tuple[str, Response]:
        model = call.data.get("model") or "the model"
        if decision.kind == "status":
            body = P.status_error_body(decision.status)
            return decision.outcome, call.json(body, decision.status)
        if decision.kind == "rate_limit":
            return decision.outcome, call.json(
                P.rate_limit_body(model, decision.retry_after, decision.rpm), 429
            )
        if decision.kind == "insufficient_quota":
            return decision.outcome, call.json(P.insufficient_quota_body(), 429)
        if decision.kind == "drop":
            return decision.outcome, Response(status_code=204)  # never sent: the drop wins
        return await handler(call, decision)

    # -- endpoints -------------------------------------------------------------------------

    def _require_model(self, call: _Call) -> str:
        model = call.data.get("model")
        if not isinstance(model, str) or not model:
            body = P.error_body(
                "Missing required parameter: 'model'.",
                "invalid_request_error",
                param="model",
                code="missing_required_parameter",
            )
            raise call.error("status:400", 400, body)
        return model

    def _check_references(self, call: _Call) -> None:
        data = call.data
        previous = data.get("previous_response_id")
        with self._lock:
            known_response = previous is None or previous in self._responses
            items = data.get("input")
            unknown = [
                item_id
                for item_id in _referenced_ids(items if isinstance(items, list) else [])
                if item_id not in self._item_ids
            ]
        if not known_response:
            body = P.error_body(
                f"Previous response with id '{previous}' not found.",
                "invalid_request_error",
                param="previous_response_id",
                code="previous_response_not_found",
            )
            raise call.error("not_found", 404, body)
        if unknown:
            message = f"Item with id '{unknown[0]}' not found."
            body = P.error_body(message, "invalid_request_error", param="input")
            raise call.error("not_found", 404, body)
        self._check_tool_outputs(call, items if isinstance(items, list) else [], previous)

    def _check_tool_outputs(self, call: _Call, items: list[object], previous: object) -> None:
        """A function_call_output needs its function_call in the input or previous response."""
        calls = {
            item.get("call_id")
            for item in items
            if isinstance(item, Mapping) and item.get("type") == "function_call"
        }
        if isinstance(previous, str):
            with self._lock:
                stored = self._responses.get(previous, {})
            calls.update(
                item.get("call_id")
                for item in stored.get("output", [])
                if item.get("type") == "function_call"
            )
        for item in items:
            if not isinstance(item, Mapping) or item.get("type") != "function_call_output":
                continue
            if item.get("call_id") not in calls:
                message = (
                    "No tool call found for function call output with call_id "
                    f"{item.get('call_id')}."
                )
                body = P.error_body(message, "invalid_request_error", param="input")
                raise call.error("status:400", 400, body)

    async def _create_response(self, call: _Call, decision: Decision) -> tuple[str, Response]:
        self._require_model(call)
        self._check_references(call)
        data = call.data
        completed = P.response_object(
            data, response_id=P.new_id("resp_"), output=P.response_output(data)
        )
        if decision.kind != "stream_disconnect":
            call.usage_tokens = completed["usage"]["total_tokens"]
            if data.get("store") is not False:
                with self._lock:
                    self._responses[completed["id"]] = completed
                    self._item_ids.update(item["id"] for item in completed["output"])
        if not call.stream:
            return "ok", call.json(completed)
        events = [P.sse_event(event, name) for name, event in P.response_events(completed)]
        return self._stream(call, decision, events)

    async def _get_response(self, call: _Call, decision: Decision) -> tuple[str, Response]:
        response_id = call.request.path_params["response_id"]
        with self._lock:
            stored = self._responses.get(response_id)
        if stored is None:
            message = f"Response with id '{response_id}' not found."
            raise call.error("not_found", 404, P.error_body(message, "invalid_request_error"))
        return "ok", call.json(stored)

    async def _chat(self, call: _Call, decision: Decision) -> tuple[str, Response]:
        self._require_model(call)
        data = call.data
        completion_id = P.new_id("chatcmpl-")
        text = P.reply_text(data.get("messages"))
        if decision.kind != "stream_disconnect":
            call.usage_tokens = P.chat_usage(data, text)["total_tokens"]
        if not call.stream:
            return "ok", call.json(P.chat_completion(data, completion_id=completion_id, text=text))
        chunks = P.chat_chunks(data, completion_id=completion_id, text=text)
        events = [*(P.sse_event(chunk) for chunk in chunks), P.sse_event("[DONE]")]
        return self._stream(call, decision, events)

    async def _not_found(self, call: _Call, decision: Decision) -> tuple[str, Response]:
        request = call.request
        message = f"Invalid URL ({request.method} {request.url.path})"
        return "not_found", call.json(P.error_body(message, "invalid_request_error"), 404)

    def _stream(self, call: _Call, decision: Decision, events: list[bytes]) -> tuple[str, Response]:
        cut = None
        if decision.kind == "stream_disconnect":
            cut = min(decision.after_events, len(events) - 1)
        delay = self.fault_plan.stream_chunk_delay
        headers = {**call.headers(), "cache-control": "no-cache"}
        body = sse_body(events, delay=delay, cut=cut)
        response = StreamingResponse(body, media_type="text/event-stream", headers=headers)
        return decision.outcome, response


def _referenced_ids(items: Iterable[object]) -> list[str]:
    ids: list[str] = []
    for item in items:
        if not isinstance(item, Mapping):
            continue
        item_id = item.get("id")
        if not isinstance(item_id, str):
            continue
        if item.get("type") == "reasoning" and item.get("encrypted_content"):
            continue  # carries its own (encrypted) content: no stored item needed
        if item.get("type") == "item_reference" or item_id.startswith(_PRODUCED_PREFIXES):
            ids.append(item_id)
    return ids


def _charged_tokens(data: Mapping[str, Any]) -> int:
    """What a request counts against ``tpm_limit``: its prompt plus its output cap (or 16)."""
    prompt = P.input_tokens(data.get("input", data.get("messages")), data.get("instructions"))
    cap = (
        data.get("max_output_tokens") or data.get("max_completion_tokens") or data.get("max_tokens")
    )
    return prompt + (cap if isinstance(cap, int) and cap > 0 else 16)
