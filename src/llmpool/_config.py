"""Configuration models: ``PoolConfig``, its policies, and the per-call ``CallOptions``.

``PoolConfig`` holds a ``RetryPolicy``, a ``RateLimitPolicy`` (with ``ModelRateLimit`` per
model) and a ``CircuitPolicy``.

All are frozen pydantic models that reject unknown fields; make variants with
``config.model_copy(update={...})``. ``PoolConfig.from_env`` reads the ``LLMPOOL_*`` variables
listed in ``ENV_VARS``. Every duration is a float in seconds.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Final, Literal, Self, TypeAlias, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError
from pydantic_core.core_schema import ErrorType

from . import _constants as C

__all__ = [
    "ENV_VARS",
    "Admission",
    "CallOptions",
    "CircuitPolicy",
    "ModelRateLimit",
    "PoolConfig",
    "RateLimitPolicy",
    "RetryPolicy",
    "check_admission",
    "name_variables",
]


Admission: TypeAlias = Literal["reject", "wait"]
"""What a new request does when the queue is full (and no lower-priority waiter can be evicted):
``"reject"``: ``QueueFullError`` at once; ``"wait"``: wait for a place (back-pressure), bounded by
``queue_timeout``."""

_ERROR_TYPES: Final = frozenset(get_args(ErrorType))  # pydantic-core's built-in error types


def check_admission(admission: Admission | None, max_queue_size: int) -> None:
    """Refuse ``admission="wait"`` without a queue: there is no place to wait for.

    Raises:
        ValueError: ``admission == "wait"`` and ``max_queue_size == 0``.
    """
    if admission == "wait" and max_queue_size == 0:
        raise ValueError(
            "admission='wait' needs max_queue_size >= 1: with no queue there is no place to "
            "wait for"
        )


class RetryPolicy(BaseModel):
    """How failed attempts are retried.

    A **retry budget** (Envoy's ``retry_budget`` semantics) keeps retries from multiplying
    load: a failed attempt is retried only while fewer than ``max(min_retry_concurrency,
    budget_percent / 100 * active requests)`` retry attempts are in flight (sent and not yet
    answered: Envoy's "active retries"); otherwise its error is raised at once. Retries that
    wait behind an open circuit breaker send nothing until it lets them, so they are not
    refused by the budget.

    The n-th retry (n from 0) waits ``min(initial_backoff * 2**n + uniform(0, jitter),
    max_backoff)`` seconds (tenacity's ``wait_exponential_jitter``), unless the server said how
    long to wait (``retry-after-ms``, then ``Retry-After`` in seconds or as an HTTP date, MDN
    "Retry-After"): then that hint is used, and a hint over ``max_retry_after`` ends the retries.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_attempts: int = Field(
        default=C.DEFAULT_MAX_ATTEMPTS,
        ge=1,
        le=100,
        description="Attempts in all, the first included.",
    )
    initial_backoff: float = Field(
        default=C.DEFAULT_INITIAL_BACKOFF,
        ge=0,
        description="Backoff before the first retry, seconds.",
    )
    max_backoff: float = Field(
        default=C.DEFAULT_MAX_BACKOFF,
        ge=0,
        description="Upper bound of any computed backoff, seconds.",
    )
    jitter: float = Field(
        default=C.DEFAULT_JITTER, ge=0, description="Random seconds, uniform in [0, jitter], added."
    )
    max_retry_after: float = Field(
        default=C.DEFAULT_MAX_RETRY_AFTER,
        ge=0,
        description="Longest server-requested wait (Retry-After) honoured, seconds.",
    )
    budget_percent: float = Field(
        default=C.DEFAULT_RETRY_BUDGET_PERCENT,
        ge=0,
        le=100,
        description="Retries in flight at most this percentage of active requests, percent.",
    )
    min_retry_concurrency: int = Field(
        default=C.DEFAULT_MIN_RETRY_CONCURRENCY,
        ge=0,
        description="Retries always allowed in flight, whatever the percentage, count.",
    )

    @model_validator(mode="after")
    def _check_bounds(self) -> Self:
        if self.initial_backoff > self.max_backoff:
            raise ValueError(
                f"initial_backoff ({self.initial_backoff}) must not exceed "
                f"max_backoff ({self.max_backoff})"
            )
        return self


class ModelRateLimit(BaseModel):
    """Configured limits of one model (``RateLimitPolicy.models``); ``None`` keeps the default."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    requests_per_minute: int | None = Field(
        default=None, ge=1, description="Requests per minute of this model (RPM)."
    )
    tokens_per_minute: int | None = Field(
        default=None, ge=1, description="Tokens per minute of this model (TPM)."
    )


class CircuitPolicy(BaseModel):
    """The circuit breaker each upstream has (docs/retries.md).

    A hintless 429 (no ``Retry-After``, ``retry-after-ms`` or ``x-ratelimit-*``, nor their
    ``llm_provider-`` forms) opens the circuit; so do ``failure_threshold`` consecutive 5xx,
    connection errors or timeouts. Open, nothing is sent for ``min(initial_cooldown *
    2**(n-1) + uniform(0, jitter), max_cooldown)`` seconds (the n-th open since it last
    closed); then one probe is let through: success closes the circuit, failure opens it again.
    Queued work waits in the queue meanwhile, counted against ``queue_timeout``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = Field(default=True, description="Whether upstreams have a circuit breaker.")
    failure_threshold: int = Field(
        default=C.DEFAULT_CIRCUIT_FAILURE_THRESHOLD,
        ge=1,
        description="Consecutive 5xx/connection failures that open the circuit, count.",
    )
    initial_cooldown: float = Field(
        default=C.DEFAULT_CIRCUIT_INITIAL_COOLDOWN,
        gt=0,
        description="Cooldown after the first open, seconds (doubles with each re-open).",
    )
    max_cooldown: float = Field(
        default=C.DEFAULT_CIRCUIT_MAX_COOLDOWN, gt=0, description="Longest cooldown, seconds."
    )
    jitter: float = Field(
        default=C.DEFAULT_CIRCUIT_JITTER,
        ge=0,
        description="Random seconds, uniform in [0, jitter], added to each cooldown.",
    )

    @model_validator(mode="after")
    def _check_bounds(self) -> Self:
        if self.initial_cooldown > self.max_cooldown:
            raise ValueError(
                f"initial_cooldown ({self.initial_cooldown}) must not exceed "
                f"max_cooldown ({self.max_cooldown})"
            )
        return self


class RateLimitPolicy(BaseModel):
    """Provider rate limits, per upstream (clients sharing an API key and base URL) and model.

    OpenAI's limits, and its ``x-ratelimit-*`` headers, are per model on one key, so each
    (upstream, model) pair has its own budgets: ``requests_per_minute`` and
    ``tokens_per_minute`` apply to every model, ``models`` overrides them for some. Calls
    whose model llmpool cannot see (``run`` without ``model=``) share one budget.

    Each limit is a token bucket that refills at ``limit / 60`` per second and holds at most
    ``limit * burst / 60`` (``burst`` seconds of quota; a request larger than the bucket
    waits for a full bucket and leaves it in debt). Admission takes a concurrency slot, one
    request and the request's estimated tokens in one decision; the estimate is corrected with
    the response's ``usage``. With ``learn_from_headers``, the limits, the remaining budget and
    429 ``Retry-After`` are taken from the API's ``x-ratelimit-*`` headers (OpenAI "Rate
    limits" guide); a configured limit is an upper bound that headers can only lower.
    ``None`` means no limit (nothing is held back until headers say otherwise).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    requests_per_minute: int | None = Field(
        default=None,
        ge=1,
        description="Requests per minute of each model per upstream (RPM); None: unlimited.",
    )
    tokens_per_minute: int | None = Field(
        default=None,
        ge=1,
        description="Tokens per minute of each model per upstream (TPM); None: unlimited.",
    )
    burst: float = Field(
        default=C.DEFAULT_RATE_LIMIT_BURST,
        gt=0,
        le=C.RATE_LIMIT_WINDOW,
        description="Bucket size in seconds of quota (1.0: one second's worth), seconds.",
    )
    models: dict[str, ModelRateLimit] = Field(
        default_factory=dict,
        description="Limits of particular models, overriding the two above for them.",
    )
    learn_from_headers: bool = Field(
        default=True, description="Learn limits and remaining budget from x-ratelimit-* headers."
    )
    default_output_tokens: int = Field(
        default=C.DEFAULT_OUTPUT_TOKEN_ESTIMATE,
        ge=0,
        description="Output tokens assumed when a request sets no max_output_tokens, tokens.",
    )

    def limits_for(self, model: str | None) -> tuple[int | None, int | None]:
        """The configured ``(requests_per_minute, tokens_per_minute)`` of ``model``."""
        override = self.models.get(model) if model is not None else None
        if override is None:
            return self.requests_per_minute, self.tokens_per_minute
        rpm = override.requests_per_minute
        tpm = override.tokens_per_minute
        return (
            self.requests_per_minute if rpm is None else rpm,
            self.tokens_per_minute if tpm is None else tpm,
        )


class PoolConfig(BaseModel):
    """Settings of a ``ConnectionManager``.

    Defaults: 5 clients, 3 concurrent attempts, 120 s queue timeout, 180 s request timeout.
    Every duration is in seconds.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    pool_size: int = Field(
        default=C.DEFAULT_POOL_SIZE, ge=1, le=1024, description="Pooled AsyncOpenAI clients."
    )
    max_concurrency: int = Field(
        default=C.DEFAULT_MAX_CONCURRENCY,
        ge=1,
        description="Attempts in flight at once, all clients.",
    )
    max_queue_size: int = Field(
        default=C.DEFAULT_MAX_QUEUE_SIZE,
        ge=0,
        description=(
            "Requests allowed to wait for a slot; one more is refused (QueueFullError) unless "
            "it evicts a lower-priority waiter or admission='wait'."
        ),
    )
    queue_timeout: float = Field(
        default=C.DEFAULT_QUEUE_TIMEOUT, gt=0, description="Longest wait for a slot, seconds."
    )
    request_timeout: float = Field(
        default=C.DEFAULT_REQUEST_TIMEOUT, gt=0, description="Longest single attempt, seconds."
    )
    shutdown_grace: float = Field(
        default=C.DEFAULT_SHUTDOWN_GRACE,
        ge=0,
        description="Seconds unfinished work may run on after the manager's context is left.",
    )
    starvation_limit: int = Field(
        default=C.DEFAULT_STARVATION_LIMIT,
        ge=1,
        description="Grants in a row a waiting lower priority class may be passed over.",
    )
    admission: Admission = Field(
        default="reject",
        description="Full queue: 'reject' (QueueFullError at once) or 'wait' for a place.",
    )
    retry: RetryPolicy = Field(default_factory=RetryPolicy, description="Retry policy.")
    circuit: CircuitPolicy = Field(
        default_factory=CircuitPolicy, description="Circuit breaker of each upstream."
    )
    rate_limit: RateLimitPolicy = Field(
        default_factory=RateLimitPolicy, description="Provider rate limits (RPM/TPM)."
    )

    @model_validator(mode="after")
    def _check_admission(self) -> Self:
        check_admission(self.admission, self.max_queue_size)
        return self

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> PoolConfig:
        """Build a config from ``LLMPOOL_*`` environment variables (see ``ENV_VARS``).

        Args:
            environ: the variables to read; ``os.environ`` by default.
            **overrides: fields that take precedence over the environment. For a nested
                policy (``retry``, ``rate_limit``, ``circuit``) a mapping is merged over the
                values read from that policy's variables (``retry={"max_attempts": 2}`` keeps
                ``LLMPOOL_RETRY_JITTER``); a policy instance replaces the whole policy.

        Returns:
            The validated config; unset variables keep their defaults.

        Raises:
            pydantic.ValidationError: a value is invalid. An error about a value read from the
                environment is located at the variable's name (``loc ==
                ("LLMPOOL_QUEUE_TIMEOUT",)``, printed as the variable followed by pydantic's
                message and the ``input_value``); an error about an override, or about several
                fields of one policy at once (``initial_backoff`` over ``max_backoff``), names
                the field as ``model_validate`` does.
        """
        env = os.environ if environ is None else environ
        data: dict[str, Any] = {}
        sources: dict[tuple[str | int, ...], str] = {}  # field path -> the variable that set it
        for var, field in ENV_VARS.items():
            if var in env:
                path = tuple(field.split("."))
                sources[path] = var
                if len(path) == 2:
                    data.setdefault(path[0], {})[path[1]] = env[var]
                else:
                    data[field] = env[var]
        for name, value in overrides.items():
            from_env = data.get(name)
            if isinstance(from_env, dict) and isinstance(value, Mapping):
                data[name] = {**from_env, **value}
                for key in value:
                    sources.pop((name, key), None)
            else:
                data[name] = value
                for stale in [key for key in sources if key[0] == name]:
                    del sources[stale]
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            if not sources:
                raise
            raise name_variables(exc, sources) from None


def name_variables(
    exc: ValidationError, sources: Mapping[tuple[str | int, ...], str]
) -> ValidationError:
    """``exc`` with each error about a value read from the environment located at its variable.

    Also used by ``llmpool.server.ServerConfig.from_env`` (its variables are top-level fields).

    ``loc`` ``("retry", "max_attempts")`` becomes ``("LLMPOOL_RETRY_MAX_ATTEMPTS",)``; other
    errors are kept as they are. The error types, messages and inputs are unchanged.
    """
    lines: list[InitErrorDetails] = []
    for error in exc.errors(include_url=False):
        loc = error["loc"]
        for depth in (2, 1):  # a policy's field ("retry", "jitter"), then a top-level field
            var = sources.get(loc[:depth])
            if var is not None:
                loc = (var, *loc[depth:])
                break
        kind: str | PydanticCustomError = error["type"]
        if kind not in _ERROR_TYPES:  # a custom error type: rebuilt from its message
            kind = PydanticCustomError(error["type"], error["msg"])
        line: InitErrorDetails = {"type": kind, "loc": loc, "input": error["input"]}
        if "ctx" in error:
            line["ctx"] = error["ctx"]
        lines.append(line)
    return ValidationError.from_exception_data(exc.title, lines)


class CallOptions(BaseModel):
    """Per-call overrides of ``PoolConfig``, set with ``manager.with_options(...)``.

    ``None`` keeps the manager's setting. Validated like the config (same bounds). Durations
    are seconds.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_attempts: int | None = Field(
        default=None, ge=1, le=100, description="Attempts in all, the first included."
    )
    queue_timeout: float | None = Field(
        default=None, gt=0, description="Longest wait for a slot, per attempt, seconds."
    )
    request_timeout: float | None = Field(
        default=None, gt=0, description="Longest single attempt, seconds."
    )
    deadline: float | None = Field(
        default=None,
        gt=0,
        description="Total time for the call, queueing, attempts and backoff included, seconds.",
    )
    admission: Admission | None = Field(
        default=None, description="Full queue: 'reject' or 'wait' (see PoolConfig.admission)."
    )


ENV_VARS: Final[Mapping[str, str]] = {
    "LLMPOOL_POOL_SIZE": "pool_size",
    "LLMPOOL_MAX_CONCURRENCY": "max_concurrency",
    "LLMPOOL_MAX_QUEUE_SIZE": "max_queue_size",
    "LLMPOOL_QUEUE_TIMEOUT": "queue_timeout",
    "LLMPOOL_REQUEST_TIMEOUT": "request_timeout",
    "LLMPOOL_SHUTDOWN_GRACE": "shutdown_grace",
    "LLMPOOL_STARVATION_LIMIT": "starvation_limit",
    "LLMPOOL_ADMISSION": "admission",
    "LLMPOOL_RETRY_MAX_ATTEMPTS": "retry.max_attempts",
    "LLMPOOL_RETRY_INITIAL_BACKOFF": "retry.initial_backoff",
    "LLMPOOL_RETRY_MAX_BACKOFF": "retry.max_backoff",
    "LLMPOOL_RETRY_JITTER": "retry.jitter",
    "LLMPOOL_RETRY_MAX_RETRY_AFTER": "retry.max_retry_after",
    "LLMPOOL_RETRY_BUDGET_PERCENT": "retry.budget_percent",
    "LLMPOOL_RETRY_MIN_RETRY_CONCURRENCY": "retry.min_retry_concurrency",
    "LLMPOOL_CIRCUIT_ENABLED": "circuit.enabled",
    "LLMPOOL_CIRCUIT_FAILURE_THRESHOLD": "circuit.failure_threshold",
    "LLMPOOL_CIRCUIT_INITIAL_COOLDOWN": "circuit.initial_cooldown",
    "LLMPOOL_CIRCUIT_MAX_COOLDOWN": "circuit.max_cooldown",
    "LLMPOOL_CIRCUIT_JITTER": "circuit.jitter",
    "LLMPOOL_RATE_LIMIT_RPM": "rate_limit.requests_per_minute",
    "LLMPOOL_RATE_LIMIT_TPM": "rate_limit.tokens_per_minute",
    "LLMPOOL_RATE_LIMIT_BURST": "rate_limit.burst",
    "LLMPOOL_RATE_LIMIT_LEARN_FROM_HEADERS": "rate_limit.learn_from_headers",
}
"""Environment variable -> ``PoolConfig`` field (``retry.*`` fields of ``RetryPolicy``,
``rate_limit.*`` fields of ``RateLimitPolicy``, ``circuit.*`` fields of ``CircuitPolicy``)."""
