"""``/ws/chat/{session_id}``: one WebSocket connection of a chat session.

Admission happens before ``accept``: a draining server or a full one still accepts (browsers
cannot read the HTTP status of a refused handshake), sends one ``error`` and closes (1012,
1013). Then the token (``Authorization: Bearer`` header, or a first ``auth`` frame), then
the session (created on first use).

Each socket runs two tasks: a reader (client frames, the idle deadline) and the socket's only
writer, the sender: replies to this socket first, then the session's frames after the
socket's cursor, then a close when one is asked for. The cursor is set by the first client
frame: a ``resume`` sets it to ``last_seq``, any other frame to the session's current
``seq`` (the socket then gets what follows); ``?last_seq=n`` on the URL resumes at connect.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Final

import anyio
from anyio.abc import TaskGroup
from starlette.websockets import WebSocket

from llmpool import InvalidSessionIdError, ManagerView

from ._auth import bearer, token_matches
from ._logs import log_event, logger, session_hash
from ._protocol import (
    AuthFrame,
    CloseCode,
    ErrorCode,
    InvalidFrameError,
    MessageFrame,
    PingFrame,
    ResumeFrame,
    StopFrame,
    error_frame,
    parse_client_frame,
    pong_frame,
)
from ._runtime import Lifecycle, Runtime
from ._session import Session, SessionLimitError

__all__ = ["ChatSocket", "chat_endpoint", "send_final"]

_MAX_REPLIES: Final = 64
"""Replies waiting for one socket, count; more: the client does not read (close 1008)."""


_CLOSE_HANDSHAKE: Final = 2.0
"""Seconds ``send_final`` waits for the client's close frame after sending its own."""


async def send_final(ws: WebSocket, code: int, frame: str, reason: str) -> bool:
    """Send one last frame and close with ``code``; ``False`` if the peer left first.

    Then read, and drop, whatever the client sent until its close frame answers ours (at
    most ``_CLOSE_HANDSHAKE`` seconds; RFC 6455 §7.1.1 leaves the TCP close to the server
    after the handshake). A server that closed the connection with the client's frames
    still unread would make the kernel answer with a reset (RFC 1122 §4.2.2.13), and the
    client would lose our close frame: hypercorn did, and a browser that sent its first
    frames at once reported 1006 instead of 1013.
    """
    try:
        await ws.send_text(frame)
        await ws.close(code, reason[:120])
    except Exception:  # the peer left first: nothing to tell it
        return False
    with anyio.move_on_after(_CLOSE_HANDSHAKE):
        try:
            while (await ws.receive())["type"] != "websocket.disconnect":
                pass
        except Exception:  # the connection is gone: nothing more to read
            pass
    return True


async def _refuse(
    ws: WebSocket,
    code: CloseCode,
    error: ErrorCode,
    message: str,
    *,
    retry_after_ms: int | None = None,
) -> None:
    """Accept (browsers cannot read a refused handshake's status), tell why, close."""
    await ws.accept()
    frame = error_frame(0, None, error, message, retry_after_ms=retry_after_ms)
    await send_final(ws, code, frame, message)


