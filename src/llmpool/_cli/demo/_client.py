"""A ``--via-server`` terminal: one chat session's WebSocket, its turns one after the other.

``ChatTerminal.turn(text)`` sends a ``message`` frame and reads the session's frames until
the turn's ``complete`` or ``error``. The socket stays open from one turn to the next; when
it ends, ``llmpool chat``'s ``ReconnectPolicy`` decides (docs/cli.md): 1005, 1006, 1011 and
1012 reconnect after a backoff with jitter, 1013 after the server's ``retry_after_ms``, 1000
and 1001 at once; 1008 (or a 4xx answer to the handshake) gives up, and so does 1009 for the
message it refused. The frames follow docs/server.md:

* Every reopened socket starts with ``{"type": "resume", "last_seq": n}`` (``n`` the last
  session frame seen) and a ``ping``. Frames at or below ``n`` are dropped, so a turn's end
  is taken once: a turn is never counted twice.
* The ``pong`` carries the session's current ``seq`` and its running turn: when it shows no
  turn and nothing after ``n`` while a message is unanswered, the message never reached the
  server (the socket went first), and it is sent again. Until the ``pong``, no new message
  is sent.
* An ``error`` ends the turn when it is a session frame: a turn's code, a ``turn_id``, and
  the ``seq`` after the last one seen (replies carry the current ``seq``; see
  ``llmpool.server``'s ``_protocol``).

httpx-ws carries the frames (wsproto on anyio, so asyncio and trio alike; ``llmpool chat``'s
websockets client is asyncio-only). Above ``_options`` and ``_results``; needs the ``server``
extra, imported only with ``--via-server``.
"""

from __future__ import annotations

import contextlib
import json
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any, Final

import anyio
import httpx
from httpx_ws import (
    AsyncWebSocketSession,
    HTTPXWSException,
    WebSocketDisconnect,
    WebSocketUpgradeError,
    aconnect_ws,
)

from llmpool._cli.chat._policy import Action, Closed, ReconnectPolicy
from llmpool.server import ErrorCode

__all__ = ["MAX_SETBACKS", "TURN_ERRORS", "ChatTerminal", "TurnEnd"]

TURN_ERRORS: Final = frozenset(
    code.value
    for code in (
        ErrorCode.QUEUE_FULL,
        ErrorCode.QUEUE_TIMEOUT,
        ErrorCode.RATE_LIMITED,
        ErrorCode.UPSTREAM_ERROR,
        ErrorCode.STREAM_INTERRUPTED,
        ErrorCode.MESSAGE_TOO_BIG,
        ErrorCode.SERVER_SHUTTING_DOWN,
        ErrorCode.INTERNAL_ERROR,
    )
)
"""The codes an ``error`` frame ending a turn carries (``llmpool.server``'s ``_turn``)."""

MAX_SETBACKS: Final = 5
"""Sockets one turn may lose (or fail to open) before it gives up; a 1013 (the server at
capacity, reconnect after its ``retry_after_ms``) is not counted."""

_MAX_FRAME: Final = 16 * 2**20  # bytes; the server's frames are far smaller
_CONNECTION_FAILED: Final = "connection_failed"


@dataclass(frozen=True, slots=True)
class TurnEnd:
    """How one turn ended, as its terminal saw it.

    Attributes:
        ok: a ``complete`` frame ended it (and it was not stopped).
        error: the ``error`` frame's code, or ``connection_failed`` when no socket could
            carry it (the close that ended the last one is in ``message``).
        message: the error's message (``error_details.message``), or why the socket ended.
        request_id: llmpool's request id, when the ``error`` frame names one.
        processing_ms: the ``complete`` frame's ``processing_time_ms``.
        text: the turn's chunks, each taken once (a resume's replay is not added twice).
    """

    ok: bool
    error: str | None = None
    message: str | None = None
    request_id: str | None = None
    processing_ms: float | None = None
    text: str = ""


