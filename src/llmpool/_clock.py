"""The event loop's clock, read without anyio's per-call backend lookup."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import cast

import anyio
import anyio.lowlevel

__all__ = ["loop_clock", "loop_time"]


def loop_clock() -> Callable[[], float]:
    """The running event loop's clock, as ``anyio.current_time`` reads it.

    Without anyio's per-call backend lookup: asyncio's ``loop.time`` or ``trio.current_time``
    (trio's own clock, ``MockClock`` included); ``anyio.current_time`` elsewhere.
    """
    token = anyio.lowlevel.current_token().native_token
    loop_time = getattr(token, "time", None)  # asyncio: the token is the loop
    if callable(loop_time):
        return cast(Callable[[], float], loop_time)
    trio = sys.modules.get("trio")
    if trio is not None and type(token).__module__.startswith("trio"):
        return cast(Callable[[], float], trio.current_time)
    return anyio.current_time


def loop_time() -> float | None:
    """The event loop's clock, or ``None`` when no event loop runs in this thread."""
    try:
        return anyio.current_time()
    except Exception:  # sniffio.AsyncLibraryNotFoundError or a backend's "no loop" error
        return None
