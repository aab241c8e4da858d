"""What the relay says to a client in its own name, and how it maps upstream closes.

The relay speaks the Realtime API's own error event, so a client that handles the API's
errors handles the relay's: ``{"type": "error", "event_id": "relay_…", "error": {"type":
"relay_error", "code": ..., "message": ...}}``. Codes (stable): ``relay_buffer_full``,
``upstream_timeout``, ``upstream_refused``, ``upstream_unavailable``,
``session_update_refused``, ``client_lagging``, ``session_expiring`` (a ``relay_warning``),
``session_expired``, ``unauthorized``, ``server_at_capacity``, ``server_shutting_down``,
``invalid_request``.

Close codes (RFC 6455 §7.4; 1012/1013 registered with IANA): a refused upstream handshake maps
401/403 -> 1008, 429 and 5xx capacity answers -> 1013, others -> 1011; an upstream close code
that is registered and may be sent is passed through (1000-1003, 1007-1014), any other -> 1011.
A client too slow to read closes with ``CLIENT_LAGGING`` (4008), a private-use code (4000-4999,
RFC 6455 §7.4.2).
"""

from __future__ import annotations

import json
import secrets
from enum import StrEnum
from typing import Final

__all__ = [
    "CLIENT_LAGGING",
    "RelayCode",
    "handshake_close_code",
    "passed_close_code",
    "relay_error",
]

CLIENT_LAGGING: Final = 4008
"""Close code for a client that lagged more than ``relay_max_client_lag`` behind."""

_SENDABLE: Final = frozenset(
    {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014}
)


class RelayCode(StrEnum):
    """``error.code`` of the relay's own error events."""

    BUFFER_FULL = "relay_buffer_full"
    UPSTREAM_TIMEOUT = "upstream_timeout"
    UPSTREAM_REFUSED = "upstream_refused"
    UPSTREAM_UNAVAILABLE = "upstream_unavailable"
    SESSION_UPDATE_REFUSED = "session_update_refused"
    CLIENT_LAGGING = "client_lagging"
    SESSION_EXPIRING = "session_expiring"
    SESSION_EXPIRED = "session_expired"
    UNAUTHORIZED = "unauthorized"
    SERVER_AT_CAPACITY = "server_at_capacity"
    SERVER_SHUTTING_DOWN = "server_shutting_down"
    INVALID_REQUEST = "invalid_request"


def relay_error(code: RelayCode, message: str, *, warning: bool = False, **details: object) -> str:
    """A Realtime-shaped ``error`` event from the relay (``relay_warning`` for a warning)."""
    error: dict[str, object] = {
        "type": "relay_warning" if warning else "relay_error",
        "code": code.value,
        "message": message,
        "param": None,
        "event_id": None,
        **details,
    }
    event = {"type": "error", "event_id": "relay_" + secrets.token_hex(8), "error": error}
    return json.dumps(event, separators=(",", ":"))


def handshake_close_code(status: int) -> int:
    """The client's close code when the upstream refused the handshake with ``status``."""
    if status in (401, 403):
        return 1008
    if status in (429, 503):
        return 1013
    return 1011


def passed_close_code(code: int | None) -> int:
    """The client's close code when the upstream closed with ``code``."""
    return code if code in _SENDABLE else 1011
