"""Recovery rules of a recovering stream: when to rebuild, and what each attempt sends.

Pure: no I/O. ``missing_reference`` recognises the API saying it lost the conversation;
``request_params`` builds one attempt's parameters — the conversation's continuation
(``previous_response_id`` plus the new items) first, or after a loss the *whole* transcript made
portable by ``ConversationSanitizer``.
"""

from __future__ import annotations

import re
from typing import Any, Literal

import openai
from pydantic import BaseModel, ConfigDict, Field

from . import _constants as C
from ._conversation import Conversation
from ._sanitizer import ConversationSanitizer
from ._stream_translate import StreamFailure

__all__ = ["RecoveryPolicy", "missing_reference", "request_params"]

ENCRYPTED_REASONING = "reasoning.encrypted_content"
_ITEM_NOT_FOUND = re.compile(r"Item with id '?[^\s']+'? not found", re.IGNORECASE)
_PREVIOUS_NOT_FOUND = re.compile(r"Previous response with id '?[^\s']+'? not found", re.IGNORECASE)


class RecoveryPolicy(BaseModel):
    """How a recovering stream rebuilds a request the server could not resolve.

    Attributes:
        max_recoveries: rebuilds allowed per stream after a 404 "Item with id … not found" or
            ``previous_response_not_found``; 0 disables recovery. Default 2.
        store: ``store`` sent on a rebuilt request; ``None`` keeps the caller's. With
            ``store=False`` (OpenAI docs: "Conversation state", stateless use), the request
            also asks for ``include=["reasoning.encrypted_content"]`` so the next turn can carry
            reasoning forward without server storage. Default ``None``.
        use_previous_response_id: with a ``Conversation``, try ``previous_response_id`` (send
            only the new items) first; ``False`` always sends the whole, sanitised transcript.
            Default ``True``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_recoveries: int = Field(
        default=C.DEFAULT_MAX_RECOVERIES,
        ge=0,
        description="Rebuilds per stream after a 404, count.",
    )
    store: bool | None = Field(
        default=None, description="store on a rebuilt request; None: caller's."
    )
    use_previous_response_id: bool = Field(
        default=True, description="Try previous_response_id first with a Conversation."
    )


def missing_reference(exc: BaseException) -> str | None:
    """Whether ``exc`` says the server lost the conversation; the API's message if so.

    True for a 404 or 400 (Azure answers some with 400) whose code is
    ``previous_response_not_found`` or whose message is "Item with id '…' not found" /
    "Previous response with id '…' not found".

    Args:
        exc: an exception raised opening or reading a stream.

    Returns:
        The error message, or ``None`` if ``exc`` is anything else.
    """
    if isinstance(exc, StreamFailure):
        return str(exc) if exc.code == "previous_response_not_found" else None
    if not isinstance(exc, openai.APIStatusError) or exc.status_code not in (400, 404):
        return None
    message = str(exc.message)
    if (
        exc.code == "previous_response_not_found"
        or _ITEM_NOT_FOUND.search(message)
        or _PREVIOUS_NOT_FOUND.search(message)
    ):
        return message
    return None


def request_params(
    api: Literal["responses", "chat"],
    params: dict[str, Any],
    *,
    conversation: Conversation | None,
    policy: RecoveryPolicy,
    sanitizer: ConversationSanitizer,
    rebuild: bool,
) -> dict[str, Any]:
    """The parameters of one stream attempt (a new dict; ``params`` is not changed).

    Args:
        api: ``"responses"`` or ``"chat"``.
        params: the caller's ``create`` parameters.
        conversation: the local transcript, if any: it supplies ``input``/``messages``.
        policy: the recovery rules (``store``, ``use_previous_response_id``).
        sanitizer: makes a transcript portable.
        rebuild: the server lost the conversation: send the whole transcript (the
            conversation's, else ``params["input"]``) sanitised, without
            ``previous_response_id``, with ``policy.store`` if set.

    Returns:
        The parameters, with ``stream=True``. A Responses request with ``store=False`` also
        asks for ``include=["reasoning.encrypted_content"]``; a Chat request without
        ``stream_options`` asks for usage.

    Raises:
        InvalidConversationError: the sanitizer cannot read the transcript.
    """
    out = {**params, "stream": True}
    if api == "chat":
        if conversation is not None:
            out["messages"] = [dict(message) for message in conversation.items]
        out.setdefault("stream_options", {"include_usage": True})
        return out
    if rebuild:
        source = conversation.items if conversation is not None else out["input"]
        out.pop("previous_response_id", None)
        out["input"] = sanitizer.responses_input(source)
        if policy.store is not None:
            out["store"] = policy.store
    elif conversation is not None:
        items, previous = conversation.continuation()
        if previous is not None and policy.use_previous_response_id:
            out["input"], out["previous_response_id"] = items, previous
        else:
            out["input"] = sanitizer.responses_input(conversation.items)
            out.pop("previous_response_id", None)
    if out.get("store") is False:
        include = list(out.get("include") or [])
        if ENCRYPTED_REASONING not in include:
            out["include"] = [*include, ENCRYPTED_REASONING]
    return out
