"""Bad caller input over real loopback HTTP: what h11 would refuse while sending is refused by
llmpool first, so it is neither sent nor retried as a connection error.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest

from llmpool import (
    ConnectionManager,
    InvalidHeaderError,
    InvalidSessionIdError,
    PoolConfig,
    RetryPolicy,
)
from llmpool.testing import SimulatedProvider

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatedProvider]:
    with SimulatedProvider(api_key="sk-good") as provider:
        yield provider


def manager(sim: SimulatedProvider) -> ConnectionManager:
    def factory(index: int) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=sim.base_url, api_key="sk-good", max_retries=0)

    retry = RetryPolicy(initial_backoff=0.01, max_backoff=0.02, jitter=0.0)
    return ConnectionManager(PoolConfig(retry=retry), client_factory=factory)


@pytest.mark.parametrize(
    ("session_id", "options", "error"),
    [
        pytest.param("terminal-1 ", {}, InvalidSessionIdError, id="session-trailing-space"),
        pytest.param(
            None, {"extra_headers": {"x-trace": "a\r\nb"}}, InvalidHeaderError, id="header-crlf"
        ),
        pytest.param(
            None, {"extra_headers": {"x-trace": " a"}}, InvalidHeaderError, id="header-space"
        ),
        pytest.param(
            None, {"extra_headers": {"x trace": "a"}}, InvalidHeaderError, id="header-name"
        ),
    ],
)
async def test_unsendable_headers_fail_at_once(
    sim: SimulatedProvider, session_id: str | None, options: dict[str, Any], error: type[Exception]
) -> None:
    """Was: APIConnectionError after 4 attempts (h11 refused the header). Now: at once, unsent."""
    sim.clear_requests()
    async with manager(sim) as m:

        async def call() -> None:
            view = m.with_options(session_id=session_id)
            await view.responses.create(model="sim-1", input="hi", **options)

        with pytest.raises(error):
            await call()
        assert m.stats().retries == 0
    assert sim.count("/v1/responses") == 0
