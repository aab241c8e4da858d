"""One app instance of the ``cluster`` scenario: ``python -m benchmarks.clusterproc '<json>'``.

Sets its client up (imports, a ``ConnectionManager`` or LiteLLM's ``Router``, one warm-up
call: the run counts only what the provider received after the start), prints
``{"ready": ...}``, waits for one line on stdin (``{"start_at": monotonic seconds}``: every
instance starts at the same moment; ``CLOCK_MONOTONIC`` is the machine's, shared by all
processes and the provider's records), runs its callers until ``start_at + duration``, then
prints its result (one JSON line) and exits. Everything else it prints goes to stderr.

Callers are open loop with a floor: caller ``k`` of ``callers`` sends every ``period``
seconds (the instances' callers together offer ``offered_factor`` x the quota), at
staggered phases; a call still waiting when its next turn comes delays that turn (a caller
has one call at a time: llmpool's callers wait in its queue, LiteLLM's are refused at once).
Calls alternate between two sizes whose mean is the quota's tokens per request, so the
request and token limits bind together. Every call carries ``x-bench-instance``.

Variants (``variant``):

- ``llmpool``: ``RedisState(url, prefix=..., budget=SharedBudgetPolicy(concurrency=...))``
  and a ``ConnectionManager`` on its stores, with the whole quota in its ``RateLimitPolicy``
  (see ``shared_state``); until ``llmpool.redis.SharedBudgetPolicy`` exists, the static split
  below, reported as ``mode: split``.
- ``llmpool-split``: no Redis; each instance gets ``rpm / P``, ``tpm / P`` and
  ``concurrency // P`` (at least 1) in memory: what one can do without a shared budget.
- ``llmpool-local``: no Redis, every instance the whole quota (the naive configuration).
- ``litellm``: ``Router(routing_strategy="usage-based-routing-v2", redis_host, redis_port)``
  with ``rpm``/``tpm``/``max_parallel_requests`` on the deployment (``router_kwargs``).
- ``litellm-enforce``: ``Router(optional_pre_call_checks=["enforce_model_rate_limits"])``
  with the default ``simple-shuffle`` strategy, same Redis and deployment.
- ``latency``: no callers; sequential requests through two managers on the same provider,
  in-memory and Redis-backed, alternating in rounds (the added admission latency).
"""

from __future__ import annotations

import asyncio  # noqa: TID251  instances run on asyncio (LiteLLM's Router needs it)
import contextlib
import json
import math
import os
import re
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Final
from urllib.parse import urlsplit

from .worker import percentiles

MODEL: Final = "bench-model"
API_KEY: Final = "sk-bench"
INSTANCE_HEADER: Final = "x-bench-instance"
WORD: Final = "tok"  # 3 characters and a space: llmpool's estimate is one token per word
ECHOED_WORDS: Final = 50  # the simulated reply echoes 200 characters: 50 words of "tok "
REPLY_WORDS: Final = 3 + ECHOED_WORDS  # "Simulated reply to: " + the echo
LLMPOOL_VARIANTS: Final = ("llmpool", "llmpool-split", "llmpool-local")
LITELLM_VARIANTS: Final = ("litellm", "litellm-enforce")
KIND_CHARS: Final = 120  # of an error's message, to tell one refusal from another
MAX_KINDS: Final = 8

Send = Callable[[int], Awaitable[None]]  # one call of a size class (0 small, 1 large)


def sizes(rpm: int, tpm: int) -> tuple[int, int]:
    """Input words of the two request sizes: their tokens average ``tpm / rpm``.

    A request of ``n`` words (``n >= 50``) costs ``n`` input tokens and ``REPLY_WORDS``
    output tokens at the simulated provider (word counts), with ``max_output_tokens`` set to
    exactly that; llmpool's estimate of ``" ".join(["tok"] * n)`` is ``n`` too (4 characters
    a token), so estimate, the provider's charge and the usage it returns are one number.
    """
    mean = tpm / rpm - REPLY_WORDS
    small = max(ECHOED_WORDS, round(mean * 0.3))
    return small, max(small, round(2 * mean - small))


def request_tokens(words: int) -> int:
    """What a request of ``words`` input words costs: input plus the capped output."""
    return words + REPLY_WORDS


