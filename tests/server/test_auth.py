"""The one token check every route uses."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from llmpool.server._auth import bearer, from_subprotocols, token_matches


@pytest.mark.parametrize(
    ("headers", "token"),
    [
        ({}, None),
        ({"authorization": "Bearer abc"}, "abc"),
        ({"authorization": "bearer  abc "}, "abc"),
        ({"authorization": "Basic abc"}, ""),
    ],
)
def test_bearer_reads_the_header(headers: dict[str, str], token: str | None) -> None:
    assert bearer(headers) == token


def test_the_key_subprotocol_carries_a_browsers_token() -> None:
    assert from_subprotocols(["realtime", "openai-insecure-api-key.tok"]) == "tok"
    assert from_subprotocols(["realtime"]) is None


@pytest.mark.parametrize(
    ("expected", "offered", "ok"),
    [
        (None, None, True),
        (SecretStr("t"), "t", True),
        (SecretStr("t"), None, False),
        (SecretStr("t"), "", False),
        (SecretStr("t"), "tt", False),
    ],
)
def test_token_matches_only_the_servers_token(
    expected: SecretStr | None, offered: str | None, ok: bool
) -> None:
    assert token_matches(expected, offered) is ok
