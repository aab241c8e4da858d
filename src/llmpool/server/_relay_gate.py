"""The relay's readiness gate: client frames held in order and within bounds until ready.

Client frames that arrive before the upstream has said ``session.created`` (and, when the
relay injects its own ``session.update``, before that is acknowledged) would be dropped by
the upstream, or answered with errors: the gate holds them, in arrival order, and lets the
writer take them once ``open()`` is called. Before that, a frame over ``max_frames`` or
``max_bytes`` is refused (``GateOverflowError``): nothing is dropped silently. After it,
the writer drains the gate as fast as the upstream takes frames, and a client that sends
faster waits (``put`` blocks: back-pressure through the socket) instead of growing the
buffer.
"""

from __future__ import annotations

from collections import deque

import anyio

__all__ = ["Frame", "Gate", "GateOverflowError"]

Frame = str | bytes
"""A WebSocket message: text or binary."""


class GateOverflowError(Exception):
    """The frames held before the upstream was ready went over a bound."""

    def __init__(self, frames: int, size: int, max_frames: int, max_bytes: int) -> None:
        super().__init__(
            f"{frames} frames ({size} bytes) arrived before the upstream was ready; the relay "
            f"holds at most {max_frames} frames and {max_bytes} bytes"
        )


class Gate:
    """A FIFO of client frames, closed until ``open()`` (see the module docstring).

    Args:
        max_frames: frames held at most, count.
        max_bytes: bytes held at most (UTF-8 lengths), bytes.
    """

    def __init__(self, *, max_frames: int, max_bytes: int) -> None:
        self._frames: deque[tuple[Frame, int]] = deque()
        self._bytes = 0
        self._max_frames = max_frames
        self._max_bytes = max_bytes
        self.is_open = False
        self._readable = anyio.Event()  # a frame to take, and the gate open
        self._writable = anyio.Event()  # room below the bounds (after the gate opened)
        self.held_before_open = 0  # frames that waited for the upstream, count

    def __len__(self) -> int:
        return len(self._frames)

    def _full(self, size: int) -> bool:
        return (
            len(self._frames) + 1 > self._max_frames or self._bytes + size > self._max_bytes
        ) and bool(self._frames)

    async def put(self, frame: Frame, size: int) -> None:
        """Hold ``frame`` (``size`` bytes) for the upstream.

        Raises:
            GateOverflowError: the gate is still closed and ``frame`` would go over a bound.
        """
        if not self.is_open:
            if self._full(size) or size > self._max_bytes:
                raise GateOverflowError(
                    len(self._frames) + 1, self._bytes + size, self._max_frames, self._max_bytes
                )
            self.held_before_open += 1
        else:
            while self._full(size):
                self._writable = anyio.Event()
                await self._writable.wait()
        self._frames.append((frame, size))
        self._bytes += size
        if self.is_open:
            self._readable.set()

    def open(self) -> None:
        """The upstream is ready: the writer may take the held frames, in order."""
        self.is_open = True
        self._readable.set()

    async def take(self) -> Frame:
        """The next frame, once the gate is open and one is held."""
        while not (self.is_open and self._frames):
            self._readable = anyio.Event()
            await self._readable.wait()
        frame, size = self._frames.popleft()
        self._bytes -= size
        self._writable.set()
        return frame