def prompt(words: int) -> str:
    return " ".join([WORD] * words)


def period(spec: dict[str, Any]) -> float:
    """Seconds between two calls of one caller, so all callers offer ``offered_factor`` x."""
    callers = int(spec["processes"]) * int(spec["callers"])
    return callers / (float(spec["offered_factor"]) * int(spec["rpm"]) / 60.0)


# -- llmpool ---------------------------------------------------------------------------------


def shared_state(url: str, prefix: str, concurrency: int) -> Any | None:
    """The instance's shared budget on Redis, or ``None`` while llmpool has none.

    The contract: ``RedisState(url, prefix=prefix, budget=SharedBudgetPolicy(concurrency=N))``
    shares the manager's ``RateLimitPolicy`` quota (requests and tokens per minute) and N
    requests in flight among every instance on that Redis and prefix; ``stores()`` hands it
    to the manager. The one place to change if the contract does.
    """
    from llmpool import redis as llmpool_redis

    policy = getattr(llmpool_redis, "SharedBudgetPolicy", None)
    if policy is None:
        return None
    return llmpool_redis.RedisState(url, prefix=prefix, budget=policy(concurrency=concurrency))


def llmpool_config(rpm: int, tpm: int, concurrency: int) -> Any:
    import llmpool

    return llmpool.PoolConfig(
        max_concurrency=concurrency,
        rate_limit=llmpool.RateLimitPolicy(requests_per_minute=rpm, tokens_per_minute=tpm),
    )


def _factory(base_url: str) -> Callable[[int], Any]:
    import openai

    def factory(index: int) -> openai.AsyncOpenAI:
        del index
        return openai.AsyncOpenAI(base_url=base_url, api_key=API_KEY, max_retries=0)

    return factory


