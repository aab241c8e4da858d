"""Prometheus metrics of a ConnectionManager, served on /metrics.

Starts llmpool's simulated provider on a free loopback port (no network, no API key) with
two scripted faults: the first request gets a 429 (retried after its ``retry-after-ms``), the
fifth a 400 (not retried). A ``ConnectionManager`` with a ``PrometheusInstrument`` sends five
Responses API calls, then the metrics are served by prometheus_client's own exposition
(``start_http_server``) on ``127.0.0.1`` at a free port, printed as ``serving <url>``; it
serves until you press Enter (or stdin closes). Try ``curl <url>`` meanwhile.

Needs the ``testing`` and ``prometheus`` extras
(``pip install 'llmpool[testing,prometheus]'``). Run it with::

    python examples/prometheus.py
"""

from __future__ import annotations

import sys

import anyio
import anyio.to_thread
import openai
import prometheus_client

from llmpool import ConnectionManager, PoolConfig, RetryPolicy
from llmpool.instrumentation.prometheus import PrometheusInstrument
from llmpool.testing import FaultPlan, ScriptedFault, SimulatedProvider

MODEL = "gpt-4o-mini"


async def main() -> None:
    plan = FaultPlan(
        latency_min=0.01,
        latency_max=0.03,
        scripted=[
            ScriptedFault(kind="rate_limit", retry_after_ms=50),  # request 1, attempt 1
            ScriptedFault(kind="ok"),  # request 1, attempt 2
            ScriptedFault(kind="ok"),
            ScriptedFault(kind="ok"),
            ScriptedFault(kind="ok"),
            ScriptedFault(kind="status", status=400),  # request 5: not retried
        ],
        seed=1,
    )
    # Its own registry, so nothing else in the process shows up; the default is the global
    # prometheus_client.REGISTRY, which start_http_server serves without the argument.
    registry = prometheus_client.CollectorRegistry()
    instrument = PrometheusInstrument(registry)

    async with SimulatedProvider(plan) as sim:

        def client_factory(index: int) -> openai.AsyncOpenAI:
            return openai.AsyncOpenAI(base_url=sim.base_url, api_key="sim", max_retries=0)

        config = PoolConfig(pool_size=2, max_concurrency=2, retry=RetryPolicy(jitter=0))
        async with ConnectionManager(
            config, client_factory=client_factory, instruments=[instrument]
        ) as manager:
            for n in range(1, 6):
                view = manager.with_options(priority="high" if n == 1 else "normal")
                try:
                    response = await view.responses.create(model=MODEL, input=f"question {n}")
                    print(f"request {n}: {response.output_text}")
                except openai.BadRequestError as exc:
                    print(f"request {n}: failed with {exc.status_code}")

    server, thread = prometheus_client.start_http_server(0, addr="127.0.0.1", registry=registry)
    print(f"serving http://127.0.0.1:{server.server_port}/metrics", flush=True)
    await anyio.to_thread.run_sync(sys.stdin.readline)  # Enter, or EOF, stops it
    server.shutdown()
    server.server_close()
    thread.join()


if __name__ == "__main__":
    anyio.run(main)
