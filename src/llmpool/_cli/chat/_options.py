"""``llmpool chat``'s settings, and the URLs made from the server's.

The chat socket of a session, and the HTTP base of ``/stats``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

__all__ = ["DEFAULT_URL", "ChatOptions", "chat_url", "check_url", "http_url"]

DEFAULT_URL: Final = "ws://127.0.0.1:8000"
"""``llmpool serve``'s default address."""

_HTTP: Final = {"ws": "http", "wss": "https"}


@dataclass(frozen=True, slots=True)
class ChatOptions:
    """What ``llmpool chat`` was asked for.

    Attributes:
        url: the server, ``ws://host:port`` or ``wss://…`` (a path prefix is kept: a server
            behind a proxy at ``wss://example.com/llm``).
        session_id: the session to follow first.
        priority: ``high``, ``normal`` or ``low``; None: the server's default.
        token: the server's bearer token, if it needs one.
        typewriter: type answers out (a few ms per character), or show them as they come.
    """

    url: str
    session_id: str
    priority: str | None = None
    token: str | None = None
    typewriter: bool = True


def check_url(url: str) -> str | None:
    """Why ``url`` is not a server URL ``llmpool chat`` can use, or None when it is."""
    parts = urlsplit(url)
    if parts.scheme not in _HTTP:
        return f"--url must start with ws:// or wss://, got {url!r}"
    if not parts.hostname:
        return f"--url has no host: {url!r}"
    if parts.query or parts.fragment:
        return f"--url is the server's address, without a query or fragment: {url!r}"
    return None


def chat_url(url: str, session_id: str, priority: str | None = None) -> str:
    """The socket of ``session_id`` on the server at ``url``: ``…/ws/chat/{id}[?priority=]``."""
    parts = urlsplit(url)
    path = f"{parts.path.rstrip('/')}/ws/chat/{quote(session_id, safe='')}"
    query = urlencode({"priority": priority}) if priority else ""
    return urlunsplit((parts.scheme, parts.netloc, path, query, ""))


def http_url(url: str) -> str:
    """The HTTP base of the server at ``url``: ``ws``→``http``, ``wss``→``https``, no slash."""
    parts = urlsplit(url)
    return urlunsplit((_HTTP[parts.scheme], parts.netloc, parts.path.rstrip("/"), "", ""))