async def chat_endpoint(runtime: Runtime, ws: WebSocket) -> None:
    """The ``/ws/chat/{session_id}`` route (bound to its runtime with ``functools.partial``)."""
    config = runtime.config
    metrics = runtime.metrics
    connection_id = runtime.connection_id()
    session_id = ws.path_params["session_id"]
    if runtime.state is not Lifecycle.SERVING:
        metrics.refused("draining")
        log_event("reject", connection_id=connection_id, reason="draining")
        await _refuse(
            ws,
            CloseCode.SERVICE_RESTART,
            ErrorCode.SERVER_SHUTTING_DOWN,
            "the server is restarting: reconnect",
            retry_after_ms=round(config.retry_after * 1000),
        )
        return
    try:
        view = runtime.view(ws.query_params.get("priority"), session_id)
        last_seq = ws.query_params.get("last_seq")
        resume = None if last_seq is None else int(last_seq)
        if resume is not None and resume < 0:
            raise ValueError(f"last_seq must be 0 or more, got {resume}")
    except (InvalidSessionIdError, ValueError) as exc:
        metrics.refused("invalid")
        log_event("reject", connection_id=connection_id, reason="invalid", detail=str(exc))
        await _refuse(ws, CloseCode.POLICY_VIOLATION, ErrorCode.INVALID_MESSAGE, str(exc))
        return
    if not metrics.try_connect():
        log_event("reject", connection_id=connection_id, reason="at_capacity")
        await _refuse(
            ws,
            CloseCode.TRY_AGAIN_LATER,
            ErrorCode.SERVER_AT_CAPACITY,
            f"the server is at capacity ({config.max_connections} connections)",
            retry_after_ms=round(config.retry_after * 1000),
        )
        return
    sock = ChatSocket(runtime, ws, session_id, view, connection_id, resume)
    runtime.sockets.add(sock)
    try:
        await sock.serve()
    finally:
        runtime.sockets.discard(sock)
        sock.finished.set()
        metrics.disconnected(sock.close_code, runtime.now() - sock.opened_at)
        log_event(
            "disconnect",
            connection_id=connection_id,
            session=session_hash(session_id),
            code=sock.close_code,
        )


