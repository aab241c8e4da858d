"""PoolConfig / RetryPolicy validation and LLMPOOL_* loading; the public surface."""

from __future__ import annotations

import subprocess
import sys

import pydantic
import pytest

import llmpool
from llmpool import ENV_VARS, PoolConfig, Priority, RateLimitPolicy, RetryPolicy
from llmpool import _constants as C


def test_defaults_follow_the_seed() -> None:
    """Defaults: 5 clients, 3 concurrent, 120 s queue timeout, 180 s request timeout."""
    config = PoolConfig()
    assert (config.pool_size, config.max_concurrency) == (5, 3)
    assert (config.queue_timeout, config.request_timeout) == (120.0, 180.0)
    assert config.max_queue_size == C.DEFAULT_MAX_QUEUE_SIZE
    assert config.shutdown_grace == C.DEFAULT_SHUTDOWN_GRACE
    assert config.starvation_limit == C.DEFAULT_STARVATION_LIMIT


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("pool_size", 0),
        ("max_concurrency", 0),
        ("max_queue_size", -1),
        ("queue_timeout", 0),
        ("request_timeout", -5),
        ("shutdown_grace", -1),
        ("starvation_limit", 0),
        ("pool_size", "many"),
    ],
)
def test_invalid_values_name_the_field(field: str, value: object) -> None:
    """An invalid value is rejected with a message naming the field."""
    with pytest.raises(pydantic.ValidationError, match=field):
        PoolConfig.model_validate({field: value})


def test_unknown_fields_are_rejected() -> None:
    """A misspelt field is an error, not silently ignored."""
    with pytest.raises(pydantic.ValidationError, match="max_concurency"):
        PoolConfig.model_validate({"max_concurency": 3})


def test_retry_policy_bounds() -> None:
    """initial_backoff may not exceed max_backoff; attempts are at least 1."""
    with pytest.raises(pydantic.ValidationError, match="initial_backoff"):
        RetryPolicy(initial_backoff=10, max_backoff=1)
    with pytest.raises(pydantic.ValidationError, match="max_attempts"):
        RetryPolicy(max_attempts=0)


def test_config_is_frozen() -> None:
    """Configs are immutable; variants are made with model_copy(update=...)."""
    config = PoolConfig()
    with pytest.raises(pydantic.ValidationError):
        config.pool_size = 9  # type: ignore[misc]
    assert config.model_copy(update={"pool_size": 9}).pool_size == 9


def test_from_env_reads_every_variable() -> None:
    """Every LLMPOOL_* variable in ENV_VARS sets its field; others keep defaults."""
    env = {
        "LLMPOOL_POOL_SIZE": "8",
        "LLMPOOL_MAX_CONCURRENCY": "4",
        "LLMPOOL_MAX_QUEUE_SIZE": "50",
        "LLMPOOL_QUEUE_TIMEOUT": "30",
        "LLMPOOL_REQUEST_TIMEOUT": "60.5",
        "LLMPOOL_SHUTDOWN_GRACE": "2",
        "LLMPOOL_STARVATION_LIMIT": "3",
        "LLMPOOL_RETRY_MAX_ATTEMPTS": "6",
        "LLMPOOL_RETRY_INITIAL_BACKOFF": "0.25",
        "LLMPOOL_RETRY_MAX_BACKOFF": "10",
        "LLMPOOL_RETRY_JITTER": "0",
        "LLMPOOL_RETRY_MAX_RETRY_AFTER": "90",
        "LLMPOOL_RATE_LIMIT_RPM": "600",
        "LLMPOOL_RATE_LIMIT_TPM": "30000",
        "LLMPOOL_RATE_LIMIT_BURST": "2.5",
        "LLMPOOL_RATE_LIMIT_LEARN_FROM_HEADERS": "false",
        "UNRELATED": "1",
    }
    assert set(env) - {"UNRELATED"} == set(ENV_VARS)
    config = PoolConfig.from_env(env)
    assert (config.pool_size, config.max_concurrency, config.max_queue_size) == (8, 4, 50)
    assert (config.queue_timeout, config.request_timeout, config.shutdown_grace) == (30, 60.5, 2)
    assert config.starvation_limit == 3
    assert config.retry == RetryPolicy(
        max_attempts=6, initial_backoff=0.25, max_backoff=10, jitter=0, max_retry_after=90
    )
    assert config.rate_limit == RateLimitPolicy(
        requests_per_minute=600, tokens_per_minute=30000, burst=2.5, learn_from_headers=False
    )


