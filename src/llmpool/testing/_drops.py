"""Dropping connections: how the simulator closes a socket without (finishing) an answer.

A handler raises ``SimulatedDrop``, a ``BaseException`` so that Starlette's error middleware
does not turn it into a 500. ``DropLayer``, the outermost ASGI layer, catches it, closes the
connection's transport (uvicorn passes ``send`` as a bound method of an object holding it),
then waits until the server has seen the disconnect, so that nothing more is written and
nothing is logged. Bytes already sent (SSE events) are flushed before the socket closes. Should
the transport be out of reach (another ASGI server), the exception propagates and the server
closes the connection itself (answering a 500 if nothing was sent yet).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

import anyio
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["DropLayer", "SimulatedDrop", "sse_body"]

_DISCONNECT_WAIT = 2.0  # seconds to wait for the server to notice the closed transport


class SimulatedDrop(BaseException):
    """Raised inside the app to close the connection without (finishing) an answer."""


class _Transport(Protocol):
    def close(self) -> None: ...


def _find_transport(send: Send) -> _Transport | None:
    owner = getattr(send, "__self__", None)
    transport = getattr(owner, "transport", None)
    if callable(getattr(transport, "close", None)) and callable(
        getattr(transport, "is_closing", None)
    ):
        return transport
    return None


def _is_drop(exc: BaseException) -> bool:
    if isinstance(exc, SimulatedDrop):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return exc.split(SimulatedDrop)[1] is None
    return False


class DropLayer:
    """ASGI middleware turning a ``SimulatedDrop`` into a closed connection.

    Args:
        app: the wrapped ASGI application.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        transport = _find_transport(send) if scope["type"] == "http" else None
        try:
            await self.app(scope, receive, send)
        except BaseException as exc:
            if transport is None or not _is_drop(exc):
                raise
            transport.close()
            with anyio.move_on_after(_DISCONNECT_WAIT):
                while (await receive())["type"] != "http.disconnect":
                    pass


async def sse_body(events: list[bytes], *, delay: float, cut: int | None) -> AsyncIterator[bytes]:
    """Yield SSE events, ``delay`` seconds apart; at index ``cut`` drop the connection."""
    for index, event in enumerate(events):
        if index == cut:
            raise SimulatedDrop
        if index and delay > 0.0:
            await anyio.sleep(delay)
        yield event
