"""Small closed sets shared by every layer: priority classes."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal, TypeAlias

__all__ = ["AttemptOutcome", "Priority", "PriorityLike", "RequestOutcome"]


class Priority(StrEnum):
    """Scheduling class of a request.

    Classes are served in strict order (``HIGH`` before ``NORMAL`` before ``LOW``), with one
    anti-starvation rule: see ``PoolConfig.starvation_limit``. The plain strings ``"high"``,
    ``"normal"`` and ``"low"`` are accepted wherever a ``Priority`` is.
    """

    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"

    @property
    def rank(self) -> int:
        """0 for ``HIGH``, 1 for ``NORMAL``, 2 for ``LOW`` (lower is served first)."""
        return _RANK[self]

    @classmethod
    def parse(cls, value: PriorityLike) -> Priority:
        """Return the ``Priority`` for ``value``.

        Args:
            value: a ``Priority`` or one of the strings ``"high"``, ``"normal"``, ``"low"``
                (case-insensitive).

        Raises:
            ValueError: ``value`` names no priority; the message lists the accepted ones.
        """
        if isinstance(value, Priority):
            return value
        if isinstance(value, str):
            try:
                return cls(value.lower())
            except ValueError:
                pass
        raise ValueError(f"priority must be one of 'high', 'normal', 'low'; got {value!r}")


_RANK = {Priority.HIGH: 0, Priority.NORMAL: 1, Priority.LOW: 2}

PriorityLike: TypeAlias = Priority | str

AttemptOutcome: TypeAlias = Literal["ok", "error", "timeout", "cancelled"]
"""How one attempt ended: ``ok`` (an answer, or a stream that ended without error), ``error``,
``timeout`` (``request_timeout``), ``cancelled`` (the caller, or the manager at shutdown)."""

RequestOutcome: TypeAlias = Literal["completed", "failed", "cancelled"]
"""How a request ended, as its caller saw it; the counter of ``stats()`` it went to."""
