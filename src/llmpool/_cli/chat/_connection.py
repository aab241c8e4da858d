"""The chat's socket: open it, resume, read and write frames, reconnect when it ends.

websockets' asyncio client carries the frames (``llmpool chat`` runs on asyncio, see
``_app``); the structure is anyio's: one task reads (frames go through the renderer to the
typewriter's queue, which never blocks, so a slow terminal never slows the socket), one
writes what is queued in the outbox. The first frame on every socket is a ``resume`` from
the last ``seq`` seen of the session, so a reconnect or a ``/session`` switch shows exactly
the frames missed. When a socket ends, ``ReconnectPolicy`` decides: reconnect after a
backoff, wait for the user's next message, or give up (``run`` returns status 1).
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, Final

import anyio
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from ._options import ChatOptions, chat_url
from ._policy import Action, Closed, ReconnectPolicy
from ._render import FrameRenderer, Item, Note, Resend, Style

__all__ = ["Connection"]

_OPEN_TIMEOUT: Final = 10.0
_CLOSE_TIMEOUT: Final = 2.0
_MAX_FRAME: Final = 16 * 2**20  # bytes; the server's frames are far smaller


class Connection:
    """The socket of the session being followed, reopened as the policy says.

    Args:
        options: the server's URL, the session, priority and token.
        renderer: turns frames into items (and knows the resume point).
        show: takes the items for the screen (``Typewriter.push``); must not block.
        policy: when to reconnect; ``ReconnectPolicy()`` by default.
    """

    def __init__(
        self,
        options: ChatOptions,
        renderer: FrameRenderer,
        show: Callable[[Iterable[Item]], None],
        policy: ReconnectPolicy | None = None,
    ) -> None:
        self._options = options
        self._renderer = renderer
        self._show = show
        self._policy = policy or ReconnectPolicy()
        self._target = options.session_id
        self._outbox: deque[str] = deque()
        self._ws: ClientConnection | None = None
        self._wake_writer = anyio.Event()
        self._wake = anyio.Event()  # a message to send, or a switch: stop waiting
        self._changed = anyio.Event()  # a frame arrived or the socket ended
        self.connected = False
        self._greeted = False  # the first socket's note says where, and about /help

    @property
    def session_id(self) -> str:
        """The session followed (or about to be, after a switch)."""
        return self._target

    def send(self, frame: dict[str, Any]) -> None:
        """Queue ``frame``; it is sent now, or once (re)connected."""
        self._outbox.append(json.dumps(frame))
        self._wake_writer.set()
        self._wake.set()

    async def switch(self, session_id: str) -> None:
        """Follow ``session_id`` instead: close this socket (1000) and open that one."""
        if session_id == self._target:
            return
        self._target = session_id
        self._outbox.clear()
        self._show(self._renderer.switch(session_id))
        self._wake.set()
        if self._ws is not None:
            await self._ws.close()

    async def wait_answered(self) -> None:
        """Return once no answer of the current session is awaited."""
        while self._renderer.answering:
            self._changed = anyio.Event()
            await self._changed.wait()

    async def run(self) -> int:
        """Follow the session, reconnecting as the policy says.

        Returns:
            1 when the policy gives up (close 1008, a handshake refused with a 4xx); it
            never returns otherwise (cancel it to end the chat).
        """
        attempt = 0
        while True:
            target = self._target
            closed, opened = await self._follow(target)
            if self._target != target:  # switched: open the new session's socket now
                attempt = 0
                continue
            attempt = 1 if opened else attempt + 1
            decision = self._policy.decide(
                closed, attempt=attempt, retry_after=self._renderer.retry_after
            )
            style = Style.ERROR if decision.action is Action.EXIT else Style.INFO
            self._show([Note(decision.explanation, style)])
            if decision.action is Action.EXIT:
                return 1
            if decision.action is Action.ON_DEMAND:
                self._outbox.clear()  # what was queued went with the socket, or was refused
                self._wake = anyio.Event()
                await self._wake.wait()  # a message, a command or a switch reconnects
                attempt = 0
                continue
            with anyio.move_on_after(decision.delay):
                while self._target == target:  # only a switch cuts the backoff short
                    self._wake = anyio.Event()
                    await self._wake.wait()

    async def _follow(self, target: str) -> tuple[Closed, bool]:
        """One socket on ``target``, to its end: how it ended, and whether it had opened."""
        options = self._options
        url = chat_url(options.url, target, options.priority)
        headers = {"Authorization": f"Bearer {options.token}"} if options.token else None
        try:
            async with connect(
                url,
                additional_headers=headers,
                open_timeout=_OPEN_TIMEOUT,
                close_timeout=_CLOSE_TIMEOUT,
                max_size=_MAX_FRAME,
            ) as ws:
                self._ws = ws
                self.connected = True
                try:
                    return await self._on_socket(ws, target, url), True
                finally:
                    self._ws = None
                    self.connected = False
                    self._changed.set()
        except InvalidStatus as exc:
            status = exc.response.status_code
            return Closed(None, f"HTTP {status} from {url}", status), False
        except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
            return Closed(None, f"{url}: {exc or type(exc).__name__}"), False

    async def _on_socket(self, ws: ClientConnection, target: str, url: str) -> Closed:
        if self._target != target:  # switched while connecting: this socket is not needed
            return Closed(1000)
        renderer = self._renderer
        last = renderer.last_seq(target)
        first_frames = renderer.resume_frames()
        if not self._greeted:
            self._greeted = True
            note = f"connected to {url}; /help lists the commands"
        elif last:
            note = f"session {target}: resuming after frame {last}"
        else:
            note = f"session {target}"
        self._show([Note(note)])
        try:
            for frame in first_frames:
                await ws.send(frame)
        except ConnectionClosed as exc:
            return _closed(exc)
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._write, ws)
            closed = await self._read(ws)
            tg.cancel_scope.cancel()
        return closed

    async def _read(self, ws: ClientConnection) -> Closed:
        while True:
            try:
                message = await ws.recv()
            except ConnectionClosed as exc:
                return _closed(exc)
            if isinstance(message, bytes):
                continue  # the protocol is text frames only
            items = self._renderer.feed(message)
            resend = [item.frame for item in items if isinstance(item, Resend)]
            if resend:
                self._outbox.extendleft(reversed(resend))
                self._wake_writer.set()
            self._show(items)
            self._changed.set()

    async def _write(self, ws: ClientConnection) -> None:
        while True:
            while self._outbox:
                try:
                    await ws.send(self._outbox[0])
                except ConnectionClosed:
                    return  # the reader sees how it closed
                self._outbox.popleft()
            self._wake_writer = anyio.Event()
            await self._wake_writer.wait()


def _closed(exc: ConnectionClosed) -> Closed:
    if exc.rcvd is None:
        return Closed(1006, "")
    return Closed(exc.rcvd.code, exc.rcvd.reason)
