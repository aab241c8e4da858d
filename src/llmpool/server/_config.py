"""``ServerConfig``: every setting of ``llmpool.server``, and its ``LLMPOOL_SERVER_*`` variables.

Durations are floats in seconds, sizes in bytes, counts plain integers. The manager's own
settings (concurrency, queue, retries, timeouts, ``shutdown_grace``) are ``pool``, a
``PoolConfig`` read from the ``LLMPOOL_*`` variables of ``llmpool.ENV_VARS``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from llmpool import PoolConfig, Priority
from llmpool._config import name_variables

from . import _constants as C

__all__ = ["SERVER_ENV_VARS", "RelayConfig", "ServerConfig"]

Api = Literal["responses", "chat"]
LogFormat = Literal["text", "json"]


class RelayConfig(BaseModel):
    """The realtime relay's settings (``/v1/realtime``; docs/relay.md). Durations in seconds.

    Raises:
        pydantic.ValidationError: on construction, a value out of its bounds.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str | None = Field(
        default=None,
        description="The upstream Realtime endpoint (https://…/v1/realtime); None: the pooled "
        "client's base URL + /realtime.",
    )
    connect_timeout: float = Field(
        default=C.DEFAULT_RELAY_CONNECT_TIMEOUT,
        gt=0,
        description="Seconds to open the upstream and get its session.created (and the "
        "injected update's answer).",
    )
    max_buffer_bytes: int = Field(
        default=C.DEFAULT_RELAY_MAX_BUFFER_BYTES,
        ge=1024,
        description="Bytes of client frames held until the upstream is ready.",
    )
    max_buffer_frames: int = Field(
        default=C.DEFAULT_RELAY_MAX_BUFFER_FRAMES,
        ge=1,
        description="Client frames held until the upstream is ready, count.",
    )
    max_message_bytes: int = Field(
        default=C.DEFAULT_RELAY_MAX_MESSAGE_BYTES,
        ge=1024,
        description="Largest frame either way, bytes; larger: close 1009.",
    )
    max_client_lag: float = Field(
        default=C.DEFAULT_RELAY_MAX_CLIENT_LAG,
        gt=0,
        description="Seconds one frame to the client may take to be sent; longer: "
        "client_lagging and close 4008.",
    )
    max_session_seconds: float = Field(
        default=C.DEFAULT_RELAY_MAX_SESSION_SECONDS,
        gt=0,
        description="Seconds a relay session lasts; a session_expiring warning comes "
        "warning_seconds before its end (close 1001).",
    )
    warning_seconds: float = Field(
        default=C.DEFAULT_RELAY_WARNING_SECONDS,
        ge=0,
        description="Seconds before max_session_seconds the warning is sent.",
    )
    session: dict[str, Any] | None = Field(
        default=None,
        description="The relay's own session.update (its `session` object: model, "
        "instructions, tools…) sent before any client frame; None: none.",
    )
    beta: bool = Field(
        default=False,
        description="Send `OpenAI-Beta: realtime=v1` upstream (the beta Realtime API).",
    )

    @field_validator("session", mode="before")
    @classmethod
    def _session_from_json(cls, value: object) -> object:
        # LLMPOOL_SERVER_RELAY_SESSION is JSON text; a mapping is taken as it is.
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError as exc:
                raise ValueError(f"not JSON: {exc}") from None
        return value


