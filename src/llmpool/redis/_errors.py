"""``llmpool.redis``'s error: a turn lock's holder that is no longer the holder.

::

    LLMPoolError
    └── TurnLostError   a renew or a fenced save by a token that no longer holds the turn

A conversation saved by someone else since it was loaded raises the store protocol's
``ConversationConflictError``, as the in-memory store does. ``TurnLostError`` is not a
conflict: reloading and saving again with the same token would be refused again, so it
is not a subclass.
"""

from __future__ import annotations

from llmpool import LLMPoolError

__all__ = ["TurnLostError"]


class TurnLostError(LLMPoolError):
    """A turn lock's token no longer holds the turn of its session.

    Its lock expired (the holder was too slow to renew it), and perhaps another instance
    took the turn since: the holder must stop, without saving.

    Args:
        session: the session key.
        token: the fencing token that was refused.
        current: the token that counts now, greater than ``token``: the lock's holder
            (renew) or the last token granted (a fenced save); ``0`` when nobody holds the
            turn (renew).

    Attributes:
        token: as given.
        current: as given.
    """

    def __init__(self, *, session: str, token: int, current: int) -> None:
        self.token = token
        self.current = current
        if current == 0:
            why = "its lock expired and nobody holds it"
        else:
            why = f"token {current} was granted since"
        super().__init__(f"token {token} no longer holds the turn: {why}", session_id=session)
