"""The typewriter: answer text shown a few characters at a time, never holding the socket.

The socket's reader hands items to ``Typewriter.push``, which only appends to a queue; the
typewriter's own task takes them out at its pace and writes them to the screen. Text comes
out at most ``char_delay`` seconds per character, and all at once when the queue holds more
than ``catch_up`` seconds of it: a fast stream is never shown late. A note waits for the
text before it, so lines appear in the order the frames came.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

import anyio

from ._render import Note, Text

__all__ = ["Pace", "Screen", "Typewriter", "release"]


class Screen(Protocol):
    """Where the chat is shown (the prompt_toolkit screen, or plain stdout)."""

    async def text(self, text: str) -> None:
        """Show answer text where the answer is being written."""

    async def note(self, note: Note) -> None:
        """Show ``note`` on a line of its own (after ending a partial answer line)."""

    async def clear(self) -> None:
        """Clear the screen."""


@dataclass(frozen=True, slots=True)
class Pace:
    """How fast text is typed out.

    Attributes:
        char_delay: seconds per character at most; default 0.003 (0: no effect).
        tick: seconds between two writes while text is waiting; default 0.016 (60 a second).
        catch_up: seconds of waiting text beyond which it is all shown at once; default 0.25.
    """

    char_delay: float = 0.003
    tick: float = 0.016
    catch_up: float = 0.25


def release(backlog: int, elapsed: float, pace: Pace) -> int:
    """How many of ``backlog`` waiting characters to show now.

    Args:
        backlog: characters of text waiting.
        elapsed: seconds since text was last shown.
        pace: the pace.

    Returns:
        All of them when the effect is off or the typewriter fell behind (more than
        ``catch_up`` seconds of text waiting); else those ``elapsed`` allows, at least one.
    """
    if backlog <= 0:
        return 0
    if pace.char_delay <= 0 or backlog * pace.char_delay > pace.catch_up:
        return backlog
    return min(backlog, max(1, int(elapsed / pace.char_delay)))


class Typewriter:
    """Writes pushed items to ``screen`` at ``pace`` (``run`` is its task).

    Args:
        screen: where to write.
        pace: how fast; ``Pace()`` by default.
    """

    def __init__(self, screen: Screen, pace: Pace | None = None) -> None:
        self._screen = screen
        self._pace = pace or Pace()
        self._queue: deque[Text | Note] = deque()
        self._backlog = 0  # characters of Text in the queue
        self._wake = anyio.Event()
        self._writing = False

    def push(self, items: Iterable[object]) -> None:
        """Queue the ``Text`` and ``Note`` items of ``items`` (others are not for the screen)."""
        for item in items:
            if isinstance(item, Text):
                self._queue.append(item)
                self._backlog += len(item.text)
            elif isinstance(item, Note):
                self._queue.append(item)
        if self._queue:
            self._wake.set()

    @property
    def idle(self) -> bool:
        """Whether everything pushed has been written."""
        return not self._queue and not self._writing

    async def run(self) -> None:
        """Write what is pushed, forever."""
        pace = self._pace
        last = anyio.current_time()
        while True:
            if not self._queue:
                self._wake = anyio.Event()
                await self._wake.wait()
                last = anyio.current_time() - pace.tick  # a fresh start types at once
            head = self._queue[0]
            self._writing = True
            try:
                if isinstance(head, Note):
                    self._queue.popleft()
                    await self._screen.note(head)
                    continue
                now = anyio.current_time()
                count = release(self._backlog, now - last, pace)
                last = now
                await self._screen.text(self._take(count))
            finally:
                self._writing = False
            if self._queue and isinstance(self._queue[0], Text):
                await anyio.sleep(pace.tick)

    def _take(self, count: int) -> str:
        """Up to ``count`` characters from the texts at the head of the queue."""
        parts: list[str] = []
        while count > 0 and self._queue and isinstance(self._queue[0], Text):
            text = self._queue[0].text
            part, rest = text[:count], text[count:]
            parts.append(part)
            count -= len(part)
            self._backlog -= len(part)
            if rest:
                self._queue[0] = Text(rest)
            else:
                self._queue.popleft()
        return "".join(parts)
