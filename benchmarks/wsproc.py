"""The measured processes of the ``ws`` scenario, each alone on its core.

``python -m benchmarks.wsproc KIND BASE_URL [--cpu N]`` prints ``{"ready": port}`` (0 for
``sdk``), then answers one JSON line on stdout for each JSON line on stdin, from a thread
that costs nothing while it waits:

- ``{"op": "stats"}``: ``{"cpu": time.process_time(), "rss": VmRSS bytes}``;
- ``{"op": "streams", "concurrency": C, "turns": K, "message": "..."}`` (``sdk`` only): C
  tasks each stream K turns of one conversation, started together; the answer has the text
  deltas and events read and each stream's milliseconds from its start to its first delta.

Kinds (every one on plain asyncio, no uvloop, as ``llmpool.server.serve`` runs):

- ``sdk``: no server, the openai SDK alone (``AsyncOpenAI(max_retries=0)``,
  ``responses.create(stream=True)`` read to the end): the SDK's own stream cost;
- ``floor``: a bare Starlette WebSocket relay under uvicorn with ``serve``'s settings
  (``websockets-sansio``, no per-message deflate, no access log): per client message, one
  SDK stream, one JSON frame per text delta, then a ``complete`` frame;
- both, like llmpool (``RecoveryPolicy.use_previous_response_id``), keep the transcript and
  send each later turn as its new message plus ``previous_response_id``, so all three send
  the same requests upstream;
- ``llmpool``: ``llmpool.server.create_app`` + ``serve``;
- ``litellm``: LiteLLM's proxy (``litellm --config``, one worker, its defaults: uvloop,
  uvicorn's access log, no database, a master key) and its WebSocket path: the Responses
  API's WebSocket mode (``/v1/responses``). The model is ``hosted_vllm/…`` on the
  upstream so the proxy relays over HTTP streaming (its ``ManagedResponsesWebSocketHandler``;
  an ``openai/…`` model would open a WebSocket to the upstream, which has none); turns chain
  by ``previous_response_id`` (the proxy keeps the history). The ready line has the key.
"""

from __future__ import annotations

import argparse
import asyncio  # noqa: TID251  measured processes run on asyncio, as uvicorn does
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

MODEL = "bench-model"
PING_INTERVAL = 20.0  # ServerConfig's default ping_interval and ping_timeout
MAX_MESSAGE_BYTES = 256 * 1024  # ServerConfig's default


def rss_bytes() -> int:
    """This process's resident set size (``VmRSS`` of ``/proc/self/status``), bytes."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class Transcript:
    """One conversation as llmpool keeps it: every item locally, the server's copy first."""

    def __init__(self) -> None:
        self.items: list[dict[str, str]] = []
        self.previous: str | None = None

    def request(self, message: str) -> dict[str, Any]:
        """The next turn's parameters: the new message, after the last response's id."""
        item = {"role": "user", "content": message}
        self.items.append(item)
        if self.previous is None:
            return {"model": MODEL, "input": list(self.items)}
        return {"model": MODEL, "input": [item], "previous_response_id": self.previous}

    def completed(self, response_id: str, parts: list[str]) -> None:
        self.items.append({"role": "assistant", "content": "".join(parts)})
        self.previous = response_id


def _client(base_url: str) -> Any:
    import openai

    return openai.AsyncOpenAI(base_url=base_url, api_key="bench", max_retries=0)


async def sdk_streams(client: Any, concurrency: int, turns: int, message: str) -> dict[str, Any]:
    """``concurrency`` conversations of ``turns`` streamed turns each, all started together.

    A first turn's time to its first delta counts from the moment all were started (as a
    client's counts from its own send, not from when this loop got round to its request).
    """
    first_ms: list[float] = []
    counts = {"deltas": 0, "events": 0, "streams": 0}
    start = asyncio.Event()
    started = 0.0

    async def conversation() -> None:
        transcript = Transcript()
        await start.wait()
        for turn in range(turns):
            parts: list[str] = []
            t0 = started if turn == 0 else time.perf_counter()
            stream = await client.responses.create(**transcript.request(message), stream=True)
            async for event in stream:
                counts["events"] += 1
                if event.type == "response.output_text.delta":
                    if not parts:
                        first_ms.append((time.perf_counter() - t0) * 1000)
                    parts.append(event.delta)
                elif event.type == "response.completed":
                    transcript.completed(event.response.id, parts)
            counts["deltas"] += len(parts)
            counts["streams"] += 1

    tasks = [asyncio.create_task(conversation()) for _ in range(concurrency)]
    await asyncio.sleep(0)
    started = time.perf_counter()
    start.set()
    await asyncio.gather(*tasks)
    return {**counts, "first_ms": first_ms}


