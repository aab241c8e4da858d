"""The server's defaults, once: ``ServerConfig``, the docs and the tests refer to these."""

from __future__ import annotations

from typing import Final

DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 8000
DEFAULT_MODEL: Final = "gpt-4o-mini"
DEFAULT_MAX_CONNECTIONS: Final = 25
"""Concurrent WebSocket connections, count (the capacity-limited voice server's 25)."""
DEFAULT_CONNECTION_TIMEOUT: Final = 300.0
"""Seconds without a client frame and without a running turn before a socket is closed."""
DEFAULT_MAX_MESSAGE_BYTES: Final = 256 * 1024
"""Largest client frame, bytes (UTF-8)."""
DEFAULT_PING_INTERVAL: Final = 20.0
"""Seconds between protocol pings the server sends."""
DEFAULT_PING_TIMEOUT: Final = 20.0
"""Seconds a peer has to answer a ping (uvicorn), or to send anything after one (hypercorn)."""
DEFAULT_AUTH_TIMEOUT: Final = 10.0
"""Seconds a browser has to send its ``auth`` frame when a token is required."""
DEFAULT_SESSION_BUFFER_FRAMES: Final = 1024
"""Frames each session keeps for resume and for slow sockets, count."""
DEFAULT_MAX_SESSIONS: Final = 10_000
"""Sessions kept in memory, count; the least recently used idle one goes first."""
DEFAULT_SESSION_TTL: Final = 3600.0
"""Seconds an idle session (no socket, no turn) is kept."""
DEFAULT_RETRY_AFTER: Final = 5.0
"""Seconds a refused client is told to wait (``retry_after_ms``, ``Retry-After``)."""
DEFAULT_CLOSE_TIMEOUT: Final = 5.0
"""Seconds a draining server waits for its sockets' close handshakes."""
DEFAULT_TURN_LOCK_TTL: Final = 30.0
"""Seconds a turn's lock on its session lasts without renewal (shared sessions)."""
DEFAULT_STORE_TIMEOUT: Final = 5.0
"""Seconds one step with the shared session store (Redis) may take."""
DEFAULT_RELAY_CONNECT_TIMEOUT: Final = 10.0
"""Seconds to open the upstream Realtime socket and get ``session.created``."""
DEFAULT_RELAY_MAX_BUFFER_BYTES: Final = 16 * 1024 * 1024
"""Bytes of client frames held until the upstream is ready (one audio append: up to 15 MiB)."""
DEFAULT_RELAY_MAX_BUFFER_FRAMES: Final = 512
"""Client frames held until the upstream is ready, count."""
DEFAULT_RELAY_MAX_MESSAGE_BYTES: Final = 16 * 1024 * 1024
"""Largest relayed frame either way, bytes."""
DEFAULT_RELAY_MAX_CLIENT_LAG: Final = 10.0
"""Seconds one frame to a relay client may take to be sent."""
DEFAULT_RELAY_MAX_SESSION_SECONDS: Final = 1800.0
"""Seconds a relay session lasts (the Realtime API's own session limit is 30 minutes)."""
DEFAULT_RELAY_WARNING_SECONDS: Final = 30.0
"""Seconds before the end of a relay session its warning is sent."""
SERVER_LOGGER: Final = "llmpool.server"
"""The logger every server event is written to."""
SESSION_HASH_CHARS: Final = 12
"""Hex characters of the SHA-256 of a session id in logs."""
