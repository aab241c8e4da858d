"""The SDK-shaped façade over ``ConnectionManager``.

``responses.create`` and ``chat.completions.create`` take the SDK's parameters and return its
types; ``stream=True`` returns a ``PooledStream``.

Priority and session id are not API parameters, so they are set on a view:
``manager.with_options(priority="high", session_id="t1").responses.create(...)`` — the way the
SDK's own ``client.with_options(...)`` sets per-call client options.
"""

from __future__ import annotations

import warnings
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, Self, TypeVar, cast, overload

import anyio
import openai
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.chat.completion_create_params import (
    CompletionCreateParamsNonStreaming,
    CompletionCreateParamsStreaming,
)
from openai.types.responses import Response, ResponseStreamEvent
from openai.types.responses.response_create_params import (
    ResponseCreateParamsNonStreaming,
    ResponseCreateParamsStreaming,
)
from typing_extensions import TypedDict, Unpack  # the SDK's TypedDicts are typing_extensions'

from . import _constants as C
from ._config import CallOptions
from ._errors import ManagerClosedError
from ._headers import validate_extra_headers
from ._record import RequestRecord
from ._request import Request
from ._tokens import estimate_tokens
from ._types import Priority

if TYPE_CHECKING:
    import httpx2
    from openai._legacy_response import LegacyAPIResponse

    from ._manager import ConnectionManager

__all__ = [
    "ChatCompletionCreateParams",
    "ChatCompletionStreamParams",
    "ManagerView",
    "PooledStream",
    "RequestOptions",
    "ResponseCreateParams",
    "ResponseStreamParams",
]

T = TypeVar("T")
E = TypeVar("E")


class RequestOptions(TypedDict, total=False):
    """The SDK's per-request options, accepted by every façade method as in the SDK."""

    extra_headers: Mapping[str, str] | None
    extra_query: Mapping[str, object] | None
    extra_body: object | None
    timeout: float | httpx2.Timeout | None


class ResponseCreateParams(ResponseCreateParamsNonStreaming, RequestOptions, total=False):
    """``responses.create`` parameters without streaming (the SDK's TypedDict)."""


class ResponseStreamParams(ResponseCreateParamsStreaming, RequestOptions, total=False):
    """``responses.create`` parameters with ``stream=True`` (the SDK's TypedDict)."""


class ChatCompletionCreateParams(CompletionCreateParamsNonStreaming, RequestOptions, total=False):
    """``chat.completions.create`` parameters without streaming (the SDK's TypedDict)."""


class ChatCompletionStreamParams(CompletionCreateParamsStreaming, RequestOptions, total=False):
    """``chat.completions.create`` parameters with ``stream=True`` (the SDK's TypedDict)."""


