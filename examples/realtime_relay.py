"""A realtime relay: browsers talk to llmpool.server's /v1/realtime, which holds the API key.

Starts llmpool's simulated provider (HTTP and Realtime API, on a free loopback port, no
network, no key) whose Realtime session is ready only 0.3 s after the handshake, serves the
app on a free port with the relay's own session policy (instructions set on the server), then
plays a browser: it sends its first frames at once, before the upstream is ready, using the
relay's token where a browser would put the API key. The relay holds them and delivers them
in order after ``session.created`` and the policy's ``session.updated``; the script prints
what the upstream received, in order, and the answer.

Needs the ``server`` and ``testing`` extras (``pip install 'llmpool[server,testing]'``)::

    python examples/realtime_relay.py
"""

from __future__ import annotations

import functools
import json

import anyio
import httpx
from httpx_ws import aconnect_ws
from pydantic import SecretStr

from llmpool.server import RelayConfig, ServerConfig, create_app, serve
from llmpool.testing import RealtimePlan, SimulatedProvider

KEY = "sk-example"  # the provider's key: only the server has it
TOKEN = "relay-token"  # what the browser holds instead


async def main() -> None:
    plan = RealtimePlan(session_created_delay=0.3)
    with SimulatedProvider(api_key=KEY, realtime=plan) as sim:
        config = ServerConfig(
            port=0,
            base_url=sim.base_url,
            api_key=SecretStr(KEY),
            token=SecretStr(TOKEN),
            relay=RelayConfig(session={"instructions": "Answer in one short sentence."}),
        )
        app = create_app(config)
        stop = anyio.Event()
        async with anyio.create_task_group() as tg:
            port = await tg.start(functools.partial(serve, app, shutdown_trigger=stop.wait))
            await browser(port)
            stop.set()
        (session,) = sim.realtime_sessions
        print("the upstream received, in order:")
        for frame in session.frames:
            print(f"  {frame.text}")
        print(f"the upstream saw the key: {session.headers['authorization'] == f'Bearer {KEY}'}")
        print(f"the upstream saw the token: {TOKEN in json.dumps(session.subprotocols)}")


async def browser(port: int) -> None:
    url = f"http://127.0.0.1:{port}/v1/realtime?model=gpt-realtime"
    protocols = ["realtime", f"openai-insecure-api-key.{TOKEN}"]  # as a browser sends it
    async with (
        httpx.AsyncClient() as http,
        aconnect_ws(url, http, subprotocols=protocols, keepalive_ping_interval_seconds=None) as ws,
    ):
        # Sent at once: the upstream is not ready yet, and the relay holds these.
        item = {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "Hi!"}],
        }
        await ws.send_text(json.dumps({"type": "conversation.item.create", "item": item}))
        await ws.send_text(json.dumps({"type": "response.create"}))
        text = []
        while True:
            event = json.loads(await ws.receive_text())
            if event["type"] == "response.output_text.delta":
                text.append(event["delta"])
            elif event["type"] in ("session.created", "session.updated"):
                print(f"browser got {event['type']}")
            elif event["type"] == "response.done":
                usage = event["response"]["usage"]["total_tokens"]
                print(f"browser got the answer: {''.join(text)!r} ({usage} tokens)")
                return


if __name__ == "__main__":
    anyio.run(main)
