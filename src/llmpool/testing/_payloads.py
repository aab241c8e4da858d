"""JSON bodies and SSE events of the simulated provider, shaped like OpenAI's.

The reply text is deterministic: ``"Simulated reply to: "`` followed by the text of the last user
message (at most 200 characters). Token counts are whitespace-separated word counts: input
tokens count the words of every input message (and ``instructions``), output tokens those of
the reply; both are at least 1.

Responses output (``response_output``) is deterministic too: a ``reasoning`` item first when the
request has a ``reasoning`` parameter (with ``encrypted_content`` when ``include`` asks for
``"reasoning.encrypted_content"``); then a ``function_call`` of the first function tool when the
request has ``tools`` and its last input item is a user message (arguments: the first declared
parameter set to the user's text); otherwise an assistant message (``reply_text``, or
``"Simulated reply to tool output: <output>"`` when the last input item is a
``function_call_output``).
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Iterator, Mapping
from typing import Any

__all__ = [
    "ENCRYPTED_PREFIX",
    "REPLY_PREFIX",
    "TOOL_REPLY_PREFIX",
    "chat_chunks",
    "chat_completion",
    "chat_usage",
    "count_words",
    "error_body",
    "input_tokens",
    "insufficient_quota_body",
    "invalid_api_key_body",
    "new_id",
    "rate_limit_body",
    "reply_text",
    "response_events",
    "response_object",
    "response_output",
    "sse_event",
    "status_error_body",
    "word_chunks",
]

REPLY_PREFIX = "Simulated reply to: "
TOOL_REPLY_PREFIX = "Simulated reply to tool output: "
ENCRYPTED_PREFIX = "gAAAAsim-"  # prefix of the simulator's opaque encrypted reasoning
_MAX_ECHO = 200

JSON = dict[str, Any]

_STATUS_MESSAGES: dict[int, str] = {
    400: "Simulated bad request.",
    408: "Request timed out.",
    409: "Simulated conflict, please retry.",
    500: "The server had an error while processing your request. Sorry about that! (simulated)",
    502: "Bad gateway. (simulated)",
    503: "The server is overloaded or not ready yet. (simulated)",
    504: "Gateway timeout. (simulated)",
}


def new_id(prefix: str, hex_chars: int = 24) -> str:
    """A random id such as ``resp_`` followed by ``hex_chars`` hex digits."""
    return prefix + secrets.token_hex(hex_chars // 2)


def error_body(
    message: str, type_: str, *, param: str | None = None, code: str | None = None
) -> JSON:
    """OpenAI's error envelope: ``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def invalid_api_key_body(key: str) -> JSON:
    """The 401 body for a missing (empty ``key``) or wrong API key; the key is masked."""
    if not key:
        message = (
            "You didn't provide an API key. You need to provide your API key in an "
            "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
        )
        return error_body(message, "invalid_request_error")
    masked = "*" * len(key) if len(key) <= 8 else f"{key[:3]}{'*' * (len(key) - 7)}{key[-4:]}"
    message = (
        f"Incorrect API key provided: {masked}. You can find your API key at "
        "https://platform.openai.com/account/api-keys."
    )
    return error_body(message, "invalid_request_error", code="invalid_api_key")


def rate_limit_body(model: str, retry_after: float | None, rpm: tuple[int, int] | None) -> JSON:
    """A 429 ``rate_limit_exceeded`` body; ``rpm`` is ``(limit, used)`` for a quota breach."""
    wait = "" if retry_after is None else f" Please try again in {retry_after:g}s."
    if rpm is not None:
        message = (
            f"Rate limit reached for {model} in organization org-simulated on requests per min "
            f"(RPM): Limit {rpm[0]}, Used {rpm[1]}, Requested 1.{wait}"
        )
    else:
        message = f"Rate limit reached for {model} (simulated).{wait}"
    return error_body(message, "requests", code="rate_limit_exceeded")