class PooledStream(Generic[E]):
    """An SDK ``AsyncStream`` that holds its concurrency slot until it ends.

    Opening the stream (up to the response headers) is one attempt under the retry policy and
    ``request_timeout``; once open, it is never retried or restarted (a mid-stream failure
    raises the SDK's error). The slot and client are given back when the stream is exhausted,
    fails, or is closed. Use it as ``async with`` or iterate it to the end: a stream dropped
    unclosed gives its slot back when garbage-collected, with a ``ResourceWarning``.

    Iterate it like the SDK's stream: ``async for event in stream``.
    """

    def __init__(
        self, manager: ConnectionManager, request: Request, stream: openai.AsyncStream[E]
    ) -> None:
        self._manager = manager
        self.request = request
        self._stream = stream
        self._ended = False
        self._aborted = False

    @property
    def request_id(self) -> str:
        """Llmpool's request id."""
        return self.request.id

    @property
    def response(self) -> httpx2.Response:
        """The HTTP response (status, headers) of the open stream."""
        return self._stream.response

    @property
    def aborted(self) -> bool:
        """Whether the manager closed this stream at shutdown."""
        return self._aborted

    @property
    def record(self) -> RequestRecord | None:
        """What llmpool did for this stream, once it has ended (else ``None``).

        Its attempts' ``duration`` runs to the end of the stream, not to the headers.
        """
        return self.request.record()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> E:
        if self._aborted:
            raise self.request.error(
                ManagerClosedError, "the manager closed this stream", anyio.current_time()
            )
        if self._ended:
            raise StopAsyncIteration
        try:
            event = await self._stream.__anext__()
        except StopAsyncIteration:
            self._end(None)
            raise
        except BaseException as exc:
            if self.aborted and isinstance(exc, Exception):
                # The manager closed the upstream under a reader blocked on it (shutdown).
                raise self.request.error(
                    ManagerClosedError, "the manager closed this stream", anyio.current_time()
                ) from exc
            await self._close_upstream()
            self._end(exc)
            raise
        # The final event carries the usage (Responses: response.completed; Chat: the
        # include_usage chunk): it settles the stream's token reservation.
        usage = getattr(event, "usage", None) or getattr(
            getattr(event, "response", None), "usage", None
        )
        total = getattr(usage, "total_tokens", None)
        if isinstance(total, int):
            self.request.used_tokens = total
        return event

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the upstream response and give the slot back. Idempotent."""
        if not self._ended:
            await self._close_upstream()
            self._end(None)

    aclose = close

    async def _abort(self) -> None:
        """Shutdown: end as failed, then close the upstream; reads raise ``ManagerClosedError``.

        The failure is recorded *before* the close is awaited: closing yields (on trio it
        always does), and a reader woken by the close may call ``close()`` meanwhile, which
        must find the stream ended rather than record a success.
        """
        if not self._ended:
            self._aborted = True
            error = self.request.error(
                ManagerClosedError, "the manager closed this stream", anyio.current_time()
            )
            self._end(error)
            await self._close_upstream()

    async def _close_upstream(self) -> None:
        with anyio.CancelScope(shield=True):
            await self._stream.close()

    def _end(self, exc: BaseException | None) -> None:
        if not self._ended:
            self._ended = True
            self._manager._end_stream(self, exc)

    def __del__(self) -> None:
        if not getattr(self, "_ended", True):
            warnings.warn(
                f"llmpool stream {self.request.id} was never closed; its slot is released now",
                ResourceWarning,
                stacklevel=1,
            )
            self._end(None)


class ManagerView:
    """The manager seen with one priority, session id and set of per-call options.

    Built by ``ConnectionManager.with_options``. Has ``run``, ``responses`` and ``chat`` like
    the SDK client; each raises what ``ConnectionManager.run`` raises, plus
    ``DeadlineExceededError`` when the view has a ``deadline`` and ``InvalidHeaderError`` for
    ``extra_headers`` that HTTP cannot carry.
    """

    __slots__ = ("_manager", "chat", "options", "priority", "responses", "session_id")

    def __init__(
        self,
        manager: ConnectionManager,
        priority: Priority,
        session_id: str | None,
        options: CallOptions | None = None,
    ) -> None:
        self._manager = manager
        self.priority = priority
        self.session_id = session_id
        self.options = options
        self.responses = PooledResponses(self)
        self.chat = PooledChat(self)

    async def run(
        self,
        fn: Callable[[openai.AsyncOpenAI], Awaitable[T]],
        *,
        estimated_tokens: int = 0,
        model: str | None = None,
    ) -> T:
        """``ConnectionManager.run`` with this view's priority, session id and options."""
        manager = self._manager
        request = manager._admit(
            self.priority, self.session_id, estimated_tokens, model, self.options
        )
        return await manager._execute(request, fn, inject_session=True)

    def _params(self, params: dict[str, Any]) -> dict[str, Any]:
        validate_extra_headers(params.get("extra_headers"))  # before queueing, never retried
        if self.session_id is not None:
            headers = dict(params.get("extra_headers") or {})
            headers[C.SESSION_HEADER] = self.session_id
            params["extra_headers"] = headers
        return params

    def _estimate(self, params: Mapping[str, Any]) -> int:
        """Token cost of one call: prompt estimate plus the output cap (or the default).

        OpenAI counts a request against the tokens-per-minute limit by its prompt and its
        ``max_tokens`` before it runs ("Rate limits" guide); the usage corrects it after.
        Computed only when some upstream has a token limit.
        """
        manager = self._manager
        if not manager._tokens_limited():
            return 0
        prompt = params.get("input", params.get("messages"))
        output = (
            params.get("max_output_tokens")
            or params.get("max_completion_tokens")
            or params.get("max_tokens")
        )
        if not isinstance(output, int):
            output = manager.config.rate_limit.default_output_tokens
        return estimate_tokens(prompt) + estimate_tokens(params.get("instructions")) + output

    async def _call(
        self,
        raw: Callable[[openai.AsyncOpenAI], Awaitable[LegacyAPIResponse[Any]]],
        params: Mapping[str, Any],
    ) -> Any:
        manager = self._manager
        request = manager._admit(
            self.priority, self.session_id, self._estimate(params), _model(params), self.options
        )

        async def fn(client: openai.AsyncOpenAI) -> Any:
            response = await raw(client)
            if request.current_upstream is not None:
                manager._learn(request.current_upstream, response.headers, request.model)
            return response.parse()

        return await manager._execute(request, fn, inject_session=False)

    async def _stream(
        self,
        raw: Callable[[openai.AsyncOpenAI], Awaitable[LegacyAPIResponse[Any]]],
        params: Mapping[str, Any],
    ) -> PooledStream[Any]:
        manager = self._manager
        request = manager._admit(
            self.priority, self.session_id, self._estimate(params), _model(params), self.options
        )

        async def fn(client: openai.AsyncOpenAI) -> openai.AsyncStream[Any]:
            response = await raw(client)
            if request.current_upstream is not None:
                manager._learn(request.current_upstream, response.headers, request.model)
            return cast(openai.AsyncStream[Any], response.parse())

        upstream = await manager._open_stream(request, fn)
        return manager._track_stream(PooledStream(manager, request, upstream))


