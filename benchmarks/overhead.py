"""llmpool's added CPU per request over the raw SDK, both on an in-process mock transport.

A throughput grid over loopback cannot resolve a few per cent of CPU on a shared machine
(see NOTES.md). This measures the difference directly, in one process:

- four variants per cell (five at C=1), all on the same ``mock.CannedTransport`` (no sockets):
  ``transport`` (the transport alone: ``handle_async_request`` and its body read to the end),
  ``sdk`` (a raw ``openai.AsyncOpenAI(max_retries=0, http_client=httpx2.AsyncClient(
  transport=...))``), ``llmpool`` (the façade of ``ConnectionManager(PoolConfig(pool_size=1,
  max_concurrency=C))`` whose factory builds the same client) and ``llmpool-run``
  (``manager.run(fn)`` with ``fn`` making the SDK call: it splits llmpool's cost between
  ``run`` and the façade), each making the same call with the same parameters; at C=1 also
  ``sdk-again``, a second raw client: the A/A control, which shows what the method reads
  when there is no difference (its interval is the resolution);
- cells: ``responses.create`` and ``chat.completions.create``, JSON and ``stream=True`` read to
  the end, at C=1 (sequential) and C>1 (that many tasks sharing the batch), plus
  ``run(no-op)`` (``manager.run(fn)`` against ``await fn(client)``);
- each batch runs N requests and reads ``time.process_time()`` at its edges; N is calibrated
  per cell after a warm-up so the slowest variant's batch lasts about ``batch_seconds``;
- the variants of a cell run back to back, in the order of a balanced Latin square row that
  changes with every alternation (``design.balanced_order``: each variant takes each place
  equally often, and ``sdk`` runs before ``llmpool`` half of the time), so drift and the other
  jobs on the machine bill all of them alike; ``gc.collect()`` before every batch, the warmed-up
  heap frozen (``gc.freeze()``), the collector left on during batches (each variant pays
  for the garbage it makes).

Per alternation k: ``added_k = llmpool_k - sdk_k`` and ``own_k = sdk_k - transport_k`` (the
SDK's own cost, without the mock's), both µs per request, and ``fraction_k = added_k /
own_k``. Reported: medians with a distribution-free 95 % interval for the median from order
statistics (``design.median_interval``).
"""

from __future__ import annotations

import contextlib
import gc
import math
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import anyio
import httpx2
import openai

import llmpool

from . import mock
from .design import balanced_order, iqr, median_interval

Call = Callable[[Any], Awaitable[int]]
"""One request against a target (a client, a manager or a transport); returns events read."""

BASE_URL: Final = "http://canned.invalid/v1"  # never resolved: the transport answers
PROMPT: Final = "Say hello."


def expected_events(api: str, stream: bool) -> int:
    """Events one request yields to its reader (1 for a JSON answer)."""
    if not stream:
        return 1
    return len(mock.sse_body(api)) - (api == "chat")  # ``[DONE]`` ends the stream, unseen


def api_call(api: str, stream: bool) -> Call:
    """The request every variant makes, on an ``AsyncOpenAI`` or a ``ConnectionManager``."""
    messages: Any = [{"role": "user", "content": PROMPT}]

    async def read(events: Any) -> int:
        count = 0
        async with events:
            async for _ in events:
                count += 1
        return count

    async def responses_json(target: Any) -> int:
        reply = await target.responses.create(model=mock.MODEL, input=PROMPT)
        return int(reply.status == "completed")

    async def responses_stream(target: Any) -> int:
        return await read(
            await target.responses.create(model=mock.MODEL, input=PROMPT, stream=True)
        )

    async def chat_json(target: Any) -> int:
        reply = await target.chat.completions.create(model=mock.MODEL, messages=messages)
        return int(reply.choices[0].finish_reason == "stop")

    async def chat_stream(target: Any) -> int:
        events = await target.chat.completions.create(
            model=mock.MODEL,
            messages=messages,
            stream=True,
            stream_options={"include_usage": True},
        )
        return await read(events)

    calls = {
        ("responses", False): responses_json,
        ("responses", True): responses_stream,
        ("chat", False): chat_json,
        ("chat", True): chat_stream,
    }
    return calls[api, stream]


