"""A recovering stream's state machine (``StreamState``) and its decision after a failure
(``decide``, ``classify_stream``): pure, driven from tables."""

from __future__ import annotations

import itertools
from typing import Any

import httpx
import openai
import pytest

from llmpool._stream_decide import StreamState, classify_stream, decide
from llmpool._stream_translate import StreamFailure, StreamTruncated
from tests.helpers import status_error

NEW = StreamState.NEW
OPENING = StreamState.OPENING
READING = StreamState.READING
STREAMING = StreamState.STREAMING
DONE = StreamState.DONE
CLOSED = StreamState.CLOSED

# Written out, not read from TRANSITIONS: the moves docs/recovery.md's rules allow.
ALLOWED = {
    (NEW, OPENING),  # the first __anext__
    (NEW, CLOSED),  # aclose() before it: nothing sent
    (OPENING, OPENING),  # the first attempt; an open that failed is rebuilt
    (OPENING, READING),
    (OPENING, DONE),
    (READING, OPENING),  # failed before its first event: retried or rebuilt
    (READING, STREAMING),
    (READING, DONE),
    (STREAMING, DONE),
    (DONE, DONE),  # ending is idempotent (aclose after the end)
    (CLOSED, CLOSED),
}


@pytest.mark.parametrize(
    ("current", "new"),
    list(itertools.product(StreamState, StreamState)),
    ids=lambda state: str(state),
)
def test_transitions(current: StreamState, new: StreamState) -> None:
    """Every move is allowed or refused with RuntimeError, as the table says."""
    if (current, new) in ALLOWED:
        assert current.to(new) is new
    else:
        with pytest.raises(RuntimeError, match=f"cannot go from {current} to {new}$"):
            current.to(new)


def reachable(start: StreamState) -> set[StreamState]:
    seen, todo = {start}, [start]
    while todo:
        state = todo.pop()
        for new in StreamState:
            try:
                state.to(new)
            except RuntimeError:
                continue
            if new not in seen:
                seen.add(new)
                todo.append(new)
    return seen


def test_output_never_restarts() -> None:
    """Once events reached the caller (STREAMING), no move leads back to opening or reading;
    an ended or closed stream stays so. A new stream can reach every state."""
    assert reachable(STREAMING) == {STREAMING, DONE}
    assert reachable(DONE) == {DONE}
    assert reachable(CLOSED) == {CLOSED}
    assert reachable(NEW) == set(StreamState)


def test_a_stream_retried_and_rebuilt_walks_the_table() -> None:
    """A stream whose open is rebuilt, whose stream is then retried, and which completes."""
    state = NEW
    for new in (OPENING, OPENING, READING, OPENING, READING, STREAMING, DONE, DONE):
        state = state.to(new)
    assert state is DONE


def with_message(status: int, message: str, code: str | None = None) -> openai.APIStatusError:
    error = status_error(status, code=code)
    error.message = message
    return error


class Cancelled(BaseException):
    """Stands for the event loop's cancellation exception (a BaseException)."""


ITEM_404 = with_message(404, "Item with id 'rs_abc' not found.")
PREVIOUS_400 = with_message(400, "x", code="previous_response_not_found")
CONNECTION = openai.APIConnectionError(request=httpx.Request("POST", "http://x.test/v1"))


def row(
    exc: BaseException,
    expected: tuple[str, float | None, bool, int | None, bool],
    name: str,
    **situation: Any,
) -> Any:
    """One case: ``exc`` in ``situation`` (decide's keyword arguments that differ from the
    defaults in test_decide) gives ``expected``."""
    return pytest.param(exc, situation, expected, id=name)


