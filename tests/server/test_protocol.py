"""Client frames parsed, server frames built, and failures mapped to stable codes."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from hypothesis import given
from hypothesis import strategies as st

from llmpool import (
    ManagerClosedError,
    QueueFullError,
    QueueTimeoutError,
    RequestTooLargeError,
    StreamInterruptedError,
)
from llmpool.server import ErrorCode
from llmpool.server._protocol import (
    InvalidFrameError,
    MessageFrame,
    ResumeFrame,
    chunk_frame,
    error_frame,
    parse_client_frame,
)
from llmpool.server._turn import describe


def test_the_original_shape_and_the_typed_shape_are_one_message() -> None:
    """{"message": ...} and {"type": "message", "message": ...} parse alike; extra fields
    are ignored (newer clients)."""
    assert parse_client_frame('{"message": "hi"}') == MessageFrame(message="hi")
    assert parse_client_frame('{"type": "message", "message": "hi", "x": 1}') == MessageFrame(
        message="hi"
    )
    assert parse_client_frame('{"type": "resume", "last_seq": 4}') == ResumeFrame(
        type="resume", last_seq=4
    )


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "not JSON"),
        ('"hi"', "JSON object, not str"),
        ('{"type": "resume"}', "resume: last_seq: Field required"),
        ('{"type": 3}', "unknown type 3"),
    ],
)
def test_invalid_frames_say_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(InvalidFrameError, match=says):
        parse_client_frame(text)


def test_frames_have_the_documented_keys_in_order() -> None:
    """The chunk keeps the original shape; errors carry the details object."""
    chunk = json.loads(chunk_frame(3, "turn_a", "hi", "m"))
    assert list(chunk) == [
        "type",
        "seq",
        "turn_id",
        "content",
        "finish_reason",
        "model",
        "usage",
        "tools_used",
    ]
    error = json.loads(error_frame(4, None, ErrorCode.QUEUE_FULL, "full", retry_after_ms=5))
    assert error["error_details"] == {
        "message": "full",
        "request_id": None,
        "status": None,
        "retry_after_ms": 5,
    }


def _status(status: int, headers: dict[str, str] | None = None) -> openai.APIStatusError:
    request = httpx.Request("POST", "http://upstream/v1/responses")
    response = httpx.Response(status, headers=headers or {}, request=request)
    kind = openai.RateLimitError if status == 429 else openai.APIStatusError
    return kind("failed", response=response, body=None)


@pytest.mark.parametrize(
    ("exc", "code", "status", "retry_after_ms"),
    [
        pytest.param(QueueFullError("full"), ErrorCode.QUEUE_FULL, None, None, id="queue-full"),
        pytest.param(QueueTimeoutError("late"), ErrorCode.QUEUE_TIMEOUT, None, None, id="timeout"),
        pytest.param(
            StreamInterruptedError("cut"), ErrorCode.STREAM_INTERRUPTED, None, None, id="cut"
        ),
        pytest.param(
            ManagerClosedError("closed"), ErrorCode.SERVER_SHUTTING_DOWN, None, None, id="closed"
        ),
        pytest.param(
            RequestTooLargeError("big", tokens=9, limit=5),
            ErrorCode.MESSAGE_TOO_BIG,
            None,
            None,
            id="too-large",
        ),
        pytest.param(
            _status(429, {"retry-after-ms": "1500"}), ErrorCode.RATE_LIMITED, 429, 1500, id="429"
        ),
        pytest.param(_status(429), ErrorCode.RATE_LIMITED, 429, None, id="429-no-hint"),
        pytest.param(_status(503), ErrorCode.UPSTREAM_ERROR, 503, None, id="503"),
        pytest.param(
            openai.APIConnectionError(request=httpx.Request("POST", "http://u")),
            ErrorCode.UPSTREAM_ERROR,
            None,
            None,
            id="connection",
        ),
        pytest.param(KeyError("bug"), ErrorCode.INTERNAL_ERROR, None, None, id="bug"),
    ],
)
def test_failures_map_to_stable_codes(
    exc: Exception, code: ErrorCode, status: int | None, retry_after_ms: int | None
) -> None:
    failure = describe(exc)
    assert (failure.code, failure.status, failure.retry_after_ms) == (code, status, retry_after_ms)


def test_a_bug_does_not_leak_its_message() -> None:
    """internal_error tells the client to look in the server's log, not the exception."""
    assert "secret" not in describe(RuntimeError("secret detail")).message


@given(content=st.text(), model=st.one_of(st.none(), st.text()), seq=st.integers(0, 2**40))
def test_the_fast_chunk_frame_is_the_same_json_as_the_general_one(
    content: str, model: str | None, seq: int
) -> None:
    """The hot path builds a text delta's frame without a dict: same text, byte for byte,
    as json.dumps of the documented object (escapes, non-ASCII, null model)."""
    expected = json.dumps(
        {
            "type": "chunk",
            "seq": seq,
            "turn_id": "turn_0",
            "content": content,
            "finish_reason": None,
            "model": model,
            "usage": None,
            "tools_used": [],
        },
        ensure_ascii=False,
        separators=(",", ":"),
    )
    assert chunk_frame(seq, "turn_0", content, model) == expected
