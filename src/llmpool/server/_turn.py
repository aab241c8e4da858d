"""One turn of a chat session: a recovering stream written into the session's frames.

A turn ends in exactly one last frame: ``complete`` (``stopped`` true or false) or ``error``
with a stable code (``describe``), also when it is cancelled at shutdown. The conversation
keeps what the turn did: a completed turn its input and the answer (recorded by the
recovering stream), a stopped turn its input and the partial text (``Conversation.
add_assistant``), a failed turn nothing (the stream discards its input; the client sends the
message again).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal, TypeAlias

import anyio
import openai

from llmpool import (
    CompleteEvent,
    DeadlineExceededError,
    LLMPoolError,
    ManagerClosedError,
    ManagerView,
    QueueFullError,
    QueueTimeoutError,
    RecoveringStream,
    RequestTooLargeError,
    StreamInterruptedError,
    parse_retry_after,
    stream_chat,
    stream_response,
)

from ._config import ServerConfig
from ._protocol import ErrorCode, chunk_frame, complete_frame, error_frame
from ._session import Session, Turn
from ._shared import SessionRefusedError, SharedSessions

if TYPE_CHECKING:
    from llmpool.redis import TurnLock

__all__ = ["STOPPED", "Ending", "Failure", "TurnRunner", "describe"]

logger = logging.getLogger("llmpool.server")


@dataclass(frozen=True, slots=True)
class Failure:
    """How a failed turn is reported: an ``error`` frame's code and details."""

    code: ErrorCode
    message: str
    status: int | None = None
    retry_after_ms: int | None = None


STOPPED: Final = "stopped"
"""A turn ended by ``stop``."""

Ending: TypeAlias = "CompleteEvent | Failure | Literal['stopped']"
"""How a turn ended: its last event, its failure, or stopped."""


def describe(exc: Exception) -> Failure:
    """The error code and details for an exception that ended a turn.

    llmpool's own errors map by type (``QueueFullError`` -> ``queue_full``, …); the SDK's
    errors that reached the turn (retries ran out, or not retryable) by status: 429 ->
    ``rate_limited`` with the server's ``Retry-After`` (``retry-after-ms`` first), others
    -> ``upstream_error``. Anything else is a bug: ``internal_error``.
    """
    if isinstance(exc, StreamInterruptedError):
        return Failure(ErrorCode.STREAM_INTERRUPTED, str(exc))
    if isinstance(exc, QueueFullError):
        return Failure(ErrorCode.QUEUE_FULL, str(exc))
    if isinstance(exc, QueueTimeoutError):
        return Failure(ErrorCode.QUEUE_TIMEOUT, str(exc))
    if isinstance(exc, ManagerClosedError):
        return Failure(ErrorCode.SERVER_SHUTTING_DOWN, str(exc))
    if isinstance(exc, RequestTooLargeError):
        return Failure(ErrorCode.MESSAGE_TOO_BIG, str(exc))
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        if status == 429:
            wait = parse_retry_after(exc.response.headers)
            after = None if wait is None else round(wait * 1000)
            return Failure(ErrorCode.RATE_LIMITED, exc.message, status, after)
        return Failure(ErrorCode.UPSTREAM_ERROR, exc.message, status)
    if isinstance(exc, openai.APIError | DeadlineExceededError | LLMPoolError):
        last: int | None = getattr(exc, "last_status", None)
        return Failure(ErrorCode.UPSTREAM_ERROR, str(exc), last)
    return Failure(ErrorCode.INTERNAL_ERROR, "the server failed; the error is in its log")


