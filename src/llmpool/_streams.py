"""Recovering streams: ``stream_response`` and ``stream_chat``.

A recovering stream runs ``responses.create(stream=True)`` or ``chat.completions.create(
stream=True)`` through the ``ConnectionManager`` (each attempt holds a concurrency slot for
the stream's life, with the view's priority and session id) and yields typed ``StreamEvent``
envelopes. Its rules:

* Before any output (text or tool-call delta) was yielded, a failure is not the caller's
  problem. A 404 "Item with id … not found" or a 404/400 ``previous_response_not_found`` (the
  server lost the conversation: another instance, expired storage) rebuilds a self-contained
  input from the *whole* local transcript with ``ConversationSanitizer`` (portable: no server
  ids, tool-call pairs whole), drops ``previous_response_id`` and tries again, at most
  ``RecoveryPolicy.max_recoveries`` times. A disconnect, 5xx or transient stream ``error`` event
  after the stream opened is retried under the manager's ``RetryPolicy`` (``classify``,
  tenacity, ``anyio.sleep``). Either yields one ``recovered`` event before the output.
* After output began, the stream is never restarted (that would duplicate text): it ends with
  ``StreamInterruptedError`` carrying the partial output, or an ``error`` event. A stream
  error event that is not transient ends it the same way, whenever it comes.

Opening a stream is already retried by the manager (5xx, 429, connection errors before the
headers); those errors are not retried again here.

The stream's phase is one ``StreamState`` (new, opening, reading, streaming, done, closed),
moved only through the guarded transitions of ``_stream_decide``; what it does after a failed
attempt (retry, rebuild, give up) is that module's pure ``decide``.

In ``stats()`` a recovering stream is one request, counted once as its caller saw it. Each
open is a façade request of its own, made with the context variable ``CAPTURE`` marking it
(``Capture.inner``): the manager then neither counts nor publishes its outcome, and the stream
records its single outcome, with every open's attempts, through ``_record_stream`` when it ends.
"""

from __future__ import annotations

import logging
from collections import deque
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self, overload

import anyio
import openai
from tenacity import AsyncRetrying, RetryCallState, stop_never
from typing_extensions import Unpack

from . import _constants as C
from ._conversation import Conversation
from ._errors import StreamInterruptedError
from ._facade import ManagerView, PooledStream
from ._record import CAPTURE, AttemptRecord, Capture, RequestOutcome, RequestRecord
from ._recovery import RecoveryPolicy, request_params
from ._retry import backoff_strategy
from ._sanitizer import ConversationSanitizer
from ._stream_decide import StreamDecision, StreamState, classify_stream, decide
from ._stream_events import ErrorEvent, RecoveredEvent, StreamEvent
from ._stream_params import ChatParams, ChatTurnParams, ResponseParams, ResponseTurnParams
from ._stream_translate import ChatTranslator, ResponsesTranslator, StreamFailure, StreamTruncated

if TYPE_CHECKING:
    from ._manager import ConnectionManager
    from ._request import Request

__all__ = ["RecoveringStream", "stream_chat", "stream_response"]

logger = logging.getLogger(C.LOGGER_NAME)

# Seconds allowed to read what follows a final (or error) event. Reading the SDK stream to its
# end lets its async generators finish (trio warns about unfinished ones) and the HTTP/1.1
# connection be reused; the API ends the stream right after its last event.
_DRAIN_TIMEOUT = 5.0


Api = Literal["responses", "chat"]
OnError = Literal["raise", "event"]


