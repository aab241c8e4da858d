"""``GET /chat``: the browser chat page, three files shipped inside the package.

The page (``static/chat.html``, ``chat.css``, ``chat.js``: no build step, nothing fetched
from elsewhere) speaks the protocol of ``/ws/chat/{session_id}`` as ``llmpool chat`` does
(docs/server.md, "Chat page"). Every answer goes on the page as text (``textContent``),
never as markup, and the Content-Security-Policy below allows scripts and styles from this
origin only, no inline script: model output that looks like HTML stays text, and could not
run even if it were parsed.

The files are read once, when the app is built (``importlib.resources``, so they are found
in a wheel as in a checkout), and served from memory.
"""

from __future__ import annotations

from importlib import resources
from typing import Final

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

__all__ = ["CONTENT_SECURITY_POLICY", "ChatPage"]

CONTENT_SECURITY_POLICY: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self' ws: wss:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
"""Scripts, styles and requests to this origin only (``ws:``/``wss:``: its chat socket, as
older browsers do not count a WebSocket to the same host as ``'self'``); no inline script,
no plug-ins, not framed (MDN, "Content-Security-Policy")."""

_TYPES: Final = {
    "chat.html": "text/html; charset=utf-8",
    "chat.css": "text/css; charset=utf-8",
    "chat.js": "text/javascript; charset=utf-8",  # RFC 9239 §6
}
_HEADERS: Final = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",  # revalidate: a new server version serves a new page
}


def _read(name: str) -> bytes:
    return resources.files(__package__).joinpath("static", name).read_bytes()


class ChatPage:
    """The page's routes: ``GET /chat`` and ``GET /static/{name}`` (its script and style)."""

    def __init__(self) -> None:
        self._files = {name: _read(name) for name in _TYPES}

    async def page(self, request: Request) -> Response:
        """``GET /chat``: the chat page (the session and token may follow in the URL)."""
        return self._serve("chat.html")

    async def asset(self, request: Request) -> Response:
        """``GET /static/{name}``: ``chat.js`` or ``chat.css``; anything else is a 404."""
        name = request.path_params["name"]
        if name == "chat.html" or name not in self._files:
            return PlainTextResponse("not found", status_code=404)
        return self._serve(name)

    def _serve(self, name: str) -> Response:
        return Response(self._files[name], headers=_HEADERS, media_type=_TYPES[name])