class TurnRunner:
    """Runs turns with the server's model settings and reports them.

    Attributes:
        shared: conversations and turn locks shared with other instances, or ``None``.

    Args:
        config: the model, API, instructions and output limit of every turn.
        now: the loop clock, seconds.
        on_end: called once per turn with ``(session, turn, outcome, request_id)``; outcome
            is ``"completed"``, ``"stopped"`` or an ``ErrorCode`` value.
    """

    def __init__(
        self,
        config: ServerConfig,
        now: Callable[[], float],
        on_end: Callable[[Session, Turn, str, str | None], None],
    ) -> None:
        self._config = config
        self._now = now
        self._on_end = on_end
        self.shared: SharedSessions | None = None  # set by the lifespan with redis_url

    def _stream(self, view: ManagerView, session: Session) -> RecoveringStream:
        config = self._config
        if config.api == "chat":
            chat: dict[str, Any] = {}
            if config.max_output_tokens is not None:
                chat["max_completion_tokens"] = config.max_output_tokens
            return stream_chat(view, conversation=session.conversation, model=config.model, **chat)
        params: dict[str, Any] = {}
        if config.instructions is not None:
            params["instructions"] = config.instructions
        if config.max_output_tokens is not None:
            params["max_output_tokens"] = config.max_output_tokens
        return stream_response(
            view, conversation=session.conversation, model=config.model, **params
        )

    async def run(self, session: Session, turn: Turn, message: str, view: ManagerView) -> None:
        """Run ``turn`` of ``session`` for the user's ``message``; emit its frames.

        Never raises an ``Exception``: a failure is the turn's ``error`` frame. Cancellation
        from outside (shutdown past its grace) emits ``server_shutting_down`` and propagates.
        With shared sessions the conversation is saved before the last frame, so a client
        that answers at once finds the session free.
        """
        ending: Ending | None = None
        stream: RecoveringStream | None = None
        lock: TurnLock | None = None
        shared = self.shared
        try:
            if shared is not None:
                lock = await shared.begin(session)
            stream = self._stream(view, session)
            if shared is None or lock is None:
                ending = await self._generate(session, turn, message, stream)
            else:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(shared.keep, lock)
                    ending = await self._generate(session, turn, message, stream)
                    tg.cancel_scope.cancel()
        except SessionRefusedError as exc:
            ending = Failure(exc.code, str(exc))
        finally:
            if shared is not None and lock is not None:
                await shared.finish(session, lock)
            # Synchronous from here: it runs whole even when shutdown cancels the turn.
            if ending is None:  # cancelled from outside: shutdown ended the turn
                ending = Failure(ErrorCode.SERVER_SHUTTING_DOWN, "the server is shutting down")
            request_id = None if stream is None else stream.request_id
            if isinstance(ending, CompleteEvent):
                self._complete(session, turn, ending)
                outcome = "completed"
            elif isinstance(ending, Failure):
                self._error(session, turn, ending, request_id)
                outcome = ending.code.value
            else:
                self._stopped(session, turn)
                outcome = "stopped"
            session.end(turn)
            self._on_end(session, turn, outcome, request_id)

    async def _generate(
        self, session: Session, turn: Turn, message: str, stream: RecoveringStream
    ) -> Ending:
        """Stream the answer into the session's frames; how the turn ended."""
        conversation = session.conversation
        conversation.add_user(message)
        final: CompleteEvent | None = None
        try:
            with turn.scope:
                async with stream:
                    async for event in stream:
                        if event.type == "chunk":
                            self._chunk(session, turn, event.content, event.model)
                        elif event.type == "complete":
                            final = event
        except Exception as exc:
            failure = describe(exc)
            if failure.code is ErrorCode.INTERNAL_ERROR:
                logger.exception("turn %s failed", turn.id)
            return failure
        if final is not None:
            return final
        if turn.stop_requested:
            partial = "".join(turn.parts)
            if partial:  # the stream discarded the turn's input: keep it, and the text
                conversation.add_user(message)
                conversation.add_assistant(partial)
            return STOPPED
        return Failure(ErrorCode.SERVER_SHUTTING_DOWN, "the server is shutting down")

    def _chunk(self, session: Session, turn: Turn, content: str, model: str | None) -> None:
        turn.parts.append(content)
        session.emit(lambda seq: chunk_frame(seq, turn.id, content, model))

    def _elapsed_ms(self, turn: Turn) -> float:
        return (self._now() - turn.started_at) * 1000.0

    def _complete(self, session: Session, turn: Turn, final: CompleteEvent) -> None:
        usage = None if final.usage is None else final.usage.model_dump()
        reason = final.finish_reason or "stop"
        tools = list(final.tools_used)
        session.emit(
            lambda seq: chunk_frame(
                seq, turn.id, "", final.model, finish_reason=reason, usage=usage, tools_used=tools
            )
        )
        elapsed = self._elapsed_ms(turn)
        session.emit(lambda seq: complete_frame(seq, turn.id, elapsed, usage, stopped=False))

    def _stopped(self, session: Session, turn: Turn) -> None:
        elapsed = self._elapsed_ms(turn)
        session.emit(lambda seq: complete_frame(seq, turn.id, elapsed, None, stopped=True))

    def _error(
        self, session: Session, turn: Turn, failure: Failure, request_id: str | None
    ) -> None:
        session.emit(
            lambda seq: error_frame(
                seq,
                turn.id,
                failure.code,
                failure.message,
                request_id=request_id,
                status=failure.status,
                retry_after_ms=failure.retry_after_ms,
            )
        )
