r"""Control characters in text from the server, escaped before they reach the terminal.

Model output is untrusted: an ESC starts a terminal control sequence (move the cursor, set
the window title, OSC 52 writes the clipboard), BEL rings, a carriage return or a backspace
overwrites what was printed. ``escape_controls`` shows each such character as a visible
escape (``\\x1b``, ``\\r``…) and keeps newlines and tabs, so the text reads as sent and can
steer nothing. The bidirectional overrides and isolates (U+202A-U+202E, U+2066-U+2069) are
escaped too: they reorder what is shown ("Trojan Source", CVE-2021-42574).
"""

from __future__ import annotations

from typing import Final

__all__ = ["escape_controls"]

_KEPT: Final = frozenset("\n\t")

_NAMED: Final = {"\r": "\\r", "\b": "\\b", "\a": "\\a", "\f": "\\f", "\v": "\\v", "\0": "\\0"}


def _shown(code: int) -> str:
    char = chr(code)
    if char in _NAMED:
        return _NAMED[char]
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


_ESCAPED: Final = [
    *range(0x00, 0x20),  # C0 (ESC, BEL, BS, CR…)
    0x7F,  # DEL
    *range(0x80, 0xA0),  # C1 (0x9b is a one-byte CSI)
    *range(0x202A, 0x202F),  # bidi embeddings and overrides
    *range(0x2066, 0x206A),  # bidi isolates
]
_TABLE: Final = {code: _shown(code) for code in _ESCAPED if chr(code) not in _KEPT}


def escape_controls(text: str) -> str:
    r"""``text`` with every control character shown as an escape; newlines and tabs kept.

    Args:
        text: text from the server (model output, an error's message).

    Returns:
        The same text where C0 controls but newline and tab, DEL, C1 controls and the
        bidirectional overrides are written as ``\\r``, ``\\x1b``, ``\\u202e``…
    """
    return text.translate(_TABLE)