def insufficient_quota_body() -> JSON:
    """OpenAI's 429 ``insufficient_quota`` body (a billing problem: retrying will not help)."""
    message = "You exceeded your current quota, please check your plan and billing details."
    return error_body(message, "insufficient_quota", code="insufficient_quota")


def status_error_body(status: int) -> JSON:
    """The error body of a simulated HTTP error: ``server_error`` for 5xx, else a 4xx type."""
    message = _STATUS_MESSAGES.get(status, f"Simulated HTTP {status} error.")
    type_ = "server_error" if status >= 500 else "invalid_request_error"
    return error_body(message, type_)


def _content_text(content: object, part_types: tuple[str, ...]) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [
            part["text"]
            for part in content
            if isinstance(part, Mapping)
            and part.get("type") in part_types
            and isinstance(part.get("text"), str)
        ]
        return " ".join(texts)
    return ""


def _messages(items: object) -> list[Mapping[str, Any]]:
    if isinstance(items, str):
        return [{"role": "user", "content": items}]
    if not isinstance(items, list):
        return []
    return [
        item
        for item in items
        if isinstance(item, Mapping)
        and item.get("type", "message") == "message"
        and isinstance(item.get("role"), str)
    ]


_PART_TYPES = ("input_text", "output_text", "text")


def reply_text(messages: object) -> str:
    """The deterministic reply to Responses ``input`` or Chat Completions ``messages``."""
    last_user = ""
    for message in _messages(messages):
        if message.get("role") == "user":
            last_user = _content_text(message.get("content"), _PART_TYPES)
    return REPLY_PREFIX + last_user[:_MAX_ECHO]


def count_words(text: str) -> int:
    """Whitespace-separated words in ``text`` (the simulator's token count)."""
    return len(text.split())


def input_tokens(messages: object, instructions: object = None) -> int:
    """Token count of a request: its words, at least 1."""
    words = sum(
        count_words(_content_text(message.get("content"), _PART_TYPES))
        for message in _messages(messages)
    )
    if isinstance(instructions, str):
        words += count_words(instructions)
    return max(1, words)


def word_chunks(text: str) -> list[str]:
    """``text`` split into word chunks (each word with its leading whitespace)."""
    return re.findall(r"\s*\S+", text) or [text]


def sse_event(data: object, event: str | None = None) -> bytes:
    """One SSE event: ``event: <type>`` (if given) and ``data: <json>``, blank-line ended."""
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    head = f"event: {event}\n" if event is not None else ""
    return f"{head}data: {payload}\n\n".encode()


def _message_item(item_id: str, text: str | None) -> JSON:
    content = [] if text is None else [_output_text(text)]
    status = "in_progress" if text is None else "completed"
    return {
        "type": "message",
        "id": item_id,
        "status": status,
        "role": "assistant",
        "content": content,
    }


def _output_text(text: str) -> JSON:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _last_input_item(items: object) -> Mapping[str, Any] | None:
    if isinstance(items, str):
        return {"type": "message", "role": "user", "content": items}
    if isinstance(items, list) and items and isinstance(items[-1], Mapping):
        return items[-1]
    return None


def _first_function_tool(tools: object) -> Mapping[str, Any] | None:
    if not isinstance(tools, list):
        return None
    for tool in tools:
        if isinstance(tool, Mapping) and tool.get("type") == "function" and tool.get("name"):
            return tool
    return None


def _tool_arguments(tool: Mapping[str, Any], text: str) -> str:
    parameters = tool.get("parameters")
    properties = parameters.get("properties") if isinstance(parameters, Mapping) else None
    name = next(iter(properties), "input") if isinstance(properties, Mapping) else "input"
    return json.dumps({name: text})


def _reasoning_item(request: Mapping[str, Any], item_id: str, text: str) -> JSON:
    item: JSON = {"type": "reasoning", "id": item_id, "summary": [], "status": "completed"}
    include = request.get("include")
    if isinstance(include, list) and "reasoning.encrypted_content" in include:
        item["encrypted_content"] = ENCRYPTED_PREFIX + secrets.token_hex(8) + "-" + text[:40]
    return item


