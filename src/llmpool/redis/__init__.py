"""llmpool's state on Redis, shared by every instance (extra ``redis``).

``pip install 'llmpool[redis]'`` (coredis, a Redis client on anyio, so this runs on asyncio
and on trio). Importing this package without it raises ``MissingExtraError`` naming the
extra; ``import llmpool`` never imports it.

- ``RedisState(url, prefix=..., budget=SharedBudgetPolicy(...))``: the client; ``.stores()``
  for the manager, ``.conversations`` and ``.turns``.
- ``RedisBudgets`` / ``RedisHealth``: the budget and health stores on Redis: RPM, TPM and a
  global concurrency cap decided in one script per admission, cooldowns through pub/sub,
  and each instance's share alone while Redis is unreachable.
- ``RedisConversations``: the ``ConversationStore`` protocol on Redis (versioned JSON,
  compare-and-set, optionally fenced by a turn's token).
- ``TurnLocks`` / ``TurnLock``: one turn of a session at a time across instances, a lease with
  a fencing token; ``TurnLostError`` when a holder's lease ended.

Algorithms, key layout and what is not shared yet: docs/redis.md. This package uses
``llmpool``'s public names and the store protocols (``llmpool._state``) only; the core never
imports it.
"""

from ._budgets import RedisBudgets as RedisBudgets
from ._conversations import RedisConversations as RedisConversations
from ._errors import TurnLostError as TurnLostError
from ._health import RedisHealth as RedisHealth
from ._keys import SessionKeys as SessionKeys
from ._keys import session_keys as session_keys
from ._policy import SharedBudgetPolicy as SharedBudgetPolicy
from ._state import RedisState as RedisState
from ._turns import TurnLock as TurnLock
from ._turns import TurnLocks as TurnLocks
from ._window import window_allowance as window_allowance

__all__ = [
    "RedisBudgets",
    "RedisConversations",
    "RedisHealth",
    "RedisState",
    "SessionKeys",
    "SharedBudgetPolicy",
    "TurnLock",
    "TurnLocks",
    "TurnLostError",
    "session_keys",
    "window_allowance",
]

for _name in __all__:
    globals()[_name].__module__ = "llmpool.redis"
del _name