class ChatTerminal:
    """One session's socket on the server, reopened as ``llmpool chat`` would.

    Use it as an async context manager (the socket is closed with 1000 at the end) and call
    ``turn`` for each message, one at a time, all in one task: a socket is opened by the
    ``turn`` that needs it, and its httpx-ws task group must be left by the task that
    entered it.

    Args:
        http: the HTTP client the sockets are opened with (its limits must allow one
            connection per terminal).
        url: the session's socket, ``http://host:port/ws/chat/{id}?priority=…``, or its
            path on ``http``'s base URL.
        policy: when to reconnect; ``ReconnectPolicy()`` by default.

    Attributes:
        opened: sockets opened (handshakes that succeeded), the first included.
        reconnects: sockets opened again after one ended during the run.
    """

    def __init__(
        self, http: httpx.AsyncClient, url: str, policy: ReconnectPolicy | None = None
    ) -> None:
        self._http = http
        self._url = url
        self._policy = policy or ReconnectPolicy()
        self._stack: AsyncExitStack | None = None
        self._ws: AsyncWebSocketSession | None = None
        self._last_seq = 0  # the last session frame seen
        self._pong_due = False  # a resume went out: no message before its pong
        self._retry_after: float | None = None
        self._parts: list[str] = []  # the running turn's text
        self.opened = 0
        self.reconnects = 0

    async def __aenter__(self) -> ChatTerminal:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        # Close 1000. hypercorn reports a close the client starts as 1006 whatever its code
        # (its ws_stream passes only "normal" for closes the app started); uvicorn says 1000.
        await self._drop()

    async def turn(self, text: str) -> TurnEnd:
        """Send ``text`` as a message; how its turn ended.

        Reconnects and resumes as the policy says; the turn fails without an answer when
        the policy gives up, or after ``MAX_SETBACKS`` sockets lost or not opened.
        """
        frame = json.dumps({"type": "message", "message": text})
        self._parts = []
        sent = False  # sent on some socket, and not known to be lost
        failed_opens = 0  # in a row: the backoff grows with it
        setbacks = 0
        while True:
            if self._ws is None:
                closed = await self._open()
                if closed is not None:
                    failed_opens += 1
                    setbacks += 1
                    decision = self._policy.decide(closed, attempt=failed_opens)
                    if decision.action is not Action.RECONNECT or setbacks >= MAX_SETBACKS:
                        return self._lost(decision.explanation)
                    await anyio.sleep(decision.delay)
                    continue
                failed_opens = 0
            ws = self._ws
            assert ws is not None
            try:
                end, sent = await self._follow(ws, frame, sent)
            except WebSocketDisconnect as exc:
                closed = Closed(exc.code, exc.reason)
            except HTTPXWSException:  # WebSocketNetworkError: gone without a close frame
                closed = Closed(1006)
            else:
                return end
            await self._drop()
            decision = self._policy.decide(closed, attempt=1, retry_after=self._retry_after)
            if closed.code != 1013:
                setbacks += 1
            if decision.action is Action.EXIT or closed.code == 1009 or setbacks >= MAX_SETBACKS:
                return self._lost(decision.explanation)
            if decision.action is Action.RECONNECT:
                await anyio.sleep(decision.delay)
            # ON_DEMAND (1000, 1001): this turn is the demand; reconnect at once

    def _lost(self, why: str) -> TurnEnd:
        return TurnEnd(ok=False, error=_CONNECTION_FAILED, message=why, text="".join(self._parts))

    def _failed(self, frame: dict[str, Any]) -> TurnEnd:
        details = frame.get("error_details")
        details = details if isinstance(details, dict) else {}
        request_id = details.get("request_id")
        return TurnEnd(
            ok=False,
            error=str(frame.get("error")),
            message=str(details.get("message") or ""),
            request_id=request_id if isinstance(request_id, str) else None,
            text="".join(self._parts),
        )

    async def _open(self) -> Closed | None:
        """Open a socket (and send the resume when it is not the first); why not, if not."""
        stack = AsyncExitStack()
        try:
            ws: AsyncWebSocketSession = await stack.enter_async_context(
                aconnect_ws(
                    self._url,
                    self._http,
                    max_message_size_bytes=_MAX_FRAME,
                    keepalive_ping_interval_seconds=None,  # the server pings
                )
            )
        except WebSocketUpgradeError as exc:
            status = exc.response.status_code
            return Closed(None, f"HTTP {status} from {self._url}", status)
        except (httpx.TransportError, OSError) as exc:
            return Closed(None, f"{self._url}: {exc or type(exc).__name__}")
        self._stack, self._ws = stack, ws
        self.opened += 1
        if self.opened > 1:
            self.reconnects += 1
            self._pong_due = True
            try:
                await ws.send_text(json.dumps({"type": "resume", "last_seq": self._last_seq}))
                await ws.send_text(json.dumps({"type": "ping"}))
            except HTTPXWSException:
                pass  # the reader sees how it ended
        return None

    async def _drop(self) -> None:
        """Close the socket, if one is open (1000 if it still can)."""
        stack, self._stack, self._ws = self._stack, None, None
        if stack is not None:
            with contextlib.suppress(Exception):  # the connection was gone already
                await stack.aclose()

    async def _follow(
        self, ws: AsyncWebSocketSession, frame: str, sent: bool
    ) -> tuple[TurnEnd, bool]:
        """Read ``ws`` until the turn ends, sending ``frame`` when it is due.

        Raises:
            WebSocketDisconnect: the server closed the socket.
            WebSocketNetworkError: the connection was lost.
        """
        if not sent and not self._pong_due:
            await ws.send_text(frame)
            sent = True
        while True:
            message = json.loads(await ws.receive_text())
            if not isinstance(message, dict):
                continue
            kind = message.get("type")
            seq = message.get("seq")
            if kind == "pong" and self._pong_due:
                self._pong_due = False
                # Frames up to the pong's seq may still be on their way (it overtakes them);
                # when there are none and no turn runs, the message never got there.
                lost = (
                    message.get("turn_id") is None
                    and isinstance(seq, int)
                    and seq <= self._last_seq
                )
                if not sent or lost:  # nothing of this turn is on the server: (re)send it
                    await ws.send_text(frame)
                    sent = True
            elif kind in ("chunk", "complete") and isinstance(seq, int) and seq > self._last_seq:
                self._last_seq = seq
                content = message.get("content")
                if kind == "chunk" and isinstance(content, str):
                    self._parts.append(content)
                elif kind == "complete":
                    ms = message.get("processing_time_ms")
                    complete = TurnEnd(
                        ok=not message.get("stopped"),
                        processing_ms=float(ms) if isinstance(ms, int | float) else None,
                        text="".join(self._parts),
                    )
                    return complete, sent
            elif kind == "error" and (failed := self._error(message, seq)) is not None:
                return failed, sent

    def _error(self, frame: dict[str, Any], seq: object) -> TurnEnd | None:
        """The turn's end for an ``error`` frame, or ``None`` when the turn goes on."""
        code = frame.get("error")
        details = frame.get("error_details")
        details = details if isinstance(details, dict) else {}
        after = details.get("retry_after_ms")
        self._retry_after = after / 1000.0 if isinstance(after, int | float) else None
        if (
            code in TURN_ERRORS
            and frame.get("turn_id") is not None
            and isinstance(seq, int)
            and seq == self._last_seq + 1
        ):
            self._last_seq = seq
            return self._failed(frame)
        if code == ErrorCode.RESYNC_REQUIRED:  # frames of this turn are gone: its end too
            last = details.get("last_seq")
            if isinstance(last, int):
                self._last_seq = last
            return self._failed(frame)
        if code in (
            ErrorCode.SERVER_AT_CAPACITY,  # the 1013 that follows says what to do
            ErrorCode.IDLE_TIMEOUT,  # 1001 follows
            ErrorCode.SERVER_SHUTTING_DOWN,  # 1012 follows; the resume tells what is left
            # Only this terminal writes to its session: the turn running is its message's,
            # sent on a socket the server had not finished reading when the pong said none.
            ErrorCode.SESSION_BUSY,
        ):
            return None
        # The message was refused (invalid_message, message_too_big…): no turn of it runs.
        return self._failed(frame)
