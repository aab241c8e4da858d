"""The two screens: plain stdout, and a prompt_toolkit prompt open while answers stream.

With the prompt, finished lines are printed above it (``in_terminal``), and the line still
being written is shown just above the input line, as part of the prompt's message, so what
the user types is never mixed with the answer. A partial line longer than a few screen rows
is broken at a space and printed, so the prompt never outgrows the screen. The plain screen
(stdin or stdout not a terminal) writes text as it comes.

prompt_toolkit is imported by the caller (``_app``) only when a terminal is used; this
module names its types for mypy only.
"""

from __future__ import annotations

import os
import shutil
from typing import TYPE_CHECKING, Final, TextIO

from ._render import Note, Style

if TYPE_CHECKING:
    from prompt_toolkit import PromptSession
    from prompt_toolkit.formatted_text import StyleAndTextTuples

__all__ = ["PlainScreen", "PromptScreen", "break_point", "styled", "use_color"]

_SGR: Final = {Style.INFO: "2", Style.DONE: "32", Style.ERROR: "31"}
_CLEAR: Final = "\x1b[H\x1b[2J"
_LIVE_ROWS: Final = 3


def styled(note: Note, *, color: bool) -> str:
    """``note``'s text, in its colour when ``color`` (SGR codes; none for ``RAW``)."""
    code = _SGR.get(note.style)
    if not color or code is None:
        return note.text
    return f"\x1b[{code}m{note.text}\x1b[0m"


def use_color(out: TextIO) -> bool:
    """Colour only on a terminal, and never with ``NO_COLOR`` set (no-color.org)."""
    return out.isatty() and not os.environ.get("NO_COLOR")


def break_point(line: str, width: int) -> int:
    """Where to break a partial line that got too long to show live (0: keep it whole).

    Args:
        line: the partial line (no newline in it).
        width: the screen's width, in columns.

    Returns:
        0 while ``line`` fits in a few rows of ``width``; else the length of the head to
        print: up to and including the last space of its first rows (the whole rows when
        there is no space).
    """
    width = max(width, 20)
    if len(line) <= width * _LIVE_ROWS:
        return 0
    keep = width * (_LIVE_ROWS - 1)
    space = line.rfind(" ", 0, keep)
    return space + 1 if space > 0 else keep


class PlainScreen:
    """Writes to a stream as text comes (no prompt on screen to keep clear of).

    Args:
        out: the stream, e.g. ``sys.stdout``.
    """

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._color = use_color(out)
        self._at_line_start = True

    async def text(self, text: str) -> None:
        """Write answer text."""
        self._out.write(text)
        self._out.flush()
        self._at_line_start = text.endswith("\n")

    async def note(self, note: Note) -> None:
        """Write ``note`` on a line of its own."""
        head = "" if self._at_line_start else "\n"
        self._out.write(f"{head}{styled(note, color=self._color)}\n")
        self._out.flush()
        self._at_line_start = True

    async def clear(self) -> None:
        """Clear a terminal; nothing on a pipe."""
        if self._out.isatty():
            self._out.write(_CLEAR)
            self._out.flush()


class PromptScreen:
    """Prints above a prompt_toolkit prompt; the partial answer line is part of its message.

    Args:
        out: the terminal's stream (the real ``sys.stdout``).
        prompt: the text before the input, e.g. ``lambda: "chat-1a2b> "``.
    """

    def __init__(self, out: TextIO, prompt: object) -> None:
        self._out = out
        self._color = use_color(out)
        self._prompt = prompt
        self._live = ""
        self.session: PromptSession[str] | None = None
        """The prompt session to redraw; set once it is made."""

    def message(self) -> StyleAndTextTuples:
        """The prompt's message: the partial answer line (while the prompt is open), the prompt."""
        prompt = str(self._prompt() if callable(self._prompt) else self._prompt)
        session = self.session
        done = session is None or session.app.is_done
        if self._live and not done:
            return [("class:answer", self._live + "\n"), ("class:prompt", prompt)]
        return [("class:prompt", prompt)]

    async def _print(self, text: str) -> None:
        from prompt_toolkit.application import in_terminal

        async with in_terminal():
            self._out.write(text)
            self._out.flush()

    def _redraw(self) -> None:
        if self.session is not None and self.session.app.is_running:
            self.session.app.invalidate()

    async def text(self, text: str) -> None:
        """Add answer text: finished lines are printed, the rest shown live."""
        live = self._live + text
        done, newline, live = live.rpartition("\n")
        width = shutil.get_terminal_size().columns
        head = done + newline
        cut = break_point(live, width)
        if cut:
            head, live = head + live[:cut] + "\n", live[cut:]
        self._live = live
        if head:
            await self._print(head)
        self._redraw()

    async def note(self, note: Note) -> None:
        """Print ``note`` on a line of its own, after the partial answer line."""
        head = self._live + "\n" if self._live else ""
        self._live = ""
        await self._print(f"{head}{styled(note, color=self._color)}\n")
        self._redraw()

    async def clear(self) -> None:
        """Clear the screen (the partial line stays shown in the prompt)."""
        await self._print(_CLEAR)
        self._redraw()
