"""The processes of the ``relay`` scenario: a fast Realtime upstream, and the measured relays.

``python -m benchmarks.relayproc KIND [UPSTREAM_URL] [--cpu N]`` prints ``{"ready": port}``,
then answers ``{"cpu": time.process_time(), "rss": VmRSS bytes, "preempted": N}`` for each
line on stdin, from a thread that costs nothing while it waits (``preempted``: the times the
event loop's thread was descheduled while runnable, so a window can say whether the core
was its own; ``frames``: the upstream's count of client frames received). Every kind runs
on plain asyncio, no uvloop, as ``llmpool.server.serve`` runs.

Kinds:

- ``upstream``: the benchmark's Realtime endpoint, on the ``websockets`` library's asyncio
  server (any path; no compression, no pings). It speaks just enough Realtime:
  ``session.created`` as soon as the socket opens, then, for each client event carrying
  ``"t"`` (the load generator's ``input_audio_buffer.append``), one small ``bench.echo``
  event with the client's ``event_id`` and ``t``. With ``?model=fuzz`` (the readiness-gate
  fuzz) it sends ``session.created`` after a random 0-``FUZZ_DELAY_MS`` ms instead, answers
  nothing but ``bench.done`` (with ``bench.verdict``: frames counted, out of order, and
  arrived before ``session.created`` was sent), and reads from the first moment, so a frame
  that a relay let through early is seen as early.
- ``floor``: the least a Realtime relay can be: a Starlette WebSocket route under uvicorn with
  ``serve``'s settings (``websockets-sansio``, no per-message deflate, no access log) that
  accepts, opens the upstream socket with httpx-ws (as llmpool does) and forwards both ways
  at once: no gate, no lease, no admission, no usage.
- ``llmpool``: ``llmpool.server.create_app`` + ``serve``, the relay at ``/v1/realtime`` with
  ``ServerConfig(base_url=UPSTREAM_URL)`` (upstream ``<base_url>/realtime``).
"""

from __future__ import annotations

import argparse
import asyncio  # noqa: TID251  measured processes run on asyncio, as uvicorn does
import contextlib
import json
import os
import random
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from .wsproc import rss_bytes, serve_uvicorn

MODEL = "bench-realtime"
FUZZ_MODEL = "fuzz"
FUZZ_DELAY_MS = 50.0
RELAY_MAX_MESSAGE_BYTES = 16 * 1024 * 1024  # RelayConfig's default max_message_bytes
COUNTS = {"frames": 0}  # the upstream's: client frames received by its echo sessions


def _created(model: str) -> str:
    session = {"type": "realtime", "object": "realtime.session", "id": "sess_bench", "model": model}
    return json.dumps({"type": "session.created", "event_id": "event_bench", "session": session})


async def serve_upstream(ready: Callable[[int], None], seed: int = 0) -> None:
    """The benchmark's Realtime upstream (see the module docstring)."""
    from websockets.asyncio.server import ServerConnection, serve

    rng = random.Random(seed)
    created = _created(MODEL)
    fuzz_created = _created(FUZZ_MODEL)

    async def echo(ws: ServerConnection) -> None:
        await ws.send(created)
        async for message in ws:
            COUNTS["frames"] += 1
            event = json.loads(message)
            if "t" in event:
                answer = {"type": "bench.echo", "event_id": event["event_id"], "t": event["t"]}
                await ws.send(json.dumps(answer, separators=(",", ":")))

    async def fuzz(ws: ServerConnection) -> None:
        state = {"created": False}

        async def announce() -> None:
            await asyncio.sleep(rng.uniform(0, FUZZ_DELAY_MS) / 1000)
            state["created"] = True  # before the send: a frame after it is never early
            await ws.send(fuzz_created)

        announcing = asyncio.create_task(announce())
        frames = out_of_order = early = 0
        try:
            async for message in ws:
                event = json.loads(message)
                if not state["created"]:
                    early += 1
                if event.get("type") == "bench.done":
                    verdict = {"frames": frames, "out_of_order": out_of_order, "early": early}
                    await ws.send(json.dumps({"type": "bench.verdict", **verdict}))
                    continue
                out_of_order += event.get("i") != frames
                frames += 1
        finally:
            announcing.cancel()

    async def handler(ws: ServerConnection) -> None:
        path = ws.request.path if ws.request is not None else ""
        await (fuzz if f"model={FUZZ_MODEL}" in path else echo)(ws)

    async with serve(
        handler,
        "127.0.0.1",
        0,
        compression=None,
        max_size=None,
        ping_interval=None,
        backlog=4096,
    ) as server:
        ready(next(iter(server.sockets)).getsockname()[1])
        await server.serve_forever()


