"""A user's file: recovering streams called with the SDK's typed parameters, checked by mypy
--strict without the pydantic plugin (``make typecheck``). ``tests/test_stream_params.py``
checks the other side: a misspelt parameter is an error.
"""

from __future__ import annotations

import llmpool
from llmpool import Conversation, RecoveringStream, stream_chat, stream_response


def streams(manager: llmpool.ConnectionManager) -> list[RecoveringStream]:
    view = manager.with_options(priority="high", session_id="t1")
    conversation = Conversation()
    chat = Conversation(api="chat")
    return [
        stream_response(manager, model="gpt-5", input="hi"),
        stream_response(
            view,
            model="gpt-5",
            input=[{"role": "user", "content": "hi"}],
            previous_response_id="resp_1",
            reasoning={"effort": "low"},
            include=["reasoning.encrypted_content"],
            store=False,
            extra_headers={"x-trace": "1"},
            timeout=30.0,
            on_error="event",
        ),
        stream_response(
            view,
            conversation=conversation,
            model="gpt-5",
            tools=[{"type": "function", "name": "f", "parameters": {}, "strict": True}],
            policy=llmpool.RecoveryPolicy(store=False),
        ),
        stream_response(manager, conversation=conversation, model="gpt-5", stream=True),
        stream_chat(manager, model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]),
        stream_chat(view, conversation=chat, model="gpt-4o-mini", max_completion_tokens=100),
    ]
