"""The server's HTTP routes: info, health and readiness, metrics, stats, capacity, sessions.

None of them waits on the manager or on a socket, so they answer at once also when every
connection slot is taken. ``/api/*`` needs the bearer token when one is configured (a
session's transcript is user content); the probes and metrics do not (Kubernetes and
Prometheus scrape them without credentials; put them behind the network policy you use).
The chat page and its files are served by ``_page``.
"""

from __future__ import annotations

import math
import time
from typing import Any

import prometheus_client
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

import llmpool

from ._auth import bearer, token_matches
from ._runtime import Lifecycle, Runtime

__all__ = ["Routes"]


class Routes:
    """The HTTP endpoints of one runtime, as Starlette endpoints (bound methods)."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    async def index(self, request: Request) -> Response:
        """``GET /``: what this server is and where its endpoints are."""
        runtime = self._runtime
        return JSONResponse(
            {
                "name": "llmpool.server",
                "version": llmpool.__version__,
                "status": runtime.state.value,
                "model": runtime.config.model,
                "api": runtime.config.api,
                "endpoints": {
                    "chat": "/ws/chat/{session_id}",
                    "chat_page": "/chat",
                    "realtime": "/v1/realtime?model={model}",
                    "health": "/health",
                    "livez": "/livez",
                    "readyz": "/readyz",
                    "metrics": "/metrics",
                    "metrics_json": "/metrics.json",
                    "connection_stats": "/api/connection-stats",
                    "session": "/api/sessions/{session_id}",
                    "connect": "/connect",
                },
            }
        )

    async def health(self, request: Request) -> Response:
        """``GET /health``: 200 while the process serves requests, with its capacity."""
        runtime = self._runtime
        status = "healthy" if runtime.state is Lifecycle.SERVING else runtime.state.value
        return JSONResponse(
            {
                "status": status,
                "timestamp": time.time(),
                "server_info": runtime.metrics.server_info(),
            }
        )

    async def livez(self, request: Request) -> Response:
        """``GET /livez``: 200 while the process answers (a liveness probe)."""
        return JSONResponse({"status": "alive"})

    async def readyz(self, request: Request) -> Response:
        """``GET /readyz``: 200 when new connections are welcome, else 503."""
        runtime = self._runtime
        if runtime.ready:
            return JSONResponse({"status": "ready"})
        reason = "at_capacity" if runtime.state is Lifecycle.SERVING else runtime.state.value
        return JSONResponse({"status": "not_ready", "reason": reason}, status_code=503)

    async def metrics(self, request: Request) -> Response:
        """``GET /metrics``: the Prometheus text format of the app's registry."""
        body = prometheus_client.generate_latest(self._runtime.registry)
        return Response(body, media_type=prometheus_client.CONTENT_TYPE_LATEST)

    async def metrics_json(self, request: Request) -> Response:
        """``GET /metrics.json``: connection counts and session durations as JSON."""
        runtime = self._runtime
        return JSONResponse(runtime.metrics.to_json(runtime.config.connection_timeout))

    async def connect(self, request: Request) -> Response:
        """``POST /connect``: 200 with the capacity left, or 503 with ``Retry-After`` when full.

        Reserves nothing: a client checks before it opens its socket (which may still be
        refused, if others were faster).
        """
        runtime = self._runtime
        metrics = runtime.metrics
        left = max(0, runtime.config.max_connections - metrics.active)
        body: dict[str, Any] = {
            "active_connections": metrics.active,
            "max_connections": runtime.config.max_connections,
            "capacity_left": left,
        }
        if left and runtime.state is Lifecycle.SERVING:
            return JSONResponse({"status": "available", **body})
        wait = math.ceil(runtime.config.retry_after)  # delay-seconds: RFC 9110 §10.2.3
        status = "at_capacity" if runtime.state is Lifecycle.SERVING else runtime.state.value
        return JSONResponse(
            {"status": status, **body}, status_code=503, headers={"Retry-After": str(wait)}
        )

    async def connection_stats(self, request: Request) -> Response:
        """``GET /api/connection-stats``: ``manager.stats()`` as camelCase JSON."""
        if (denied := self._check_token(request)) is not None:
            return denied
        stats = self._runtime.manager.stats()
        return JSONResponse(stats.model_dump(mode="json", by_alias=True))

    async def session(self, request: Request) -> Response:
        """``GET /api/sessions/{session_id}``: a session's transcript and position (reload)."""
        if (denied := self._check_token(request)) is not None:
            return denied
        session = self._runtime.sessions.get(request.path_params["session_id"])
        if session is None:
            return JSONResponse({"error": "no such session"}, status_code=404)
        turn = session.turn
        return JSONResponse(
            {
                "session_id": session.id,
                "last_seq": session.last_seq,
                "first_seq": session.first_seq,
                "turn": None
                if turn is None
                else {"turn_id": turn.id, "partial_text": "".join(turn.parts)},
                "conversation": session.conversation.model_dump(mode="json"),
            }
        )

    def _check_token(self, request: Request) -> Response | None:
        if token_matches(self._runtime.config.token, bearer(request.headers)):
            return None
        return JSONResponse(
            {"error": "unauthorized"},
            status_code=401,
            headers={"WWW-Authenticate": 'Bearer realm="llmpool"'},
        )
