"""One measurement in a fresh client process: ``python -m benchmarks.worker '<json spec>'``.

Each run gets its own process, pinned to the client core, so one variant's garbage, imports and
connection pools never bill another. The process prints one JSON object (the result) on its
last stdout line. Kinds: ``load`` (closed-loop throughput/CPU/latency of one client variant),
``scheduler``, ``memory`` (see ``micro.py``), ``storm``, ``priority`` and ``hintless`` (see
``openloop.py``), ``overhead`` (see ``overhead.py``), ``ws`` (see ``ws.py``), ``relay``
(see ``relay.py``), ``cluster`` (see ``cluster.py``).
"""

from __future__ import annotations

import asyncio  # noqa: TID251  client processes run on asyncio (LiteLLM needs it)
import json
import os
import resource
import statistics
import sys
import time
import urllib.request
from typing import Any

from .clients import open_variant


def cpu_seconds() -> float:
    """This process's user + system CPU time, seconds (``getrusage(RUSAGE_SELF)``)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def server_stats(root: str, *, reset: bool = False) -> dict[str, Any]:
    """The upstream's counters and CPU seconds (``/_bench/stats``; ``reset`` zeroes them)."""
    request = urllib.request.Request(
        f"{root}/_bench/{'reset' if reset else 'stats'}", method="POST" if reset else "GET"
    )
    with urllib.request.urlopen(request, timeout=10) as reply:  # loopback, our own server
        data: dict[str, Any] = json.loads(reply.read())
    return data


def percentiles(values: list[float]) -> dict[str, float]:
    """p50/p95/p99 (and max) of ``values``, in the same unit; zeros when empty."""
    if len(values) < 2:
        only = values[0] if values else 0.0
        return {"p50": only, "p95": only, "p99": only, "max": only}
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50": cuts[49], "p95": cuts[94], "p99": cuts[98], "max": max(values)}


async def run_load(spec: dict[str, Any]) -> dict[str, Any]:
    """Closed loop: ``concurrency`` callers repeat one request; measure a steady window.

    The window starts ``warmup`` seconds in and lasts ``duration`` seconds; requests that
    complete inside it count. Client CPU is ``getrusage`` at the window's edges.
    """
    concurrency = int(spec["concurrency"])
    warmup, duration = float(spec["warmup"]), float(spec["duration"])
    root = spec["server"]
    base_url = f"{root}/latency_ms={spec['latency_ms']}/v1"
    ends: list[float] = []
    latencies: list[float] = []
    errors: dict[str, int] = {}
    stop = False
    async with open_variant(
        spec["variant"], base_url, concurrency, stream=bool(spec["stream"])
    ) as call:
        await call()  # fail fast on a broken variant, before any timing

        async def caller() -> None:
            while not stop:
                start = time.perf_counter()
                try:
                    await call()
                except Exception as exc:
                    errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                    continue
                end = time.perf_counter()
                ends.append(end)
                latencies.append(end - start)

        tasks = [asyncio.create_task(caller()) for _ in range(concurrency)]
        await asyncio.sleep(warmup)
        server0 = server_stats(root)
        t0, cpu0 = time.perf_counter(), cpu_seconds()
        await asyncio.sleep(duration)
        t1, cpu1 = time.perf_counter(), cpu_seconds()
        server1 = server_stats(root)
        stop = True
        await asyncio.gather(*tasks)
    window = [lat for end, lat in zip(ends, latencies, strict=True) if t0 <= end < t1]
    done = len(window)
    served = server1["counts"].get("200", 0) - server0["counts"].get("200", 0)
    server_cpu = server1["cpu_seconds"] - server0["cpu_seconds"]
    return {
        "requests": done,
        "seconds": t1 - t0,
        "rps": done / (t1 - t0),
        "cpu_ms_per_request": (cpu1 - cpu0) * 1000 / max(done, 1),
        "client_cpu_share": (cpu1 - cpu0) / (t1 - t0),
        "latency_ms": {k: v * 1000 for k, v in percentiles(window).items()},
        "errors": errors,
        "server_requests": served,
        "server_cpu_ms_per_request": server_cpu * 1000 / max(served, 1),
    }


def main() -> None:
    spec: dict[str, Any] = json.loads(sys.argv[1])
    if spec.get("cpu") is not None:
        os.sched_setaffinity(0, {int(spec["cpu"])})
    kind = spec["kind"]
    result: dict[str, Any]
    if kind == "load":
        result = asyncio.run(run_load(spec))
    elif kind in ("scheduler", "memory"):
        from . import micro

        result = micro.run(kind, spec)
    elif kind in ("storm", "priority", "hintless"):
        from . import openloop

        result = openloop.run(kind, spec)
    elif kind == "overhead":
        from . import overhead

        result = overhead.run(spec)
    elif kind == "ws":
        from . import ws

        result = ws.run(spec)
    elif kind == "relay":
        from . import relay

        result = relay.run(spec)
    elif kind == "cluster":
        from . import cluster

        result = cluster.run(spec)
    else:
        raise SystemExit(f"unknown kind {kind!r}")
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
