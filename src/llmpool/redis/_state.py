"""``RedisState``: one Redis client, and the stores and turn locks on it."""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, Final, Self
from urllib.parse import urlsplit

import anyio

from llmpool._extras import require
from llmpool._state import StateStores

from ._budgets import RedisBudgets
from ._constants import DEFAULT_PREFIX, DEFAULT_TURN_POLL
from ._conversations import RedisConversations
from ._health import RedisHealth
from ._keys import check_prefix
from ._policy import SharedBudgetPolicy
from ._turns import TurnLocks

if TYPE_CHECKING:
    import coredis
else:
    coredis = require("coredis", "redis", feature="llmpool.redis")

__all__ = ["RedisState"]

_SCHEMES: Final = ("redis", "rediss", "unix")


class RedisState:
    """llmpool's shared state on one Redis: budgets, cooldowns, conversations, turn locks.

    Open it with ``async with`` (it holds a coredis connection pool, whose background work
    runs in a task group for as long as it is open), then hand ``stores()`` to the manager::

        async with RedisState("redis://localhost:6379/0") as redis:
            async with ConnectionManager(config, state=redis.stores()) as manager:
                async with redis.turns.hold(session) as turn:
                    document, version = await redis.conversations.load(session)
                    ...
                    await redis.conversations.save(
                        session, conversation.to_json(), version=version, fence=turn.token
                    )

    Several instances with the same Redis and ``prefix`` share every rate-limit budget (RPM
    and TPM per upstream and model, and ``budget.concurrency`` requests in flight per
    upstream), every cooldown, every conversation and every turn lock; a different ``prefix``
    is a separate namespace on the same Redis.

    Args:
        url: where Redis is: ``redis://[[user]:password@]host[:port][/db]``, ``rediss://``
            (TLS) or ``unix:///path/to/socket``, as coredis reads it.
        prefix: the first part of every key; default ``"llmpool"``. No braces (they would
            move the Cluster hash tag).
        poll_interval: seconds between two tries of a waiting turn lock at most; default
            ``DEFAULT_TURN_POLL`` (0.05 s).
        budget: the global concurrency cap and how budgets use Redis (timeouts, heartbeats,
            what happens while Redis is unreachable); default ``SharedBudgetPolicy()``.

    Attributes:
        conversations: the ``ConversationStore`` on Redis.
        turns: the turn locks of every session.

    Raises:
        ValueError: ``url`` is not a ``redis://``, ``rediss://`` or ``unix://`` URL;
            ``prefix`` is empty or holds a brace; ``poll_interval`` is not positive.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        poll_interval: float = DEFAULT_TURN_POLL,
        budget: SharedBudgetPolicy | None = None,
    ) -> None:
        if not isinstance(url, str) or urlsplit(url).scheme not in _SCHEMES:
            raise ValueError(f"url must be a redis://, rediss:// or unix:// URL, got {url!r}")
        self._url = url
        self._prefix = check_prefix(prefix)
        self._budget = SharedBudgetPolicy() if budget is None else budget
        self._client: coredis.Redis[str] = coredis.Redis.from_url(url, decode_responses=True)
        self.conversations = RedisConversations(self._client, prefix=prefix)
        self.turns = TurnLocks(self._client, prefix=prefix, poll_interval=poll_interval)

    @property
    def url(self) -> str:
        """Where Redis is, as given."""
        return self._url

    @property
    def prefix(self) -> str:
        """The first part of every key."""
        return self._prefix

    @property
    def client(self) -> coredis.Redis[str]:
        """The coredis client (``decode_responses=True``), usable while this is open."""
        return self._client

    @property
    def budget(self) -> SharedBudgetPolicy:
        """How budgets are shared."""
        return self._budget

    def stores(self) -> StateStores:
        """The state stores for ``ConnectionManager(state=...)``: everything on this Redis.

        Budgets (``RedisBudgets``) and cooldowns (``RedisHealth``) belong to one manager
        each (they carry its instance id and its view of every budget), so each call
        returns new ones: give one result to one manager. Circuit breakers stay per
        instance.

        Returns:
            ``StateStores(budgets=..., health=..., conversations=self.conversations)``.
        """
        budgets = RedisBudgets(
            self._client, prefix=self._prefix, policy=self._budget, url=self._url
        )
        return StateStores(
            budgets=budgets, health=RedisHealth(budgets), conversations=self.conversations
        )

    async def __aenter__(self) -> Self:
        await self._client.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        # The block's own exception propagates unchanged, never in the exception group of the
        # client's task group; a cancellation is handed over, so a scope catches its own.
        if isinstance(exc_value, anyio.get_cancelled_exc_class()):
            await self._client.__aexit__(exc_type, exc_value, traceback)
        else:
            await self._client.__aexit__(None, None, None)
