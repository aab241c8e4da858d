"""A user's file: both ``client_factory`` forms type-check (``make typecheck``)."""

from __future__ import annotations

import openai

from llmpool import ClientFactory, ConnectionManager


def by_index(index: int) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(api_key=f"key-{index}")


def build() -> list[ConnectionManager]:
    zero: ClientFactory = lambda: openai.AsyncOpenAI(api_key="k")  # noqa: E731
    return [
        ConnectionManager(client_factory=by_index),
        ConnectionManager(client_factory=lambda index: openai.AsyncOpenAI(api_key=str(index))),
        ConnectionManager(client_factory=lambda: openai.AsyncOpenAI(api_key="k")),
        ConnectionManager(client_factory=zero),
    ]
