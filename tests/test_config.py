"""PoolConfig / RetryPolicy validation and LLMPOOL_* loading; the public surface."""

from __future__ import annotations

import subprocess
import sys

import pydantic
import pytest

import llmpool
from llmpool import (
    ENV_VARS,
    CircuitPolicy,
    PoolConfig,
    Priority,
    RateLimitPolicy,
    RetryPolicy,
)
from llmpool import _constants as C


def test_defaults() -> None:
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
        "LLMPOOL_ADMISSION": "wait",
        "LLMPOOL_RETRY_MAX_ATTEMPTS": "6",
        "LLMPOOL_RETRY_INITIAL_BACKOFF": "0.25",
        "LLMPOOL_RETRY_MAX_BACKOFF": "10",
        "LLMPOOL_RETRY_JITTER": "0",
        "LLMPOOL_RETRY_MAX_RETRY_AFTER": "90",
        "LLMPOOL_RETRY_BUDGET_PERCENT": "50",
        "LLMPOOL_RETRY_MIN_RETRY_CONCURRENCY": "1",
        "LLMPOOL_CIRCUIT_ENABLED": "false",
        "LLMPOOL_CIRCUIT_FAILURE_THRESHOLD": "9",
        "LLMPOOL_CIRCUIT_INITIAL_COOLDOWN": "0.25",
        "LLMPOOL_CIRCUIT_MAX_COOLDOWN": "12",
        "LLMPOOL_CIRCUIT_JITTER": "0.1",
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
    assert (config.starvation_limit, config.admission) == (3, "wait")
    assert config.retry == RetryPolicy(
        max_attempts=6,
        initial_backoff=0.25,
        max_backoff=10,
        jitter=0,
        max_retry_after=90,
        budget_percent=50,
        min_retry_concurrency=1,
    )
    assert config.circuit == CircuitPolicy(
        enabled=False, failure_threshold=9, initial_cooldown=0.25, max_cooldown=12, jitter=0.1
    )
    assert config.rate_limit == RateLimitPolicy(
        requests_per_minute=600, tokens_per_minute=30000, burst=2.5, learn_from_headers=False
    )


def test_from_env_overrides_win() -> None:
    """A keyword override takes precedence over its variable."""
    assert PoolConfig.from_env({"LLMPOOL_POOL_SIZE": "8"}, pool_size=2).pool_size == 2
    # The override replaces the bad value: nothing left to complain about.
    assert PoolConfig.from_env({"LLMPOOL_QUEUE_TIMEOUT": "abc"}, queue_timeout=5).queue_timeout == 5


def test_from_env_merges_a_mapping_override_over_the_policy_variables() -> None:
    """retry={...} / rate_limit={...} set only the keys given; the variables fill the rest."""
    env = {
        "LLMPOOL_RETRY_MAX_ATTEMPTS": "6",
        "LLMPOOL_RETRY_JITTER": "0",
        "LLMPOOL_RATE_LIMIT_RPM": "600",
        "LLMPOOL_RATE_LIMIT_BURST": "2.5",
    }
    config = PoolConfig.from_env(env, retry={"max_attempts": 2}, rate_limit={"burst": 5.0})
    assert (config.retry.max_attempts, config.retry.jitter) == (2, 0.0)
    assert (config.rate_limit.requests_per_minute, config.rate_limit.burst) == (600, 5.0)


def test_from_env_policy_instance_replaces_the_policy_variables() -> None:
    """retry=RetryPolicy(...) is the whole policy: LLMPOOL_RETRY_* no longer apply."""
    env = {"LLMPOOL_RETRY_JITTER": "0", "LLMPOOL_RATE_LIMIT_RPM": "600"}
    config = PoolConfig.from_env(
        env, retry=RetryPolicy(max_attempts=2), rate_limit=RateLimitPolicy()
    )
    assert config.retry == RetryPolicy(max_attempts=2)
    assert config.rate_limit == RateLimitPolicy()


