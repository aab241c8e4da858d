"""llmpool's state on Redis, shared by every instance (extra ``redis``).

``pip install 'llmpool[redis]'`` (coredis, a Redis client on anyio, so this runs on asyncio
and on trio). Importing this package without it raises ``MissingExtraError`` naming the
extra; ``import llmpool`` never imports it.

- ``RedisState(url, prefix=...)``: the client; ``.stores()`` for the manager,
  ``.conversations`` and ``.turns``.
- ``RedisConversations``: the ``ConversationStore`` protocol on Redis (versioned JSON,
  compare-and-set, optionally fenced by a turn's token).
- ``TurnLocks`` / ``TurnLock``: one turn of a session at a time across instances, a lease with
  a fencing token; ``TurnLostError`` when a holder's lease ended.

Algorithms, key layout and what is not shared yet: docs/redis.md. This package uses
``llmpool``'s public names and the store protocols (``llmpool._state``) only; the core never
imports it.
"""

from ._conversations import RedisConversations as RedisConversations
from ._errors import TurnLostError as TurnLostError
from ._keys import SessionKeys as SessionKeys
from ._keys import session_keys as session_keys
from ._state import RedisState as RedisState
from ._turns import TurnLock as TurnLock
from ._turns import TurnLocks as TurnLocks

__all__ = [
    "RedisConversations",
    "RedisState",
    "SessionKeys",
    "TurnLock",
    "TurnLocks",
    "TurnLostError",
    "session_keys",
]

for _name in __all__:
    globals()[_name].__module__ = "llmpool.redis"
del _name