def response_output(request: Mapping[str, Any]) -> list[JSON]:
    """The output items answering a Responses ``request`` (see the module docstring)."""
    items = request.get("input")
    last = _last_input_item(items)
    output: list[JSON] = []
    if request.get("reasoning") is not None:
        output.append(_reasoning_item(request, new_id("rs_"), reply_text(items)))
    tool = _first_function_tool(request.get("tools"))
    if (
        tool is not None
        and last is not None
        and last.get("type", "message") == "message"
        and last.get("role") == "user"
    ):
        user_text = _content_text(last.get("content"), _PART_TYPES)
        output.append(
            {
                "type": "function_call",
                "id": new_id("fc_"),
                "call_id": new_id("call_"),
                "name": tool["name"],
                "arguments": _tool_arguments(tool, user_text[:_MAX_ECHO]),
                "status": "completed",
            }
        )
        return output
    if last is not None and last.get("type") == "function_call_output":
        tool_output = last.get("output")
        text = TOOL_REPLY_PREFIX + (tool_output if isinstance(tool_output, str) else "")[:_MAX_ECHO]
    else:
        text = reply_text(items)
    output.append(_message_item(new_id("msg_"), text))
    return output


def _output_words(output: list[JSON]) -> int:
    words = 0
    for item in output:
        if item.get("type") == "message":
            words += sum(count_words(part.get("text", "")) for part in item["content"])
        elif item.get("type") == "function_call":
            words += count_words(item.get("arguments", ""))
    return words


def response_object(
    request: Mapping[str, Any],
    *,
    response_id: str,
    item_id: str = "",
    text: str = "",
    done: bool = True,
    output: list[JSON] | None = None,
) -> JSON:
    """A Responses API ``response`` object (completed, or in progress with no output yet).

    ``output`` gives the output items; without it the output is one assistant message
    ``item_id`` with ``text``.
    """
    if output is None:
        output = [_message_item(item_id, text)]
    in_tokens = input_tokens(request.get("input"), request.get("instructions"))
    out_tokens = max(1, _output_words(output))
    created = int(time.time())
    return {
        "id": response_id,
        "object": "response",
        "created_at": created,
        "completed_at": created if done else None,
        "status": "completed" if done else "in_progress",
        "background": bool(request.get("background", False)),
        "error": None,
        "incomplete_details": None,
        "instructions": request.get("instructions"),
        "max_output_tokens": request.get("max_output_tokens"),
        "metadata": request.get("metadata") or {},
        "model": request.get("model"),
        "output": output if done else [],
        "parallel_tool_calls": bool(request.get("parallel_tool_calls", True)),
        "previous_response_id": request.get("previous_response_id"),
        "prompt_cache_key": request.get("prompt_cache_key"),
        "reasoning": _reasoning_config(request.get("reasoning")),
        "safety_identifier": request.get("safety_identifier"),
        "service_tier": "default",
        "store": request.get("store") is not False,
        "temperature": request.get("temperature", 1.0),
        "text": {"format": {"type": "text"}, "verbosity": "medium"},
        "tool_choice": request.get("tool_choice", "auto"),
        "tools": request.get("tools") or [],
        "top_p": request.get("top_p", 1.0),
        "truncation": request.get("truncation", "disabled"),
        "usage": {
            "input_tokens": in_tokens,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": out_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": in_tokens + out_tokens,
        }
        if done
        else None,
        "user": request.get("user"),
    }


