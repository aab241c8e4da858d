"""The typewriter's pace, and the screens' pure parts."""

from __future__ import annotations

import io

import anyio
import pytest

from llmpool._cli.chat._render import Note, Style, Text
from llmpool._cli.chat._screen import PlainScreen, break_point, styled
from llmpool._cli.chat._typewriter import Pace, Typewriter, release

PACE = Pace(char_delay=0.004, tick=0.016, catch_up=0.25)


@pytest.mark.parametrize(
    ("backlog", "elapsed", "count"),
    [
        pytest.param(0, 1.0, 0, id="nothing-waiting"),
        pytest.param(10, 0.016, 4, id="paced-4-per-tick"),
        pytest.param(10, 0.0, 1, id="at-least-one"),
        pytest.param(10, 1.0, 10, id="no-more-than-waiting"),
        pytest.param(62, 0.016, 4, id="just-under-catch-up"),
        pytest.param(63, 0.016, 63, id="behind-shows-all"),
    ],
)
def test_release(backlog: int, elapsed: float, count: int) -> None:
    """At most one character per char_delay, at least one; all at once beyond catch_up
    seconds of backlog (62 * 4 ms = 248 ms, 63 * 4 ms = 252 ms)."""
    assert release(backlog, elapsed, PACE) == count


def test_no_effect_shows_everything() -> None:
    assert release(5, 0.0, Pace(char_delay=0.0)) == 5


class Recorder:
    def __init__(self) -> None:
        self.out: list[str] = []

    async def text(self, text: str) -> None:
        self.out.append(text)

    async def note(self, note: Note) -> None:
        self.out.append(f"[{note.text}]")

    async def clear(self) -> None:
        self.out.append("[clear]")


@pytest.mark.anyio
async def test_push_never_blocks_and_order_is_kept() -> None:
    """push returns at once whatever the screen does; text comes out in small pieces, and a
    note only after the text before it."""
    screen = Recorder()
    typewriter = Typewriter(screen, PACE)
    typewriter.push([Text("abcdefghij"), Note("done"), Text("xy")])
    assert screen.out == []
    async with anyio.create_task_group() as tg:
        tg.start_soon(typewriter.run)
        with anyio.fail_after(5):
            while not typewriter.idle:  # noqa: ASYNC110
                await anyio.sleep(0.01)
        tg.cancel_scope.cancel()
    assert "".join(screen.out) == "abcdefghij[done]xy"
    assert len(screen.out) > 3  # typed out, not in one write


@pytest.mark.anyio
async def test_a_backlog_is_shown_at_once() -> None:
    screen = Recorder()
    typewriter = Typewriter(screen, PACE)
    typewriter.push([Text("x" * 1000)])
    async with anyio.create_task_group() as tg:
        tg.start_soon(typewriter.run)
        with anyio.fail_after(5):
            while not typewriter.idle:  # noqa: ASYNC110
                await anyio.sleep(0.01)
        tg.cancel_scope.cancel()
    assert screen.out == ["x" * 1000]


@pytest.mark.parametrize(
    ("line", "width", "cut"),
    [
        pytest.param("short", 80, 0, id="fits"),
        pytest.param("x" * 240, 80, 0, id="three-rows-fit"),
        pytest.param("word " * 60, 80, 160, id="at-a-space"),
        pytest.param("x" * 300, 80, 160, id="no-space-whole-rows"),
    ],
)
def test_break_point(line: str, width: int, cut: int) -> None:
    """A partial line longer than three rows is printed up to a space in its first two."""
    assert break_point(line, width) == cut


@pytest.mark.anyio
async def test_the_plain_screen_ends_a_partial_line_before_a_note() -> None:
    out = io.StringIO()
    screen = PlainScreen(out)
    await screen.text("Hello")
    await screen.note(Note("(done)", Style.DONE))
    await screen.note(Note("next"))
    assert out.getvalue() == "Hello\n(done)\nnext\n"


def test_notes_are_coloured_only_when_asked() -> None:
    note = Note("oops", Style.ERROR)
    assert styled(note, color=False) == "oops"
    assert styled(note, color=True) == "\x1b[31moops\x1b[0m"
    assert styled(Note("table", Style.RAW), color=True) == "table"