def transport_call(transport: mock.CannedTransport) -> Call:
    """The mock's own share of a request: one answer, its body read chunk by chunk."""
    request = httpx2.Request("POST", "http://canned.invalid" + transport.path, content=b"{}")

    async def bare(target: Any) -> int:
        response = await target.handle_async_request(request)
        async for _ in response.stream:
            pass
        return expected_events(transport.api, transport.stream)

    return bare


async def _noop(client: openai.AsyncOpenAI) -> None:
    return None


async def _direct(client: Any) -> int:
    await _noop(client)
    return 1


async def _through_run(manager: Any) -> int:
    await manager.run(_noop)
    return 1


def _run_of(call: Call) -> Call:
    """``call`` made inside ``manager.run`` (a stream is read to its end inside ``fn``)."""

    async def through_run(manager: Any) -> int:
        count: int = await manager.run(call)
        return count

    return through_run


@dataclass
class Cell:
    """One measured pairing: its variants as (call, target) and the samples they gave."""

    api: str  # "responses", "chat" or "run"
    stream: bool
    concurrency: int
    variants: dict[str, tuple[Call, Any]]
    expected: int  # events per request
    requests: int = 0  # per batch, set by the calibration
    samples: dict[str, list[float]] = field(default_factory=dict)  # µs per request
    gc_collections: dict[str, list[int]] = field(default_factory=dict)  # per generation

    @property
    def key(self) -> str:
        mode = "stream" if self.stream else "json"
        return "run(no-op) C=1" if self.api == "run" else f"{self.api} {mode} C={self.concurrency}"


async def batch(call: Call, target: Any, requests: int, concurrency: int) -> tuple[float, int]:
    """Run ``requests`` calls, ``concurrency`` at a time; (CPU seconds, events read)."""
    counts = [0] * concurrency

    async def worker(slot: int, share: int) -> None:
        for _ in range(share):
            counts[slot] += await call(target)

    start = time.process_time()
    if concurrency == 1:
        await worker(0, requests)
    else:
        async with anyio.create_task_group() as tg:
            for slot in range(concurrency):
                tg.start_soon(worker, slot, requests // concurrency)
    return time.process_time() - start, sum(counts)


def _client(transport: mock.CannedTransport) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        api_key="sk-bench",
        base_url=BASE_URL,
        max_retries=0,
        http_client=httpx2.AsyncClient(transport=transport),
    )


def _factory(transport: mock.CannedTransport) -> Callable[[], openai.AsyncOpenAI]:
    return lambda: _client(transport)


async def _open_cells(
    stack: contextlib.AsyncExitStack, concurrencies: Sequence[int]
) -> tuple[list[Cell], list[mock.CannedTransport]]:
    cells: list[Cell] = []
    transports: list[mock.CannedTransport] = []
    for concurrency in concurrencies:
        for stream in (False, True):
            for api in mock.APIS:
                transport = mock.CannedTransport(api, stream=stream)
                transports.append(transport)
                client = _client(transport)
                stack.push_async_callback(client.close)
                config = llmpool.PoolConfig(pool_size=1, max_concurrency=concurrency)
                manager = await stack.enter_async_context(
                    llmpool.ConnectionManager(config, client_factory=_factory(transport))
                )
                call = api_call(api, stream)
                variants = {
                    "transport": (transport_call(transport), transport),
                    "sdk": (call, client),
                    "llmpool": (call, manager),
                    "llmpool-run": (_run_of(call), manager),
                }
                if concurrency == 1:  # the null control: a second raw client, same calls
                    again = _client(transport)
                    stack.push_async_callback(again.close)
                    variants["sdk-again"] = (call, again)
                cells.append(Cell(api, stream, concurrency, variants, expected_events(api, stream)))
    transport = mock.CannedTransport("responses", stream=False)  # never called: fn is a no-op
    client = _client(transport)
    stack.push_async_callback(client.close)
    manager = await stack.enter_async_context(
        llmpool.ConnectionManager(
            llmpool.PoolConfig(pool_size=1), client_factory=_factory(transport)
        )
    )
    run_variants = {"sdk": (_direct, client), "llmpool": (_through_run, manager)}
    cells.append(Cell("run", False, 1, run_variants, 1))
    return cells, transports


