"""The server's bearer token: where a client offers it, and the one comparison.

Every route checks the same ``ServerConfig.token`` the same way: the chat socket, the relay
and ``/api/*``. A client offers it in an ``Authorization: Bearer <token>`` header; a browser
WebSocket, which cannot set headers, in its first frame (the chat) or as the
``openai-insecure-api-key.<token>`` subprotocol (the relay, as OpenAI's browser snippet sends
a key).
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping

from pydantic import SecretStr

__all__ = ["KEY_PROTOCOL", "bearer", "from_subprotocols", "token_matches"]

KEY_PROTOCOL = "openai-insecure-api-key."
"""The subprotocol prefix a browser puts a key (here: the server's token) behind."""


def bearer(headers: Mapping[str, str]) -> str | None:
    """The token of an ``Authorization: Bearer`` header.

    Returns:
        The token; ``None`` without the header; ``""`` for another scheme (offered: wrong).
    """
    header = headers.get("authorization")
    if header is None:
        return None
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


def from_subprotocols(protocols: Iterable[str]) -> str | None:
    """The token behind ``openai-insecure-api-key.``, if a subprotocol carries one."""
    for protocol in protocols:
        if protocol.startswith(KEY_PROTOCOL):
            return protocol[len(KEY_PROTOCOL) :]
    return None


def token_matches(expected: SecretStr | None, offered: str | None) -> bool:
    """Whether ``offered`` is the server's token (always, when none is configured).

    Compared in constant time (``hmac.compare_digest``), so the comparison's duration tells
    nothing about how much of a guess was right.
    """
    if expected is None:
        return True
    if offered is None:
        return False
    return hmac.compare_digest(offered.encode(), expected.get_secret_value().encode())
