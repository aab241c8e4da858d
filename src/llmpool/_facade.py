"""The SDK-shaped façade over the engine.

``responses.create``/``parse``, ``chat.completions.create``/``parse`` and
``embeddings.create`` take the SDK's parameters and return its types; ``stream=True``
returns a ``PooledStream``. Each goes through one path (``ManagerView._invoke``): estimate
the tokens, admit, attempt through the SDK's ``with_raw_response`` (so the rate-limit
headers are learned), read the usage. ``lease`` holds a slot and a client.

Priority and session id are not API parameters, so they are set on a view:
``manager.with_options(priority="high", session_id="t1").responses.create(...)`` — the way the
SDK's own ``client.with_options(...)`` sets per-call client options.
"""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, Self, TypeVar, cast, overload

import anyio
import openai
from openai import Omit, omit
from openai.types import CreateEmbeddingResponse
from openai.types.chat import ChatCompletion, ChatCompletionChunk, ParsedChatCompletion
from openai.types.chat.completion_create_params import (
    CompletionCreateParamsNonStreaming,
    CompletionCreateParamsStreaming,
)
from openai.types.embedding_create_params import EmbeddingCreateParams as _EmbeddingParams
from openai.types.responses import ParsedResponse, Response, ResponseStreamEvent
from openai.types.responses.response_create_params import (
    ResponseCreateParamsNonStreaming,
    ResponseCreateParamsStreaming,
)
from typing_extensions import TypedDict, Unpack  # the SDK's TypedDicts are typing_extensions'

from . import _constants as C
from ._config import CallOptions
from ._engine import Engine
from ._errors import ManagerClosedError
from ._headers import validate_extra_headers
from ._lease import Lease
from ._record import RequestRecord
from ._tokens import estimate_tokens
from ._types import Priority, PriorityLike

if TYPE_CHECKING:
    import httpx2
    from openai._legacy_response import LegacyAPIResponse

__all__ = [
    "ChatCompletionCreateParams",
    "ChatCompletionStreamParams",
    "EmbeddingCreateParams",
    "ManagerView",
    "PooledStream",
    "RequestOptions",
    "ResponseCreateParams",
    "ResponseStreamParams",
]

T = TypeVar("T")
E = TypeVar("E")
TextFormatT = TypeVar("TextFormatT")
ResponseFormatT = TypeVar("ResponseFormatT")


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


class EmbeddingCreateParams(_EmbeddingParams, RequestOptions, total=False):
    """``embeddings.create`` parameters (the SDK's TypedDict)."""


