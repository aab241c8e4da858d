"""Decoding the scripts' replies: two integers, checked."""

from __future__ import annotations

__all__ = ["pair"]


def pair(reply: object) -> tuple[int, int]:
    """A script's ``{status, value}`` reply as two ints.

    Raises:
        TypeError: the reply is not two integers (a script and its caller disagree).
    """
    if (
        isinstance(reply, list | tuple)
        and len(reply) == 2
        and all(isinstance(item, int) for item in reply)
    ):
        return int(reply[0]), int(reply[1])
    raise TypeError(f"expected a script's reply of two integers, got {reply!r}")
