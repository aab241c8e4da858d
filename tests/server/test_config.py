"""ServerConfig: defaults from _constants, LLMPOOL_SERVER_* variables, errors naming them."""

from __future__ import annotations

import pydantic
import pytest

from llmpool import Priority
from llmpool.server import SERVER_ENV_VARS, RelayConfig, ServerConfig
from llmpool.server import _constants as C


def test_defaults_are_the_documented_constants() -> None:
    """Every default lives once, in server/_constants.py."""
    config = ServerConfig()
    assert (config.host, config.port, config.model) == (
        C.DEFAULT_HOST,
        C.DEFAULT_PORT,
        C.DEFAULT_MODEL,
    )
    assert config.max_connections == C.DEFAULT_MAX_CONNECTIONS == 25
    assert config.connection_timeout == C.DEFAULT_CONNECTION_TIMEOUT == 300.0
    assert config.max_message_bytes == C.DEFAULT_MAX_MESSAGE_BYTES == 256 * 1024
    assert config.session_buffer_frames == C.DEFAULT_SESSION_BUFFER_FRAMES
    assert config.token is None
    assert config.cancel_on_disconnect is False
    assert config.default_priority is Priority.NORMAL


def test_every_field_but_pool_has_a_variable() -> None:
    """SERVER_ENV_VARS covers every setting; the manager's come from LLMPOOL_* (pool)."""
    fields = set(ServerConfig.model_fields) - {"pool", "relay"}
    fields |= {f"relay.{name}" for name in RelayConfig.model_fields}
    assert set(SERVER_ENV_VARS.values()) == fields
    assert all(
        var.startswith("LLMPOOL_SERVER_") or var == "LLMPOOL_REDIS_URL" for var in SERVER_ENV_VARS
    )


def test_from_env_reads_the_variables_and_the_pool() -> None:
    """Values are parsed from text; LLMPOOL_* fills pool; overrides win."""
    env = {
        "LLMPOOL_SERVER_MAX_CONNECTIONS": "50",
        "LLMPOOL_SERVER_TOKEN": "tok",
        "LLMPOOL_SERVER_CANCEL_ON_DISCONNECT": "true",
        "LLMPOOL_SERVER_PORT": "9000",
        "LLMPOOL_MAX_CONCURRENCY": "7",
    }
    config = ServerConfig.from_env(env, port=9001)
    assert config.max_connections == 50
    assert config.token is not None
    assert config.token.get_secret_value() == "tok"
    assert config.cancel_on_disconnect is True
    assert config.port == 9001
    assert config.pool.max_concurrency == 7


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("LLMPOOL_SERVER_MAX_CONNECTIONS", "0"),
        ("LLMPOOL_SERVER_PORT", "70000"),
        ("LLMPOOL_SERVER_CONNECTION_TIMEOUT", "soon"),
        ("LLMPOOL_SERVER_API", "graphql"),
    ],
)
def test_an_invalid_variable_is_refused_naming_it(var: str, value: str) -> None:
    """The error is located at the variable, with pydantic's message and the input."""
    with pytest.raises(pydantic.ValidationError) as info:
        ServerConfig.from_env({var: value})
    (error,) = info.value.errors()
    assert error["loc"] == (var,)
    assert var in str(info.value)


def test_the_token_is_not_in_the_repr() -> None:
    """A SecretStr: printing the config does not print the token or the key."""
    config = ServerConfig(token=pydantic.SecretStr("hunter2"), api_key=pydantic.SecretStr("sk-x"))
    assert "hunter2" not in repr(config)
    assert "sk-x" not in repr(config)


def test_relay_settings_come_from_their_variables() -> None:
    """LLMPOOL_SERVER_RELAY_* set RelayConfig's fields; the session policy is JSON, and a
    bad one is refused naming the variable."""
    env = {
        "LLMPOOL_SERVER_RELAY_MAX_BUFFER_FRAMES": "8",
        "LLMPOOL_SERVER_RELAY_SESSION": '{"instructions": "be brief"}',
    }
    relay = ServerConfig.from_env(env).relay
    assert relay.max_buffer_frames == 8
    assert relay.session == {"instructions": "be brief"}
    with pytest.raises(pydantic.ValidationError) as info:
        ServerConfig.from_env({"LLMPOOL_SERVER_RELAY_SESSION": "{nope"})
    assert info.value.errors()[0]["loc"] == ("LLMPOOL_SERVER_RELAY_SESSION",)
