"""Where typed lines come from: a prompt_toolkit prompt, or plain stdin.

The prompt has line editing, history, and Ctrl-C as a key; plain stdin (not a terminal) is
read line by line.

``PromptLines`` imports prompt_toolkit when made; the chat makes it only on a terminal.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import anyio

if TYPE_CHECKING:
    from prompt_toolkit.key_binding import KeyPressEvent

    from ._screen import PromptScreen

__all__ = ["Lines", "PlainLines", "PromptLines"]


class Lines(Protocol):
    """A source of typed lines."""

    async def read(self) -> str | None:
        """The next line, without its newline; None at the end (Ctrl-D, end of input)."""


class PromptLines:
    """Lines from a prompt_toolkit prompt that shows ``screen``'s message.

    Args:
        screen: the screen whose message the prompt shows (the partial answer, the prompt).
        interrupt: called on Ctrl-C; returns True when the chat should quit.
    """

    def __init__(self, screen: PromptScreen, interrupt: Callable[[], bool]) -> None:
        from prompt_toolkit import PromptSession
        from prompt_toolkit.history import InMemoryHistory
        from prompt_toolkit.key_binding import KeyBindings
        from prompt_toolkit.keys import Keys

        bindings = KeyBindings()

        def on_ctrl_c(event: KeyPressEvent) -> None:
            if interrupt():
                event.app.exit(exception=EOFError())
            else:
                event.app.current_buffer.reset()

        bindings.add("c-c")(on_ctrl_c)
        bindings.add(Keys.SIGINT)(on_ctrl_c)  # a SIGINT while the prompt runs
        self._session: PromptSession[str] = PromptSession(
            message=screen.message, history=InMemoryHistory(), key_bindings=bindings
        )
        screen.session = self._session

    async def read(self) -> str | None:
        """The next line entered; None on Ctrl-D (an empty line) or a quitting Ctrl-C."""
        try:
            return await self._session.prompt_async()
        except EOFError:
            return None


class PlainLines:
    """Lines from stdin as it is (a pipe, a file): no editing, Ctrl-C is SIGINT."""

    async def read(self) -> str | None:
        """The next line of stdin; None at its end."""
        line = await anyio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)
        return line.removesuffix("\n") if line else None
