"""A user's file: the façade's parse, embeddings and lease keep the SDK's types, checked by
mypy --strict without the pydantic plugin (``make typecheck``)."""

from __future__ import annotations

from typing import assert_type

import openai
import pydantic
from openai.types import CreateEmbeddingResponse
from openai.types.chat import ParsedChatCompletion
from openai.types.responses import ParsedResponse

import llmpool
from llmpool.instrumentation import Instrument, RequestFinished


class City(pydantic.BaseModel):
    name: str


class Counter(Instrument):
    def __init__(self) -> None:
        self.finished = 0

    def on_request_finished(self, event: RequestFinished) -> None:
        self.finished += event.attempts


async def calls(manager: llmpool.ConnectionManager) -> None:
    view = manager.with_options(priority="high", session_id="t1")
    parsed = await view.responses.parse(model="gpt-5", input="a city", text_format=City)
    assert_type(parsed, ParsedResponse[City])
    chat = await manager.chat.completions.parse(
        model="gpt-5", messages=[{"role": "user", "content": "a city"}], response_format=City
    )
    assert_type(chat, ParsedChatCompletion[City])
    vectors = await view.embeddings.create(model="text-embedding-3-small", input="hi")
    assert_type(vectors, CreateEmbeddingResponse)
    async with manager.lease(priority="low", session_id="ws-1", model="gpt-5") as lease:
        assert_type(lease, llmpool.Lease)
        assert_type(lease.client, openai.AsyncOpenAI)
        lease.record_usage(10, input_tokens=4, output_tokens=6)
    manager.add_instrument(Counter())