def test_from_env_overrides_and_errors() -> None:
    """Keyword overrides win; a bad variable's error names the field."""
    assert PoolConfig.from_env({"LLMPOOL_POOL_SIZE": "8"}, pool_size=2).pool_size == 2
    with pytest.raises(pydantic.ValidationError, match="max_concurrency"):
        PoolConfig.from_env({"LLMPOOL_MAX_CONCURRENCY": "zero"})


@pytest.mark.parametrize("value", ["high", "HIGH", "High", Priority.HIGH])
def test_priority_parse(value: str) -> None:
    """Priorities accept the enum and the strings, case-insensitively."""
    assert Priority.parse(value) is Priority.HIGH


def test_exports_are_pinned() -> None:
    """The public names of llmpool; a change here is an API change."""
    assert llmpool.__all__ == [
        "ENV_VARS",
        "AttemptRecord",
        "CapturedRequests",
        "ChunkEvent",
        "ClientFactory",
        "CompactionBudgetError",
        "CompleteEvent",
        "ConnectionManager",
        "ConnectionStats",
        "Conversation",
        "ConversationSanitizer",
        "ErrorEvent",
        "InvalidConversationError",
        "InvalidSessionIdError",
        "LLMPoolError",
        "LatencyStats",
        "ManagerClosedError",
        "ManagerView",
        "PoolConfig",
        "PooledStream",
        "Priority",
        "QueueFullError",
        "QueueTimeoutError",
        "RateLimitPolicy",
        "RecoveredEvent",
        "RecoveringStream",
        "RecoveryPolicy",
        "RequestRecord",
        "RequestTimeoutError",
        "RequestTooLargeError",
        "RetryDecision",
        "RetryPolicy",
        "StreamEvent",
        "StreamInterruptedError",
        "ToolCallEvent",
        "UpstreamLimitStats",
        "Usage",
        "capture_requests",
        "classify",
        "missing_reference",
        "parse_retry_after",
        "parse_stream_event",
        "stream_chat",
        "stream_response",
    ]
    assert llmpool.QueueFullError.__module__ == "llmpool"
    assert llmpool.ConnectionManager.__module__ == "llmpool"


def test_import_loads_no_extra() -> None:
    """import llmpool pulls in none of the optional extras (starlette, uvicorn, rich)."""
    code = (
        "import sys, llmpool; "
        "loaded = [m for m in ('starlette', 'uvicorn', 'rich', 'llmpool.testing') "
        "if m in sys.modules]; print(loaded)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"


def test_error_tree() -> None:
    """Every llmpool error derives from LLMPoolError; the session id error is a ValueError."""
    for name in (
        "QueueFullError",
        "QueueTimeoutError",
        "RequestTimeoutError",
        "ManagerClosedError",
        "InvalidSessionIdError",
    ):
        assert issubclass(getattr(llmpool, name), llmpool.LLMPoolError)
    assert issubclass(llmpool.InvalidSessionIdError, ValueError)
    error = llmpool.QueueTimeoutError(
        "no slot", request_id="req_1", session_id="t1", attempts=2, waited=1.5, last_status=429
    )
    assert str(error) == (
        "no slot (request_id=req_1, session_id=t1, attempts=2, waited=1.500s, last_status=429)"
    )
