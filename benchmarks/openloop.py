"""Open-loop scenarios through a ``ConnectionManager``: arrivals at a fixed rate, whatever the
upstream does.

- ``storm``: the upstream enforces a request quota (600 RPM, burst 10) and we offer 3x that.
  Counts goodput (successes per second inside the window, against the quota), the 429s the
  upstream answered, the calls it received, and what happened to every offered request.
- ``hintless``: 30 callers against 5 s of 429s without any hint, then 200s: llmpool (circuit
  breaker) beside llmpool without it and the raw SDK with its own retries.
- ``priority``: HIGH/NORMAL/LOW mixed, offered above the manager's capacity; measures each
  class's queue wait (submission to the first call of ``fn``).
"""

from __future__ import annotations

import random
import time
from typing import Any

import anyio
import openai

import llmpool

from .clients import API_KEY, MESSAGES, MODEL
from .worker import percentiles, server_stats


def _factory(base_url: str) -> llmpool.ClientFactory:
    def factory(index: int) -> openai.AsyncOpenAI:
        del index
        return openai.AsyncOpenAI(base_url=base_url, api_key=API_KEY, max_retries=0)

    return factory


def storm_config(mode: str, rpm: int, burst: int, concurrency: int) -> llmpool.PoolConfig:
    """The manager's config for a storm ``mode``.

    ``configured``: ``RateLimitPolicy(requests_per_minute=rpm, burst=burst / (rpm / 60))``
    (headers can only lower it); ``learned``: the default policy, learning from headers;
    ``retries-only``: llmpool without ``RateLimitPolicy`` (before it existed).
    """
    if mode == "configured":
        policy_type: Any = llmpool.RateLimitPolicy  # type: ignore[attr-defined,unused-ignore]
        policy = policy_type(requests_per_minute=rpm, burst=burst / (rpm / 60.0))
        return llmpool.PoolConfig(max_concurrency=concurrency, rate_limit=policy)  # type: ignore[call-arg,unused-ignore]
    return llmpool.PoolConfig(max_concurrency=concurrency)


async def _storm(spec: dict[str, Any]) -> dict[str, Any]:
    rpm, burst = int(spec["rpm"]), int(spec["burst"])
    duration = float(spec["duration"])
    rate = rpm / 60.0 * float(spec["overload"])  # offered requests per second
    root = spec["server"]
    base_url = f"{root}/rpm={rpm},burst={burst},latency_ms={spec['latency_ms']}/v1"
    config = storm_config(spec["mode"], rpm, burst, int(spec["concurrency"]))
    outcomes: dict[str, int] = {}
    ok_times: list[float] = []
    offered = 0
    server_stats(root, reset=True)
    async with llmpool.ConnectionManager(config, client_factory=_factory(base_url)) as manager:

        async def one() -> None:
            try:
                await manager.chat.completions.create(model=MODEL, messages=MESSAGES)
            except anyio.get_cancelled_exc_class():
                outcomes["pending at window end"] = outcomes.get("pending at window end", 0) + 1
                raise
            except Exception as exc:
                key = type(exc).__name__
                outcomes[key] = outcomes.get(key, 0) + 1
            else:
                ok_times.append(time.perf_counter())
                outcomes["ok"] = outcomes.get("ok", 0) + 1

        start = time.perf_counter()
        async with anyio.create_task_group() as tg:
            while (now := time.perf_counter()) < start + duration:
                tg.start_soon(one)
                offered += 1
                await anyio.sleep(max(0.0, start + offered / rate - now))
            end = time.perf_counter()
            server = server_stats(root)
            stats = manager.stats()
            tg.cancel_scope.cancel()
    window = end - start
    ok_in_window = sum(1 for t in ok_times if t < end)
    calls = sum(server["counts"].values())
    rejected_429 = server["counts"].get("429", 0)
    quota_rate = rpm / 60.0
    shed = sum(outcomes.get(k, 0) for k in ("QueueFullError", "QueueTimeoutError"))
    failed = sum(
        n
        for k, n in outcomes.items()
        if k not in ("ok", "pending at window end", "QueueFullError", "QueueTimeoutError")
    )
    accounted = sum(outcomes.values())
    return {
        "mode": spec["mode"],
        "window_seconds": window,
        "offered": offered,
        "offered_rps": offered / window,
        "quota_rps": quota_rate,
        "goodput_rps": ok_in_window / window,
        "goodput_vs_quota": ok_in_window / window / quota_rate,
        "server_calls": calls,
        "server_429": rejected_429,
        "share_429": rejected_429 / max(calls, 1),
        "outcomes": outcomes,
        "shed": shed,
        "lost": failed + (offered - accounted),
        "retries": stats.retries,
        "queue_wait_ms_p95": stats.queue_wait.p95 * 1000
        if hasattr(stats.queue_wait, "p95")
        else None,
    }


