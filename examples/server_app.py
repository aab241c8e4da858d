"""llmpool.server embedded in an application with its own routes, sharing one manager.

The application has a JSON endpoint of its own (``POST /api/summarize``) and the chat
WebSocket of ``llmpool.server`` (``/ws/chat/{session_id}``); both go through the same
``ConnectionManager``, so they share one concurrency limit, one queue and one budget. It starts
llmpool's simulated provider on a free loopback port (no network, no API key), serves the app
on a free port, then plays a client: one chat turn over the WebSocket, one summary over HTTP,
and the server's metrics, and stops (draining first). ``--serve`` keeps serving until Ctrl-C:
it listens on port 8000: try ``websocat ws://127.0.0.1:8000/ws/chat/me`` and type
``{"message": "hi"}``.

Needs the ``server`` and ``testing`` extras (``pip install 'llmpool[server,testing]'``)::

    python examples/server_app.py
"""

from __future__ import annotations

import functools
import json
import sys

import anyio
import httpx
import openai
import websockets
from starlette.requests import Request
from starlette.responses import JSONResponse

from llmpool import ConnectionManager, PoolConfig
from llmpool.server import ServerConfig, create_app, serve
from llmpool.testing import SimulatedProvider

MODEL = "gpt-4o-mini"
KEY = "sk-example"


async def main(serve_forever: bool) -> None:
    with SimulatedProvider(api_key=KEY) as sim:

        def factory() -> openai.AsyncOpenAI:
            return openai.AsyncOpenAI(base_url=sim.base_url, api_key=KEY, max_retries=0)

        async with ConnectionManager(
            PoolConfig(max_concurrency=4), client_factory=factory
        ) as manager:
            port = 8000 if serve_forever else 0  # 0: any free port
            app = create_app(ServerConfig(port=port, model=MODEL), manager=manager)

            async def summarize(request: Request) -> JSONResponse:
                body = await request.json()
                view = manager.with_options(priority="low", session_id="batch")
                response = await view.responses.create(model=MODEL, input=body["text"])
                return JSONResponse({"summary": response.output_text})

            app.add_route("/api/summarize", summarize, methods=["POST"])
            if serve_forever:  # until SIGTERM or Ctrl-C, which drain first
                await serve(app)
                return
            stop = anyio.Event()
            async with anyio.create_task_group() as tg:
                port = await tg.start(functools.partial(serve, app, shutdown_trigger=stop.wait))
                print(f"serving http://127.0.0.1:{port}")
                await _client(port)
                stop.set()
            print(f"manager: {manager.stats().completed_requests} requests completed")


async def _client(port: int) -> None:
    async with websockets.connect(f"ws://127.0.0.1:{port}/ws/chat/example") as ws:
        await ws.send(json.dumps({"message": "Hello from the example"}))
        text = []
        while True:
            frame = json.loads(await ws.recv())
            if frame["type"] == "chunk":
                text.append(frame["content"])
            elif frame["type"] in ("complete", "error"):
                break
        print(f"chat: {''.join(text)!r} ({frame['type']}, seq {frame['seq']})")
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        summary = (await http.post("/api/summarize", json={"text": "a long text"})).json()
        print(f"summary: {summary['summary']!r}")
        connections = (await http.get("/metrics.json")).json()["connections"]
        print(f"connections: total {connections['total']}, active {connections['active']}")


if __name__ == "__main__":
    anyio.run(main, "--serve" in sys.argv[1:])
