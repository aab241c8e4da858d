"""Streaming through the pool: ``responses.create(stream=True)`` returns a ``PooledStream``.

Opening the stream is one attempt under the retry policy and ``request_timeout``: here the
simulated provider answers the first request with a 503, llmpool retries it, and the second
attempt opens the stream. Once open, the stream holds its concurrency slot until it is
exhausted or closed (``async with`` closes it), and is never retried. The events are the SDK's
own ``ResponseStreamEvent`` objects.

Needs the ``testing`` extra (``pip install 'llmpool[testing]'``; ``make demo`` installs it).
Run it with::

    python examples/streaming.py
"""

from __future__ import annotations

import anyio
import openai

from llmpool import ConnectionManager, PoolConfig, RetryPolicy
from llmpool.testing import FaultPlan, ScriptedFault, SimulatedProvider


async def main() -> None:
    # The first request gets a 503; SSE events are sent 20 ms apart.
    plan = FaultPlan(stream_chunk_delay=0.02, scripted=[ScriptedFault(kind="status", status=503)])
    async with SimulatedProvider(plan) as sim:

        def client_factory(index: int) -> openai.AsyncOpenAI:
            return openai.AsyncOpenAI(base_url=sim.base_url, api_key="sim", max_retries=0)

        # Short backoff so the example is quick: 0.1 s + up to 0.1 s of jitter.
        config = PoolConfig(
            pool_size=1,
            max_concurrency=1,
            retry=RetryPolicy(initial_backoff=0.1, jitter=0.1),
        )
        async with ConnectionManager(config, client_factory=client_factory) as manager:
            view = manager.with_options(priority="high", session_id="terminal-1")
            stream = await view.responses.create(
                model="gpt-4o-mini",
                input="Stream a short greeting, please.",
                stream=True,
            )
            async with stream:
                print(f"stream {stream.request_id} open; slots in use:", end=" ")
                print(manager.stats().active_connections)
                async for event in stream:
                    if event.type == "response.output_text.delta":
                        print(event.delta, end="", flush=True)
                    elif event.type == "response.completed":
                        print(f"\ncompleted: {event.response.id}")
            stats = manager.stats()
            print(
                f"after close: slots in use {stats.active_connections}, "
                f"retries {stats.retries}, completed {stats.completed_requests}"
            )
            print("server outcomes:", [record.outcome for record in sim.requests])


if __name__ == "__main__":
    anyio.run(main)