async def _priority(spec: dict[str, Any]) -> dict[str, Any]:
    concurrency = int(spec["concurrency"])
    latency = float(spec["latency_ms"]) / 1000.0
    rate = concurrency / latency * float(spec["overload"])  # offered requests per second
    duration = float(spec["duration"])
    mix = {"high": 0.2, "normal": 0.4, "low": 0.4}
    rng = random.Random(2024)
    root = spec["server"]
    base_url = f"{root}/latency_ms={spec['latency_ms']}/v1"
    config = llmpool.PoolConfig(max_concurrency=concurrency)
    waits: dict[str, list[float]] = {name: [] for name in mix}
    service: list[float] = []
    pending = dict.fromkeys(mix, 0)
    async with llmpool.ConnectionManager(config, client_factory=_factory(base_url)) as manager:

        async def one(priority: str) -> None:
            submitted = time.perf_counter()
            view = manager.with_options(priority=priority)

            async def fn(client: openai.AsyncOpenAI) -> None:
                began = time.perf_counter()
                waits[priority].append(began - submitted)
                await client.chat.completions.create(model=MODEL, messages=MESSAGES)
                service.append(time.perf_counter() - began)

            try:
                await view.run(fn)
            except anyio.get_cancelled_exc_class():
                pending[priority] += 1
                raise

        start = time.perf_counter()
        offered = 0
        async with anyio.create_task_group() as tg:
            while (now := time.perf_counter()) < start + duration:
                tg.start_soon(one, rng.choices(list(mix), weights=list(mix.values()))[0])
                offered += 1
                await anyio.sleep(max(0.0, start + offered / rate - now))
            tg.cancel_scope.cancel()
    service_p50 = percentiles(service)["p50"]
    by_class = {
        name: {
            "started": len(values),
            "pending_at_end": pending[name],
            "queue_wait_ms": {k: v * 1000 for k, v in percentiles(values).items()},
        }
        for name, values in waits.items()
    }
    return {
        "offered": offered,
        "offered_rps": rate,
        "capacity_rps": concurrency / latency,
        "service_ms_p50": service_p50 * 1000,
        "by_class": by_class,
        "high_p95_wait_vs_service": percentiles(waits["high"])["p95"] / max(service_p50, 1e-9),
    }


def run(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Run open-loop scenario ``kind`` (``storm``, ``priority`` or ``hintless``) with ``spec``."""
    scenario = {"storm": _storm, "priority": _priority, "hintless": _hintless}[kind]
    result: dict[str, Any] = anyio.run(scenario, spec, backend="asyncio")
    return result


async def _hintless(spec: dict[str, Any]) -> dict[str, Any]:
    """``hintless``: N callers start at once against an upstream that answers 429 with no
    hint at all (no Retry-After, no x-ratelimit-*) for ``storm`` seconds, then 200s.

    The upstream is ``llmpool.testing``'s simulated provider on loopback. Variants:
    ``llmpool`` (default policy: circuit breaker, retry budget), ``llmpool-no-breaker``
    (``CircuitPolicy(enabled=False)``) and ``raw-sdk`` (``AsyncOpenAI`` with its default
    ``max_retries=2``, one call per caller, N at once). Counts what reached the upstream
    during the storm and how each caller ended.
    """
    from llmpool.testing import FaultPlan, SimulatedProvider

    callers, storm = int(spec["callers"]), float(spec["storm"])
    variant = spec["variant"]
    latency = float(spec["latency_ms"]) / 1000.0
    calm = FaultPlan(latency_min=latency, latency_max=latency, seed=1)
    stormy = calm.model_copy(update={"rate_limit_rate": 1.0, "retry_after": None})
    outcomes: dict[str, int] = {}
    done_at: list[float] = []
    async with SimulatedProvider(stormy) as sim:

        def client(index: int = 0) -> openai.AsyncOpenAI:
            retries = 2 if variant == "raw-sdk" else 0
            return openai.AsyncOpenAI(base_url=sim.base_url, api_key=API_KEY, max_retries=retries)

        async def end_storm() -> None:
            await anyio.sleep(storm)
            sim.set_fault_plan(calm)

        async def count(call: Any) -> None:
            try:
                await call()
            except Exception as exc:
                outcomes[type(exc).__name__] = outcomes.get(type(exc).__name__, 0) + 1
            else:
                outcomes["ok"] = outcomes.get("ok", 0) + 1
            done_at.append(time.monotonic())

        start = time.monotonic()
        if variant == "raw-sdk":
            raw = client()
            async with anyio.create_task_group() as tg:
                tg.start_soon(end_storm)
                for _ in range(callers):
                    tg.start_soon(
                        count, lambda: raw.chat.completions.create(model=MODEL, messages=MESSAGES)
                    )
            await raw.close()
        else:
            circuit = llmpool.CircuitPolicy(enabled=variant == "llmpool")
            config = llmpool.PoolConfig(
                max_concurrency=int(spec["concurrency"]), queue_timeout=60.0, circuit=circuit
            )
            manager = llmpool.ConnectionManager(config, client_factory=client)
            async with manager, anyio.create_task_group() as tg:
                tg.start_soon(end_storm)
                for _ in range(callers):
                    tg.start_soon(
                        count,
                        lambda: manager.chat.completions.create(model=MODEL, messages=MESSAGES),
                    )
        arrivals = [r.received_at - start for r in sim.requests]
    during = sum(1 for t in arrivals if t < storm)
    return {
        "variant": variant,
        "callers": callers,
        "concurrency": int(spec["concurrency"]),
        "storm_seconds": storm,
        "requests_during_storm": during,
        "requests_total": len(arrivals),
        "outcomes": outcomes,
        "succeeded": outcomes.get("ok", 0),
        "last_done_seconds": max(done_at) - start if done_at else 0.0,
    }