class ChatSocket:
    """One accepted connection (see the module docstring); ``serve`` runs it to its end.

    Attributes:
        close_code: how it closed: the peer's code, ours, or 1006 (the connection was lost).
        finished: set when it has ended.
    """

    def __init__(
        self,
        runtime: Runtime,
        ws: WebSocket,
        session_id: str,
        view: ManagerView,
        connection_id: str,
        resume: int | None,
    ) -> None:
        self._runtime = runtime
        self._config = runtime.config
        self._ws = ws
        self._session_id = session_id
        self._view = view
        self.connection_id = connection_id
        self._resume = resume
        self._session: Session | None = None
        self.cursor: int | None = None  # the last session seq sent (or skipped) on this socket
        self._replies: deque[str] = deque()
        self._closing: tuple[CloseCode, str | None, str] | None = None
        self._event = anyio.Event()
        self._idle: anyio.CancelScope | None = None
        self._task_group: TaskGroup | None = None
        self.opened_at = runtime.now()
        self._last_frame_at = self.opened_at
        self.close_code = 1006
        self.finished = anyio.Event()

    # -- called by the session and the runtime -----------------------------------------------

    def wake(self) -> None:
        """New frames, a reply or a close to send."""
        self._event.set()

    def turn_changed(self) -> None:
        """Move the idle deadline: none while a turn runs."""
        if self._idle is not None:
            self._idle.deadline = self._idle_deadline()

    def close(self, code: CloseCode, error: ErrorCode | None, message: str) -> None:
        """Close after the frames already due: ``error`` (if any), then ``code``."""
        if self._closing is None:
            seq, turn_id = self._position()
            frame = None
            if error is not None:
                self._log_error(error, turn_id)
                frame = error_frame(seq, turn_id, error, message)
            self._closing = (code, frame, message[:120])
            self.turn_changed()
            self.wake()

    def abort(self) -> None:
        """End now, without a close handshake (a peer that does not read its close)."""
        if self._task_group is not None:
            self._task_group.cancel_scope.cancel()

    # -- the connection ----------------------------------------------------------------------

    async def serve(self) -> None:
        """Accept, authenticate, follow the session until either side closes."""
        ws = self._ws
        await ws.accept()
        if not await self._authenticate():
            return
        try:
            session = self._session = self._runtime.sessions.open(self._session_id)
        except SessionLimitError as exc:
            self._runtime.metrics.refused("at_capacity")
            await self._final(CloseCode.TRY_AGAIN_LATER, ErrorCode.SERVER_AT_CAPACITY, str(exc))
            return
        if self._resume is not None:
            self._start_at(self._resume)
        log_event(
            "connect",
            connection_id=self.connection_id,
            session=session_hash(session.id),
            priority=self._view.priority.value,
        )
        session.subscribe(self)
        try:
            async with anyio.create_task_group() as tg:
                self._task_group = tg
                tg.start_soon(self._send_loop)
                await self._read_loop()
                tg.cancel_scope.cancel()
        finally:
            session.unsubscribe(self)
            if self._config.cancel_on_disconnect and session.turn and not session.subscribers:
                session.turn.stop()

    async def _final(self, code: CloseCode, error: ErrorCode, message: str) -> None:
        """Send one error and close (before the sender runs)."""
        if await send_final(self._ws, code, error_frame(0, None, error, message), message):
            self.close_code = code

    async def _authenticate(self) -> bool:
        token = self._config.token
        if token is None:
            return True
        offered = bearer(self._ws.headers)
        if offered is None:  # a browser: the first frame must be {"type": "auth", ...}
            with anyio.move_on_after(self._config.auth_timeout):
                message = await self._ws.receive()
                if message["type"] == "websocket.disconnect":
                    self.close_code = message.get("code", 1005)
                    return False
                try:
                    frame = parse_client_frame(message.get("text") or "")
                except InvalidFrameError:
                    frame = None
                if isinstance(frame, AuthFrame):
                    offered = frame.token
        if token_matches(token, offered):
            return True
        self._runtime.metrics.refused("unauthorized")
        log_event("reject", connection_id=self.connection_id, reason="unauthorized")
        await self._final(
            CloseCode.POLICY_VIOLATION, ErrorCode.UNAUTHORIZED, "a valid token is required"
        )
        return False

    def _position(self) -> tuple[int, str | None]:
        session = self._session
        if session is None:
            return 0, None
        return session.last_seq, None if session.turn is None else session.turn.id

    def _idle_deadline(self) -> float:
        session = self._session
        if self._closing is not None or session is None or session.turn is not None:
            return math.inf
        since = max(self._last_frame_at, session.turn_ended_at)
        return since + self._config.connection_timeout

    def _reply(self, frame: str) -> None:
        if len(self._replies) >= _MAX_REPLIES:
            self.close(CloseCode.POLICY_VIOLATION, None, "the client does not read its replies")
            return
        self._replies.append(frame)
        self.wake()

    def _error(self, code: ErrorCode, message: str, extra: dict[str, int] | None = None) -> None:
        seq, turn_id = self._position()
        self._log_error(code, turn_id)
        self._reply(error_frame(seq, turn_id, code, message, extra=extra))

    def _log_error(self, code: ErrorCode, turn_id: str | None) -> None:
        log_event(
            "error",
            connection_id=self.connection_id,
            session=session_hash(self._session_id),
            turn_id=turn_id,
            code=code.value,
        )

    def _start_at(self, last_seq: int) -> None:
        """Resume: send the frames after ``last_seq``."""
        session = self._session
        assert session is not None
        if last_seq > session.last_seq:
            self._error(
                ErrorCode.INVALID_MESSAGE,
                f"resume: last_seq {last_seq} is ahead of the session's last frame "
                f"{session.last_seq}",
            )
        elif last_seq < session.first_seq - 1:
            self._resync(last_seq + 1)
        else:
            self.cursor = last_seq
            self.wake()

    def _resync(self, missing: int) -> None:
        session = self._session
        assert session is not None
        first = session.first_seq
        self._error(
            ErrorCode.RESYNC_REQUIRED,
            f"frames from {missing} are no longer kept (oldest {first}): reload the session",
            {"missing_from": missing, "oldest_seq": first, "last_seq": session.last_seq},
        )
        self.cursor = session.last_seq

    # -- reading -----------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        ws = self._ws
        limit = self._config.max_message_bytes
        while True:
            scope = self._idle = anyio.CancelScope(deadline=self._idle_deadline())
            with scope:
                message = await ws.receive()
            self._idle = None
            if scope.cancelled_caught:
                self.close(
                    CloseCode.GOING_AWAY,
                    ErrorCode.IDLE_TIMEOUT,
                    f"no frame for {self._config.connection_timeout:g} s",
                )
                continue
            if message["type"] == "websocket.disconnect":
                self.close_code = message.get("code", 1005)
                return
            if self._closing is not None:
                continue  # closing: what the client sends now is not read
            self._last_frame_at = self._runtime.now()
            text = message.get("text")
            if text is None:
                data = message.get("bytes") or b""
                if len(data) > limit:
                    self._too_big(len(data))
                else:
                    self._error(ErrorCode.INVALID_MESSAGE, "frames are JSON text, not binary")
                continue
            if len(text) > limit // 4 and len(text.encode()) > limit:
                self._too_big(len(text.encode()))
                continue
            self._handle(text)

    def _too_big(self, size: int) -> None:
        limit = self._config.max_message_bytes
        self.close(
            CloseCode.MESSAGE_TOO_BIG,
            ErrorCode.MESSAGE_TOO_BIG,
            f"a frame of {size} bytes is over the limit of {limit} bytes",
        )

    def _handle(self, text: str) -> None:
        session = self._session
        assert session is not None
        try:
            frame = parse_client_frame(text)
        except InvalidFrameError as exc:
            self._error(ErrorCode.INVALID_MESSAGE, str(exc))
            return
        if isinstance(frame, ResumeFrame):
            self._start_at(frame.last_seq)
            return
        if self.cursor is None:  # the first frame: follow the session from here
            self.cursor = session.last_seq
        if isinstance(frame, MessageFrame):
            self._message(session, frame.message)
        elif isinstance(frame, StopFrame):
            if session.turn is not None:  # no turn: it ended already; nothing to stop
                session.turn.stop()
        elif isinstance(frame, PingFrame):
            self._reply(pong_frame(*self._position()))
        # AuthFrame after authentication: nothing to do.

    def _message(self, session: Session, message: str) -> None:
        runtime = self._runtime
        if runtime.state is not Lifecycle.SERVING:
            self._error(ErrorCode.SERVER_SHUTTING_DOWN, "the server is restarting: no new turns")
        elif session.turn is not None:
            self._error(
                ErrorCode.SESSION_BUSY,
                f"turn {session.turn.id} of this session is running: one at a time",
            )
        else:
            runtime.start_turn(session, message, self._view, self.connection_id)

    # -- writing -----------------------------------------------------------------------------

    async def _send_loop(self) -> None:
        ws = self._ws
        session = self._session
        assert session is not None
        sent = self._runtime.metrics.frame_sent
        try:
            while True:
                if self._replies:
                    await ws.send_text(self._replies.popleft())
                    sent()
                    continue
                cursor = self.cursor
                if cursor is not None and cursor < session.last_seq:
                    frame = session.frame(cursor + 1)
                    if frame is None:  # evicted before this socket sent it
                        self._resync(cursor + 1)
                        continue
                    await ws.send_text(frame)
                    sent()
                    if self.cursor == cursor:  # not moved by a resume meanwhile
                        self.cursor = cursor + 1
                    continue
                if self._closing is not None:
                    code, frame, reason = self._closing
                    if frame is not None:
                        await ws.send_text(frame)
                        sent()
                    await ws.close(code, reason)
                    self.close_code = code
                    return
                self._event = anyio.Event()
                await self._event.wait()
        except Exception:  # the connection is gone (the reader sees how it closed)
            logger.debug("connection %s: send failed", self.connection_id, exc_info=True)
            return
        finally:
            if self._task_group is not None:
                self._task_group.cancel_scope.cancel()
