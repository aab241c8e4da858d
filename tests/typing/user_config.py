"""A user's file: builds every public config model, checked by mypy --strict *without* the
pydantic mypy plugin (``make typecheck``). A positional ``Field(default, ...)`` makes every field
look required to a type checker that only reads ``dataclass_transform``; this file pins that
each public model can be built with any subset of its fields.
"""

from __future__ import annotations

import llmpool
from llmpool import (
    Conversation,
    PoolConfig,
    RateLimitPolicy,
    RecoveryPolicy,
    RetryPolicy,
)


def build() -> list[object]:
    retry = RetryPolicy(max_attempts=3, initial_backoff=0.1)
    limits = RateLimitPolicy(requests_per_minute=600)
    config = PoolConfig(pool_size=5, max_concurrency=3, retry=retry, rate_limit=limits)
    default = PoolConfig()
    variant: PoolConfig = config.model_copy(update={"queue_timeout": 30.0})
    recovery = RecoveryPolicy(max_recoveries=1)
    conversation = Conversation()
    chat = Conversation(api="chat")
    usage = llmpool.Usage(total_tokens=3)
    attempts: int = config.retry.max_attempts
    return [default, variant, recovery, conversation, chat, usage, attempts]
