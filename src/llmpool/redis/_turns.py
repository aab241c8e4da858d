"""Turn locks: one turn of a session at a time, across instances, with fencing tokens.

A turn lock is a lease (Gray and Cheriton, "Leases", SOSP 1989): the key
``<prefix>:{<session>}:turn`` holds its holder's token and expires after ``ttl`` on Redis's
clock (``SET … PX``, renewed with ``PEXPIRE``), so the lock of an instance that crashed comes
back by itself. Taking it draws a **fencing token** from ``INCR`` on the session's fence
counter: tokens only grow, and a save that carries one is refused once a newer one was
granted (Kleppmann, "How to do distributed locking", 2016), so a holder that was paused past
its expiry cannot overwrite its successor's turn. Renew and release compare the token first,
in one script (the compare-and-delete of redis.io "Distributed Locks with Redis").

One Redis, no Redlock: the lock is as available as that Redis (docs/redis.md says why).
Redis has no blocking lock; a waiting ``acquire`` polls, no more often than
``poll_interval`` and not before the holder's lease can have ended.
"""

from __future__ import annotations

import math
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import anyio

from ._constants import (
    CLOCK_DRIFT_FACTOR,
    CLOCK_DRIFT_MIN,
    DEFAULT_TURN_POLL,
    DEFAULT_TURN_TTL,
    SHIELD_TIMEOUT,
)
from ._errors import TurnLostError
from ._keys import SessionKeys, check_prefix, session_keys
from ._replies import pair
from ._scripts import ACQUIRE, RELEASE, RENEW

if TYPE_CHECKING:
    import coredis

__all__ = ["TurnLock", "TurnLocks"]

_MIN_WAIT = 0.001  # seconds: a lease about to end is polled again after this, not at once


def _milliseconds(ttl: float) -> int:
    if not isinstance(ttl, int | float) or not math.isfinite(ttl) or ttl <= 0:
        raise ValueError(f"ttl must be a positive number of seconds, got {ttl!r}")
    return max(1, math.ceil(ttl * 1000))


def _valid_until(started: float, ttl: float) -> float:
    return started + ttl - (ttl * CLOCK_DRIFT_FACTOR + CLOCK_DRIFT_MIN)


class TurnLock:
    """One session's turn, held; made by ``TurnLocks.acquire``.

    Attributes:
        session: the session key.
        token: the fencing token, greater than every token granted before for ``session``.
            Pass it to ``RedisConversations.save(..., fence=token)``.
        ttl: seconds the lease lasts from each acquire or renew.
        valid_until: when the lease surely still holds, on the event loop's clock
            (``anyio.current_time()``): ``ttl`` after the request that took or renewed it
            was sent, less an allowance for clock drift (1 % + 2 ms, as Redlock's). Renew
            before then; the lease itself ends on Redis's clock.
    """

    __slots__ = ("_keys", "_locks", "session", "token", "ttl", "valid_until")

    def __init__(
        self,
        locks: TurnLocks,
        keys: SessionKeys,
        *,
        session: str,
        token: int,
        ttl: float,
        valid_until: float,
    ) -> None:
        self._locks = locks
        self._keys = keys
        self.session = session
        self.token = token
        self.ttl = ttl
        self.valid_until = valid_until

    def __repr__(self) -> str:
        return f"TurnLock(session={self.session!r}, token={self.token}, ttl={self.ttl})"

    async def renew(self, ttl: float | None = None) -> None:
        """Extend the lease to ``ttl`` seconds from now (on Redis's clock).

        Args:
            ttl: seconds; default the lock's ``ttl``, which it then becomes.

        Raises:
            TurnLostError: the lease ended before, and this token no longer holds the turn.
            ValueError: ``ttl`` is not a positive number.
            coredis.exceptions.RedisError: Redis failed or could not be reached.
        """
        ttl = self.ttl if ttl is None else ttl
        milliseconds = _milliseconds(ttl)
        started = anyio.current_time()
        renewed, holder = pair(
            await self._locks._renew([self._keys.turn], [str(self.token), str(milliseconds)])
        )
        if not renewed:
            raise TurnLostError(session=self.session, token=self.token, current=holder)
        self.ttl = ttl
        self.valid_until = _valid_until(started, ttl)

    async def release(self) -> bool:
        """End the turn if this token still holds it.

        Returns:
            ``True`` if it did; ``False`` if the lease had ended (and perhaps another holder
            took the turn, whose lock is left alone).

        Raises:
            coredis.exceptions.RedisError: Redis failed or could not be reached.
        """
        released, _holder = pair(await self._locks._release([self._keys.turn], [str(self.token)]))
        return released == 1