@contextlib.asynccontextmanager
async def open_llmpool(spec: dict[str, Any], info: dict[str, Any]) -> AsyncIterator[Send]:
    import llmpool

    processes, variant = int(spec["processes"]), spec["variant"]
    rpm, tpm, concurrency = int(spec["rpm"]), int(spec["tpm"]), int(spec["concurrency"])
    small, large = sizes(rpm, tpm)
    headers = {INSTANCE_HEADER: str(spec["index"])}
    async with contextlib.AsyncExitStack() as stack:
        state = None
        if variant == "llmpool":
            redis = shared_state(spec["redis_url"], spec["prefix"], concurrency)
            if redis is not None:
                await stack.enter_async_context(redis)
                state = redis.stores()
        if state is not None:
            info["mode"] = "shared"
            config = llmpool_config(rpm, tpm, int(spec["local_concurrency"]))
        elif variant == "llmpool-local":
            info["mode"] = "local"
            config = llmpool_config(rpm, tpm, concurrency)
        else:
            info["mode"] = "split"
            if variant == "llmpool":
                info["note"] = "llmpool.redis.SharedBudgetPolicy does not exist yet"
            config = llmpool_config(
                max(1, rpm // processes),
                max(1, tpm // processes),
                max(1, concurrency // processes),
            )
        info["config"] = config.rate_limit.model_dump(mode="json") | {
            "max_concurrency": config.max_concurrency
        }
        manager = await stack.enter_async_context(
            llmpool.ConnectionManager(
                config, client_factory=_factory(spec["base_url"]), state=state
            )
        )
        texts = (prompt(small), prompt(large))

        async def send(size: int) -> None:
            await manager.responses.create(
                model=MODEL,
                input=texts[size],
                max_output_tokens=REPLY_WORDS,
                extra_headers=headers,
            )

        yield send


# -- LiteLLM ---------------------------------------------------------------------------------


def router_kwargs(spec: dict[str, Any]) -> dict[str, Any]:
    """LiteLLM ``Router`` arguments of a ``litellm*`` variant (also shown in the report)."""
    host, _, port = urlsplit(spec["redis_url"]).netloc.rpartition(":")  # docs: "<port>"
    deployment = {
        "model_name": MODEL,
        "litellm_params": {
            "model": f"openai/{MODEL}",
            "api_base": spec["base_url"],
            "api_key": API_KEY,
            "rpm": int(spec["rpm"]),
            "tpm": int(spec["tpm"]),
            "max_parallel_requests": int(spec["concurrency"]),  # per Router instance
        },
        "model_info": {"id": "cluster-bench"},  # the same counters in every instance
    }
    kwargs: dict[str, Any] = {
        "model_list": [deployment],
        "redis_host": host,
        "redis_port": int(port) if port.isdigit() else port,
        "num_retries": 0,  # a refused call goes back to its caller, who offers the next
    }
    if spec["variant"] == "litellm":
        kwargs["routing_strategy"] = "usage-based-routing-v2"
    else:
        kwargs["optional_pre_call_checks"] = ["enforce_model_rate_limits"]
    return kwargs


@contextlib.asynccontextmanager
async def open_litellm(spec: dict[str, Any], info: dict[str, Any]) -> AsyncIterator[Send]:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network fetch on import
    os.environ.setdefault("LITELLM_LOG", "ERROR")
    import litellm

    litellm.telemetry = False
    litellm.suppress_debug_info = True
    kwargs = router_kwargs(spec)
    info["mode"] = kwargs.get("routing_strategy", "simple-shuffle")
    router: Any = litellm.Router(**kwargs)  # type: ignore[attr-defined]
    small, large = sizes(int(spec["rpm"]), int(spec["tpm"]))
    messages = [[{"role": "user", "content": prompt(words)}] for words in (small, large)]
    headers = {INSTANCE_HEADER: str(spec["index"])}

    async def send(size: int) -> None:
        await router.acompletion(
            model=MODEL, messages=messages[size], max_tokens=REPLY_WORDS, extra_headers=headers
        )

    yield send


# -- the load --------------------------------------------------------------------------------


class Tally:
    """One instance's outcomes, by second of the run (when each call ended)."""

    def __init__(self, seconds: int) -> None:
        self.sent = 0
        self.ok = 0
        self.errors: dict[str, int] = {}
        self.kinds: dict[str, int] = {}  # errors by type and message, numbers blanked out
        self.latencies: list[float] = []
        self.ok_per_second = [0] * seconds
        self.errors_per_second = [0] * seconds

    def second(self, start: float, now: float) -> int:
        return min(len(self.ok_per_second) - 1, max(0, int(now - start)))

    def result(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "ok": self.ok,
            "errors": dict(sorted(self.errors.items())),
            "error_kinds": self.kinds,
            "latency_ms": {k: v * 1000 for k, v in percentiles(self.latencies).items()},
            "ok_per_second": self.ok_per_second,
            "errors_per_second": self.errors_per_second,
        }


async def run_callers(spec: dict[str, Any], send: Send, start: float) -> dict[str, Any]:
    duration = float(spec["duration"])
    callers, index = int(spec["callers"]), int(spec["index"])
    every = period(spec)
    everyone = int(spec["processes"]) * callers
    end = start + duration
    tally = Tally(max(1, math.ceil(duration)))

    async def caller(k: int) -> None:
        number = index * callers + k  # this caller's place among all instances' callers
        turn = start + every * number / everyone
        n = 0
        while turn < end:
            now = time.monotonic()
            if turn > now:
                await asyncio.sleep(turn - now)
            began = time.monotonic()
            tally.sent += 1
            try:
                await send((n + number) % 2)
            except Exception as exc:
                name = type(exc).__name__
                tally.errors[name] = tally.errors.get(name, 0) + 1
                text = re.sub(r"\s+", " ", re.sub(r"\d+(\.\d+)?", "N", str(exc)))
                kind = f"{name}: {text[:KIND_CHARS]}"
                if kind not in tally.kinds and len(tally.kinds) >= MAX_KINDS:
                    kind = f"{name}: (other messages)"
                tally.kinds[kind] = tally.kinds.get(kind, 0) + 1
                tally.errors_per_second[tally.second(start, time.monotonic())] += 1
            else:
                done = time.monotonic()
                tally.ok += 1
                tally.latencies.append(done - began)
                tally.ok_per_second[tally.second(start, done)] += 1
            n += 1
            turn = max(turn + every, time.monotonic())

    tasks = [asyncio.create_task(caller(k)) for k in range(callers)]
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(max(0.0, end - time.monotonic())):
            await asyncio.gather(*tasks)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)  # calls cut at the end: not counted
    return {**tally.result(), "period": every}


# -- admission latency -----------------------------------------------------------------------


async def run_latency(spec: dict[str, Any], start: float) -> dict[str, Any]:
    """Sequential calls through an in-memory and a Redis-backed manager, in rounds."""
    import llmpool

    from .design import balanced_order

    limit = 10**9  # never binding: only the admission path's own cost is measured
    config = llmpool_config(limit, limit, int(spec["concurrency"]))
    factory = _factory(spec["base_url"])
    text = prompt(ECHOED_WORDS)
    samples: dict[str, list[float]] = {"memory": [], "redis": []}
    rounds: list[dict[str, float]] = []
    info: dict[str, Any] = {}
    async with contextlib.AsyncExitStack() as stack:
        redis = shared_state(spec["redis_url"], spec["prefix"], int(spec["concurrency"]))
        if redis is None:  # no shared budget yet: Redis holds conversations only
            from llmpool.redis import RedisState

            redis = RedisState(spec["redis_url"], prefix=spec["prefix"])
            info["note"] = (
                "llmpool.redis.SharedBudgetPolicy does not exist yet: the Redis-backed "
                "manager's budgets are in memory, no Redis on the request path"
            )
        await stack.enter_async_context(redis)
        managers = {
            "memory": await stack.enter_async_context(
                llmpool.ConnectionManager(config, client_factory=factory)
            ),
            "redis": await stack.enter_async_context(
                llmpool.ConnectionManager(config, client_factory=factory, state=redis.stores())
            ),
        }
        for manager in managers.values():  # connections, first-call imports
            for _ in range(int(spec["latency_warmup"])):
                await manager.responses.create(model=MODEL, input=text)
        for rnd in range(int(spec["latency_rounds"])):
            medians: dict[str, float] = {}
            for kind in balanced_order(list(managers), rnd):
                times: list[float] = []
                for _ in range(int(spec["latency_requests"])):
                    began = time.perf_counter()
                    await managers[kind].responses.create(model=MODEL, input=text)
                    times.append(time.perf_counter() - began)
                samples[kind] += times
                medians[kind] = sorted(times)[len(times) // 2] * 1000
            rounds.append(medians)
    return {
        **info,
        "elapsed": time.monotonic() - start,
        "rounds_ms": rounds,
        "samples_ms": {k: [round(v * 1000, 4) for v in vs] for k, vs in samples.items()},
    }


# -- main ------------------------------------------------------------------------------------


async def main_async(spec: dict[str, Any], reply: Callable[[dict[str, Any]], None]) -> None:
    info: dict[str, Any] = {"index": spec["index"], "variant": spec["variant"]}
    t0 = time.monotonic()
    variant = spec["variant"]
    opener: Any = None
    if variant in LLMPOOL_VARIANTS:
        opener = open_llmpool(spec, info)
    elif variant in LITELLM_VARIANTS:
        opener = open_litellm(spec, info)
    elif variant != "latency":
        raise SystemExit(f"unknown variant {variant!r}")
    async with contextlib.AsyncExitStack() as stack:
        send = None if opener is None else await stack.enter_async_context(opener)
        if send is not None:  # first-call costs (lazy imports, a connection) before the run
            try:
                await send(0)
            except Exception as exc:
                info["warmup_error"] = repr(exc)
        info["setup_seconds"] = time.monotonic() - t0
        reply({"ready": spec["index"]})
        line = await asyncio.to_thread(sys.stdin.readline)
        start = float(json.loads(line)["start_at"])
        await asyncio.sleep(max(0.0, start - time.monotonic()))
        if send is None:
            result = await run_latency(spec, start)
        else:
            result = await run_callers(spec, send, start)
    reply({**info, **result})


def main() -> None:
    spec: dict[str, Any] = json.loads(sys.argv[1])
    out = sys.stdout
    sys.stdout = sys.stderr  # nothing else may write to the control channel

    def reply(payload: dict[str, Any]) -> None:
        out.write(json.dumps(payload) + "\n")
        out.flush()

    asyncio.run(main_async(spec, reply))


if __name__ == "__main__":
    main()
