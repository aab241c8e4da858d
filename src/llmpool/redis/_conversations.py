"""``RedisConversations``: the ``ConversationStore`` protocol on Redis.

One hash per conversation holds the document and its version together, so one read returns
both and one script changes both (``_scripts.SAVE``): compare-and-set, the optimistic
concurrency of the in-memory store, now shared by every instance on the same Redis. A save
may also carry a turn lock's fencing token and is then refused once a newer turn was granted
(Kleppmann, "How to do distributed locking", 2016: the storage checks the token).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmpool._state import ConversationConflictError

from ._errors import TurnLostError
from ._keys import check_prefix, session_keys
from ._replies import pair
from ._scripts import SAVE

if TYPE_CHECKING:
    import coredis

__all__ = ["RedisConversations"]


class RedisConversations:
    """Conversations as versioned JSON documents in Redis, saved with compare-and-set.

    Implements ``ConversationStore``: a conversation saved by one instance is loaded by any
    other with the same Redis and ``prefix``. Keys are described in docs/redis.md
    (``<prefix>:{<key>}:conversation``, a hash of ``document`` and ``version``); they never
    expire.

    Args:
        client: a coredis client with ``decode_responses=True``, opened (``async with``) by
            its owner, e.g. ``RedisState``.
        prefix: the first part of every key; default ``"llmpool"``. No braces.

    Raises:
        ValueError: ``prefix`` is empty or holds a brace.
    """

    def __init__(self, client: coredis.Redis[str], *, prefix: str) -> None:
        self._client = client
        self._prefix = check_prefix(prefix)
        self._save = client.register_script(SAVE)

    @property
    def prefix(self) -> str:
        """The first part of every key."""
        return self._prefix

    async def load(self, key: str) -> tuple[str | None, int]:
        """``(document, version)``; ``(None, 0)`` when there is none.

        Raises:
            ValueError: ``key`` is empty.
            coredis.exceptions.RedisError: Redis failed or could not be reached.
        """
        document, version = await self._client.hmget(
            session_keys(self._prefix, key).conversation, ["document", "version"]
        )
        if document is None:
            return None, 0
        return document, int(version or 0)

    async def save(self, key: str, document: str, *, version: int, fence: int | None = None) -> int:
        """Store ``document`` if the stored version is still ``version``; the new version.

        Args:
            key: the conversation's key (its session), non-empty.
            document: the JSON text, e.g. ``Conversation.to_json()``.
            version: the version ``load`` returned (``0`` for a new conversation).
            fence: the fencing token of the turn lock held for ``key`` (``TurnLock.token``),
                or ``None`` (default) for an unfenced save.

        Returns:
            The new version, ``version + 1``.

        Raises:
            ConversationConflictError: the stored version is not ``version``; the message
                names both.
            TurnLostError: ``fence`` is not the last token granted for ``key``: a newer turn
                began (checked before the version).
            ValueError: ``key`` is empty, or ``fence`` was never granted for it.
            coredis.exceptions.RedisError: Redis failed or could not be reached.
        """
        keys = session_keys(self._prefix, key)
        token = "" if fence is None else str(int(fence))
        status, value = pair(
            await self._save([keys.conversation, keys.fence], [str(version), document, token])
        )
        if status == 1:
            return value
        if status == -1:
            assert fence is not None  # the script fences out only a save that carries a token
            if value < fence:
                raise ValueError(
                    f"fence {fence} was never granted for {key!r} "
                    f"(the last token granted is {value})"
                )
            raise TurnLostError(session=key, token=fence, current=value)
        raise ConversationConflictError(
            f"conversation {key!r} is at version {value}, not {version}: "
            "it was saved elsewhere since it was loaded"
        )

    async def delete(self, key: str) -> None:
        """Forget ``key`` (no error if absent). The session's fence counter stays.

        Raises:
            ValueError: ``key`` is empty.
            coredis.exceptions.RedisError: Redis failed or could not be reached.
        """
        await self._client.delete([session_keys(self._prefix, key).conversation])