def floor_app(upstream_url: str) -> Any:
    """The bare relay: Starlette + httpx-ws, forwarding both ways (see the module docstring)."""
    from contextlib import asynccontextmanager

    import anyio
    import httpx
    from httpx_ws import AsyncWebSocketSession, WebSocketDisconnect, aconnect_ws
    from starlette.applications import Starlette
    from starlette.routing import WebSocketRoute
    from starlette.websockets import WebSocket
    from wsproto.events import BytesMessage, TextMessage

    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        # no pool limit: a relay's upstream sockets stay checked out for the session's life
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=0)
        async with httpx.AsyncClient(limits=limits, timeout=10) as client:
            state["client"] = client
            yield

    async def relay(websocket: WebSocket) -> None:
        await websocket.accept()
        url = f"{upstream_url}/realtime?{websocket.url.query}"
        headers = {"Authorization": "Bearer bench"}

        async def to_upstream(upstream: AsyncWebSocketSession, tg: Any) -> None:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    tg.cancel_scope.cancel()
                    return
                if message.get("text") is not None:
                    await upstream.send_text(message["text"])
                else:
                    await upstream.send_bytes(message.get("bytes") or b"")

        try:
            async with (
                aconnect_ws(
                    url,
                    state["client"],
                    headers=headers,
                    max_message_size_bytes=RELAY_MAX_MESSAGE_BYTES,
                    queue_size=64,
                    keepalive_ping_interval_seconds=None,
                ) as upstream,
                anyio.create_task_group() as tg,
            ):
                tg.start_soon(to_upstream, upstream, tg)
                while True:
                    event = await upstream.receive()
                    if isinstance(event, TextMessage):
                        await websocket.send_text(event.data)
                    elif isinstance(event, BytesMessage):
                        await websocket.send_bytes(bytes(event.data))
        except (WebSocketDisconnect, Exception):  # either side went: end the session
            pass
        finally:
            with contextlib.suppress(Exception):  # the client left first
                await websocket.close()

    return Starlette(routes=[WebSocketRoute("/v1/realtime", relay)], lifespan=lifespan)


async def serve_floor(upstream_url: str, ready: Callable[[int], None]) -> None:
    await serve_uvicorn(floor_app(upstream_url), RELAY_MAX_MESSAGE_BYTES, ready)


async def serve_llmpool(upstream_url: str, ready: Callable[[int], None]) -> None:
    import anyio

    from llmpool import PoolConfig
    from llmpool.server import ServerConfig, create_app, serve

    config = ServerConfig(
        host="127.0.0.1",
        port=0,
        base_url=upstream_url,
        api_key="bench",
        max_connections=4096,
        pool=PoolConfig(max_concurrency=512, pool_size=4),  # a lease per session, never queued
    )
    app = create_app(config)
    async with anyio.create_task_group() as tg:
        ready(await tg.start(serve, app))


def preemptions() -> int:
    """Times the event loop's thread was preempted (``nonvoluntary_ctxt_switches``)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("nonvoluntary_ctxt_switches:"):
                return int(line.split()[1])
    return 0


def control_loop(reply: Callable[[dict[str, Any]], None]) -> None:
    """Answer the control pipe until it closes: CPU, RSS, preemptions of the loop's thread."""
    for _ in sys.stdin:
        stats = {"cpu": time.process_time(), "rss": rss_bytes(), "preempted": preemptions()}
        reply({**stats, "frames": COUNTS["frames"]})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=("upstream", "floor", "llmpool"))
    parser.add_argument("upstream_url", nargs="?", default="", help="the upstream's /v1 URL")
    parser.add_argument("--cpu", type=int, default=None, help="pin this process to one core")
    args = parser.parse_args(argv)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    out = sys.stdout
    sys.stdout = sys.stderr  # nothing else may write to the control channel
    lock = threading.Lock()

    def reply(payload: dict[str, Any]) -> None:
        with lock:
            out.write(json.dumps(payload) + "\n")
            out.flush()

    def ready(port: int) -> None:
        reply({"ready": port})
        threading.Thread(target=control_loop, args=(reply,), daemon=True).start()

    async def run() -> None:
        if args.kind == "upstream":
            await serve_upstream(ready)
        elif args.kind == "floor":
            await serve_floor(args.upstream_url, ready)
        else:
            await serve_llmpool(args.upstream_url, ready)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())


if __name__ == "__main__":
    main()