@pytest.mark.parametrize(
    ("var", "value", "message"),
    [
        ("LLMPOOL_QUEUE_TIMEOUT", "abc", "Input should be a valid number"),
        ("LLMPOOL_MAX_CONCURRENCY", "zero", "Input should be a valid integer"),
        ("LLMPOOL_POOL_SIZE", "2000", "Input should be less than or equal to 1024"),
        ("LLMPOOL_RETRY_MAX_ATTEMPTS", "0", "Input should be greater than or equal to 1"),
        ("LLMPOOL_RATE_LIMIT_RPM", "", "Input should be a valid integer"),
        ("LLMPOOL_RATE_LIMIT_LEARN_FROM_HEADERS", "maybe", "Input should be a valid boolean"),
    ],
    ids=["float", "int", "bound", "nested-bound", "empty", "bool"],
)
def test_from_env_errors_name_the_variable(var: str, value: str, message: str) -> None:
    """An invalid variable's error is located at the variable, with its value and the reason."""
    with pytest.raises(pydantic.ValidationError) as info:
        PoolConfig.from_env({var: value})
    (error,) = info.value.errors()
    assert error["loc"] == (var,)
    assert (error["input"], error["msg"][: len(message)]) == (value, message)
    text = str(info.value)
    assert f"\n{var}\n  {message}" in text
    assert f"input_value={value!r}" in text


def test_from_env_errors_keep_field_names_for_overrides_and_cross_field_rules() -> None:
    """Only values read from a variable are renamed: an override's error names its field."""
    with pytest.raises(pydantic.ValidationError) as info:
        PoolConfig.from_env({"LLMPOOL_POOL_SIZE": "x"}, retry={"jitter": -1})
    assert [e["loc"] for e in info.value.errors()] == [("LLMPOOL_POOL_SIZE",), ("retry", "jitter")]
    bounds = {"LLMPOOL_RETRY_INITIAL_BACKOFF": "9", "LLMPOOL_RETRY_MAX_BACKOFF": "1"}
    with pytest.raises(pydantic.ValidationError, match="initial_backoff") as info:
        PoolConfig.from_env(bounds)
    assert info.value.errors()[0]["loc"] == ("retry",)


@pytest.mark.parametrize("value", ["high", "HIGH", "High", Priority.HIGH])
def test_priority_parse(value: str) -> None:
    """Priorities accept the enum and the strings, case-insensitively."""
    assert Priority.parse(value) is Priority.HIGH


def test_exports_are_pinned() -> None:
    """The public names of llmpool; a change here is an API change."""
    assert llmpool.__all__ == [
        "ENV_VARS",
        "Admission",
        "AttemptRecord",
        "CallOptions",
        "CapturedRequests",
        "ChunkEvent",
        "CircuitPolicy",
        "ClientFactory",
        "CompactionBudgetError",
        "CompleteEvent",
        "ConnectionManager",
        "ConnectionStats",
        "Conversation",
        "ConversationSanitizer",
        "DeadlineExceededError",
        "ErrorEvent",
        "InvalidConversationError",
        "InvalidHeaderError",
        "InvalidSessionIdError",
        "LLMPoolError",
        "LatencyStats",
        "Lease",
        "ManagerClosedError",
        "ManagerView",
        "ModelRateLimit",
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
        "InvalidHeaderError",
    ):
        assert issubclass(getattr(llmpool, name), llmpool.LLMPoolError)
    assert issubclass(llmpool.InvalidSessionIdError, ValueError)
    assert issubclass(llmpool.InvalidHeaderError, ValueError)
    error = llmpool.QueueTimeoutError(
        "no slot", request_id="req_1", session_id="t1", attempts=2, waited=1.5, last_status=429
    )
    assert str(error) == (
        "no slot (request_id=req_1, session_id=t1, attempts=2, waited=1.500s, last_status=429)"
    )