class ServerConfig(BaseModel):
    """How ``llmpool.server`` serves: where, against which endpoint, with which limits.

    Build it directly, or with ``ServerConfig.from_env()`` from ``LLMPOOL_SERVER_*`` variables
    (``SERVER_ENV_VARS``; docs/server.md has the table). Immutable; variants with
    ``model_copy(update=...)``.

    Raises:
        pydantic.ValidationError: on construction, a value out of its bounds; the message
            names the field (or, from ``from_env``, the variable).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = Field(default=C.DEFAULT_HOST, min_length=1, description="Address to bind.")
    port: int = Field(
        default=C.DEFAULT_PORT, ge=0, le=65535, description="TCP port to bind; 0: any free one."
    )
    base_url: str | None = Field(
        default=None,
        description="The OpenAI-compatible endpoint; None: the SDK's (OPENAI_BASE_URL or the "
        "OpenAI API). `llmpool serve` uses its embedded simulated provider when none is set.",
    )
    api_key: SecretStr | None = Field(
        default=None, description="The endpoint's API key; None: the SDK's OPENAI_API_KEY."
    )
    model: str = Field(default=C.DEFAULT_MODEL, min_length=1, description="Model of every turn.")
    api: Api = Field(
        default="responses", description="'responses' (Responses API) or 'chat' (Chat Completions)."
    )
    instructions: str | None = Field(
        default=None, description="System instructions sent with every turn; None: none."
    )
    max_output_tokens: int | None = Field(
        default=None, ge=1, description="Output tokens per turn, count; None: the model's limit."
    )
    max_connections: int = Field(
        default=C.DEFAULT_MAX_CONNECTIONS,
        ge=1,
        description="Concurrent WebSocket connections, count; more are refused with 1013.",
    )
    connection_timeout: float = Field(
        default=C.DEFAULT_CONNECTION_TIMEOUT,
        gt=0,
        description="Seconds without a client frame and without a running turn before a "
        "socket is closed with 1001.",
    )
    max_message_bytes: int = Field(
        default=C.DEFAULT_MAX_MESSAGE_BYTES,
        ge=64,
        description="Largest client frame, bytes; larger: message_too_big and close 1009.",
    )
    ping_interval: float = Field(
        default=C.DEFAULT_PING_INTERVAL, gt=0, description="Seconds between protocol pings."
    )
    ping_timeout: float = Field(
        default=C.DEFAULT_PING_TIMEOUT,
        gt=0,
        description="Seconds a peer has to answer a ping before it is dropped.",
    )
    token: SecretStr | None = Field(
        default=None,
        description="Bearer token clients must present (Authorization header, or an `auth` "
        "first frame from browsers); None: no authentication.",
    )
    auth_timeout: float = Field(
        default=C.DEFAULT_AUTH_TIMEOUT,
        gt=0,
        description="Seconds a client has to send its `auth` frame when a token is required.",
    )
    session_buffer_frames: int = Field(
        default=C.DEFAULT_SESSION_BUFFER_FRAMES,
        ge=64,
        description="Frames each session keeps for resume and slow sockets, count (at least "
        "the longest burst of chunks the upstream sends in one read).",
    )
    max_sessions: int = Field(
        default=C.DEFAULT_MAX_SESSIONS,
        ge=1,
        description="Sessions kept in memory, count; the least recently used idle one is "
        "dropped for a new one.",
    )
    session_ttl: float = Field(
        default=C.DEFAULT_SESSION_TTL,
        gt=0,
        description="Seconds an idle session (no socket, no running turn) is kept.",
    )
    cancel_on_disconnect: bool = Field(
        default=False,
        description="Stop a session's running turn when its last socket goes; default: the "
        "turn finishes and is kept for resume.",
    )
    ready_when_full: bool = Field(
        default=False,
        description="Whether /readyz answers 200 at capacity (default: 503, so a load "
        "balancer sends new clients elsewhere).",
    )
    retry_after: float = Field(
        default=C.DEFAULT_RETRY_AFTER,
        gt=0,
        description="Seconds a client refused at capacity is told to wait.",
    )
    close_timeout: float = Field(
        default=C.DEFAULT_CLOSE_TIMEOUT,
        gt=0,
        description="Seconds a draining server waits for close handshakes and requests in "
        "flight before it drops them.",
    )
    default_priority: Priority = Field(
        default=Priority.NORMAL, description="Priority of a connection without ?priority=."
    )
    redis_url: str | None = Field(
        default=None,
        description="Redis shared by the instances (redis://host:port/db): conversations and "
        "turn locks of every session, and the rate-limit budgets; None: this process's.",
    )
    redis_prefix: str = Field(
        default="llmpool", min_length=1, description="First part of every Redis key."
    )
    turn_lock_ttl: float = Field(
        default=C.DEFAULT_TURN_LOCK_TTL,
        gt=0,
        description="Seconds a turn's lock on its session lasts without renewal (renewed every "
        "third of it); a crashed instance's session is free again after it.",
    )
    log_format: LogFormat = Field(
        default="text", description="`llmpool serve`'s log lines: 'text' or 'json'."
    )
    log_content: bool = Field(
        default=False, description="Whether logs may carry message text (default: never)."
    )
    relay: RelayConfig = Field(
        default_factory=RelayConfig,
        description="The realtime relay's settings (LLMPOOL_SERVER_RELAY_* variables).",
    )
    pool: PoolConfig = Field(
        default_factory=PoolConfig,
        description="The ConnectionManager's settings (LLMPOOL_* variables).",
    )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> ServerConfig:
        """Build a config from ``LLMPOOL_SERVER_*`` variables, ``pool`` from ``LLMPOOL_*``.

        Args:
            environ: the variables to read; ``os.environ`` by default.
            **overrides: fields that take precedence over the environment (e.g. the
                command line's ``port=8001``); ``pool`` may be a ``PoolConfig``.

        Returns:
            The validated config; unset variables keep their defaults.

        Raises:
            pydantic.ValidationError: a value is invalid; an error about a value read from
                the environment is located at the variable's name
                (``loc == ("LLMPOOL_SERVER_PORT",)``).
        """
        env = os.environ if environ is None else environ
        data: dict[str, Any] = {}
        sources: dict[tuple[str | int, ...], str] = {}  # field path -> its variable
        for var, field in SERVER_ENV_VARS.items():
            path = tuple(field.split("."))
            if var in env and path[0] not in overrides:
                if len(path) == 2:  # a relay setting: relay.<field>
                    data.setdefault(path[0], {})[path[1]] = env[var]
                else:
                    data[field] = env[var]
                sources[path] = var
        data.update(overrides)
        if "pool" not in data:
            data["pool"] = PoolConfig.from_env(env)
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            if not sources:
                raise
            raise name_variables(exc, sources) from None


SERVER_ENV_VARS: Final[Mapping[str, str]] = {
    "LLMPOOL_SERVER_HOST": "host",
    "LLMPOOL_SERVER_PORT": "port",
    "LLMPOOL_SERVER_BASE_URL": "base_url",
    "LLMPOOL_SERVER_API_KEY": "api_key",
    "LLMPOOL_SERVER_MODEL": "model",
    "LLMPOOL_SERVER_API": "api",
    "LLMPOOL_SERVER_INSTRUCTIONS": "instructions",
    "LLMPOOL_SERVER_MAX_OUTPUT_TOKENS": "max_output_tokens",
    "LLMPOOL_SERVER_MAX_CONNECTIONS": "max_connections",
    "LLMPOOL_SERVER_CONNECTION_TIMEOUT": "connection_timeout",
    "LLMPOOL_SERVER_MAX_MESSAGE_BYTES": "max_message_bytes",
    "LLMPOOL_SERVER_PING_INTERVAL": "ping_interval",
    "LLMPOOL_SERVER_PING_TIMEOUT": "ping_timeout",
    "LLMPOOL_SERVER_TOKEN": "token",
    "LLMPOOL_SERVER_AUTH_TIMEOUT": "auth_timeout",
    "LLMPOOL_SERVER_SESSION_BUFFER_FRAMES": "session_buffer_frames",
    "LLMPOOL_SERVER_MAX_SESSIONS": "max_sessions",
    "LLMPOOL_SERVER_SESSION_TTL": "session_ttl",
    "LLMPOOL_SERVER_CANCEL_ON_DISCONNECT": "cancel_on_disconnect",
    "LLMPOOL_SERVER_READY_WHEN_FULL": "ready_when_full",
    "LLMPOOL_SERVER_RETRY_AFTER": "retry_after",
    "LLMPOOL_SERVER_CLOSE_TIMEOUT": "close_timeout",
    "LLMPOOL_SERVER_DEFAULT_PRIORITY": "default_priority",
    "LLMPOOL_REDIS_URL": "redis_url",
    "LLMPOOL_SERVER_REDIS_PREFIX": "redis_prefix",
    "LLMPOOL_SERVER_TURN_LOCK_TTL": "turn_lock_ttl",
    "LLMPOOL_SERVER_RELAY_URL": "relay.url",
    "LLMPOOL_SERVER_RELAY_CONNECT_TIMEOUT": "relay.connect_timeout",
    "LLMPOOL_SERVER_RELAY_MAX_BUFFER_BYTES": "relay.max_buffer_bytes",
    "LLMPOOL_SERVER_RELAY_MAX_BUFFER_FRAMES": "relay.max_buffer_frames",
    "LLMPOOL_SERVER_RELAY_MAX_MESSAGE_BYTES": "relay.max_message_bytes",
    "LLMPOOL_SERVER_RELAY_MAX_CLIENT_LAG": "relay.max_client_lag",
    "LLMPOOL_SERVER_RELAY_MAX_SESSION_SECONDS": "relay.max_session_seconds",
    "LLMPOOL_SERVER_RELAY_WARNING_SECONDS": "relay.warning_seconds",
    "LLMPOOL_SERVER_RELAY_SESSION": "relay.session",
    "LLMPOOL_SERVER_RELAY_BETA": "relay.beta",
    "LLMPOOL_SERVER_LOG_FORMAT": "log_format",
    "LLMPOOL_SERVER_LOG_CONTENT": "log_content",
}
"""Each variable and the ``ServerConfig`` field it sets (``relay.x``: ``RelayConfig.x``):
``LLMPOOL_SERVER_*``, and ``LLMPOOL_REDIS_URL`` (shared with the rest of llmpool).
``LLMPOOL_SERVER_RELAY_SESSION`` is JSON."""
