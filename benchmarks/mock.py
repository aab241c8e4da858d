"""An in-process OpenAI upstream for CPU measurements: canned bodies behind an ``httpx2`` transport.

``CannedTransport`` answers every request with one pre-encoded response: no sockets, no
parsing of the request, so what a client spends per request is the client's own work plus a
few microseconds of transport (measured on its own by ``overhead.py`` and subtracted). The
bodies are shaped like the OpenAI API's (the field sets of real answers, as documented in the
API reference and seen on the wire): a Responses API ``response`` object, a Chat Completions
``chat.completion``, and an SSE stream for each (Responses: ``response.created`` ...
``response.completed`` with usage; Chat: role chunk, content chunks, finish chunk, the
``include_usage`` chunk, ``[DONE]``), with OpenAI's ``x-ratelimit-*`` and request headers.

One ``CannedTransport`` per (API, stream) cell: ``canned(api, stream=...)`` builds it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any, Final

import anyio.lowlevel
import httpx2

MODEL: Final = "gpt-4.1-mini-2025-04-14"
"""The model every request names (and every canned body reports)."""

APIS: Final = ("responses", "chat")
"""``responses`` = ``responses.create``; ``chat`` = ``chat.completions.create``."""

DELTAS: Final = 8
"""Text deltas per canned stream (each its own SSE event, as a real stream of short tokens)."""

_WORDS: Final = [
    "Pooling",
    " keeps",
    " a",
    " few",
    " warm",
    " clients",
    " ready",
    " so",
    " callers",
    " share",
    " them",
    " fairly",
    ".",
]
_CREATED: Final = 1744934400
_RESP_ID: Final = "resp_680a0b3c8f2c8191a4b1d7e6c5f40e3b0c9d8e7f6a5b4c3d"
_MSG_ID: Final = "msg_680a0b3d1f9c8191b2e0a9c8d7e6f5a40c9d8e7f6a5b4c3d"
_CHAT_ID: Final = "chatcmpl-BNyt3mQp6u1vH2kXw8c9dLrS4aEfG"
_FINGERPRINT: Final = "fp_79b79be41f"


def headers(*, stream: bool) -> list[tuple[bytes, bytes]]:
    """Response headers as OpenAI sends them: content type, request id, the rate-limit state."""
    kind = b"text/event-stream; charset=utf-8" if stream else b"application/json"
    return [
        (b"date", b"Fri, 18 Apr 2025 09:20:00 GMT"),
        (b"content-type", kind),
        (b"openai-organization", b"org-bench"),
        (b"openai-processing-ms", b"412"),
        (b"openai-version", b"2020-10-01"),
        (b"x-ratelimit-limit-requests", b"300000"),
        (b"x-ratelimit-limit-tokens", b"1500000000"),
        (b"x-ratelimit-remaining-requests", b"299999"),
        (b"x-ratelimit-remaining-tokens", b"1499999968"),
        (b"x-ratelimit-reset-requests", b"2ms"),
        (b"x-ratelimit-reset-tokens", b"0s"),
        (b"x-request-id", b"req_6f1c2b7e0d9a4c3b8e5f1a2d3c4b5a69"),
        (b"strict-transport-security", b"max-age=31536000; includeSubDomains; preload"),
        (b"cf-cache-status", b"DYNAMIC"),
        (b"server", b"cloudflare"),
        (b"cf-ray", b"9320a1b2c3d4e5f6-AMS"),
        (b"alt-svc", b'h3=":443"; ma=86400'),
    ]


def _text(count: int) -> list[str]:
    return [_WORDS[i % len(_WORDS)] for i in range(count)]


def _response_usage() -> dict[str, Any]:
    return {
        "input_tokens": 24,
        "input_tokens_details": {"cache_write_tokens": 0, "cached_tokens": 0},
        "output_tokens": DELTAS,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 24 + DELTAS,
    }


def _message(status: str, text: str | None) -> dict[str, Any]:
    content = [] if text is None else [_output_text(text)]
    return {
        "id": _MSG_ID,
        "type": "message",
        "status": status,
        "content": content,
        "role": "assistant",
    }


def _output_text(text: str) -> dict[str, Any]:
    return {"type": "output_text", "annotations": [], "logprobs": [], "text": text}


def response_body(status: str = "completed") -> dict[str, Any]:
    """A Responses API ``response`` object (``status`` ``in_progress`` has no output or usage)."""
    done = status == "completed"
    return {
        "id": _RESP_ID,
        "object": "response",
        "created_at": _CREATED,
        "status": status,
        "background": False,
        "error": None,
        "incomplete_details": None,
        "instructions": None,
        "max_output_tokens": None,
        "max_tool_calls": None,
        "model": MODEL,
        "output": [_message("completed", "".join(_text(DELTAS)))] if done else [],
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "prompt_cache_key": None,
        "reasoning": {"effort": None, "summary": None},
        "safety_identifier": None,
        "service_tier": "default",
        "store": True,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}, "verbosity": "medium"},
        "tool_choice": "auto",
        "tools": [],
        "top_logprobs": 0,
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": _response_usage() if done else None,
        "user": None,
        "metadata": {},
    }


def response_events() -> list[tuple[str, dict[str, Any]]]:
    """The Responses API's SSE events for one short text answer, in order."""
    words = _text(DELTAS)
    text = "".join(words)
    events: list[tuple[str, dict[str, Any]]] = [
        ("response.created", {"response": response_body("in_progress")}),
        ("response.in_progress", {"response": response_body("in_progress")}),
        ("response.output_item.added", {"output_index": 0, "item": _message("in_progress", None)}),
        (
            "response.content_part.added",
            {
                "item_id": _MSG_ID,
                "output_index": 0,
                "content_index": 0,
                "part": _output_text(""),
            },
        ),
    ]
    events += [
        (
            "response.output_text.delta",
            {
                "item_id": _MSG_ID,
                "output_index": 0,
                "content_index": 0,
                "delta": word,
                "logprobs": [],
                "obfuscation": "Xy1z",
            },
        )
        for word in words
    ]
    events += [
        (
            "response.output_text.done",
            {
                "item_id": _MSG_ID,
                "output_index": 0,
                "content_index": 0,
                "text": text,
                "logprobs": [],
            },
        ),
        (
            "response.content_part.done",
            {
                "item_id": _MSG_ID,
                "output_index": 0,
                "content_index": 0,
                "part": _output_text(text),
            },
        ),
        ("response.output_item.done", {"output_index": 0, "item": _message("completed", text)}),
        ("response.completed", {"response": response_body()}),
    ]
    return [
        (kind, {"type": kind, "sequence_number": number, **fields})
        for number, (kind, fields) in enumerate(events)
    ]


