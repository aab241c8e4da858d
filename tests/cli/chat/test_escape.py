"""Control characters from the server are escaped: no terminal injection."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llmpool._cli.chat._escape import escape_controls


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        pytest.param("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m", id="csi-colour"),
        pytest.param("\x1b]0;title\x07", "\\x1b]0;title\\a", id="osc-title-bel"),
        pytest.param("\x1b]52;c;aGk=\x1b\\", "\\x1b]52;c;aGk=\\x1b\\", id="osc52-clipboard"),
        pytest.param("safe\rEVIL", "safe\\rEVIL", id="carriage-return"),
        pytest.param("abc\b\bX", "abc\\b\\bX", id="backspace"),
        pytest.param("\x9b2J", "\\x9b2J", id="c1-csi"),
        pytest.param("\x7f\x00", "\\x7f\\0", id="del-nul"),
        pytest.param("abc\u202edef", "abc\\u202edef", id="bidi-override"),
        pytest.param("line\n\tindented", "line\n\tindented", id="newline-tab-kept"),
        pytest.param("héllo → 世界 🙂", "héllo → 世界 🙂", id="unicode-kept"),
    ],
)
def test_controls_are_shown_escaped(text: str, shown: str) -> None:
    """ESC, BEL, CR, BS, C1, DEL, NUL and bidi overrides become visible escapes; newlines,
    tabs and printable Unicode are kept as they are."""
    assert escape_controls(text) == shown


@given(st.text())
def test_nothing_that_steers_a_terminal_gets_through(text: str) -> None:
    """Whatever the text, the result has no control character but newline and tab."""
    out = escape_controls(text)
    assert not [c for c in out if (ord(c) < 0x20 and c not in "\n\t") or 0x7F <= ord(c) < 0xA0]
