"""Chat Completions: audio replies and call ids reused across turns (docs/sanitizer.md)."""

from __future__ import annotations

from typing import Any

import pytest
from openai.types.chat import ChatCompletionMessage
from openai.types.chat.chat_completion_assistant_message_param import (
    ChatCompletionAssistantMessageParam,
)
from openai.types.chat.chat_completion_audio import ChatCompletionAudio
from pydantic import TypeAdapter

from llmpool._sanitizer import ConversationSanitizer

PORTABLE = ConversationSanitizer()
SAME_STORE = ConversationSanitizer(portable=False)
ASSISTANT = TypeAdapter(ChatCompletionAssistantMessageParam)

AUDIO = {
    "id": "audio_abc",
    "data": "UklGRiQAAABXQVZF",
    "expires_at": 1_700_000_000,
    "transcript": "It is 18 degrees in Paris.",
}
USER = {"role": "user", "content": "Weather in Paris? Answer aloud."}


def test_portable_audio_reply_becomes_its_transcript() -> None:
    """Portable: the audio id (held by the server, expiring) goes; the words stay as text."""
    result = PORTABLE.chat_messages([USER, {"role": "assistant", "content": None, "audio": AUDIO}])
    assert result == [USER, {"role": "assistant", "content": "It is 18 degrees in Paris."}]
    ASSISTANT.validate_python(result[1])


def test_same_store_audio_reply_keeps_the_audio_reference() -> None:
    """portable=False: the param form, ``{"id": …}``, a reference the server resolves."""
    result = SAME_STORE.chat_messages(
        [USER, {"role": "assistant", "content": None, "audio": AUDIO}]
    )
    assert result[1] == {"role": "assistant", "audio": {"id": "audio_abc"}}
    ASSISTANT.validate_python(result[1])


def test_an_sdk_audio_message_model_is_replayed_as_text() -> None:
    """A ChatCompletionMessage with ChatCompletionAudio, as the SDK parses it."""
    model = ChatCompletionMessage(
        role="assistant", content=None, audio=ChatCompletionAudio.model_validate(AUDIO)
    )
    assert PORTABLE.chat_messages([USER, model])[1] == {
        "role": "assistant",
        "content": "It is 18 degrees in Paris.",
    }


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (
            {"role": "assistant", "content": "Written answer.", "audio": AUDIO},
            {"role": "assistant", "content": "Written answer."},
        ),
        (
            {"role": "assistant", "audio": {**AUDIO, "transcript": ""}},
            {"role": "assistant"},
        ),
    ],
    ids=["text-wins", "no-transcript"],
)
def test_portable_audio_never_overwrites_text(
    message: dict[str, Any], expected: dict[str, Any]
) -> None:
    """The transcript fills only an empty ``content``; the audio reference goes either way."""
    assert PORTABLE.chat_messages([USER, message])[1] == expected


def calls(*ids: str) -> dict[str, Any]:
    entries = [
        {"id": i, "type": "function", "function": {"name": "weather", "arguments": "{}"}}
        for i in ids
    ]
    return {"role": "assistant", "content": None, "tool_calls": entries}


def tool(call_id: str, text: str) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": call_id, "content": text}


def test_call_ids_numbered_per_response_keep_every_turn() -> None:
    """A server that numbers calls per response (call_0, call_1) reuses them next turn: both
    turns' calls and tool results are kept."""
    history = [
        USER,
        calls("call_0", "call_1"),
        tool("call_0", "18 C"),
        tool("call_1", "sunny"),
        {"role": "assistant", "content": "18 C and sunny."},
        {"role": "user", "content": "And Lyon?"},
        calls("call_0"),
        tool("call_0", "16 C"),
    ]
    assert PORTABLE.chat_messages(history) == [
        {k: v for k, v in m.items() if v is not None} for m in history
    ]
