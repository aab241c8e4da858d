"""A recovering stream's phase (``StreamState``) and what it does after a failure (``decide``).

Pure: no I/O, no mutation. ``RecoveringStream`` keeps one ``StreamState`` and moves it only
through ``StreamState.to``, which refuses a move ``TRANSITIONS`` does not allow (as Starlette's
``WebSocketState`` is guarded in ``starlette/websockets.py``):

    NEW       -> OPENING (the first ``__anext__``), CLOSED (``aclose`` before it)
    OPENING   -> READING (opened), OPENING (the first attempt; an open failed: rebuilt), DONE
    READING   -> STREAMING (its first events are queued), OPENING (retried, rebuilt), DONE
    STREAMING -> DONE
    DONE      -> DONE, CLOSED -> CLOSED (ending and closing are idempotent)

``decide(exc, ...)`` answers, for one failed attempt, ``"retry"``, ``"rebuild"`` or
``"give_up"`` (docs/recovery.md, "The rules"), as ``classify`` does for one ``run`` attempt.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, Literal

import openai

from . import _constants as C
from ._recovery import missing_reference
from ._retry import RetryDecision, classify
from ._stream_translate import StreamFailure, StreamTruncated

__all__ = ["StreamAction", "StreamDecision", "StreamState", "classify_stream", "decide"]


class StreamState(StrEnum):
    """The phase of a recovering stream.

    Attributes:
        NEW: built; nothing sent yet (nothing is sent before the first ``__anext__``).
        OPENING: an attempt's ``create`` call is in flight. The manager retries an open
            itself, so only a lost conversation is recovered from here.
        READING: the attempt is open and read up to its first event for the caller (text,
            tool-call delta, or ``complete``). A failure here may still be retried or rebuilt.
        STREAMING: events of the attempt reached the caller's queue: the stream is never
            restarted (that would duplicate output).
        DONE: ended after it started (completed, failed, cancelled, or closed); nothing more
            is read upstream. Its outcome is recorded once.
        CLOSED: closed before it started: nothing was sent and nothing is recorded.
    """

    NEW = "new"
    OPENING = "opening"
    READING = "reading"
    STREAMING = "streaming"
    DONE = "done"
    CLOSED = "closed"

    def to(self, new: StreamState) -> StreamState:
        """Check that a stream in this state may move to ``new``, and return ``new``.

        Args:
            new: the next state.

        Returns:
            ``new``.

        Raises:
            RuntimeError: ``TRANSITIONS`` does not allow the move, e.g. reading on after the
                stream ended or was closed (by another task while this one read it).
        """
        if new not in TRANSITIONS[self]:
            raise RuntimeError(f"a recovering stream cannot go from {self} to {new}")
        return new


_S = StreamState

TRANSITIONS: Final[Mapping[StreamState, frozenset[StreamState]]] = {
    # The first __anext__ starts the first attempt; aclose() before it sends nothing.
    _S.NEW: frozenset({_S.OPENING, _S.CLOSED}),
    # OPENING -> OPENING: the first attempt begins, or an open failed and is rebuilt.
    _S.OPENING: frozenset({_S.OPENING, _S.READING, _S.DONE}),
    # READING -> OPENING: the open's stream failed before its first event: retry or rebuild.
    _S.READING: frozenset({_S.OPENING, _S.STREAMING, _S.DONE}),
    _S.STREAMING: frozenset({_S.DONE}),
    _S.DONE: frozenset({_S.DONE}),
    _S.CLOSED: frozenset({_S.CLOSED}),
}

StreamAction = Literal["retry", "rebuild", "give_up"]


@dataclass(frozen=True, slots=True)
class StreamDecision:
    """What a recovering stream does after one failed attempt.

    Attributes:
        action: ``"retry"`` the same request, ``"rebuild"`` the input from the whole
            transcript and send it, or ``"give_up"`` (the failure reaches the caller).
        reason: a label for the ``recovered`` event and the logs; for a rebuild, the API's
            message.
        delay: seconds to wait before the next attempt: the server's hint (Retry-After) on a
            retry, ``0.0`` on a rebuild (a different request: no reason to wait), ``None`` to
            use the backoff.
        cooldown: the upstream said it is rate limited for ``delay`` seconds (``classify``).
        status: the HTTP status of the failure, if there was one.
        lost: the API's message when it said it lost the conversation (a 404/400 "… not
            found", ``previous_response_not_found``), else ``None``; set on a give-up too.
    """

    action: StreamAction
    reason: str
    delay: float | None = None
    cooldown: bool = False
    status: int | None = None
    lost: str | None = None


def classify_stream(exc: BaseException, *, max_retry_after: float) -> RetryDecision:
    """``classify``, extended to the failures only a stream has.

    A stream ``error`` / ``response.failed`` event (``StreamFailure``) is transient when it has
    no code or one of ``TRANSIENT_STREAM_ERROR_CODES``; a stream that ended without its final
    event (``StreamTruncated``) is transient; everything else is ``classify``'s answer.

    Args:
        exc: what the attempt raised.
        max_retry_after: longest server-requested wait honoured, seconds.

    Returns:
        The decision; ``retry`` is whether the failure is transient.
    """
    if isinstance(exc, StreamFailure):
        transient = exc.code is None or exc.code in C.TRANSIENT_STREAM_ERROR_CODES
        return RetryDecision(retry=transient, reason=f"stream error: {exc}")
    if isinstance(exc, StreamTruncated):
        return RetryDecision(retry=True, reason=str(exc))
    return classify(exc, max_retry_after=max_retry_after)


def decide(
    exc: BaseException,
    *,
    state: StreamState,
    attempts: int,
    recoveries: int,
    max_attempts: int,
    max_recoveries: int,
    can_rebuild: bool,
    max_retry_after: float,
) -> StreamDecision:
    """Decide what a recovering stream does after an attempt failed with ``exc``.

    The rules (docs/recovery.md): cancellation and every ``BaseException`` that is not an
    ``Exception`` are never retried; once the stream is past ``READING`` nothing is; a lost
    conversation is rebuilt while ``recoveries < max_recoveries`` and the input can be
    rebuilt; any other failure while ``OPENING`` gives up (the manager already retried the
    open under the same policy); while ``READING``, a transient failure (``classify_stream``)
    is retried while ``attempts - recoveries < max_attempts``, after the server's hint if it
    sent one.

    Args:
        exc: what the attempt raised.
        state: the stream's state when it failed.
        attempts: attempts made so far, the failed one included.
        recoveries: rebuilds made so far.
        max_attempts: attempts allowed, rebuilds not counted (``RetryPolicy.max_attempts``,
            or the view's ``max_attempts``).
        max_recoveries: rebuilds allowed (``RecoveryPolicy.max_recoveries``).
        can_rebuild: a whole transcript is at hand (a Responses stream with a
            ``Conversation``, or whose ``input`` is a list of items).
        max_retry_after: longest server-requested wait honoured, seconds; a longer one gives
            up.

    Returns:
        The decision.
    """
    if not isinstance(exc, Exception):
        return StreamDecision("give_up", "cancelled")
    if state not in (StreamState.OPENING, StreamState.READING):
        return StreamDecision("give_up", f"{state}: never restarted")
    status = exc.status_code if isinstance(exc, openai.APIStatusError) else None
    lost = missing_reference(exc)
    if lost is not None:
        if not can_rebuild:
            return StreamDecision("give_up", "no transcript to rebuild", status=status, lost=lost)
        if recoveries >= max_recoveries:
            reason = f"{recoveries} of {max_recoveries} rebuilds made"
            return StreamDecision("give_up", reason, status=status, lost=lost)
        return StreamDecision("rebuild", lost, delay=0.0, status=status, lost=lost)
    if state is StreamState.OPENING:
        return StreamDecision("give_up", "the manager retried the open", status=status)
    decision = classify_stream(exc, max_retry_after=max_retry_after)
    if not decision.retry:
        return StreamDecision("give_up", decision.reason, status=decision.status)
    if attempts - recoveries >= max_attempts:
        reason = f"{decision.reason}: {max_attempts} attempts made"
        return StreamDecision("give_up", reason, status=decision.status)
    return StreamDecision(
        "retry",
        f"{decision.reason}: {exc}",
        delay=decision.delay,
        cooldown=decision.cooldown,
        status=decision.status,
    )
