"""Hosted tool items, MCP approvals, references and configuration (docs/sanitizer.md).

The items are the shapes the API returns (every field the SDK's input TypedDict requires), so
same-store output is checked against the SDK types with no exception at all.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from llmpool._sanitizer import ConversationSanitizer
from tests.test_sanitizer_properties import assert_sdk_shape

PORTABLE = ConversationSanitizer()
SAME_STORE = ConversationSanitizer(portable=False)

USER = {"role": "user", "content": "What is new in the MCP spec, with a chart?"}
ANSWER = {
    "type": "message",
    "role": "assistant",
    "id": "msg_9",
    "status": "completed",
    "content": [{"type": "output_text", "text": "Here it is.", "annotations": []}],
}
ANSWER_PORTABLE = {k: v for k, v in ANSWER.items() if k not in {"id", "status"}}
WEB = {
    "type": "web_search_call",
    "id": "ws_1",
    "status": "completed",
    "action": {
        "type": "search",
        "query": "mcp spec 2025-06-18",
        "sources": [{"type": "url", "url": "https://modelcontextprotocol.io/specification"}],
    },
}
FILE = {
    "type": "file_search_call",
    "id": "fs_1",
    "status": "completed",
    "queries": ["refund policy"],
    "results": [
        {"file_id": "file-1", "filename": "policy.pdf", "score": 0.9, "text": "30 days"},
    ],
}
CODE = {
    "type": "code_interpreter_call",
    "id": "ci_1",
    "status": "completed",
    "code": "print(2 + 2)",
    "container_id": "cntr_1",
    "outputs": [{"type": "logs", "logs": "4"}],
}
IMAGE = {
    "type": "image_generation_call",
    "id": "ig_1",
    "status": "completed",
    "result": "iVBORw0KGgo=",
    "revised_prompt": "a bar chart of MCP releases",
    "output_format": "png",
}
LIST_TOOLS = {
    "type": "mcp_list_tools",
    "id": "mcpl_1",
    "server_label": "deepwiki",
    "tools": [
        {
            "name": "ask_question",
            "description": "Ask about a repository",
            "input_schema": {"type": "object", "properties": {"status": {"type": "string"}}},
            "annotations": {"readOnlyHint": True},
        }
    ],
}
MCP_CALL = {
    "type": "mcp_call",
    "id": "mcp_1",
    "server_label": "deepwiki",
    "name": "ask_question",
    "arguments": '{"question": "What changed?"}',
    "output": "Structured tool output was added.",
    "status": "completed",
}
APPROVAL_REQUEST = {
    "type": "mcp_approval_request",
    "id": "mcpr_1",
    "server_label": "deepwiki",
    "name": "ask_question",
    "arguments": '{"question": "What changed?"}',
}
APPROVAL_RESPONSE = {
    "type": "mcp_approval_response",
    "approval_request_id": "mcpr_1",
    "approve": True,
}
COMPUTER = {
    "type": "computer_call",
    "id": "cu_1",
    "call_id": "call_cu",
    "status": "completed",
    "pending_safety_checks": [],
    "action": {"type": "click", "button": "left", "x": 10, "y": 20},
}
COMPUTER_OUT = {
    "type": "computer_call_output",
    "call_id": "call_cu",
    "output": {"type": "computer_screenshot", "image_url": "data:image/png;base64,AAAA"},
}
LOCAL_SHELL = {
    "type": "local_shell_call",
    "id": "lsh_1",
    "call_id": "call_sh",
    "status": "completed",
    "action": {"type": "exec", "command": ["ls"], "env": {"status": "kept"}},
}
LOCAL_SHELL_OUT = {"type": "local_shell_call_output", "id": "call_sh", "output": "a.txt"}
REASONING = {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAA"}
REASONING_PORTABLE = {"type": "reasoning", "summary": [], "encrypted_content": "gAAA"}


def without_id(item: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in item.items() if k != "id"}


@pytest.mark.parametrize(
    ("history", "portable_form"),
    [
        ([WEB], [without_id(WEB)]),
        ([LOCAL_SHELL, LOCAL_SHELL_OUT], [without_id(LOCAL_SHELL), LOCAL_SHELL_OUT]),
        ([FILE], []),
        ([CODE], []),
        ([IMAGE], []),
        ([LIST_TOOLS], []),
        ([MCP_CALL], []),
        ([APPROVAL_REQUEST, APPROVAL_RESPONSE], []),
        ([COMPUTER, COMPUTER_OUT], []),
    ],
    ids=[
        "web-search-id-less",
        "local-shell-id-less-output-keeps-link",
        "file-search-dropped",
        "code-interpreter-dropped",
        "image-generation-dropped",
        "mcp-list-tools-dropped",
        "mcp-call-dropped",
        "mcp-approval-pair-dropped",
        "computer-pair-dropped",
    ],
)
def test_portable_form_of_hosted_tool_items(
    history: list[dict[str, Any]], portable_form: list[dict[str, Any]]
) -> None:
    """Portable: id-less where the API takes it (Codex), else the item goes (docs table)."""
    result = PORTABLE.responses_input([USER, *history, ANSWER])
    assert result == [USER, *portable_form, ANSWER_PORTABLE]
    for item in result:
        assert_sdk_shape(item, portable=True)


@pytest.mark.parametrize(
    "history",
    [
        [WEB],
        [LOCAL_SHELL, LOCAL_SHELL_OUT],
        [FILE],
        [CODE],
        [IMAGE],
        [LIST_TOOLS],
        [MCP_CALL],
        [APPROVAL_REQUEST, APPROVAL_RESPONSE],
        [COMPUTER, COMPUTER_OUT],
    ],
    ids=[
        "web-search",
        "local-shell",
        "file-search",
        "code-interpreter",
        "image-generation",
        "mcp-list-tools",
        "mcp-call",
        "mcp-approval",
        "computer",
    ],
)
def test_same_store_keeps_hosted_items_whole_and_sdk_valid(history: list[dict[str, Any]]) -> None:
    """Same store: every hosted item stays as the API returned it, valid for its SDK type."""
    items = [USER, *history, ANSWER]
    result = SAME_STORE.responses_input(items)
    assert result == items
    for item in result:
        assert_sdk_shape(item, portable=False)


@pytest.mark.parametrize(
    "dropped",
    [
        [{"type": "item_reference", "id": "msg_0"}],
        [APPROVAL_REQUEST, APPROVAL_RESPONSE],
        [IMAGE],
        [COMPUTER, COMPUTER_OUT],
    ],
    ids=["item-reference", "mcp-approval", "image-generation", "computer-call"],
)
def test_reasoning_goes_with_a_follower_that_portable_mode_drops(
    dropped: list[dict[str, Any]],
) -> None:
    """A reasoning item whose following item portable mode drops is dropped too; the
    reasoning before a kept answer stays."""
    items = [USER, REASONING, *dropped, REASONING, ANSWER]
    assert PORTABLE.responses_input(items) == [USER, REASONING_PORTABLE, ANSWER_PORTABLE]
    assert SAME_STORE.responses_input(items) == items


def test_reasoning_before_an_id_less_web_search_stays() -> None:
    """The web search stays (id-less), so the reasoning that precedes it stays."""
    result = PORTABLE.responses_input([USER, REASONING, WEB, ANSWER])
    assert result == [USER, REASONING_PORTABLE, without_id(WEB), ANSWER_PORTABLE]


def test_mcp_approval_history_keeps_every_word_in_portable_mode() -> None:
    """A realistic MCP turn: tools listed, a call approved and run, then the answer. Portable:
    the MCP items go (server ids; a replayed mcp_call's output is not read), text stays."""
    history = [
        USER,
        LIST_TOOLS,
        REASONING,
        APPROVAL_REQUEST,
        {"role": "user", "content": "yes, go ahead"},
        APPROVAL_RESPONSE,
        REASONING,
        {**MCP_CALL, "approval_request_id": "mcpr_1"},
        ANSWER,
    ]
    result = PORTABLE.responses_input(history)
    assert result == [USER, {"role": "user", "content": "yes, go ahead"}, ANSWER_PORTABLE]


def test_an_approval_of_a_server_held_request_stays() -> None:
    """With previous_response_id the request is on the server: its response is kept."""
    assert PORTABLE.responses_input([APPROVAL_RESPONSE], previous_response_id="resp_1") == [
        APPROVAL_RESPONSE
    ]
    assert PORTABLE.responses_input([APPROVAL_RESPONSE]) == []


def test_a_computer_output_answering_a_server_held_call_stays() -> None:
    """The computer-use loop with previous_response_id sends only the screenshot: kept."""
    assert PORTABLE.responses_input([COMPUTER_OUT], previous_response_id="resp_1") == [COMPUTER_OUT]


# -- configuration is not bookkeeping ------------------------------------------------------------


def test_mcp_list_tools_annotations_survive() -> None:
    """``annotations`` is declared by McpListToolsTool: configuration, kept with its schema."""
    result = SAME_STORE.responses_input([LIST_TOOLS])
    assert result == [LIST_TOOLS]


def test_tool_search_output_tool_model_survives() -> None:
    """``tools[*].model`` is declared by the image-generation tool: kept; an undeclared
    ``created_at`` next to it goes."""
    tool = {"type": "image_generation", "model": "gpt-image-1", "quality": "high"}
    item = {
        "type": "tool_search_output",
        "call_id": "ts_1",
        "execution": "client",
        "tools": [{**tool, "created_at": 1}],
    }
    call = {"type": "tool_search_call", "call_id": "ts_1", "arguments": {"query": "images"}}
    result = PORTABLE.responses_input([call, item])
    assert result[1]["tools"] == [tool]
    assert_sdk_shape(result[1], portable=True)


def test_additional_tools_keep_their_configuration() -> None:
    """A developer ``additional_tools`` item: every declared tool field stays, at any depth."""
    tools = [
        {"type": "image_generation", "model": "gpt-image-1"},
        {
            "type": "mcp",
            "server_label": "deepwiki",
            "server_url": "https://mcp.deepwiki.com/mcp",
            "require_approval": "never",
        },
        {"type": "function", "name": "f", "parameters": {"properties": {"model": {}}}},
    ]
    item = {"type": "additional_tools", "role": "developer", "tools": tools}
    assert PORTABLE.responses_input([item]) == [copy.deepcopy(item)]


def test_undeclared_bookkeeping_goes_at_every_depth() -> None:
    """A strip field the nested type does not declare goes, however deep (a search source)."""
    source = {"type": "url", "url": "https://example.com", "created_at": 1, "object": "source"}
    item = copy.deepcopy(WEB)
    item["action"]["sources"] = [source]
    result = SAME_STORE.responses_input([item])
    assert result[0]["action"]["sources"] == [{"type": "url", "url": "https://example.com"}]
