"""A minimal, fast OpenAI-compatible upstream for the benchmarks (its own process).

A raw ASGI callable under uvicorn with ``httptools`` and ``uvloop`` (no framework, no access
log): the upstream must cost far less CPU per request than the clients it measures, so every
response body is built from pre-encoded templates. ``llmpool.testing.SimulatedProvider`` is
the right tool for fault injection but is several times too slow for this.

Endpoints (``POST``, JSON or ``"stream": true`` for SSE with a few chunks):

- ``/v1/chat/completions`` and ``/v1/responses``.

Per-request behaviour comes from optional path segments before ``/v1``, so any client (the
SDK, LiteLLM) selects it through its base URL alone::

    http://127.0.0.1:PORT/latency_ms=50/v1             # 50 ms before the response starts
    http://127.0.0.1:PORT/rpm=600,burst=10/v1          # a token-bucket request quota
    http://127.0.0.1:PORT/chunks=40/v1                 # streams of 40 text deltas (default 3)
    http://127.0.0.1:PORT/chunks=40,interval_ms=20/v1  # ... one every 20 ms, as a model writes

With a quota, every response carries OpenAI's ``x-ratelimit-limit-requests``,
``x-ratelimit-remaining-requests`` and ``x-ratelimit-reset-requests`` (durations like
``6m0s``, ``1s``, ``20ms``); a request over quota gets 429 with ``retry-after`` (whole
seconds, rounded up) and ``retry-after-ms`` and OpenAI's ``rate_limit_exceeded`` error body.

Control endpoints: ``GET /_bench/stats`` (counters and this process's CPU seconds) and
``POST /_bench/reset`` (zero counters, refill buckets).

Run: ``python -m benchmarks.server [--port 0] [--cpu N]``; it prints ``READY <port>``.
"""

from __future__ import annotations

import argparse
import asyncio  # noqa: TID251  the upstream is a uvloop/asyncio server, never run on trio
import itertools
import json
import math
import os
import resource
import socket
import sys
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

Options = tuple[float, tuple[int, int] | None, int | None, float]
"""A path prefix's (latency s, (rpm, burst) or None, text deltas or None, interval s)."""

_JSON_HEADERS = [(b"content-type", b"application/json")]
_SSE_HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
_TEXT = "Hello from the benchmark upstream."
_WORDS = ["Hello", " from", " the", " benchmark", " upstream."]


def format_duration(seconds: float) -> str:
    """OpenAI's reset duration: ``20ms`` below a second, else ``1s``, ``6m0s``, ``1m2.5s``."""
    if seconds < 1.0:
        return f"{max(0, math.ceil(seconds * 1000))}ms"
    minutes, rest = divmod(seconds, 60.0)
    secs = f"{rest:.3f}".rstrip("0").rstrip(".")
    return f"{int(minutes)}m{secs}s" if minutes else f"{secs}s"