@pytest.mark.parametrize(
    ("exc", "situation", "expected"),
    [
        # A lost conversation: rebuilt at once (delay 0) while rebuilds remain and it can be.
        row(ITEM_404, ("rebuild", 0.0, False, 404, True), "404-item-opening", state=OPENING),
        row(ITEM_404, ("rebuild", 0.0, False, 404, True), "404-item-reading"),
        row(
            PREVIOUS_400,
            ("rebuild", 0.0, False, 400, True),
            "400-previous-opening",
            state=OPENING,
        ),
        row(
            StreamFailure("gone", "previous_response_not_found"),
            ("rebuild", 0.0, False, None, True),
            "previous-not-found-event",
        ),
        row(
            ITEM_404,
            ("rebuild", 0.0, False, 404, True),
            "rebuild-not-bounded-by-attempts",
            attempts=3,
        ),
        row(
            ITEM_404,
            ("give_up", None, False, 404, True),
            "rebuilds-used-up",
            attempts=3,
            recoveries=2,
        ),
        row(
            ITEM_404,
            ("give_up", None, False, 404, True),
            "recovery-disabled",
            max_recoveries=0,
        ),
        row(
            ITEM_404,
            ("give_up", None, False, 404, True),
            "no-transcript-to-rebuild",
            can_rebuild=False,
        ),
        row(
            with_message(404, "Invalid URL (POST /v1/responsez)"),
            ("give_up", None, False, 404, False),
            "404-other",
        ),
        # While opening: the manager already retried the open.
        row(status_error(503), ("give_up", None, False, 503, False), "503-opening", state=OPENING),
        row(CONNECTION, ("give_up", None, False, None, False), "connect-opening", state=OPENING),
        row(
            status_error(429, {"retry-after": "2"}),
            ("give_up", None, False, 429, False),
            "429-opening",
            state=OPENING,
        ),
        # While reading to the first event: transient failures are retried.
        row(
            StreamFailure("boom", "server_error"),
            ("retry", None, False, None, False),
            "transient-event",
        ),
        row(
            StreamFailure("slow", "rate_limit_exceeded"),
            ("retry", None, False, None, False),
            "rate-limit-event",
        ),
        row(StreamFailure("boom", None), ("retry", None, False, None, False), "event-no-code"),
        row(
            StreamFailure("no", "invalid_prompt"),
            ("give_up", None, False, None, False),
            "non-transient-event",
        ),
        row(StreamTruncated("cut"), ("retry", None, False, None, False), "truncated"),
        row(CONNECTION, ("retry", None, False, None, False), "connect-reading"),
        row(status_error(503), ("retry", None, False, 503, False), "503-reading"),
        row(
            status_error(429, {"retry-after": "2"}),
            ("retry", 2.0, True, 429, False),
            "429-retry-after-honoured",
        ),
        row(
            status_error(429, {"retry-after": "600"}),
            ("give_up", None, False, 429, False),
            "retry-after-too-long",
        ),
        row(status_error(400), ("give_up", None, False, 400, False), "400-reading"),
        row(ValueError("bug"), ("give_up", None, False, None, False), "caller-bug"),
        # max_attempts bounds retries; rebuilds are not counted against it.
        row(
            status_error(503),
            ("give_up", None, False, 503, False),
            "attempts-used-up",
            attempts=3,
        ),
        row(
            status_error(503),
            ("retry", None, False, 503, False),
            "rebuilds-not-counted",
            attempts=3,
            recoveries=1,
        ),
        row(
            StreamTruncated("cut"),
            ("give_up", None, False, None, False),
            "view-max-attempts-1",
            max_attempts=1,
        ),
        # Never: cancellation, and any failure once past READING.
        row(Cancelled(), ("give_up", None, False, None, False), "cancelled"),
        row(KeyboardInterrupt(), ("give_up", None, False, None, False), "base-exception"),
        row(Cancelled(), ("give_up", None, False, None, False), "cancelled-opening", state=OPENING),
        row(ITEM_404, ("give_up", None, False, None, False), "lost-after-output", state=STREAMING),
        row(CONNECTION, ("give_up", None, False, None, False), "after-output", state=STREAMING),
        row(RuntimeError("closed"), ("give_up", None, False, None, False), "ended", state=DONE),
    ],
)
def test_decide(exc: BaseException, situation: dict[str, Any], expected: tuple[Any, ...]) -> None:
    """Each failure is retried, rebuilt or given up, as docs/recovery.md's rules say:
    (action, delay, cooldown, status, lost)."""
    arguments: dict[str, Any] = {
        "state": READING,
        "attempts": 1,
        "recoveries": 0,
        "max_attempts": 3,
        "max_recoveries": 2,
        "can_rebuild": True,
        "max_retry_after": 60.0,
    } | situation
    decision = decide(exc, **arguments)
    lost = decision.lost is not None
    assert (decision.action, decision.delay, decision.cooldown, decision.status, lost) == expected


def test_decision_reasons_name_the_failure() -> None:
    """A rebuild's reason is the API's message (the `recovered` event shows it); a retry's
    names the failure and the error."""
    rebuild = decide(
        ITEM_404,
        state=OPENING,
        attempts=1,
        recoveries=0,
        max_attempts=3,
        max_recoveries=2,
        can_rebuild=True,
        max_retry_after=60.0,
    )
    assert rebuild.reason == rebuild.lost == ITEM_404.message
    error = status_error(503)
    retry = decide(
        error,
        state=READING,
        attempts=1,
        recoveries=0,
        max_attempts=3,
        max_recoveries=2,
        can_rebuild=True,
        max_retry_after=60.0,
    )
    assert retry.reason == f"status 503: {error}"


@pytest.mark.parametrize(
    ("exc", "retryable"),
    [
        pytest.param(StreamFailure("boom", "server_error"), True, id="server-error-event"),
        pytest.param(StreamFailure("busy", "server_is_overloaded"), True, id="overloaded-event"),
        pytest.param(StreamFailure("boom", None), True, id="event-no-code"),
        pytest.param(StreamFailure("no", "invalid_prompt"), False, id="non-transient-event"),
        pytest.param(StreamTruncated("cut"), True, id="truncated"),
        pytest.param(CONNECTION, True, id="connect"),
        pytest.param(status_error(401), False, id="401"),
        pytest.param(
            status_error(429, code="insufficient_quota"), False, id="429-insufficient-quota"
        ),
    ],
)
def test_classify_stream(exc: BaseException, retryable: bool) -> None:
    """The `retryable` of an `error` event: transient stream codes and truncation, else
    classify's answer."""
    assert classify_stream(exc, max_retry_after=60.0).retry is retryable