def floor_app(base_url: str) -> Any:
    """The hand-rolled relay: the least a WebSocket-to-SDK-stream relay can cost."""
    from contextlib import asynccontextmanager

    from starlette.applications import Starlette
    from starlette.routing import WebSocketRoute
    from starlette.websockets import WebSocket, WebSocketDisconnect

    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        state["client"] = _client(base_url)
        yield
        await state["client"].close()

    def dump(frame: dict[str, Any]) -> str:
        return json.dumps(frame, ensure_ascii=False, separators=(",", ":"))

    async def relay(websocket: WebSocket) -> None:
        await websocket.accept()
        client = state["client"]
        transcript = Transcript()
        seq = 0
        try:
            while True:
                data = json.loads(await websocket.receive_text())
                if data.get("type") == "ping":
                    await websocket.send_text(dump({"type": "pong", "seq": seq}))
                    continue
                parts: list[str] = []
                request = transcript.request(data["message"])
                stream = await client.responses.create(**request, stream=True)
                async for event in stream:
                    if event.type == "response.output_text.delta":
                        parts.append(event.delta)
                        seq += 1
                        await websocket.send_text(
                            dump({"type": "chunk", "seq": seq, "content": event.delta})
                        )
                    elif event.type == "response.completed":
                        transcript.completed(event.response.id, parts)
                seq += 1
                await websocket.send_text(dump({"type": "complete", "seq": seq}))
        except WebSocketDisconnect:
            pass

    return Starlette(
        routes=[WebSocketRoute("/ws/chat/{session_id:path}", relay)], lifespan=lifespan
    )


async def serve_uvicorn(app: Any, max_size: int, ready: Callable[[int], None]) -> None:
    """Serve a bare relay ``app`` under uvicorn with ``llmpool.server.serve``'s settings
    (sans-I/O ``websockets``, no per-message deflate, no access log) on a free port."""
    import uvicorn

    from llmpool.server._serve import bind

    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            ws="websockets-sansio",
            ws_max_size=max_size,
            ws_ping_interval=PING_INTERVAL,
            ws_ping_timeout=PING_INTERVAL,
            ws_per_message_deflate=False,
            lifespan="on",
            log_config=None,
            access_log=False,
        )
    )
    ready(sock.getsockname()[1])
    await server.serve(sockets=[sock])


async def serve_floor(base_url: str, ready: Callable[[int], None]) -> None:
    await serve_uvicorn(floor_app(base_url), 4 * MAX_MESSAGE_BYTES, ready)


async def serve_llmpool(base_url: str, ready: Callable[[int], None]) -> None:
    import anyio

    from llmpool import PoolConfig
    from llmpool.server import ServerConfig, create_app, serve

    config = ServerConfig(
        host="127.0.0.1",
        port=0,
        base_url=base_url,
        api_key="bench",
        model=MODEL,
        api="responses",
        max_connections=4096,  # >= 1,000 idle sockets, and the 100-session burst
        pool=PoolConfig(max_concurrency=256, pool_size=4),  # a burst of 100 never queues
    )
    app = create_app(config)
    async with anyio.create_task_group() as tg:
        ready(await tg.start(serve, app))


def control_loop(
    reply: Callable[[dict[str, Any]], None],
    streams: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> None:
    """Answer the control pipe until it closes."""
    for line in sys.stdin:
        op = json.loads(line)
        if op["op"] == "streams" and streams is not None:
            reply(streams(op))
        else:
            reply({"cpu": time.process_time(), "rss": rss_bytes()})


def run_litellm(base_url: str, reply: Callable[[dict[str, Any]], None], loop: Any) -> None:
    """LiteLLM's proxy in this process (its CLI, one worker); ready once its port answers."""
    import secrets
    import tempfile

    from litellm.proxy.proxy_cli import run_server

    with socket.socket() as probe:  # a free port (the CLI binds by number)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    key = "sk-" + secrets.token_hex(32)
    os.environ["LITELLM_MASTER_KEY"] = key
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network at start
    config = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)  # noqa: SIM115
    config.write(
        "model_list:\n  - model_name: bench-model\n    litellm_params:\n"
        f"      model: hosted_vllm/{MODEL}\n      api_base: {base_url}\n      api_key: bench\n"
    )
    config.close()

    def announce() -> None:
        while True:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        reply({"ready": port, "key": key})
        loop(reply)

    threading.Thread(target=announce, daemon=True).start()
    argv = ["--config", config.name, "--host", "127.0.0.1", "--port", str(port)]
    run_server.main(args=[*argv, "--num_workers", "1"], standalone_mode=False)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=("sdk", "floor", "llmpool", "litellm"))
    parser.add_argument("base_url", help="the upstream's /v1 URL")
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

    async def run() -> None:
        loop = asyncio.get_running_loop()
        client = _client(args.base_url) if args.kind == "sdk" else None

        def streams(op: dict[str, Any]) -> dict[str, Any]:
            coro = sdk_streams(client, op["concurrency"], op["turns"], op["message"])
            return asyncio.run_coroutine_threadsafe(coro, loop).result()

        def ready(port: int) -> None:
            reply({"ready": port})
            threading.Thread(target=control_loop, args=(reply, streams), daemon=True).start()

        if args.kind == "litellm":
            return
        if args.kind == "floor":
            await serve_floor(args.base_url, ready)
        elif args.kind == "llmpool":
            await serve_llmpool(args.base_url, ready)
        else:
            ready(0)
            await asyncio.Event().wait()  # until terminated

    try:
        if args.kind == "litellm":
            run_litellm(args.base_url, reply, control_loop)
        else:
            asyncio.run(run())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