class TurnLocks:
    """The turn locks of every session under one prefix.

    Args:
        client: a coredis client with ``decode_responses=True``, opened (``async with``) by
            its owner, e.g. ``RedisState``.
        prefix: the first part of every key; no braces.
        poll_interval: the longest wait, in seconds, between two tries of a waiting
            ``acquire``; default ``DEFAULT_TURN_POLL`` (0.05 s). Each wait is jittered
            (50-100 %) and never longer than the holder's remaining lease.

    Raises:
        ValueError: ``prefix`` is empty or holds a brace; ``poll_interval`` is not positive.
    """

    def __init__(
        self, client: coredis.Redis[str], *, prefix: str, poll_interval: float = DEFAULT_TURN_POLL
    ) -> None:
        if not isinstance(poll_interval, int | float) or not poll_interval > 0:
            raise ValueError(f"poll_interval must be positive seconds, got {poll_interval!r}")
        self._prefix = check_prefix(prefix)
        self._poll = float(poll_interval)
        self._acquire = client.register_script(ACQUIRE)
        self._renew = client.register_script(RENEW)
        self._release = client.register_script(RELEASE)

    async def try_acquire(self, session: str, *, ttl: float = DEFAULT_TURN_TTL) -> TurnLock | None:
        """Take ``session``'s turn if nobody holds it.

        The request runs shielded from cancellation (for at most 5 s), so a lock granted is
        always handed back: a caller cancelled meanwhile gets it and is cancelled at its
        next checkpoint.

        Args:
            session: the session key, non-empty.
            ttl: seconds the lease lasts unless renewed; default ``DEFAULT_TURN_TTL`` (30 s).

        Returns:
            The held turn, or ``None`` if another holder has it.

        Raises:
            ValueError: ``session`` is empty or ``ttl`` is not a positive number.
            TimeoutError: Redis did not answer within 5 s.
            coredis.exceptions.RedisError: Redis failed or could not be reached.
        """
        turn, _remaining = await self._try(session, ttl)
        return turn

    async def acquire(self, session: str, *, ttl: float = DEFAULT_TURN_TTL) -> TurnLock:
        """Take ``session``'s turn, waiting while another holder has it.

        Waits as long as it takes: bound it with a cancel scope (``anyio.fail_after``).
        The holder must ``release`` the lock; ``hold`` does it for you.

        Args:
            session: the session key, non-empty.
            ttl: seconds the lease lasts unless renewed; default ``DEFAULT_TURN_TTL`` (30 s).

        Returns:
            The held turn.

        Raises:
            ValueError: ``session`` is empty or ``ttl`` is not a positive number.
            TimeoutError: Redis did not answer one try within 5 s.
            coredis.exceptions.RedisError: Redis failed or could not be reached.
        """
        while True:
            turn, remaining = await self._try(session, ttl)
            if turn is not None:
                return turn
            # remaining: the holder's lease in seconds, or -0.001 (held without expiry).
            wait = self._poll if remaining < 0 else min(self._poll, remaining)
            await anyio.sleep(max(_MIN_WAIT, wait * random.uniform(0.5, 1.0)))

    @asynccontextmanager
    async def hold(self, session: str, *, ttl: float = DEFAULT_TURN_TTL) -> AsyncIterator[TurnLock]:
        """``async with locks.hold(session) as turn:``: ``acquire``, then ``release`` on exit.

        The release runs shielded, for at most 5 s (the lease then ends by itself).

        Args:
            session: the session key, non-empty.
            ttl: seconds the lease lasts unless renewed; default ``DEFAULT_TURN_TTL`` (30 s).

        Yields:
            The held turn.

        Raises:
            ValueError: ``session`` is empty or ``ttl`` is not a positive number.
            TimeoutError: Redis did not answer one try within 5 s.
            coredis.exceptions.RedisError: Redis failed or could not be reached.
        """
        turn = await self.acquire(session, ttl=ttl)
        try:
            yield turn
        finally:
            with anyio.move_on_after(SHIELD_TIMEOUT, shield=True):
                await turn.release()

    async def _try(self, session: str, ttl: float) -> tuple[TurnLock | None, float]:
        keys = session_keys(self._prefix, session)
        milliseconds = _milliseconds(ttl)
        started = anyio.current_time()
        reply: object = None
        with anyio.move_on_after(SHIELD_TIMEOUT, shield=True):
            reply = await self._acquire([keys.turn, keys.fence], [str(milliseconds)])
        if reply is None:
            raise TimeoutError(
                f"Redis did not answer a turn lock request within {SHIELD_TIMEOUT} s"
            )
        token, remaining = pair(reply)
        if token == 0:
            return None, remaining / 1000
        turn = TurnLock(
            self,
            keys,
            session=session,
            token=token,
            ttl=float(ttl),
            valid_until=_valid_until(started, ttl),
        )
        return turn, 0.0