def _chat_usage() -> dict[str, Any]:
    return {
        "prompt_tokens": 24,
        "completion_tokens": DELTAS,
        "total_tokens": 24 + DELTAS,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def chat_body() -> dict[str, Any]:
    """A Chat Completions ``chat.completion`` object."""
    message = {
        "role": "assistant",
        "content": "".join(_text(DELTAS)),
        "refusal": None,
        "annotations": [],
    }
    return {
        "id": _CHAT_ID,
        "object": "chat.completion",
        "created": _CREATED,
        "model": MODEL,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}],
        "usage": _chat_usage(),
        "service_tier": "default",
        "system_fingerprint": _FINGERPRINT,
    }


def chat_chunks() -> list[dict[str, Any]]:
    """Chat Completions stream chunks with ``stream_options={"include_usage": True}``."""

    def chunk(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        return {
            "id": _CHAT_ID,
            "object": "chat.completion.chunk",
            "created": _CREATED,
            "model": MODEL,
            "service_tier": "default",
            "system_fingerprint": _FINGERPRINT,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            "usage": None,
            "obfuscation": "Xy1z",
        }

    chunks = [chunk({"role": "assistant", "content": "", "refusal": None}, None)]
    chunks += [chunk({"content": word}, None) for word in _text(DELTAS)]
    chunks.append(chunk({}, "stop"))
    last = chunk({}, None)
    last.update(choices=[], usage=_chat_usage())
    chunks.append(last)
    return chunks


def _encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def sse_body(api: str) -> list[bytes]:
    """The encoded SSE events of ``api``'s stream, one ``bytes`` per event (one read each)."""
    if api == "responses":
        return [
            b"event: " + kind.encode() + b"\ndata: " + _encode(event) + b"\n\n"
            for kind, event in response_events()
        ]
    return [b"data: " + _encode(chunk) + b"\n\n" for chunk in chat_chunks()] + [b"data: [DONE]\n\n"]


def json_body(api: str) -> bytes:
    """The encoded JSON body of ``api``'s non-streaming answer."""
    return _encode(response_body() if api == "responses" else chat_body())


class _Events(httpx2.AsyncByteStream):
    """An SSE body read one event per chunk, with a checkpoint before each (a socket read)."""

    __slots__ = ("_events",)

    def __init__(self, events: list[bytes]) -> None:
        self._events = events

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for event in self._events:
            await anyio.lowlevel.checkpoint()
            yield event


class CannedTransport(httpx2.AsyncBaseTransport):
    """Answers every request with the same 200: a JSON body, or SSE events read one by one.

    Each answer costs one checkpoint (the scheduler runs once, as it would while a socket is
    read) and, for SSE, one more per event. ``requests`` counts the requests answered.
    """

    def __init__(self, api: str, *, stream: bool) -> None:
        if api not in APIS:
            raise ValueError(f"unknown API {api!r}; expected one of {APIS}")
        self.api = api
        self.stream = stream
        self.requests = 0
        self._headers = headers(stream=stream)
        self._body = json_body(api)
        self._events = sse_body(api)
        self.path = "/v1/responses" if api == "responses" else "/v1/chat/completions"

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        if request.url.path != self.path:  # a wrong call must fail, not measure a 404 path
            raise AssertionError(f"{self.api} transport got {request.method} {request.url}")
        self.requests += 1
        await anyio.lowlevel.checkpoint()
        if self.stream:
            return httpx2.Response(200, headers=self._headers, stream=_Events(self._events))
        return httpx2.Response(200, headers=self._headers, content=self._body)
