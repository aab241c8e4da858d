"""Sessions shared by several instances through Redis (``ServerConfig.redis_url``).

With ``llmpool.redis``, a session's conversation lives in Redis and each turn holds the
session's turn lock, so a session continues on any instance and two instances never run two
turns of one session at once (the second gets ``session_busy``). Per turn: take the lock
(``try_acquire``: no waiting: the session is busy), load the conversation (the store is the
truth: another instance may have moved it on), run the turn while renewing the lock every
third of its ``ttl``, then save with compare-and-set fenced by the lock's token, and release.
Frames, resume and the idle clock stay per instance: a client that moves to another instance
continues the conversation but cannot resume the frames of a turn it left on the first.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import anyio

from llmpool import Conversation

from ._protocol import ErrorCode
from ._session import Session

if TYPE_CHECKING:
    from llmpool.redis import RedisState, TurnLock

__all__ = ["SessionRefusedError", "SharedSessions"]

logger = logging.getLogger("llmpool.server")


class SessionRefusedError(Exception):
    """A turn cannot start: another instance runs one, or the store does not answer."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


class SharedSessions:
    """Conversations and turn locks on one ``RedisState`` (see the module docstring).

    Args:
        state: an open ``RedisState``.
        ttl: seconds a turn lock lasts without renewal (renewed every ``ttl / 3``).
        timeout: seconds each step (lock and load; save and release) may take.
    """

    def __init__(self, state: RedisState, *, ttl: float, timeout: float) -> None:
        self._state = state
        self._ttl = ttl
        self._timeout = timeout

    async def begin(self, session: Session) -> TurnLock:
        """Take ``session``'s turn lock and load its conversation into it.

        Raises:
            SessionRefusedError: ``session_busy`` (another instance holds the lock), or
                ``upstream_error`` (Redis failed or did not answer within ``timeout``).
        """
        lock = None
        try:
            with anyio.fail_after(self._timeout):
                lock = await self._state.turns.try_acquire(session.id, ttl=self._ttl)
                if lock is None:
                    raise SessionRefusedError(
                        ErrorCode.SESSION_BUSY,
                        "another instance is running a turn of this session: one at a time",
                    )
                document, version = await self._state.conversations.load(session.id)
        except SessionRefusedError:
            raise
        except Exception as exc:
            if lock is not None:
                await self._release(lock)
            logger.warning("session store failed: %r", exc)
            raise SessionRefusedError(
                ErrorCode.UPSTREAM_ERROR, "the shared session store did not answer"
            ) from exc
        if document is not None:
            session.conversation = Conversation.from_json(document)
        session.version = version
        return lock

    async def keep(self, lock: TurnLock) -> None:
        """Renew ``lock`` every third of its ttl until cancelled.

        A failure is logged and ends the renewing: the fenced save then tells whether the
        turn still held the session.
        """
        while True:
            await anyio.sleep(lock.ttl / 3)
            try:
                with anyio.fail_after(self._timeout):
                    await lock.renew()
            except Exception as exc:
                logger.warning("turn lock of a session could not be renewed: %r", exc)
                return

    async def finish(self, session: Session, lock: TurnLock) -> None:
        """Save the conversation (compare-and-set, fenced by ``lock``) and release ``lock``.

        Shielded and bounded by ``timeout``: it runs whole also when shutdown cancels the
        turn. A failed save is logged; the next turn loads what the store holds.
        """
        with anyio.CancelScope(shield=True):
            try:
                with anyio.fail_after(self._timeout):
                    session.version = await self._state.conversations.save(
                        session.id,
                        session.conversation.to_json(),
                        version=session.version,
                        fence=lock.token,
                    )
            except Exception as exc:
                logger.warning("conversation of a session not saved: %r", exc)
            await self._release(lock)

    async def _release(self, lock: TurnLock) -> None:
        with anyio.CancelScope(shield=True):
            try:
                with anyio.fail_after(self._timeout):
                    await lock.release()
            except Exception as exc:  # it expires on its own after its ttl
                logger.warning("turn lock of a session not released: %r", exc)