class RecoveringStream:
    """A stream of ``StreamEvent``; see the module docstring. Built by ``stream_response``.

    Use it as ``async with`` and iterate it. Nothing is sent before the first ``__anext__``.
    With a ``Conversation``, the assistant's output is recorded in it when the turn completes;
    when the turn fails instead (or is cancelled, or closed before it completed), the input
    added for it is removed (``Conversation.discard_turn``): retry by adding it again.

    In ``stats()`` the stream counts once: completed (its ``complete`` event), failed (an
    error raised or ended with an ``error`` event), or cancelled (its caller cancelled it, or
    closed it before it ended). Each retry and rebuild adds one to ``retries``.

    Attributes:
        attempts: stream attempts made (opens by this wrapper; the manager's own retries of an
            open are not counted).
        recoveries: rebuilds after a lost conversation.
        last_request: the parameters of the last attempt (what was sent), or ``None``.
    """

    def __init__(
        self,
        target: ConnectionManager | ManagerView,
        api: Api,
        params: dict[str, Any],
        *,
        conversation: Conversation | None,
        policy: RecoveryPolicy,
        on_error: OnError,
        sanitizer: ConversationSanitizer | None,
    ) -> None:
        if on_error not in ("raise", "event"):
            raise ValueError(f"on_error must be 'raise' or 'event', got {on_error!r}")
        if conversation is not None and conversation.api != api:
            raise ValueError(f"the conversation speaks {conversation.api!r}, not {api!r}")
        self._view = target if isinstance(target, ManagerView) else target.with_options()
        self._retry = self._view.engine.config.retry
        options = self._view.options
        # The view's max_attempts (with_options) bounds the stream's own retries too.
        self._max_attempts = (
            self._retry.max_attempts
            if options is None or options.max_attempts is None
            else options.max_attempts
        )
        self._backoff = backoff_strategy(self._retry)
        self._api = api
        self._params = dict(params)
        self._conversation = conversation
        self._policy = policy
        self._on_error = on_error
        self._sanitizer = sanitizer or ConversationSanitizer()
        self._pending: deque[StreamEvent] = deque()
        self._upstream: PooledStream[Any] | None = None
        self._translator: ResponsesTranslator | ChatTranslator | None = None
        self._state = StreamState.NEW  # moved only by _to (see _stream_decide.TRANSITIONS)
        self._rebuilt = False  # the input is the whole transcript, rebuilt (every later attempt)
        self._recovery: StreamDecision | None = None  # the last retry or rebuild decided
        self._started_at = 0.0
        self._superseded: Request | None = None  # the last open ended as superseded
        self._inner: list[Request] = []  # the opens' requests, in order (see CAPTURE)
        self._capture: Capture | None = None
        self._outcome: RequestOutcome | None = None  # as _finish recorded it, once
        self._record: RequestRecord | None = None
        self.attempts = 0
        self.recoveries = 0
        self.last_request: dict[str, Any] | None = None

    @property
    def request_id(self) -> str | None:
        """Llmpool's request id of the current (or last) open, ``None`` before the first."""
        return self._inner[-1].id if self._inner else None

    @property
    def record(self) -> RequestRecord | None:
        """What llmpool did for this stream, once it has ended (else ``None``).

        One ``RequestRecord`` for the whole stream: its ``attempts`` are every open's attempts
        in order (each names its open's ``request_id``), ``latency`` runs from the first open
        to the end. ``None`` too if nothing reached the manager (e.g. it was closed).
        """
        return self._record

    # -- iteration -----------------------------------------------------------------------------

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> StreamEvent:
        try:
            while not self._pending:
                if self._state in (StreamState.DONE, StreamState.CLOSED):
                    raise StopAsyncIteration
                if self._state is StreamState.NEW:
                    self._to(StreamState.OPENING)
                    await self._start()
                else:
                    await self._read_one()
        except StopAsyncIteration:
            raise
        except BaseException as exc:
            self._to(StreamState.DONE)
            await self._release()  # shielded; the open's attempt ends before the record
            self._finish(exc)
            raise
        return self._pending.popleft()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the upstream stream (giving its slot back) and end iteration. Idempotent.

        A stream closed after it started but before it ended (no ``complete`` or ``error``
        yet) counts as cancelled in ``stats()``.
        """
        unused = self._state in (StreamState.NEW, StreamState.CLOSED)
        self._to(StreamState.CLOSED if unused else StreamState.DONE)
        await self._release()
        if not unused:
            self._finish(None, closed=True)

    def _to(self, state: StreamState) -> None:
        """Move to ``state``; ``RuntimeError`` if the move is not allowed (``StreamState.to``)."""
        self._state = self._state.to(state)

    async def _release(self) -> None:
        upstream, self._upstream = self._upstream, None
        if upstream is not None:
            await upstream.close()

    # -- the outcome ---------------------------------------------------------------------------

    def _failed_open(self, upstream: PooledStream[Any], exc: BaseException) -> None:
        """Mark an open's attempt failed, in the record, by what this stream saw.

        The façade may have seen the open end well (read to its end, or closed) where this
        stream saw an ``error`` event or a truncated answer.
        """
        request = upstream.request
        self._view.engine.outcomes.mark_failed(request, exc, request.ended_at)

    def _finish(self, exc: BaseException | None, *, closed: bool = False) -> None:
        """Record how the stream ended, once: in ``stats()``, its record, capture blocks."""
        if self._outcome is not None:
            return
        now = anyio.current_time()
        outcome: RequestOutcome = "completed"
        if closed or isinstance(exc, anyio.get_cancelled_exc_class()):
            outcome = "cancelled"
        elif exc is not None:
            outcome = "failed"
        self._outcome = outcome
        inner = self._inner
        if inner:
            attempts: list[AttemptRecord] = []
            for request in inner:
                attempts.extend(request.attempt_records(first=len(attempts) + 1))
            first = next((a for a in map(_first_attempt_at, inner) if a is not None), None)
            last = inner[-1]
            self._record = RequestRecord(
                request_id=last.id,
                session_id=last.session_id,
                priority=last.priority,
                outcome=outcome,
                error=None if exc is None else type(exc).__name__,
                attempts=tuple(attempts),
                queue_wait=None if first is None else first - self._started_at,
                latency=now - self._started_at,
                estimated_tokens=last.tokens,
                used_tokens=last.used_tokens,
            )
        if outcome != "completed" and self._conversation is not None:
            self._conversation.discard_turn()  # a failed turn leaves no input behind
        # An open refused at submission (the manager closed, too many tokens) was counted
        # there, as a failure: it never reached the request path, so it is not in ``inner``.
        counted = len(inner) < self.attempts
        if inner and not counted:
            event = last.finished(exc, outcome)._replace(
                error=None if exc is None else type(exc).__name__,
                exception=exc,
                attempts=len(self._record.attempts) if self._record is not None else 0,
                queue_wait=None if self._record is None else self._record.queue_wait,
                latency=now - self._started_at,
                stream=True,
            )
            self._view.engine.outcomes.stream_finished(event, self._record, self._capture, exc)

    # -- before output: open, prime, retry, rebuild ---------------------------------------------

    async def _start(self) -> None:
        self._started_at = anyio.current_time()
        outer = CAPTURE.get()
        self._capture = Capture(() if outer is None else outer.collectors, inner=self._inner)
        retrying = AsyncRetrying(
            stop=stop_never,  # bounded by _should_retry: max_attempts and max_recoveries
            wait=self._wait,
            retry=self._should_retry,
            before_sleep=self._before_sleep,
            sleep=anyio.sleep,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    await self._attempt()
        except Exception as exc:
            if isinstance(exc, StreamFailure | StreamTruncated):
                self._interrupted(exc, None)  # ours: never leaked as such
                return
            if self._on_error == "raise":
                raise
            self._to(StreamState.DONE)
            self._pending.append(self._error_event(exc, getattr(exc, "code", None), None))
            self._finish(exc)

    async def _attempt(self) -> None:
        self._to(StreamState.OPENING)
        params = self._next_params()
        self.attempts += 1
        self.last_request = params
        upstream = await self._open(params)
        translator: ResponsesTranslator | ChatTranslator = (
            ResponsesTranslator(self._started_at)
            if self._api == "responses"
            else ChatTranslator(self._started_at)
        )
        try:
            # Inside the try: a move refused (closed meanwhile by another task) closes upstream.
            self._to(StreamState.READING)
            events: list[StreamEvent] = []
            while not events:
                try:
                    event = await upstream.__anext__()
                except StopAsyncIteration:
                    events = translator.finish()
                    break
                events = translator.feed(event)
            self._to(StreamState.STREAMING)  # once per stream: nothing restarts it
        except BaseException as exc:
            if isinstance(exc, StreamFailure):
                await _drain(upstream)
            await upstream.close()
            self._failed_open(upstream, exc)
            raise
        self._upstream, self._translator = upstream, translator
        self._view.engine.outcomes.first_chunk(upstream.request, self._started_at)
        recovery = self._recovery
        if recovery is not None:
            kind: Literal["rebuilt", "retried"] = "rebuilt" if self._rebuilt else "retried"
            self._pending.append(
                RecoveredEvent(
                    kind=kind, reason=recovery.reason, attempt=self.attempts, status=recovery.status
                )
            )
        self._pending.extend(events)
        await self._complete_if_done()

    async def _open(self, params: dict[str, Any]) -> PooledStream[Any]:
        stream: PooledStream[Any]
        token = CAPTURE.set(self._capture)  # marks the open as this stream's (see _record)
        try:
            if self._api == "responses":
                stream = await self._view.responses.create(**params)
            else:
                stream = await self._view.chat.completions.create(**params)
        finally:
            CAPTURE.reset(token)
        return stream

    def _should_retry(self, state: RetryCallState) -> bool:
        """Tenacity's ``retry``: ``decide``, and on a retry or rebuild remember the decision."""
        outcome = state.outcome
        exc = None if outcome is None else outcome.exception()
        if exc is None:
            return False  # success
        decision = decide(
            exc,
            state=self._state,
            attempts=self.attempts,
            recoveries=self.recoveries,
            max_attempts=self._max_attempts,
            max_recoveries=self._policy.max_recoveries,
            can_rebuild=self._can_rebuild(),
            max_retry_after=self._retry.max_retry_after,
        )
        if decision.action == "give_up":
            return False
        if decision.action == "rebuild":
            self.recoveries += 1
            self._rebuilt = True
        self._recovery = decision
        return True

    def _wait(self, state: RetryCallState) -> float:
        """Tenacity's ``wait``: the decision's delay, else the backoff (seconds)."""
        assert self._recovery is not None  # tenacity waits only after _should_retry said yes
        if self._recovery.delay is not None:
            return self._recovery.delay
        return float(self._backoff(state))

    def _before_sleep(self, state: RetryCallState) -> None:
        decision = self._recovery
        assert decision is not None  # as in _wait
        if self._inner:
            replaced = self._inner[-1]
            outcomes = self._view.engine.outcomes
            outcomes.retry_scheduled(
                replaced, state.upcoming_sleep, decision.reason, decision.cooldown
            )
            if replaced is not self._superseded:
                # The next open is a request of its own: this one's events end here.
                self._superseded = replaced
                failure = None if state.outcome is None else state.outcome.exception()
                outcomes.superseded(replaced, failure)
        action = "rebuilding the input" if decision.action == "rebuild" else "retrying"
        logger.info(
            "stream attempt %d failed before output (%s); %s in %.3fs",
            self.attempts,
            decision.reason,
            action,
            state.upcoming_sleep,
            extra={"llmpool_event": "stream_recovery", "reason": decision.reason},
        )

    def _can_rebuild(self) -> bool:
        if self._api != "responses":
            return False
        return self._conversation is not None or isinstance(self._params.get("input"), list)

    def _next_params(self) -> dict[str, Any]:
        return request_params(
            self._api,
            self._params,
            conversation=self._conversation,
            policy=self._policy,
            sanitizer=self._sanitizer,
            rebuild=self._rebuilt,
        )

    # -- after output began --------------------------------------------------------------------

    async def _read_one(self) -> None:
        upstream, translator = self._upstream, self._translator
        assert upstream is not None  # both set by _attempt
        assert translator is not None
        try:
            try:
                event = await upstream.__anext__()
            except StopAsyncIteration:
                self._pending.extend(translator.finish())
            else:
                self._pending.extend(translator.feed(event))
        except Exception as exc:
            if isinstance(exc, StreamFailure):
                await _drain(upstream)
            self._to(StreamState.DONE)
            await self._release()
            self._failed_open(upstream, exc)
            self._interrupted(exc, translator)
        else:
            await self._complete_if_done()

    def _interrupted(
        self, exc: Exception, translator: ResponsesTranslator | ChatTranslator | None
    ) -> None:
        """End the stream: raise ``StreamInterruptedError``, or queue an ``ErrorEvent``."""
        self._to(StreamState.DONE)
        request = self._inner[-1] if self._inner else None
        began = "after output began" if translator is not None else "before any output"
        text = "" if translator is None else translator.text
        error = StreamInterruptedError(
            f"the stream broke {began} ({type(exc).__name__}: {exc}); "
            "not restarted, to avoid duplicating output"
            if translator is not None
            else f"the stream failed {began} ({type(exc).__name__}: {exc})",
            partial_text=text,
            partial_items=[] if translator is None else translator.items,
            response_id=None if translator is None else translator.response_id,
            code=exc.code if isinstance(exc, StreamFailure) else None,
            request_id=None if request is None else request.id,
            session_id=None if request is None else request.session_id,
            priority=None if request is None else request.priority.value,
            attempts=self.attempts,
            waited=anyio.current_time() - self._started_at,
            last_status=getattr(exc, "status_code", None),
        )
        if self._on_error == "raise":
            raise error from exc
        self._pending.append(self._error_event(exc, str(error), translator))
        self._finish(error)

    def _error_event(
        self,
        exc: Exception,
        details: str | None,
        translator: ResponsesTranslator | ChatTranslator | None,
    ) -> ErrorEvent:
        """The ``error`` event ending the stream (``on_error="event"``) for failure ``exc``."""
        retryable = classify_stream(exc, max_retry_after=self._retry.max_retry_after).retry
        return ErrorEvent(
            error=f"{type(exc).__name__}: {exc}",
            error_details=details,
            partial_text="" if translator is None else translator.text,
            request_id=self.request_id,
            error_type=type(exc).__name__,
            status=exc.status_code if isinstance(exc, openai.APIStatusError) else None,
            retryable=retryable,
            output_started=translator is not None,
        )

    async def _complete_if_done(self) -> None:
        """After a ``complete`` event: close the upstream, record the turn."""
        if not self._pending or self._pending[-1].type != "complete":
            return
        translator = self._translator
        if self._upstream is not None:
            await _drain(self._upstream)
        self._to(StreamState.DONE)
        await self._release()
        conversation = self._conversation
        if translator is not None and conversation is not None and translator.final is not None:
            if self._api == "responses":
                conversation.record_response(translator.final)
            else:
                conversation.record_chat_message(translator.final)
        self._finish(None)