class PooledStream(Generic[E]):
    """An SDK ``AsyncStream`` that holds its concurrency slot until it ends.

    Opening the stream (up to the response headers) is one attempt under the retry policy and
    ``request_timeout``; once open, it is never retried or restarted (a mid-stream failure
    raises the SDK's error). It holds a ``Lease``: the slot and client are given back when
    the stream is exhausted, fails, or is closed. Use it as ``async with`` or iterate it to
    the end: a stream dropped unclosed gives its slot back when garbage-collected, with a
    ``ResourceWarning``.

    Iterate it like the SDK's stream: ``async for event in stream``.
    """

    def __init__(self, lease: Lease, stream: openai.AsyncStream[E]) -> None:
        self._lease = lease
        self.request = lease.request
        self._stream = stream
        self._ended = False
        self._aborted = False
        self._first = True
        capture = lease.request.capture
        # An open of a recovering stream: the recovering stream reports its own first chunk.
        self._reports_first = capture is None or capture.inner is None
        lease.abort = self._abort

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
            raise self._closed_error()
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
                raise self._closed_error() from exc
            await self._close_upstream()
            self._end(exc)
            raise
        if self._first:
            self._first = False
            if self._reports_first:
                self._lease.first_chunk()
        # The final event carries the usage (Responses: response.completed; Chat: the
        # include_usage chunk): it settles the stream's token reservation. Read from the
        # event's fields: getattr on a field a pydantic event lacks raises inside its
        # __getattr__, 5-6 µs per event (benchmarks/NOTES.md).
        fields = getattr(event, "__dict__", None)
        if fields is not None:
            if fields.get("usage") is not None:
                self.request.read_usage(event)
            else:
                response = fields.get("response")
                if response is not None:
                    self.request.read_usage(response)
        return event

    def _closed_error(self) -> Exception:
        return self.request.error(
            ManagerClosedError, "the manager closed this stream", anyio.current_time()
        )

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
            self._end(self._closed_error())
            await self._close_upstream()

    async def _close_upstream(self) -> None:
        with anyio.CancelScope(shield=True):
            await self._stream.close()

    def _end(self, exc: BaseException | None) -> None:
        if not self._ended:
            self._ended = True
            self._lease.release(exc)

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

    Built by ``ConnectionManager.with_options``. Has ``run``, ``lease``, ``responses``,
    ``chat`` and ``embeddings`` like the manager; each raises what ``ConnectionManager.run``
    raises, plus ``DeadlineExceededError`` when the view has a ``deadline`` and
    ``InvalidHeaderError`` for ``extra_headers`` that HTTP cannot carry.
    """

    __slots__ = (
        "_engine",
        "chat",
        "embeddings",
        "options",
        "priority",
        "responses",
        "session_id",
    )

    def __init__(
        self,
        engine: Engine,
        priority: Priority,
        session_id: str | None,
        options: CallOptions | None = None,
    ) -> None:
        self._engine = engine
        self.priority = priority
        self.session_id = session_id
        self.options = options
        self.responses = PooledResponses(self)
        self.chat = PooledChat(self)
        self.embeddings = PooledEmbeddings(self)

    @property
    def engine(self) -> Engine:
        """The engine behind the manager (for llmpool's own layers)."""
        return self._engine

    async def run(
        self,
        fn: Callable[[openai.AsyncOpenAI], Awaitable[T]],
        *,
        estimated_tokens: int = 0,
        model: str | None = None,
    ) -> T:
        """``ConnectionManager.run`` with this view's priority, session id and options."""
        engine = self._engine
        request = engine.admit(
            self.priority, self.session_id, estimated_tokens, model, self.options
        )
        return await engine.execute(request, fn, True)

    def lease(
        self,
        *,
        priority: PriorityLike | None = None,
        session_id: str | None = None,
        model: str | None = None,
        estimated_tokens: int = 0,
    ) -> AbstractAsyncContextManager[Lease]:
        """``ConnectionManager.lease`` with this view's settings (``None`` keeps the view's)."""
        return _lease(
            self._engine,
            self.priority if priority is None else priority,
            self.session_id if session_id is None else session_id,
            model,
            estimated_tokens,
            self.options,
        )

    def _params(self, params: dict[str, Any]) -> dict[str, Any]:
        validate_extra_headers(params.get("extra_headers"))  # before queueing, never retried
        if self.session_id is not None:
            headers = dict(params.get("extra_headers") or {})
            headers[C.SESSION_HEADER] = self.session_id
            params["extra_headers"] = headers
        return params

    def _estimate(self, params: Mapping[str, Any], output: bool = True) -> int:
        """Token cost of one call: prompt estimate plus the output cap (or the default).

        OpenAI counts a request against the tokens-per-minute limit by its prompt and its
        ``max_tokens`` before it runs ("Rate limits" guide); the usage corrects it after.
        Computed only when some upstream has a token limit. Embeddings have no output.
        """
        engine = self._engine
        if not engine.tokens_limited():
            return 0
        prompt = params.get("input", params.get("messages"))
        cap: object = 0
        if output:
            cap = (
                params.get("max_output_tokens")
                or params.get("max_completion_tokens")
                or params.get("max_tokens")
            )
            if not isinstance(cap, int):
                cap = engine.config.rate_limit.default_output_tokens
        assert isinstance(cap, int)
        return estimate_tokens(prompt) + estimate_tokens(params.get("instructions")) + cap

    async def _invoke(
        self, operation: str, method: _RawMethod, params: dict[str, Any], *, output: bool = True
    ) -> Any:
        """The one path of every façade call: estimate, admit, attempt, learn, settle."""
        kwargs = self._params(params)
        engine = self._engine
        request = engine.admit(
            self.priority,
            self.session_id,
            self._estimate(kwargs, output),
            _model(kwargs),
            self.options,
            operation,
        )

        async def fn(client: openai.AsyncOpenAI) -> Any:
            response = await method(client)(**kwargs)
            if request.current_upstream is not None:
                engine.learn(request.current_upstream, response.headers, request.model)
            return response.parse()

        if kwargs.get("stream"):
            request.stream = True
            stream, lease = await engine.hold(request, fn, False)
            return PooledStream(lease, cast(openai.AsyncStream[Any], stream))
        return await engine.execute(request, fn, False)


@asynccontextmanager
async def _lease(
    engine: Engine,
    priority: PriorityLike,
    session_id: str | None,
    model: str | None,
    estimated_tokens: int,
    options: CallOptions | None,
) -> AsyncIterator[Lease]:
    request = engine.admit(priority, session_id, estimated_tokens, model, options, "lease")
    _, lease = await engine.hold(request, _granted, True)
    scope = (
        anyio.CancelScope()
        if request.deadline is None
        else anyio.CancelScope(deadline=request.deadline)
    )
    lease.scope = scope
    error: BaseException | None = None
    try:
        with scope:
            yield lease
        if scope.cancelled_caught:
            # Shutdown after the grace period, or the view's deadline.
            error = engine.cancelled_error(request)
            raise error
    except BaseException as exc:
        error = exc
        raise
    finally:
        lease.release(error)


async def _granted(client: openai.AsyncOpenAI) -> None:
    """A lease's one attempt: the grant itself (the slot and client are what it wanted)."""
    del client


_RawMethod = Callable[[openai.AsyncOpenAI], Callable[..., Awaitable["LegacyAPIResponse[Any]"]]]


def _responses_create(client: openai.AsyncOpenAI) -> Callable[..., Awaitable[Any]]:
    return client.responses.with_raw_response.create


def _responses_parse(client: openai.AsyncOpenAI) -> Callable[..., Awaitable[Any]]:
    return client.responses.with_raw_response.parse


def _chat_create(client: openai.AsyncOpenAI) -> Callable[..., Awaitable[Any]]:
    return client.chat.completions.with_raw_response.create


def _chat_parse(client: openai.AsyncOpenAI) -> Callable[..., Awaitable[Any]]:
    return client.chat.completions.with_raw_response.parse


def _embeddings_create(client: openai.AsyncOpenAI) -> Callable[..., Awaitable[Any]]:
    return client.embeddings.with_raw_response.create


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
        return cast(
            "Response | PooledStream[ResponseStreamEvent]",
            await self._view._invoke("responses", _responses_create, params),
        )

    async def parse(
        self,
        *,
        text_format: type[TextFormatT] | Omit = omit,
        **params: Unpack[ResponseCreateParams],
    ) -> ParsedResponse[TextFormatT]:
        """``client.responses.parse`` (structured output) under the scheduler, with retries.

        ``text_format`` is the pydantic model (or type) the output is parsed into, as in the
        SDK. Returns the SDK's ``ParsedResponse``. Raises what ``ConnectionManager.run``
        raises, and the SDK's parsing errors unchanged (not retried).
        """
        kwargs: dict[str, Any] = dict(params)
        kwargs["text_format"] = text_format
        return cast(
            "ParsedResponse[TextFormatT]",
            await self._view._invoke("responses", _responses_parse, kwargs),
        )


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
        return cast(
            "ChatCompletion | PooledStream[ChatCompletionChunk]",
            await self._view._invoke("chat", _chat_create, params),
        )

    async def parse(
        self, *, response_format: type[ResponseFormatT] | Omit = omit, **params: Any
    ) -> ParsedChatCompletion[ResponseFormatT]:
        """``client.chat.completions.parse`` (structured output) under the scheduler.

        ``response_format`` is the pydantic model the message is parsed into; the other
        parameters are ``chat.completions.create``'s (typed as ``Any`` here: the SDK's
        TypedDict also declares ``response_format``, with another type). Returns the SDK's
        ``ParsedChatCompletion``. Raises what ``ConnectionManager.run`` raises, and the SDK's
        parsing errors unchanged (``LengthFinishReasonError``...; not retried).
        """
        kwargs: dict[str, Any] = dict(params)
        kwargs["response_format"] = response_format
        return cast(
            "ParsedChatCompletion[ResponseFormatT]",
            await self._view._invoke("chat", _chat_parse, kwargs),
        )


class PooledChat:
    """``chat`` through the manager: holds ``completions``."""

    __slots__ = ("completions",)

    def __init__(self, view: ManagerView) -> None:
        self.completions = PooledChatCompletions(view)


class PooledEmbeddings:
    """``embeddings`` through the manager (Embeddings API)."""

    __slots__ = ("_view",)

    def __init__(self, view: ManagerView) -> None:
        self._view = view

    async def create(self, **params: Unpack[EmbeddingCreateParams]) -> CreateEmbeddingResponse:
        """``client.embeddings.create`` under the scheduler, with retries.

        Takes the SDK's parameters unchanged (the input's estimated tokens are charged to
        the per-minute budget; there is no output). Returns the SDK's
        ``CreateEmbeddingResponse``. Raises what ``ConnectionManager.run`` raises.
        """
        return cast(
            CreateEmbeddingResponse,
            await self._view._invoke("embeddings", _embeddings_create, dict(params), output=False),
        )
