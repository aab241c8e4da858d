"""The SDK's typed parameters for ``stream_response`` and ``stream_chat``.

A recovering stream takes ``responses.create`` / ``chat.completions.create`` parameters, as the
façade does, but not quite the SDK's TypedDicts: ``stream=True`` is implied (so ``stream`` is
optional), and with a ``Conversation`` the input (``input`` and ``previous_response_id``, or
``messages``) comes from it. The Responses TypedDict also has a ``conversation`` key (the
server-side Conversations API) that collides with llmpool's ``conversation=`` argument. A
TypedDict cannot drop keys from its base, so these list the SDK's fields again, with the SDK's
own types: ``tests/test_stream_params.py`` checks that every key, type and required key matches
``ResponseCreateParamsBase`` / ``CompletionCreateParamsBase`` of the installed SDK, so an SDK
upgrade that adds or changes a parameter fails that test rather than going unnoticed.
"""

# The annotations are the SDK's, so the drift test can compare them with the SDK's by equality:
# ``X | None`` equals ``Optional[X]``, but ``list[X]`` does not equal ``typing.List[X]``, nor
# ``collections.abc.Iterable[X]`` ``typing.Iterable[X]``; hence the SDK's typing generics.
# ruff: noqa: UP006, UP035

from __future__ import annotations

from typing import Dict, Iterable, List

from openai._types import SequenceNotStr
from openai.types.chat import completion_create_params as _chat
from openai.types.chat.chat_completion_audio_param import ChatCompletionAudioParam
from openai.types.chat.chat_completion_message_param import ChatCompletionMessageParam
from openai.types.chat.chat_completion_prediction_content_param import (
    ChatCompletionPredictionContentParam,
)
from openai.types.chat.chat_completion_stream_options_param import (
    ChatCompletionStreamOptionsParam,
)
from openai.types.chat.chat_completion_tool_choice_option_param import (
    ChatCompletionToolChoiceOptionParam,
)
from openai.types.chat.chat_completion_tool_union_param import ChatCompletionToolUnionParam
from openai.types.responses import response_create_params as _responses
from openai.types.responses.response_includable import ResponseIncludable
from openai.types.responses.response_input_param import ResponseInputParam
from openai.types.responses.response_prompt_param import ResponsePromptParam
from openai.types.responses.response_text_config_param import ResponseTextConfigParam
from openai.types.responses.service_tier import ServiceTier
from openai.types.responses.tool_param import ToolParam
from openai.types.shared.chat_model import ChatModel
from openai.types.shared.reasoning_effort import ReasoningEffort
from openai.types.shared_params.metadata import Metadata
from openai.types.shared_params.reasoning import Reasoning
from openai.types.shared_params.responses_model import ResponsesModel
from typing_extensions import Literal, Required

from ._facade import RequestOptions

__all__ = [
    "ChatParams",
    "ChatTurnParams",
    "ResponseParams",
    "ResponseTurnParams",
]


class ResponseTurnParams(RequestOptions, total=False):
    """``responses.create`` parameters of a turn whose input comes from a history.

    The SDK's ``ResponseCreateParamsBase`` without ``input`` and ``previous_response_id``
    (they come from the ``Conversation``) and ``conversation``; ``stream`` may be given, as
    ``True`` only.
    """

    access_programs: _responses.AccessPrograms
    background: bool | None
    background_options: _responses.BackgroundOptions
    context_management: Iterable[_responses.ContextManagement] | None
    image: _responses.Image
    include: List[ResponseIncludable] | None
    instructions: str | None
    max_output_tokens: int | None
    max_tool_calls: int | None
    metadata: Metadata | None
    model: ResponsesModel
    moderation: _responses.Moderation | None
    parallel_tool_calls: bool | None
    prompt: ResponsePromptParam | None
    prompt_cache_key: str | None
    prompt_cache_options: _responses.PromptCacheOptions
    prompt_cache_retention: Literal["in_memory", "24h"] | None
    reasoning: Reasoning | None
    safety_identifier: str | None
    service_tier: ServiceTier | None
    store: bool | None
    stream: Literal[True]
    stream_options: _responses.StreamOptions | None
    temperature: float | None
    text: ResponseTextConfigParam
    tool_choice: _responses.ToolChoice
    tools: Iterable[ToolParam]
    top_logprobs: int | None
    top_p: float | None
    truncation: Literal["auto", "disabled"] | None
    user: str


class ResponseParams(ResponseTurnParams, total=False):
    """``responses.create`` parameters of a recovering stream without a history."""

    input: str | ResponseInputParam
    previous_response_id: str | None


class ChatTurnParams(RequestOptions, total=False):
    """``chat.completions.create`` parameters of a turn whose messages come from a history.

    The SDK's ``CompletionCreateParamsBase`` without ``messages`` (they come from the
    ``Conversation``); ``stream`` may be given, as ``True`` only.
    """

    model: Required[str | ChatModel]
    audio: ChatCompletionAudioParam | None
    frequency_penalty: float | None
    function_call: _chat.FunctionCall
    functions: Iterable[_chat.Function]
    logit_bias: Dict[str, int] | None
    logprobs: bool | None
    max_completion_tokens: int | None
    max_tokens: int | None
    metadata: Metadata | None
    modalities: List[Literal["text", "audio"]] | None
    moderation: _chat.Moderation | None
    n: int | None
    parallel_tool_calls: bool
    prediction: ChatCompletionPredictionContentParam | None
    presence_penalty: float | None
    prompt_cache_key: str | None
    prompt_cache_options: _chat.PromptCacheOptions
    prompt_cache_retention: Literal["in_memory", "24h"] | None
    reasoning_effort: ReasoningEffort | None
    response_format: _chat.ResponseFormat
    safety_identifier: str | None
    seed: int | None
    service_tier: Literal["auto", "default", "flex", "scale", "priority", "fast"] | None
    stop: str | SequenceNotStr[str] | None
    store: bool | None
    stream: Literal[True]
    stream_options: ChatCompletionStreamOptionsParam | None
    temperature: float | None
    tool_choice: ChatCompletionToolChoiceOptionParam
    tools: Iterable[ChatCompletionToolUnionParam]
    top_logprobs: int | None
    top_p: float | None
    user: str
    verbosity: Literal["low", "medium", "high"] | None
    web_search_options: _chat.WebSearchOptions


class ChatParams(ChatTurnParams, total=False):
    """``chat.completions.create`` parameters of a recovering stream without a history."""

    messages: Required[Iterable[ChatCompletionMessageParam]]