def _reasoning_config(reasoning: object) -> JSON:
    if isinstance(reasoning, Mapping):
        return {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")}
    return {"effort": None, "summary": None}


def _item_events(index: int, item: JSON) -> list[tuple[str, JSON]]:
    """The events streaming one output item, as the real API sends them."""
    kind = item.get("type")
    if kind == "message":
        item_id: str = item["id"]
        text: str = item["content"][0]["text"]
        part_ids = {"item_id": item_id, "output_index": index, "content_index": 0}
        return [
            (
                "response.output_item.added",
                {"output_index": index, "item": _message_item(item_id, None)},
            ),
            ("response.content_part.added", {**part_ids, "part": _output_text("")}),
            *(
                ("response.output_text.delta", {**part_ids, "delta": chunk, "logprobs": []})
                for chunk in word_chunks(text)
            ),
            ("response.output_text.done", {**part_ids, "text": text, "logprobs": []}),
            ("response.content_part.done", {**part_ids, "part": _output_text(text)}),
            ("response.output_item.done", {"output_index": index, "item": item}),
        ]
    if kind == "function_call":
        ids = {"item_id": item["id"], "output_index": index}
        arguments: str = item["arguments"]
        pending = {**item, "arguments": "", "status": "in_progress"}
        return [
            ("response.output_item.added", {"output_index": index, "item": pending}),
            *(
                ("response.function_call_arguments.delta", {**ids, "delta": chunk})
                for chunk in _argument_chunks(arguments)
            ),
            ("response.function_call_arguments.done", {**ids, "arguments": arguments}),
            ("response.output_item.done", {"output_index": index, "item": item}),
        ]
    # reasoning: encrypted_content is only final in output_item.done (SDK docs).
    pending = {key: value for key, value in item.items() if key != "encrypted_content"}
    pending["status"] = "in_progress"
    return [
        ("response.output_item.added", {"output_index": index, "item": pending}),
        ("response.output_item.done", {"output_index": index, "item": item}),
    ]


def _argument_chunks(arguments: str, size: int = 8) -> list[str]:
    return [arguments[i : i + size] for i in range(0, len(arguments), size)] or [""]


def response_events(completed: JSON) -> Iterator[tuple[str, JSON]]:
    """The SSE events ``(type, data)`` streaming ``completed``, a finished response object."""
    pending = {
        **completed,
        "status": "in_progress",
        "completed_at": None,
        "output": [],
        "usage": None,
    }
    events: list[tuple[str, JSON]] = [
        ("response.created", {"response": pending}),
        ("response.in_progress", {"response": pending}),
    ]
    for index, item in enumerate(completed["output"]):
        events.extend(_item_events(index, item))
    events.append(("response.completed", {"response": completed}))
    for sequence_number, (event_type, data) in enumerate(events):
        yield event_type, {"type": event_type, "sequence_number": sequence_number, **data}


def chat_usage(request: Mapping[str, Any], text: str) -> JSON:
    """The ``usage`` of a chat completion answering ``request`` with ``text``."""
    prompt = input_tokens(request.get("messages"))
    completion = max(1, count_words(text))
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def chat_completion(request: Mapping[str, Any], *, completion_id: str, text: str) -> JSON:
    """A ``chat.completion`` object answering ``request`` with ``text``."""
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.get("model"),
        "system_fingerprint": "fp_simulated",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": chat_usage(request, text),
    }


def chat_chunks(request: Mapping[str, Any], *, completion_id: str, text: str) -> Iterator[JSON]:
    """The ``chat.completion.chunk`` objects streaming ``text`` (``[DONE]`` not included).

    A first chunk carries the role, then one chunk per word, a chunk with ``finish_reason``,
    and a usage chunk (no choices) when ``stream_options.include_usage`` is true.
    """
    options = request.get("stream_options")
    include_usage = isinstance(options, Mapping) and bool(options.get("include_usage"))
    base: JSON = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": request.get("model"),
        "system_fingerprint": "fp_simulated",
    }
    if include_usage:
        base["usage"] = None

    def chunk(delta: JSON, finish_reason: str | None = None) -> JSON:
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
        return {**base, "choices": [choice]}

    yield chunk({"role": "assistant", "content": "", "refusal": None})
    for word in word_chunks(text):
        yield chunk({"content": word})
    yield chunk({}, "stop")
    if include_usage:
        yield {**base, "choices": [], "usage": chat_usage(request, text)}
