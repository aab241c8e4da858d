"""One ConnectionManager, a few calls with priorities and sessions.

Starts llmpool's simulated provider on a free loopback port (no network, no API key), opens one
``ConnectionManager`` whose clients talk to it, and sends requests from two sessions at three
priorities: through the SDK-shaped façade (``with_options(...).responses.create``) and through
``run``, which hands your function a pooled ``AsyncOpenAI`` client. Then it prints the replies,
what reached the server (the ``x-session-id`` header) and the manager's stats.

Needs the ``testing`` extra (``pip install 'llmpool[testing]'``; ``make demo`` installs it).
Run it with::

    python examples/basic.py
"""

from __future__ import annotations

import json

import anyio
import openai

from llmpool import ConnectionManager, PoolConfig
from llmpool.testing import FaultPlan, SimulatedProvider

MODEL = "gpt-4o-mini"


async def main() -> None:
    # Each reply takes 20-80 ms; no faults.
    plan = FaultPlan(latency_min=0.02, latency_max=0.08, seed=1)
    async with SimulatedProvider(plan) as sim:

        def client_factory(index: int) -> openai.AsyncOpenAI:
            # Called once per pool index. llmpool retries, so the SDK must not (max_retries=0).
            return openai.AsyncOpenAI(base_url=sim.base_url, api_key="sim", max_retries=0)

        config = PoolConfig(pool_size=2, max_concurrency=2)
        async with ConnectionManager(config, client_factory=client_factory) as manager:
            replies: dict[str, str] = {}

            async def ask(label: str, priority: str, session_id: str) -> None:
                view = manager.with_options(priority=priority, session_id=session_id)
                response = await view.responses.create(model=MODEL, input=f"{label}: hello")
                replies[label] = response.output_text

            async def ask_with_run() -> None:
                # run() gives fn a pooled client; fn is called once per attempt.
                response = await manager.run(
                    lambda client: client.responses.create(model=MODEL, input="run: hello"),
                    priority="low",
                    session_id="terminal-2",
                )
                replies["run"] = response.output_text

            # Submitted lowest priority first. The two low requests take the two free slots at
            # once; the other three queue and are granted high first (terminal-1, then
            # terminal-2: round-robin between sessions), then normal.
            async with anyio.create_task_group() as tg:
                tg.start_soon(ask, "t2-low", "low", "terminal-2")
                tg.start_soon(ask_with_run)
                tg.start_soon(ask, "t1-normal", "normal", "terminal-1")
                tg.start_soon(ask, "t1-high", "high", "terminal-1")
                tg.start_soon(ask, "t2-high", "high", "terminal-2")

            for label in sorted(replies):
                print(f"{label:10} -> {replies[label]}")

            # What reached the server, in arrival order, with the session header run() and
            # with_options() added.
            print(f"the server saw {sim.count('/v1/responses')} requests:")
            for record in sim.requests:
                session = record.headers.get("x-session-id")
                print(f"  {record.body['input']:16} x-session-id={session} -> {record.outcome}")

            stats = manager.stats()
            print(f"completed {stats.completed_requests}, failed {stats.failed_requests}")
            print(json.dumps(stats.model_dump(by_alias=True, mode="json"), indent=2))


if __name__ == "__main__":
    anyio.run(main)