def _first_attempt_at(request: Request) -> float | None:
    return request.first_attempt_at()


async def _drain(upstream: PooledStream[Any]) -> None:
    """Read ``upstream`` to its end (bounded by ``_DRAIN_TIMEOUT``), ignoring what comes."""
    with anyio.move_on_after(_DRAIN_TIMEOUT):
        try:
            async for _event in upstream:
                pass
        except Exception:  # the stream's outcome is already decided
            return


@overload
def stream_response(
    target: ConnectionManager | ManagerView,
    *,
    conversation: None = None,
    policy: RecoveryPolicy | None = None,
    on_error: OnError = "raise",
    sanitizer: ConversationSanitizer | None = None,
    **params: Unpack[ResponseParams],
) -> RecoveringStream: ...
@overload
def stream_response(
    target: ConnectionManager | ManagerView,
    *,
    conversation: Conversation,
    policy: RecoveryPolicy | None = None,
    on_error: OnError = "raise",
    sanitizer: ConversationSanitizer | None = None,
    **params: Unpack[ResponseTurnParams],
) -> RecoveringStream: ...
def stream_response(
    target: ConnectionManager | ManagerView,
    *,
    conversation: Conversation | None = None,
    policy: RecoveryPolicy | None = None,
    on_error: OnError = "raise",
    sanitizer: ConversationSanitizer | None = None,
    **params: Any,
) -> RecoveringStream:
    """A recovering ``responses.create(stream=True, **params)`` through the manager.

    Args:
        target: the manager, or ``manager.with_options(priority=..., session_id=...)``.
        conversation: the local transcript. When given, ``input`` and
            ``previous_response_id`` come from it (do not pass them): the new items with
            ``previous_response_id`` first, the whole sanitised transcript after a 404; the
            output is recorded in it on completion. Without it, a 404 can only be recovered
            when ``input`` is a list of items (the whole transcript).
        policy: rebuild rules; ``RecoveryPolicy()`` by default.
        on_error: what a failure the stream does not recover from does; it applies before
            output as after it. ``"raise"`` (default): iterating raises — before any output,
            the API's error unchanged (a 401, a 400, the last 5xx when retries ran out), a
            ``StreamInterruptedError`` for a non-transient stream ``error`` event, or llmpool's
            own error (``QueueTimeoutError``, ``ManagerClosedError``…); after output began,
            ``StreamInterruptedError`` with the partial output. ``"event"``: every one of
            these ends the stream with one ``ErrorEvent`` instead (its last event), carrying
            ``error_type``, ``status``, ``retryable``, ``output_started``, ``partial_text`` and
            ``request_id``; iterating then ends normally. Cancellation always propagates, and
            misuse (``ValueError``) is raised here either way.
        sanitizer: builds the portable input; ``ConversationSanitizer()`` by default.
        **params: ``responses.create`` parameters (``model``, ``input``, ``tools``…), typed
            as the SDK types them (``ResponseParams``; with a conversation
            ``ResponseTurnParams``, without ``input`` and ``previous_response_id``), plus the
            SDK's request options (``extra_headers``, ``timeout``…). ``stream=True`` is
            implied. The SDK's own ``conversation`` parameter (server-side Conversations) is
            not available here: ``conversation`` is llmpool's local transcript.

    Returns:
        The stream; nothing is sent before it is iterated.

    Raises:
        ValueError: ``on_error`` is not ``"raise"``/``"event"``, the conversation speaks Chat
            Completions, or ``input`` is given with a conversation.

    Iterating raises (with ``on_error="raise"``) what ``ConnectionManager.run`` raises, the
    API's error when it is not recoverable, and ``StreamInterruptedError``.
    """
    if conversation is not None and ("input" in params or "previous_response_id" in params):
        raise ValueError("with a conversation, input and previous_response_id come from it")
    return RecoveringStream(
        target,
        "responses",
        params,
        conversation=conversation,
        policy=policy or RecoveryPolicy(),
        on_error=on_error,
        sanitizer=sanitizer,
    )