class TokenBucket:
    """A request quota: ``rpm`` per minute, at most ``burst`` at once (refills continuously)."""

    __slots__ = ("burst", "rate", "rpm", "stamp", "tokens")

    def __init__(self, rpm: int, burst: int) -> None:
        self.rpm = rpm
        self.burst = burst
        self.rate = rpm / 60.0  # requests per second
        self.tokens = float(burst)
        self.stamp = time.monotonic()

    def take(self) -> float:
        """Take one request; returns 0.0 if granted, else the seconds until one is available."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate

    def headers(self) -> list[tuple[bytes, bytes]]:
        reset = (self.burst - self.tokens) / self.rate
        return [
            (b"x-ratelimit-limit-requests", str(self.rpm).encode()),
            (b"x-ratelimit-remaining-requests", str(int(self.tokens)).encode()),
            (b"x-ratelimit-reset-requests", format_duration(reset).encode()),
        ]


class Upstream:
    """The ASGI app: counters, buckets and pre-encoded response templates."""

    def __init__(self) -> None:
        self.ids = itertools.count()
        self.buckets: dict[tuple[int, int], TokenBucket] = {}
        self.options: dict[bytes, Options] = {}
        self.counts: dict[str, int] = {}
        self._chat_json = self._template(_chat_completion())
        self._resp_json = self._template(_response())
        self._sse: dict[tuple[bool, int | None], list[tuple[bytes, bytes]]] = {}

    def _events(self, chat: bool, deltas: int | None) -> list[tuple[bytes, bytes]]:
        """The SSE templates of a stream of ``deltas`` text deltas (None: the default stream)."""
        events = self._sse.get((chat, deltas))
        if events is None:
            if deltas is None:  # 4 chat chunks, 3 Responses deltas: the historical streams
                words = [*_WORDS[:3], "".join(_WORDS[3:])]
                payloads = _chat_chunks(words) if chat else _response_events(words[:3], _TEXT)
            else:
                words = [_WORDS[i % len(_WORDS)] for i in range(deltas)]
                text = "".join(words)
                payloads = _chat_chunks(words) if chat else _response_events(words, text)
            events = self._sse[chat, deltas] = [self._template(p) for p in payloads]
        return events

    @staticmethod
    def _template(payload: dict[str, Any]) -> tuple[bytes, bytes]:
        """Split an encoded payload around its ``@ID@`` marker (the id is filled per request)."""
        head, tail = json.dumps(payload, separators=(",", ":")).split("@ID@")
        return head.encode(), tail.encode()

    def _count(self, key: str) -> None:
        self.counts[key] = self.counts.get(key, 0) + 1

    def reset(self) -> None:
        self.counts.clear()
        self.buckets.clear()
        self.options.clear()

    def _parse_options(self, prefix: bytes) -> Options:
        cached = self.options.get(prefix)
        if cached is not None:
            return cached
        latency = 0.0
        quota: tuple[int, int] | None = None
        deltas: int | None = None
        interval = 0.0
        for segment in prefix.decode().strip("/").split("/"):
            fields = dict(item.split("=", 1) for item in segment.split(",") if "=" in item)
            if "latency_ms" in fields:
                latency = float(fields["latency_ms"]) / 1000.0
            if "rpm" in fields:
                quota = (int(fields["rpm"]), int(fields.get("burst", fields["rpm"])))
            if "chunks" in fields:
                deltas = max(1, int(fields["chunks"]))
            if "interval_ms" in fields:
                interval = float(fields["interval_ms"]) / 1000.0
        options = self.options[prefix] = (latency, quota, deltas, interval)
        return options

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        if path.startswith("/_bench/"):
            await self._control(path, send)
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        cut = path.find("/v1/")
        endpoint = path[cut:] if cut >= 0 else path
        if endpoint not in ("/v1/chat/completions", "/v1/responses"):
            self._count("404")
            await _respond(send, 404, _JSON_HEADERS, b'{"error":{"message":"not found"}}')
            return
        latency, quota, deltas, interval = self._parse_options(
            path[:cut].encode() if cut > 0 else b""
        )
        headers: list[tuple[bytes, bytes]] = []
        if quota is not None:
            bucket = self.buckets.get(quota)
            if bucket is None:
                bucket = self.buckets[quota] = TokenBucket(*quota)
            wait = bucket.take()
            headers = bucket.headers()
            if wait > 0.0:
                self._count("429")
                headers += [
                    (b"retry-after", str(math.ceil(wait)).encode()),
                    (b"retry-after-ms", str(math.ceil(wait * 1000)).encode()),
                ]
                await _respond(send, 429, _JSON_HEADERS + headers, _RATE_LIMIT_BODY)
                return
        if latency:
            await asyncio.sleep(latency)
        stream = b'"stream":true' in body or b'"stream": true' in body
        request_id = str(next(self.ids)).encode()
        chat = endpoint == "/v1/chat/completions"
        self._count("200")
        if not stream:
            head, tail = self._chat_json if chat else self._resp_json
            await _respond(send, 200, _JSON_HEADERS + headers, head + request_id + tail)
            return
        await send(
            {"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS + headers}
        )
        events = self._events(chat, deltas)
        for index, (head, tail) in enumerate(events):
            if interval and index:
                await asyncio.sleep(interval)
            prefix = b"data: " if chat else _event_prefix(index, len(events))
            await send(
                {
                    "type": "http.response.body",
                    "body": prefix + head + request_id + tail + b"\n\n",
                    "more_body": True,
                }
            )
        done = b"data: [DONE]\n\n" if chat else b""
        await send({"type": "http.response.body", "body": done, "more_body": False})

    async def _control(self, path: str, send: Send) -> None:
        if path == "/_bench/reset":
            self.reset()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        payload = {"counts": self.counts, "cpu_seconds": usage.ru_utime + usage.ru_stime}
        await _respond(send, 200, _JSON_HEADERS, json.dumps(payload).encode())


_RATE_LIMIT_BODY = json.dumps(
    {
        "error": {
            "message": "Rate limit reached for requests (benchmark upstream quota).",
            "type": "requests",
            "param": None,
            "code": "rate_limit_exceeded",
        }
    }
).encode()


def _event_prefix(index: int, total: int) -> bytes:
    if index == 0:
        kind = b"response.created"
    elif index == total - 1:
        kind = b"response.completed"
    else:
        kind = b"response.output_text.delta"
    return b"event: " + kind + b"\ndata: "


async def _respond(
    send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes
) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def _usage_chat() -> dict[str, int]:
    return {"prompt_tokens": 8, "completion_tokens": 7, "total_tokens": 15}


def _chat_completion() -> dict[str, Any]:
    return {
        "id": "chatcmpl-@ID@",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "bench-model",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": _TEXT, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": _usage_chat(),
        "system_fingerprint": None,
    }


def _chat_chunks(words: list[str]) -> list[dict[str, Any]]:
    def chunk(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        return {
            "id": "chatcmpl-@ID@",
            "object": "chat.completion.chunk",
            "created": 1700000000,
            "model": "bench-model",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }

    chunks = [chunk({"role": "assistant", "content": ""}, None)]
    chunks += [chunk({"content": word}, None) for word in words[:-1]]
    chunks.append(chunk({"content": words[-1]}, "stop"))
    return chunks


def _response(status: str = "completed", text: str = _TEXT) -> dict[str, Any]:
    return {
        "id": "resp_@ID@",
        "object": "response",
        "created_at": 1700000000,
        "status": status,
        "model": "bench-model",
        "output": [
            {
                "type": "message",
                "id": "msg_1",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": []}],
            }
        ]
        if status == "completed"
        else [],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": {
            "input_tokens": 8,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 7,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 15,
        },
    }


def _response_events(words: list[str], text: str) -> list[dict[str, Any]]:
    created = {"type": "response.created", "sequence_number": 0}
    created["response"] = _response("in_progress")
    events: list[dict[str, Any]] = [created]
    for number, word in enumerate(words, start=1):
        events.append(
            {
                "type": "response.output_text.delta",
                "sequence_number": number,
                "item_id": "msg_1",
                "output_index": 0,
                "content_index": 0,
                "delta": word,
                "logprobs": [],
            }
        )
    completed: dict[str, Any] = {"type": "response.completed", "sequence_number": len(events)}
    completed["response"] = _response(text=text)
    events.append(completed)
    for event in events[1:-1]:
        event["item_id"] = "msg_@ID@"
    return events


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: pick a free port")
    parser.add_argument("--cpu", type=int, default=None, help="pin this process to one core")
    args = parser.parse_args(argv)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})

    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        Upstream(),
        loop=_best("uvloop", "asyncio"),
        http=_best("httptools", "h11"),
        lifespan="off",
        access_log=False,
        log_level="warning",
        timeout_keep_alive=60,
        backlog=4096,
    )
    server = uvicorn.Server(config)
    print(f"READY {port}", flush=True)
    server.run(sockets=[sock])
    sys.exit(0)


def _best(preferred: str, fallback: str) -> str:
    try:
        __import__(preferred)
    except ImportError:
        return fallback
    return preferred


if __name__ == "__main__":
    main()
