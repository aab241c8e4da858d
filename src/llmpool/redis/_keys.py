"""Key layout: one session's keys share a Redis Cluster hash slot.

Every key of a session carries the same hash tag, the session key in braces. Redis Cluster
hashes only the part between the first ``{`` and the next ``}`` (Redis Cluster
specification, "Hash tags"), so a Lua script may touch all of them, on one node::

    <prefix>:{<session>}:conversation   hash: document, version
    <prefix>:{<session>}:turn           string: the holder's fencing token, with PX expiry
    <prefix>:{<session>}:fence          integer: the last fencing token issued (INCR)

A session key holding a brace or ``%`` is percent-encoded inside the tag (``{`` as ``%7B``,
``}`` as ``%7D``, ``%`` as ``%25``): one-to-one, and the tag ends at its own ``}``.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = [
    "SessionKeys",
    "UpstreamKeys",
    "check_prefix",
    "instances_key",
    "members_channel",
    "session_keys",
    "upstream_keys",
]

_ESCAPES = str.maketrans({"%": "%25", "{": "%7B", "}": "%7D"})


class SessionKeys(NamedTuple):
    """The Redis keys of one session (all in one hash slot)."""

    conversation: str
    turn: str
    fence: str


def check_prefix(prefix: str) -> str:
    """``prefix`` unchanged if it can start a key.

    Raises:
        ValueError: ``prefix`` is empty or holds a brace (it would move the hash tag).
    """
    if not isinstance(prefix, str) or not prefix:
        raise ValueError(f"prefix must be a non-empty string, got {prefix!r}")
    if "{" in prefix or "}" in prefix:
        raise ValueError(f"prefix must not contain '{{' or '}}' (the hash tag's), got {prefix!r}")
    return prefix


def session_keys(prefix: str, session: str) -> SessionKeys:
    """The keys of ``session`` under ``prefix`` (already checked by ``check_prefix``).

    Raises:
        ValueError: ``session`` is empty (``{}`` is no hash tag: each key would hash whole).
    """
    if not isinstance(session, str) or not session:
        raise ValueError(f"a session key must be a non-empty string, got {session!r}")
    base = f"{prefix}:{{{session.translate(_ESCAPES)}}}"
    return SessionKeys(f"{base}:conversation", f"{base}:turn", f"{base}:fence")


class UpstreamKeys(NamedTuple):
    """The Redis keys of one upstream, all in one hash slot.

    Its leases, its cooldown, its channel, and the prefix of its models' budget hashes
    (``budget(model)``).
    """

    leases: str
    cooldown: str
    channel: str
    base: str

    def budget(self, model: str | None) -> str:
        """The budget hash of ``model`` (``None``: calls whose model is not known)."""
        return f"{self.base}:budget" if model is None else f"{self.base}:budget:={model}"


def upstream_keys(prefix: str, upstream: str) -> UpstreamKeys:
    """The keys of ``upstream`` (its label) under ``prefix`` (already checked).

    ::

    <prefix>:{u:<upstream>}:leases          zset: lease id -> expiry, ms on Redis's clock
    <prefix>:{u:<upstream>}:cooldown        string: end of the cooldown, Unix ms (PX)
    <prefix>:{u:<upstream>}:events          pub/sub channel: release, cooldown <ms>
    <prefix>:{u:<upstream>}:budget[:=<model>]   hash: rl ru tl tu (levels, times) lr lt
    """
    base = f"{prefix}:{{u:{upstream.translate(_ESCAPES)}}}"
    return UpstreamKeys(f"{base}:leases", f"{base}:cooldown", f"{base}:events", base)


def instances_key(prefix: str) -> str:
    """The zset of live instances under ``prefix``: instance id -> last heartbeat, ms."""
    return f"{prefix}:instances"


def members_channel(prefix: str) -> str:
    """The pub/sub channel under ``prefix`` for the live count (a decimal integer).

    An instance joining publishes it, so the others count it before their next heartbeat.
    """
    return f"{prefix}:members"
