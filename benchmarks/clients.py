"""The client variants compared, each as "make one request" behind the same interface.

Every variant is opened with ``open_variant(name, ...)`` and yields an async callable that makes
one chat completion (JSON, or streaming read to the end) against the upstream, limited to
``concurrency`` requests in flight:

- ``raw``: one ``AsyncOpenAI(max_retries=0)`` behind an ``asyncio.Semaphore``.
- ``raw-retries``: the same with the SDK's default retries (``max_retries=2``).
- ``tenacity``: ``raw`` wrapped in tenacity's ``AsyncRetrying`` (4 attempts, exponential
  jitter backoff, retrying the SDK's transient errors).
- ``raw-4rr``: four ``AsyncOpenAI(max_retries=0)`` used round-robin behind one semaphore (the
  reference for what a pool of clients buys).
- ``llmpool``: ``ConnectionManager`` with the default ``PoolConfig`` except
  ``max_concurrency=concurrency`` (5 pooled clients), through ``manager.chat.completions``.
- ``llmpool-1``: the same with ``pool_size=1`` (diagnostic, not in ``VARIANTS``: one client,
  like ``raw``, isolates llmpool's own per-call cost from the pool's).
- ``litellm``: LiteLLM's ``Router`` with one deployment (optional: the ``litellm`` package).
"""

from __future__ import annotations

import asyncio  # noqa: TID251  the benchmark client processes run on asyncio (LiteLLM needs it)
import contextlib
import itertools
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Final

import openai
from openai.types.chat import ChatCompletionMessageParam

Call = Callable[[], Awaitable[None]]

VARIANTS: Final = ("raw", "raw-retries", "tenacity", "raw-4rr", "llmpool", "litellm")
"""Every client variant, in report order; ``raw`` is the baseline of every ratio."""

MODEL: Final = "bench-model"
MESSAGES: Final[list[ChatCompletionMessageParam]] = [{"role": "user", "content": "Say hello."}]
API_KEY: Final = "sk-bench"


def litellm_available() -> bool:
    """Whether LiteLLM can be imported (it is installed by ``make bench`` only)."""
    import importlib.util

    return importlib.util.find_spec("litellm") is not None  # importing it takes seconds


def _sdk(base_url: str, max_retries: int = 0) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=base_url, api_key=API_KEY, max_retries=max_retries)


async def _consume_sdk(client: openai.AsyncOpenAI, stream: bool) -> None:
    if not stream:
        reply = await client.chat.completions.create(model=MODEL, messages=MESSAGES)
        assert reply.choices[0].message.content
        return
    chunks = await client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    async with chunks:
        count = 0
        async for _ in chunks:
            count += 1
    assert count > 1


@contextlib.asynccontextmanager
async def open_variant(
    name: str, base_url: str, concurrency: int, *, stream: bool
) -> AsyncIterator[Call]:
    """Open client variant ``name`` and yield its one-request callable.

    Raises:
        ValueError: unknown variant.
        ImportError: ``litellm`` asked for but not installed.
    """
    semaphore = asyncio.Semaphore(concurrency)
    if name in ("raw", "raw-retries"):
        client = _sdk(base_url, max_retries=0 if name == "raw" else 2)

        async def call_raw() -> None:
            async with semaphore:
                await _consume_sdk(client, stream)

        try:
            yield call_raw
        finally:
            await client.close()
    elif name == "raw-4rr":
        clients = [_sdk(base_url) for _ in range(4)]
        turn = itertools.cycle(clients)

        async def call_rr() -> None:
            async with semaphore:
                await _consume_sdk(next(turn), stream)

        try:
            yield call_rr
        finally:
            for each in clients:
                await each.close()
    elif name == "tenacity":
        async with _tenacity_variant(base_url, semaphore, stream) as call:
            yield call
    elif name in ("llmpool", "llmpool-1"):
        pool_size = 1 if name == "llmpool-1" else None
        async with _llmpool_variant(base_url, concurrency, stream, pool_size) as call:
            yield call
    elif name == "litellm":
        async with _litellm_variant(base_url, concurrency, stream) as call:
            yield call
    else:
        raise ValueError(f"unknown client variant {name!r}; expected one of {VARIANTS}")


@contextlib.asynccontextmanager
async def _tenacity_variant(
    base_url: str, semaphore: asyncio.Semaphore, stream: bool
) -> AsyncIterator[Call]:
    from tenacity import (
        AsyncRetrying,
        retry_if_exception_type,
        stop_after_attempt,
        wait_exponential_jitter,
    )

    client = _sdk(base_url)
    transient = (
        openai.APIConnectionError,
        openai.APITimeoutError,
        openai.RateLimitError,
        openai.InternalServerError,
    )

    async def call() -> None:
        async with semaphore:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(4),
                wait=wait_exponential_jitter(initial=0.5, max=30.0, jitter=1.0),
                retry=retry_if_exception_type(transient),
                reraise=True,
            ):
                with attempt:
                    await _consume_sdk(client, stream)

    try:
        yield call
    finally:
        await client.close()


@contextlib.asynccontextmanager
async def _llmpool_variant(
    base_url: str, concurrency: int, stream: bool, pool_size: int | None
) -> AsyncIterator[Call]:
    import llmpool

    def factory(index: int) -> openai.AsyncOpenAI:
        del index
        return _sdk(base_url)

    config = llmpool.PoolConfig(max_concurrency=concurrency)
    if pool_size is not None:
        config = config.model_copy(update={"pool_size": pool_size})
    async with llmpool.ConnectionManager(config, client_factory=factory) as manager:
        completions = manager.chat.completions

        async def call() -> None:
            if not stream:
                reply = await completions.create(model=MODEL, messages=MESSAGES)
                assert reply.choices[0].message.content
                return
            chunks = await completions.create(model=MODEL, messages=MESSAGES, stream=True)
            async with chunks:
                count = 0
                async for _ in chunks:
                    count += 1
            assert count > 1

        yield call


@contextlib.asynccontextmanager
async def _litellm_variant(base_url: str, concurrency: int, stream: bool) -> AsyncIterator[Call]:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network fetch on import
    os.environ.setdefault("LITELLM_LOG", "ERROR")
    import litellm

    litellm.telemetry = False
    litellm.suppress_debug_info = True
    router: Any = litellm.Router(  # type: ignore[attr-defined]
        model_list=[
            {
                "model_name": MODEL,
                "litellm_params": {
                    "model": f"openai/{MODEL}",
                    "api_base": base_url,
                    "api_key": API_KEY,
                    "max_parallel_requests": concurrency,
                },
            }
        ],
        num_retries=0,
    )
    semaphore = asyncio.Semaphore(concurrency)

    async def call() -> None:
        async with semaphore:
            if not stream:
                reply = await router.acompletion(model=MODEL, messages=MESSAGES)
                assert reply.choices[0].message.content
                return
            chunks = await router.acompletion(model=MODEL, messages=MESSAGES, stream=True)
            count = 0
            async for _ in chunks:
                count += 1
            assert count > 1

    yield call
