"""A user's file: builds the server's config and app, checked by mypy --strict without the
pydantic plugin (``make typecheck``)."""

from __future__ import annotations

from typing import assert_type

import anyio
from pydantic import SecretStr
from starlette.applications import Starlette

from llmpool import PoolConfig
from llmpool.server import CloseCode, ErrorCode, Runtime, ServerConfig, create_app, serve


def build() -> Starlette:
    config = ServerConfig(max_connections=50, token=SecretStr("t"), pool=PoolConfig())
    variant = config.model_copy(update={"port": 0})
    from_env: ServerConfig = ServerConfig.from_env({"LLMPOOL_SERVER_PORT": "8001"}, port=9)
    app = create_app(variant)
    runtime = app.state.llmpool
    assert isinstance(runtime, Runtime)
    assert_type(runtime.config.max_connections, int)
    code: int = CloseCode.TRY_AGAIN_LATER
    error: str = ErrorCode.SESSION_BUSY
    del code, error
    del from_env
    return app


async def run(app: Starlette) -> None:
    stop = anyio.Event()
    async with anyio.create_task_group() as tg:
        port: int = await tg.start(serve, app, None, stop.wait)
        assert port > 0
        stop.set()
