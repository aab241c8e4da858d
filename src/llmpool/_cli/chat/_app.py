"""``llmpool chat``'s main loop: typed lines to commands and messages, answers shown.

Three tasks under one task group: the connection (socket, resume, reconnects), the
typewriter (the screen), and the prompt loop here. It runs on asyncio, because websockets'
client and prompt_toolkit do; anyio gives the structure (``anyio.run(...,
backend="asyncio")``), so nothing here imports asyncio.
"""

from __future__ import annotations

import shutil
import sys
from typing import Final

import anyio

from ._connection import Connection
from ._input import (
    HELP,
    Clear,
    Help,
    Interrupt,
    Invalid,
    New,
    Quit,
    Send,
    Stats,
    Stop,
    Switch,
    UserInput,
    new_session_id,
    on_interrupt,
    parse_line,
)
from ._lines import Lines, PlainLines, PromptLines
from ._options import ChatOptions, http_url
from ._render import FrameRenderer, Note, Style
from ._screen import PlainScreen, PromptScreen, use_color
from ._stats import StatsError, fetch_stats, stats_table
from ._typewriter import Pace, Screen, Typewriter

__all__ = ["Chat", "run_chat"]

_FLUSH: Final = 2.0
"""Seconds the screen gets to show what is left when the chat ends."""


class Chat:
    """One chat: what the user types, run against the connection, shown on the screen.

    Args:
        options: the server, session, priority, token, typewriter.
        screen: where the chat is shown.
        terminal: whether lines come from a terminal (at the end of plain input the chat
            waits for the answer being written).
    """

    def __init__(self, options: ChatOptions, screen: Screen, *, terminal: bool) -> None:
        self._options = options
        self._terminal = terminal
        self._renderer = FrameRenderer(options.session_id, has_token=options.token is not None)
        self._typewriter = Typewriter(screen, Pace() if options.typewriter else Pace(0.0))
        self._screen = screen
        self.connection = Connection(options, self._renderer, self._typewriter.push)
        self._armed = False  # the last key was Ctrl-C

    def _note(self, text: str, style: Style = Style.INFO) -> None:
        self._typewriter.push([Note(text, style)])

    def interrupt(self) -> bool:
        """Ctrl-C: stop the answer, or say how to quit; True when the chat should quit."""
        what = on_interrupt(answering=self._renderer.answering, armed=self._armed)
        self._armed = True
        if what is Interrupt.STOP:
            self.connection.send({"type": "stop"})
            self._note("(stopping: Ctrl-C again quits)")
        elif what is Interrupt.HINT:
            self._note("(Ctrl-C again, /quit or Ctrl-D quits)")
        return what is Interrupt.QUIT

    async def run(self, lines: Lines) -> int:
        """Chat until the user quits or the connection gives up; the exit status."""
        status = 0
        async with anyio.create_task_group() as tg:

            async def follow() -> None:
                nonlocal status
                status = await self.connection.run()
                await self._flush()
                tg.cancel_scope.cancel()

            tg.start_soon(self._typewriter.run)
            tg.start_soon(follow)
            await self._prompt(lines)
            await self._flush()
            tg.cancel_scope.cancel()
        return status

    async def _flush(self) -> None:
        with anyio.move_on_after(_FLUSH):
            while not self._typewriter.idle:  # noqa: ASYNC110  # the screen's last lines
                await anyio.sleep(0.01)

    async def _prompt(self, lines: Lines) -> None:
        while True:
            line = await lines.read()
            if line is None:
                if not self._terminal:  # the end of piped input: let the answer finish
                    await self.connection.wait_answered()
                return
            self._armed = False
            what = parse_line(line)
            if what is not None and not await self._do(what):
                return

    async def _do(self, what: UserInput) -> bool:
        """Carry out one command or message; False to quit."""
        connection = self.connection
        if isinstance(what, Send):
            self._renderer.message_sent()
            connection.send({"type": "message", "message": what.text})
        elif isinstance(what, Stop):
            if self._renderer.answering:
                connection.send({"type": "stop"})
            else:
                self._note("nothing to stop")
        elif isinstance(what, Switch | New):
            session_id = what.session_id or new_session_id()
            if session_id == connection.session_id:
                self._note(f"already in session {session_id}")
            else:
                if isinstance(what, New):
                    self._note(f"new session {session_id}")
                await connection.switch(session_id)
        elif isinstance(what, Stats):
            await self._stats()
        elif isinstance(what, Help):
            self._note(HELP, Style.RAW)
        elif isinstance(what, Clear):
            await self._screen.clear()
        elif isinstance(what, Invalid):
            self._note(what.message, Style.ERROR)
        elif isinstance(what, Quit):
            return False
        return True

    async def _stats(self) -> None:
        try:
            metrics, stats = await fetch_stats(http_url(self._options.url), self._options.token)
        except StatsError as exc:
            self._note(f"/stats: {exc}", Style.ERROR)
            return
        width = shutil.get_terminal_size().columns
        table = stats_table(metrics, stats, width=width, color=use_color(sys.stdout))
        self._note(table, Style.RAW)


async def _main(options: ChatOptions) -> int:
    terminal = sys.stdin.isatty() and sys.stdout.isatty()
    if not terminal:
        chat = Chat(options, PlainScreen(sys.stdout), terminal=False)
        return await chat.run(PlainLines())
    holder: list[Chat] = []
    screen = PromptScreen(sys.stdout, lambda: f"{holder[0].connection.session_id}> ")
    chat = Chat(options, screen, terminal=True)
    holder.append(chat)
    return await chat.run(PromptLines(screen, chat.interrupt))


def run_chat(options: ChatOptions) -> int:
    """Run the chat on asyncio until the user quits.

    Returns:
        0 when the user quit, 1 when the server refused the connection for good (1008, a
        4xx answer to the handshake).
    """
    return anyio.run(_main, options, backend="asyncio")
