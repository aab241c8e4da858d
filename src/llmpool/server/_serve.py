"""``serve``: run the app under uvicorn (asyncio) or hypercorn (trio), draining on SIGTERM.

ASGI servers close WebSockets as soon as their own shutdown starts (uvicorn sends 1012 to
every socket before the app's lifespan hears of it), so a graceful drain has to come first:
``serve`` waits for SIGTERM/SIGINT (or ``shutdown_trigger``), runs ``Runtime.drain`` (readiness
fails, running turns finish within the grace, idle sockets get 1012), and only then lets the
server shut down.

uvicorn runs with its sans-I/O ``websockets`` protocol, which applies write back-pressure and
closes a peer that does not answer a ping within ``ping_timeout``; hypercorn sends pings
every ``ping_interval`` and drops a connection from which nothing was read for
``ping_interval + ping_timeout`` seconds (its ``read_timeout``).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import socket
from collections.abc import Awaitable, Callable, Iterator

import anyio
import sniffio
from anyio.abc import TaskStatus
from starlette.applications import Starlette

from ._config import ServerConfig
from ._logs import log_event
from ._runtime import Runtime

__all__ = ["bind", "serve"]


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host``:``port`` (0: a free port), IPv4 or IPv6."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


async def _signalled() -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for _ in signals:
            return


async def serve(
    app: Starlette,
    config: ServerConfig | None = None,
    *,
    shutdown_trigger: Callable[[], Awaitable[object]] | None = None,
    task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` (from ``create_app``) until asked to stop, then drain and stop.

    Runs under uvicorn when called on asyncio, under hypercorn on trio.

    Args:
        app: the app; its ``app.state.llmpool`` runtime drains before the server stops.
        config: host, port, ping and size settings; default the app's own.
        shutdown_trigger: returns when the server should stop; default: SIGTERM or SIGINT
            (signals can only be received on the main thread).
        task_status: for ``await task_group.start(serve, app)``: started with the bound
            port once the socket listens (connections then wait until the app serves).

    Raises:
        OSError: the address cannot be bound.
        MissingExtraError: uvicorn or hypercorn is not installed (the ``server`` extra).
    """
    runtime: Runtime = app.state.llmpool
    config = runtime.config if config is None else config
    trigger = _signalled if shutdown_trigger is None else shutdown_trigger

    async def drained() -> None:
        await trigger()
        await runtime.drain()

    with contextlib.closing(bind(config.host, config.port)) as sock:
        port = sock.getsockname()[1]
        host = f"[{config.host}]" if ":" in config.host else config.host
        url = f"http://{host}:{port}"
        log_event("listening", url=url, chat_page=f"{url}/chat", model=config.model)
        if sniffio.current_async_library() == "trio":
            await _hypercorn(app, config, sock, drained, port, task_status)
        else:
            await _uvicorn(app, config, sock, drained, port, task_status)


def _max_size(config: ServerConfig) -> int:
    # Above the chat's limit, so the app reads an oversized frame and answers message_too_big
    # before closing with 1009 (frames beyond this the server itself closes with 1009); at
    # least the relay's limit (an audio append may carry 15 MiB).
    return max(4 * config.max_message_bytes, config.relay.max_message_bytes)


async def _uvicorn(
    app: Starlette,
    config: ServerConfig,
    sock: socket.socket,
    drained: Callable[[], Awaitable[None]],
    port: int,
    task_status: TaskStatus[int],
) -> None:
    import uvicorn

    class _Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield  # serve() receives the signals, to drain before uvicorn's shutdown

    server = _Server(
        uvicorn.Config(
            app,
            ws="websockets-sansio",
            ws_max_size=_max_size(config),
            ws_ping_interval=config.ping_interval,
            ws_ping_timeout=config.ping_timeout,
            ws_per_message_deflate=False,  # chunks are small: compression costs more CPU
            lifespan="on",
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=math.ceil(config.close_timeout),
        )
    )

    async def stop() -> None:
        await drained()
        server.should_exit = True

    async with anyio.create_task_group() as tg:
        tg.start_soon(stop)
        task_status.started(port)
        await server.serve(sockets=[sock])
        tg.cancel_scope.cancel()


async def _hypercorn(
    app: Starlette,
    config: ServerConfig,
    sock: socket.socket,
    drained: Callable[[], Awaitable[None]],
    port: int,
    task_status: TaskStatus[int],
) -> None:
    import hypercorn.config
    import hypercorn.trio

    settings = hypercorn.config.Config()
    fd = os.dup(sock.fileno())  # hypercorn owns (and closes) its copy
    settings.bind = [f"fd://{fd}"]
    settings.websocket_ping_interval = config.ping_interval
    settings.read_timeout = math.ceil(config.ping_interval + config.ping_timeout)
    settings.websocket_max_message_size = _max_size(config)
    settings.graceful_timeout = config.close_timeout
    settings.accesslog = None
    settings.errorlog = logging.getLogger("hypercorn.error")  # the application's logging
    task_status.started(port)
    await hypercorn.trio.serve(app, settings, shutdown_trigger=drained)  # type: ignore[arg-type]
