"""HTTP header names and values from the caller, checked before any request is made.

A header that HTTP cannot carry fails late and misleadingly: the connection layer (h11) refuses
it while sending, the SDK reports ``APIConnectionError``, and that is retried as if the network
had failed, without ever reaching the server. So the façade checks ``extra_headers`` at once.

The rules are RFC 9110's: a field name is a token (§5.1: letters, digits and
``!#$%&'*+-.^_`|~``); a field value (§5.5) has no leading or trailing whitespace and no control
characters other than an interior horizontal tab. Values must also be ASCII: httpx encodes a
``str`` header value as ASCII (RFC 9110 allows other octets only as obsolete text).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from ._errors import InvalidHeaderError

__all__ = ["header_value_problem", "validate_extra_headers"]

_TCHARS: Final = frozenset(
    "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)
_WHITESPACE: Final = (" ", "\t")
_NAMED: Final = {
    "\n": "a line feed (LF)",
    "\r": "a carriage return (CR)",
    "\x00": "a NUL",
    "\x7f": "a DEL",
}


def _describe(char: str) -> str:
    named = _NAMED.get(char)
    if named is not None:
        return f"{named} {char!r}"
    if char < " ":
        return f"a control character {char!r}"
    if char == " ":
        return "a space"
    if char <= "~":
        return f"the character {char!r}"
    return f"a non-ASCII character {char!r}"


def header_value_problem(value: str) -> str | None:
    """Why ``value`` cannot be sent as an HTTP header value, or ``None`` if it can.

    Args:
        value: the header value.

    Returns:
        ``None``, or a reason naming the offending character or whitespace and its position
        (0-based): ``"has a non-ASCII character 'é' at position 3"``, ``"ends with whitespace
        (position 9)"``.
    """
    for position, char in enumerate(value):
        if not (" " <= char <= "~" or char == "\t"):
            return f"has {_describe(char)} at position {position}"
    if value.startswith(_WHITESPACE):
        return "starts with whitespace (position 0)"
    if value.endswith(_WHITESPACE):
        return f"ends with whitespace (position {len(value) - 1})"
    return None


def _name_problem(name: str) -> str | None:
    if not name:
        return "is empty"
    for position, char in enumerate(name):
        if char not in _TCHARS:
            return f"has {_describe(char)} at position {position}"
    return None


def validate_extra_headers(headers: object) -> None:
    """Check the ``extra_headers`` of a façade call before it is queued.

    Values that are not strings (``openai.Omit()``, which drops a default header) are left to
    the SDK.

    Args:
        headers: ``None``, or a mapping of header names to values.

    Raises:
        InvalidHeaderError: ``headers`` is not a mapping, a name is not an RFC 9110 token, or
            a value has a control or non-ASCII character or leading/trailing whitespace; the
            message names the header and the position.
    """
    if headers is None:
        return
    if not isinstance(headers, Mapping):
        raise InvalidHeaderError(
            f"extra_headers must be a mapping of header names to values, "
            f"got {type(headers).__name__}"
        )
    for name, value in headers.items():
        if not isinstance(name, str):
            raise InvalidHeaderError(
                f"extra_headers: header name {name!r} is not a str ({type(name).__name__})"
            )
        problem = _name_problem(name)
        if problem is not None:
            raise InvalidHeaderError(
                f"extra_headers: header name {name!r} {problem}; a name is an RFC 9110 token "
                "(ASCII letters, digits and !#$%&'*+-.^_`|~)"
            )
        if isinstance(value, str):
            problem = header_value_problem(value)
            if problem is not None:
                raise InvalidHeaderError(
                    f"extra_headers[{name!r}]: value {value!r} {problem}; an HTTP header value "
                    "is printable ASCII, tabs and spaces only inside it (RFC 9110 §5.5)"
                )
