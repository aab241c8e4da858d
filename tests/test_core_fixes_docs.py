"""The docs tell the truth: every example message in docs/errors.md is one the code produces,
and user-facing text describes the product only.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import openai
import pytest

import llmpool
from llmpool import ConnectionManager, PoolConfig, RateLimitPolicy, RetryPolicy
from llmpool._cli import build_parser

from .helpers import client_factory, status_error

ROOT = Path(__file__).resolve().parent.parent
ERRORS_MD = ROOT / "docs" / "errors.md"
# "llmpool.QueueTimeoutError: no slot and budget within ... (request_id=..., ...)", a line of
# its own in a code block.
EXAMPLE = re.compile(r"^llmpool\.(\w+): (.+)$", re.MULTILINE)


def normalized(message: str) -> str:
    """Ids and numbers vary from run to run (and between the doc's and the test's config)."""
    message = re.sub(r"req_[0-9a-f]+", "req_ID", message)
    return re.sub(r"\d+(?:\.\d+)?", "N", message)


async def noop(client: openai.AsyncOpenAI) -> None:
    """A call that does nothing."""


async def hold_the_slot(m: ConnectionManager, go: Callable[[], Awaitable[object]]) -> object:
    """Run ``go`` while another request holds the only slot; its error is returned."""
    release = anyio.Event()

    async def holder(client: openai.AsyncOpenAI) -> None:
        await release.wait()

    result: object = None
    async with anyio.create_task_group() as tg:
        tg.start_soon(m.run, holder)
        await anyio.wait_all_tasks_blocked()
        try:
            result = await go()
        except llmpool.LLMPoolError as exc:  # returned: the task group would wrap it
            result = exc
        finally:
            release.set()
    return result


async def queue_full() -> object:
    config = PoolConfig(max_concurrency=1, max_queue_size=0)
    async with ConnectionManager(config, client_factory=client_factory()) as m:
        run = m.with_options(priority="normal", session_id="terminal-3").run
        return await hold_the_slot(m, lambda: run(noop))


async def queue_timeout() -> object:
    config = PoolConfig(max_concurrency=1, queue_timeout=0.01)
    async with ConnectionManager(config, client_factory=client_factory()) as m:
        run = m.with_options(priority="low", session_id="terminal-2").run
        return await hold_the_slot(m, lambda: run(noop))


async def request_timeout() -> object:
    retry = RetryPolicy(max_attempts=2, initial_backoff=0.0, jitter=0.0)
    config = PoolConfig(request_timeout=0.01, retry=retry)
    async with ConnectionManager(config, client_factory=client_factory()) as m:
        return await m.run(lambda client: anyio.sleep_forever(), session_id="terminal-1")


async def manager_closed() -> object:
    async with ConnectionManager(client_factory=client_factory()) as m:
        pass
    return await m.run(noop)


async def request_too_large() -> object:
    config = PoolConfig(rate_limit=RateLimitPolicy(tokens_per_minute=200_000))
    async with ConnectionManager(config, client_factory=client_factory()) as m:
        return await m.run(noop, estimated_tokens=250_000)


async def deadline_exceeded() -> object:
    """Three attempts that get a 503 (backoffs 0.1, 0.2 s), then the 0.5 s deadline passes."""

    async def unavailable(client: openai.AsyncOpenAI) -> None:
        raise status_error(503)

    retry = RetryPolicy(max_attempts=10, initial_backoff=0.1, jitter=0.0)
    async with ConnectionManager(PoolConfig(retry=retry), client_factory=client_factory()) as m:
        return await m.with_options(deadline=0.5).run(unavailable)


async def invalid_session_id() -> object:
    async with ConnectionManager(client_factory=client_factory()) as m:
        return m.with_options(session_id="terminal-1 ")


async def invalid_header() -> object:
    async with ConnectionManager(client_factory=client_factory()) as m:
        return await m.responses.create(
            model="gpt-4o-mini", input="Hi", extra_headers={"x-trace": "a\r\nb"}
        )


async def invalid_conversation() -> object:
    return llmpool.ConversationSanitizer().responses_input(
        [{"role": "user", "content": "a"}] * 3 + [5]
    )


async def compaction_budget() -> object:
    items = [{"role": "system", "content": "x" * 100}, {"role": "user", "content": "hi"}]
    return llmpool.ConversationSanitizer().compact_responses_input(items, max_items=1)


BUILDERS: dict[str, Callable[[], Awaitable[object]]] = {
    "QueueFullError": queue_full,
    "QueueTimeoutError": queue_timeout,
    "RequestTimeoutError": request_timeout,
    "ManagerClosedError": manager_closed,
    "RequestTooLargeError": request_too_large,
    "DeadlineExceededError": deadline_exceeded,
    "InvalidSessionIdError": invalid_session_id,
    "InvalidHeaderError": invalid_header,
    "InvalidConversationError": invalid_conversation,
    "CompactionBudgetError": compaction_budget,
}


async def produce(name: str) -> str:
    """The message of the error ``name``, raised (or returned) by its builder."""
    try:
        result = await BUILDERS[name]()
    except llmpool.LLMPoolError as exc:
        result = exc
    assert type(result) is getattr(llmpool, name)
    return str(result)


def documented() -> dict[str, str]:
    return dict(EXAMPLE.findall(ERRORS_MD.read_text(encoding="utf-8")))


def test_every_documented_error_has_an_example() -> None:
    """docs/errors.md shows one example message for each error the test can produce."""
    assert set(documented()) == set(BUILDERS)


@pytest.mark.parametrize("name", sorted(BUILDERS))
@pytest.mark.anyio
async def test_documented_message_is_what_the_code_produces(name: str) -> None:
    """The example in docs/errors.md equals the real message, up to ids and numbers."""
    real = await produce(name)
    assert normalized(documented()[name]) == normalized(real), real


# Where the design came from is history, not documentation: "seed 000", "Seed 000's ...".
# (The simulator's --seed, a random seed, is fine.)
ORIGIN = re.compile(r"\bseed\s*`?0\d\d|\bgeneralis", re.IGNORECASE)
PRODUCT_TEXT = [
    *sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "src/llmpool/_cli").rglob("*.py")),
    "src/llmpool/_config.py",
    "src/llmpool/_constants.py",
    "src/llmpool/_stats.py",
    "docs/configuration.md",
    "docs/demo.md",
    "docs/errors.md",
    "docs/logging.md",
]


@pytest.mark.parametrize("path", PRODUCT_TEXT)
def test_user_facing_text_describes_the_product_only(path: str) -> None:
    """Docstrings, comments and docs name no design seed."""
    text = (ROOT / path).read_text(encoding="utf-8")
    assert ORIGIN.findall(text) == []


def test_cli_help_describes_the_product_only() -> None:
    """llmpool demo --help names no design seed."""
    parser = build_parser()
    texts = [parser.format_help()]
    texts += [
        choice.format_help()
        for action in parser._subparsers._group_actions  # type: ignore[union-attr]
        for choice in action.choices.values()  # type: ignore[union-attr]
    ]
    assert all(ORIGIN.findall(text) == [] for text in texts)
    assert "--seed" in "".join(texts)  # the simulator's random seed stays
