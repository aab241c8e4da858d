"""``llmpool.server``: streaming chat over WebSocket, a hard connection cap, health, metrics.

``create_app(config)`` returns a Starlette app (``/ws/chat/{session_id}``, ``/health``,
``/readyz``, ``/metrics``…; docs/server.md); ``serve(app)`` runs it under uvicorn (asyncio)
or hypercorn (trio) and drains on SIGTERM; ``llmpool serve`` does both from the command line.
Needs the ``server`` extra (``pip install 'llmpool[server]'``); ``import llmpool`` loads none
of it. This subpackage uses llmpool's public API only.
"""

from __future__ import annotations

from llmpool._extras import require

for _module in ("starlette", "uvicorn", "hypercorn", "prometheus_client", "httpx_ws"):
    require(_module, "server", feature="llmpool.server")

from ._app import create_app as create_app  # noqa: E402
from ._config import SERVER_ENV_VARS as SERVER_ENV_VARS  # noqa: E402
from ._config import RelayConfig as RelayConfig  # noqa: E402
from ._config import ServerConfig as ServerConfig  # noqa: E402
from ._logs import JsonFormatter as JsonFormatter  # noqa: E402
from ._protocol import CloseCode as CloseCode  # noqa: E402
from ._protocol import ErrorCode as ErrorCode  # noqa: E402
from ._runtime import Lifecycle as Lifecycle  # noqa: E402
from ._runtime import Runtime as Runtime  # noqa: E402
from ._serve import serve as serve  # noqa: E402

__all__ = [
    "SERVER_ENV_VARS",
    "CloseCode",
    "ErrorCode",
    "JsonFormatter",
    "Lifecycle",
    "RelayConfig",
    "Runtime",
    "ServerConfig",
    "create_app",
    "serve",
]