async def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """Warm up, calibrate, then alternate every cell's variants; returns the results."""
    alternations = int(spec["alternations"])
    batch_seconds = float(spec["batch_seconds"])
    warmup = int(spec["warmup_requests"])
    async with contextlib.AsyncExitStack() as stack:
        cells, transports = await _open_cells(stack, spec["concurrencies"])
        for cell in cells:  # warm-up (first-call imports, caches), then calibration
            slowest = 0.0
            requests = max(warmup, cell.concurrency) // cell.concurrency * cell.concurrency
            for call, target in cell.variants.values():
                await batch(call, target, requests, cell.concurrency)
                cpu, _ = await batch(call, target, requests, cell.concurrency)
                slowest = max(slowest, cpu / requests)
            wanted = math.ceil(batch_seconds / slowest) if batch_seconds > 0 else 1
            cell.requests = max(1, math.ceil(wanted / cell.concurrency)) * cell.concurrency
            cell.samples = {name: [] for name in cell.variants}
            cell.gc_collections = {name: [0, 0, 0] for name in cell.variants}
        answered = [t.requests for t in transports]
        events_wrong: dict[str, int] = {}
        gc.collect()
        gc.freeze()  # the warmed-up heap: no collection walks it again
        try:
            for k in range(alternations):
                for cell in cells:
                    for name in balanced_order(list(cell.variants), k):
                        call, target = cell.variants[name]
                        gc.collect()
                        before = [s["collections"] for s in gc.get_stats()]
                        cpu, events = await batch(call, target, cell.requests, cell.concurrency)
                        after = [s["collections"] for s in gc.get_stats()]
                        cell.samples[name].append(cpu / cell.requests * 1e6)
                        seen = cell.gc_collections[name]
                        seen[:] = [s + a - b for s, a, b in zip(seen, after, before, strict=True)]
                        if events != cell.expected * cell.requests:
                            events_wrong[f"{cell.key}/{name}"] = events
        finally:
            gc.unfreeze()
        sent = [t.requests - a for t, a in zip(transports, answered, strict=True)]
    return {
        "backend": spec["backend"],
        "alternations": alternations,
        "batch_seconds": batch_seconds,
        "deltas_per_stream": mock.DELTAS,
        "cells": {cell.key: summarize(cell) for cell in cells},
        "transport_requests": sum(sent),
        "expected_transport_requests": alternations
        * sum(len(c.variants) * c.requests for c in cells if c.api != "run"),
        "events_wrong": events_wrong,
    }


def summarize(cell: Cell) -> dict[str, Any]:
    """The cell's medians, intervals and spreads (µs per request) and its raw samples."""
    sdk, pooled = cell.samples["sdk"], cell.samples["llmpool"]
    bare = cell.samples.get("transport", [0.0] * len(sdk))
    added = [b - a for a, b in zip(sdk, pooled, strict=True)]
    own = [a - t for a, t in zip(sdk, bare, strict=True)]
    out: dict[str, Any] = {
        "api": cell.api,
        "stream": cell.stream,
        "concurrency": cell.concurrency,
        "requests_per_batch": cell.requests,
        "events_per_request": cell.expected,
        "sdk_us": median_interval(sdk),
        "llmpool_us": median_interval(pooled),
        "transport_us": median_interval(bare),
        "sdk_own_us": median_interval(own),
        "added_us": median_interval(added),
        "sdk_spread": _spread(sdk),
        "added_iqr_us": iqr(added),
        "samples_us": cell.samples,
        "gc_collections": cell.gc_collections,
    }
    if cell.api != "run":
        out["fraction"] = median_interval([d / o for d, o in zip(added, own, strict=True)])
        through_run = cell.samples["llmpool-run"]
        out["llmpool_run_us"] = median_interval(through_run)
        out["run_added_us"] = median_interval(
            [r - a for a, r in zip(sdk, through_run, strict=True)]
        )
        out["facade_added_us"] = median_interval(
            [b - r for r, b in zip(through_run, pooled, strict=True)]
        )
    again = cell.samples.get("sdk-again")
    if again is not None:  # A/A: what the method reads when there is nothing to find
        null = [b - a for a, b in zip(sdk, again, strict=True)]
        out["null_us"] = median_interval(null)
        out["null_fraction"] = median_interval([d / o for d, o in zip(null, own, strict=True)])
    return out


def _spread(values: Sequence[float]) -> float:
    """Interquartile range over the median: how much one variant moved between batches."""
    return iqr(values) / statistics.median(values)


def run(spec: dict[str, Any]) -> dict[str, Any]:
    """Run the measurement on ``spec["backend"]`` (``asyncio`` or ``trio``)."""
    return anyio.run(measure, spec, backend=spec["backend"])