def _model(params: Mapping[str, Any]) -> str | None:
    model = params.get("model")
    return model if isinstance(model, str) else None


class PooledResponses:
    """``responses`` through the manager (Responses API)."""

    __slots__ = ("_view",)

    def __init__(self, view: ManagerView) -> None:
        self._view = view

    @overload
    async def create(
        self, **params: Unpack[ResponseStreamParams]
    ) -> PooledStream[ResponseStreamEvent]: ...
    @overload
    async def create(self, **params: Unpack[ResponseCreateParams]) -> Response: ...
    async def create(self, **params: Any) -> Response | PooledStream[ResponseStreamEvent]:
        """``client.responses.create`` under the scheduler, with retries.

        Takes the SDK's parameters unchanged. Returns the SDK's ``Response``, or with
        ``stream=True`` a ``PooledStream`` of the SDK's ``ResponseStreamEvent``. Raises what
        ``ConnectionManager.run`` raises.
        """
        kwargs = self._view._params(params)

        def call(client: openai.AsyncOpenAI) -> Awaitable[LegacyAPIResponse[Any]]:
            return client.responses.with_raw_response.create(**kwargs)

        if kwargs.get("stream"):
            return cast(PooledStream[ResponseStreamEvent], await self._view._stream(call, kwargs))
        return cast(Response, await self._view._call(call, kwargs))


class PooledChatCompletions:
    """``chat.completions`` through the manager (Chat Completions API)."""

    __slots__ = ("_view",)

    def __init__(self, view: ManagerView) -> None:
        self._view = view

    @overload
    async def create(
        self, **params: Unpack[ChatCompletionStreamParams]
    ) -> PooledStream[ChatCompletionChunk]: ...
    @overload
    async def create(self, **params: Unpack[ChatCompletionCreateParams]) -> ChatCompletion: ...
    async def create(self, **params: Any) -> ChatCompletion | PooledStream[ChatCompletionChunk]:
        """``client.chat.completions.create`` under the scheduler, with retries.

        Takes the SDK's parameters unchanged. Returns the SDK's ``ChatCompletion``, or with
        ``stream=True`` a ``PooledStream`` of ``ChatCompletionChunk``. Raises what
        ``ConnectionManager.run`` raises.
        """
        kwargs = self._view._params(params)

        def call(client: openai.AsyncOpenAI) -> Awaitable[LegacyAPIResponse[Any]]:
            return client.chat.completions.with_raw_response.create(**kwargs)

        if kwargs.get("stream"):
            return cast(PooledStream[ChatCompletionChunk], await self._view._stream(call, kwargs))
        return cast(ChatCompletion, await self._view._call(call, kwargs))


class PooledChat:
    """``chat`` through the manager: holds ``completions``."""

    __slots__ = ("completions",)

    def __init__(self, view: ManagerView) -> None:
        self.completions = PooledChatCompletions(view)
