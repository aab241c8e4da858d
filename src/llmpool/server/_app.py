"""``create_app``: the Starlette app of ``llmpool.server``, its lifespan owning the manager."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING

import anyio
import openai
import prometheus_client
from starlette.applications import Starlette
from starlette.routing import Route, WebSocketRoute

from llmpool import ClientFactory, ConnectionManager
from llmpool._extras import require
from llmpool.instrumentation.prometheus import PrometheusInstrument

from . import _constants as C
from ._config import ServerConfig
from ._page import ChatPage
from ._relay import relay_endpoint
from ._routes import Routes
from ._runtime import Runtime
from ._shared import SharedSessions
from ._socket import chat_endpoint

if TYPE_CHECKING:
    from llmpool.redis import RedisState

__all__ = ["create_app"]


def _client_factory(config: ServerConfig) -> ClientFactory | None:
    """The pooled clients for ``config.base_url``/``api_key``; ``None``: the SDK's defaults."""
    if config.base_url is None and config.api_key is None:
        return None
    base_url, key = config.base_url, config.api_key

    def factory() -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(
            base_url=base_url,
            api_key=None if key is None else key.get_secret_value(),
            max_retries=0,  # llmpool retries
        )

    return factory


def _redis_state(config: ServerConfig) -> RedisState:
    """``llmpool.redis`` on ``config.redis_url`` (not opened yet)."""
    require("coredis", "redis", feature="llmpool.server with redis_url")
    from llmpool.redis import RedisState

    assert config.redis_url is not None
    return RedisState(config.redis_url, prefix=config.redis_prefix)


def create_app(
    config: ServerConfig | None = None,
    *,
    manager: ConnectionManager | None = None,
    client_factory: ClientFactory | None = None,
) -> Starlette:
    """The chat server as a Starlette app (routes in docs/server.md).

    Serve it with ``llmpool.server.serve`` (uvicorn on asyncio, hypercorn on trio, draining
    on SIGTERM), or mount it in an app of your own. Its lifespan opens the manager (unless
    given one) and the task group that runs every turn; on shutdown it drains
    (``Runtime.drain``) and closes what it opened.

    Args:
        config: the settings; ``ServerConfig()`` by default (see ``ServerConfig.from_env``).
        manager: a ``ConnectionManager`` to share with the rest of the application. The app
            does not enter or close it: it must be open (``async with``) while the app
            serves. The app adds its ``PrometheusInstrument`` to it while serving.
        client_factory: builds the pooled clients of the manager the app creates (with
            ``config.pool``); default: ``config.base_url``/``api_key``, or the SDK's
            ``OPENAI_*`` variables.

    Returns:
        The app; ``app.state.llmpool`` is its ``Runtime`` (``drain()``, ``metrics``,
        ``sessions``).

    Raises:
        ValueError: both ``manager`` and ``client_factory`` are given.
    """
    config = ServerConfig() if config is None else config
    if manager is not None and client_factory is not None:
        raise ValueError("create_app: pass manager= or client_factory=, not both")
    registry = prometheus_client.CollectorRegistry()
    instrument = PrometheusInstrument(registry)
    owned = manager is None
    # With redis_url, sessions are shared; so are the budgets of a manager the app creates
    # (a manager given is the caller's: its stores are its own).
    redis = None if config.redis_url is None else _redis_state(config)
    if manager is None:
        manager = ConnectionManager(
            config.pool,
            client_factory=client_factory or _client_factory(config),
            instruments=[instrument],
            state=None if redis is None else redis.stores(),
        )
    runtime = Runtime(config, manager, registry)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            if redis is not None:
                await stack.enter_async_context(redis)  # before the manager that uses it
            if owned:
                await stack.enter_async_context(runtime.manager)
            else:
                runtime.manager.add_instrument(instrument)
                stack.callback(runtime.manager.remove_instrument, instrument)
            if redis is not None:
                runtime.runner.shared = SharedSessions(
                    redis, ttl=config.turn_lock_ttl, timeout=C.DEFAULT_STORE_TIMEOUT
                )
            stack.push_async_callback(runtime.aclose)
            task_group = await stack.enter_async_context(anyio.create_task_group())
            runtime.start(task_group)
            try:
                yield
            finally:
                # Under `serve` the drain has run already; under a bare ASGI server its
                # sockets are closed by now, and the turns still get their grace.
                await runtime.drain()

    routes = Routes(runtime)
    page = ChatPage()
    app = Starlette(
        routes=[
            Route("/", routes.index),
            Route("/chat", page.page),
            Route("/static/{name}", page.asset),
            Route("/health", routes.health),
            Route("/livez", routes.livez),
            Route("/readyz", routes.readyz),
            Route("/metrics", routes.metrics),
            Route("/metrics.json", routes.metrics_json),
            Route("/connect", routes.connect, methods=["POST"]),
            Route("/api/connection-stats", routes.connection_stats),
            Route("/api/sessions/{session_id:path}", routes.session),
            WebSocketRoute("/ws/chat/{session_id:path}", functools.partial(chat_endpoint, runtime)),
            WebSocketRoute("/v1/realtime", functools.partial(relay_endpoint, runtime)),
        ],
        lifespan=lifespan,
    )
    app.state.llmpool = runtime
    return app
