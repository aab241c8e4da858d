"""``--instances``: one instance, a worker process with its own manager on the shared Redis.

``python -m llmpool._cli.demo._instance SPEC`` (``_cluster`` starts it; ``SPEC`` is a JSON
object: ``options``, ``index``, ``redis_url``, ``base_url``, ``api_key``). The worker opens a
``RedisState`` and a ``ConnectionManager`` on its stores, prints ``{"ready": pid}`` and waits
for one line on stdin, ``{"end": t}`` (``time.monotonic()`` seconds, one clock for every
process of the machine). Its callers then send requests back to back until ``t``; the requests
queued then finish; the last line on stdout is its report (``InstanceReport.from_json``):
counts, failures by exception type, and each HTTP attempt's (sent, answered) times from its
transport. Above ``_options`` only; imports ``llmpool.redis`` (the ``redis`` extra).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Final

import anyio
import httpx2
import openai
from openai.types.responses import Response

from llmpool import ConnectionManager, ManagerView, PoolConfig, RateLimitPolicy
from llmpool.redis import RedisState, SharedBudgetPolicy

from ._options import ClusterOptions

__all__ = ["READY_TIMEOUT", "main"]

READY_TIMEOUT: Final = 60.0
"""Seconds a ready instance waits for its start line before it gives up."""
_FAILURE_PAUSE: Final = 0.1  # seconds a caller waits after a failure: no busy loop


class _TimedTransport(httpx2.AsyncBaseTransport):
    """The SDK's transport (httpx2, openai's HTTP client), timing each attempt.

    Records when each attempt was sent and when its answer's head arrived.
    """

    def __init__(self, attempts: list[tuple[float, float]]) -> None:
        self._inner = httpx2.AsyncHTTPTransport()
        self._attempts = attempts

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        sent = time.monotonic()
        try:
            return await self._inner.handle_async_request(request)
        finally:
            self._attempts.append((sent, time.monotonic()))

    async def aclose(self) -> None:
        await self._inner.aclose()


@dataclass
class _Counts:
    completed: int = 0
    failed: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    attempts: list[tuple[float, float]] = field(default_factory=list)


def _write(line: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


async def _caller(
    view: ManagerView, options: ClusterOptions, name: str, deadline: float, counts: _Counts
) -> None:
    sent = 0
    while anyio.current_time() < deadline:
        sent += 1
        try:
            # ``object``: checked, not assumed (SSE text to a non-streamed call is a str).
            response: object = await view.responses.create(
                model=options.model,
                input=f"{name}: request {sent}",
                max_output_tokens=options.max_output_tokens,
            )
        except Exception as exc:  # counted and shown by type; the caller goes on
            counts.failed += 1
            counts.errors[type(exc).__name__] += 1
            await anyio.sleep(_FAILURE_PAUSE)
            continue
        if isinstance(response, Response):
            counts.completed += 1
        else:  # an answer of another type (SSE text to a non-streamed call) is a failure
            counts.failed += 1
            counts.errors["UnexpectedResponse"] += 1


async def _run(spec: dict[str, Any]) -> None:
    options = ClusterOptions(**spec["options"])
    name = f"instance-{spec['index']}"
    counts = _Counts()

    def factory(index: int) -> openai.AsyncOpenAI:
        del index  # every client is alike
        http = openai.DefaultAsyncHttpxClient(transport=_TimedTransport(counts.attempts))
        return openai.AsyncOpenAI(
            base_url=spec["base_url"], api_key=spec["api_key"], max_retries=0, http_client=http
        )

    config = PoolConfig(
        max_concurrency=options.callers,
        rate_limit=RateLimitPolicy(requests_per_minute=options.rpm, tokens_per_minute=options.tpm),
    )
    budget = SharedBudgetPolicy(concurrency=options.concurrency)
    async with (
        RedisState(spec["redis_url"], prefix=options.prefix, budget=budget) as redis,
        ConnectionManager(config, client_factory=factory, state=redis.stores()) as manager,
    ):
        _write({"ready": os.getpid()})
        with anyio.fail_after(READY_TIMEOUT):
            line = await anyio.to_thread.run_sync(sys.stdin.readline)
        # The parent's instant, on this process's clock (trio's clock has an offset of its own).
        deadline = anyio.current_time() + (float(json.loads(line)["end"]) - time.monotonic())
        async with anyio.create_task_group() as tg:
            for caller in range(1, options.callers + 1):
                view = manager.with_options(session_id=f"{name}-caller-{caller}")
                tg.start_soon(_caller, view, options, f"{name}-caller-{caller}", deadline, counts)
    _write(
        {
            "pid": os.getpid(),
            "completed": counts.completed,
            "failed": counts.failed,
            "errors": dict(sorted(counts.errors.items())),
            "attempts": counts.attempts,
        }
    )


def main(argv: list[str] | None = None) -> int:
    """Run one instance from its JSON spec (``argv[0]``); 0 when it reported."""
    spec = json.loads((sys.argv[1:] if argv is None else argv)[0])
    anyio.run(_run, spec, backend=spec["options"]["backend"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