@overload
def stream_chat(
    target: ConnectionManager | ManagerView,
    *,
    conversation: None = None,
    on_error: OnError = "raise",
    **params: Unpack[ChatParams],
) -> RecoveringStream: ...
@overload
def stream_chat(
    target: ConnectionManager | ManagerView,
    *,
    conversation: Conversation,
    on_error: OnError = "raise",
    **params: Unpack[ChatTurnParams],
) -> RecoveringStream: ...
def stream_chat(
    target: ConnectionManager | ManagerView,
    *,
    conversation: Conversation | None = None,
    on_error: OnError = "raise",
    **params: Any,
) -> RecoveringStream:
    """A recovering ``chat.completions.create(stream=True, **params)`` through the manager.

    Chat Completions keep no server state, so there is nothing to rebuild: a failure before
    output is retried, one after raises ``StreamInterruptedError``. With ``on_error="event"``
    every failure not recovered, before output or after, ends the stream with an
    ``ErrorEvent`` instead. ``stream_options={"include_usage": True}`` is sent unless given,
    so the ``complete`` event has usage.

    Args:
        target: the manager, or ``manager.with_options(priority=..., session_id=...)``.
        conversation: a ``Conversation(api="chat")``; ``messages`` come from it and the
            assistant message is recorded in it on completion.
        on_error: ``"raise"`` (default) or ``"event"``, as in ``stream_response``: with
            ``"event"``, an open refused or retried in vain, as well as a stream broken after
            output began, ends the stream with one ``ErrorEvent``.
        **params: ``chat.completions.create`` parameters, typed as the SDK types them
            (``ChatParams``: ``model`` and ``messages`` required; with a conversation
            ``ChatTurnParams``, without ``messages``), plus the SDK's request options.
            ``stream=True`` is implied.

    Raises:
        ValueError: as ``stream_response``; ``messages`` given with a conversation.
    """
    if conversation is not None and "messages" in params:
        raise ValueError("with a conversation, messages come from it")
    return RecoveringStream(
        target,
        "chat",
        params,
        conversation=conversation,
        policy=RecoveryPolicy(max_recoveries=0),
        on_error=on_error,
        sanitizer=None,
    )
