"""stream_response / stream_chat take the SDK's typed parameters: they follow the installed
SDK's TypedDicts, and a misspelt or misplaced parameter is a mypy error (the venv's mypy, run
as a user would: --strict without the pydantic plugin, tests/typing/mypy.ini)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any, get_type_hints

import httpx2
import pytest
from openai.types.chat.completion_create_params import CompletionCreateParamsBase
from openai.types.responses.response_create_params import ResponseCreateParamsBase

from llmpool._facade import RequestOptions
from llmpool._stream_params import ChatParams, ChatTurnParams, ResponseParams, ResponseTurnParams

ROOT = Path(__file__).resolve().parents[1]
OURS = {"stream"} | set(RequestOptions.__annotations__)


@pytest.mark.parametrize(
    ("ours", "sdk", "dropped"),
    [
        (ResponseParams, ResponseCreateParamsBase, {"conversation"}),
        (
            ResponseTurnParams,
            ResponseCreateParamsBase,
            {"conversation", "input", "previous_response_id"},
        ),
        (ChatParams, CompletionCreateParamsBase, set()),
        (ChatTurnParams, CompletionCreateParamsBase, {"messages"}),
    ],
    ids=["responses", "responses-conversation", "chat", "chat-conversation"],
)
def test_stream_params_follow_the_sdk(ours: Any, sdk: Any, dropped: set[str]) -> None:
    """Every SDK parameter but the dropped ones, with the SDK's type and required-ness, plus
    the request options and an optional stream=True."""
    mine = get_type_hints(ours, localns={"httpx2": httpx2}, include_extras=True)
    theirs = get_type_hints(sdk, include_extras=True)
    assert set(mine) == (set(theirs) - dropped) | OURS
    mismatched = [key for key in set(theirs) - dropped if mine[key] != theirs[key]]
    assert mismatched == []
    assert ours.__required_keys__ == sdk.__required_keys__ - dropped


BAD_CALLS = """
from llmpool import ConnectionManager, Conversation, stream_chat, stream_response

def misuse(manager: ConnectionManager, conversation: Conversation) -> None:
    stream_response(manager, model="m", inptu="hi")
    stream_response(manager, conversation=conversation, model="m", input="hi")
    stream_chat(manager, model="m", mesages=[])
    stream_response(manager, model="m", input="hi", stream=False)
"""


def test_misspelt_parameters_are_type_errors(tmp_path: Path) -> None:
    """mypy names the misspelt `inptu` and `mesages`, rejects `input` next to a conversation
    and stream=False: one error per bad call, on its line."""
    source = tmp_path / "user_misuse.py"
    source.write_text(BAD_CALLS)
    mypy = Path(sys.executable).parent / "mypy"
    done = subprocess.run(
        [str(mypy), "--config-file", str(ROOT / "tests/typing/mypy.ini"), str(source)],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        timeout=300,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    errors = [line for line in done.stdout.splitlines() if ": error: " in line]
    lines = {int(re.search(r":(\d+): error", line).group(1)) for line in errors}  # type: ignore[union-attr]
    assert lines == {5, 6, 7, 8}, done.stdout
    assert any('"inptu"' in line for line in errors), done.stdout
    assert any('"mesages"' in line for line in errors), done.stdout
