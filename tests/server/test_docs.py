"""docs/server.md matches the code: every variable with its default, every error and close
code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from llmpool.server import SERVER_ENV_VARS, CloseCode, ErrorCode, RelayConfig, ServerConfig

DOC = (Path(__file__).resolve().parents[2] / "docs" / "server.md").read_text(encoding="utf-8")


def _shown(value: object) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


@pytest.mark.parametrize("var", sorted(SERVER_ENV_VARS))
def test_every_variable_is_in_the_table_with_its_default(var: str) -> None:
    field = SERVER_ENV_VARS[var]
    model, name = (RelayConfig, field[6:]) if field.startswith("relay.") else (ServerConfig, field)
    default = model.model_fields[name].default
    row = re.search(rf"^\| `{var}` \| `{field}` \| ([^|]+) \|", DOC, re.MULTILINE)
    assert row is not None, var
    assert row.group(1).strip() == _shown(default)


@pytest.mark.parametrize("code", list(ErrorCode), ids=str)
def test_every_error_code_is_documented(code: ErrorCode) -> None:
    assert f"| `{code.value}` |" in DOC


@pytest.mark.parametrize("code", list(CloseCode), ids=str)
def test_every_close_code_is_documented(code: CloseCode) -> None:
    assert f"| {code.value} |" in DOC
