"""The frame renderer: text, notes and resumes from server frames; seq bookkeeping."""

from __future__ import annotations

import json
from typing import Any

import pytest

from llmpool._cli.chat._render import FrameRenderer, Note, Resend, Style, Text


def chunk(seq: int, content: str, turn: str = "t1", **more: Any) -> str:
    return json.dumps({"type": "chunk", "seq": seq, "turn_id": turn, "content": content, **more})


def complete(seq: int, turn: str = "t1", *, stopped: bool = False, ms: float = 2400.0) -> str:
    usage = None if stopped else {"total_tokens": 9}
    return json.dumps(
        {"type": "complete", "seq": seq, "turn_id": turn, "processing_time_ms": ms,
         "usage": usage, "stopped": stopped}
    )  # fmt: skip


def error(seq: int, code: str, message: str, turn: str | None = None, **details: Any) -> str:
    return json.dumps(
        {"type": "error", "seq": seq, "turn_id": turn, "error": code,
         "error_details": {"message": message, "retry_after_ms": None, **details}}
    )  # fmt: skip


def feed(renderer: FrameRenderer, *frames: str) -> list[Any]:
    return [item for frame in frames for item in renderer.feed(frame)]


def test_a_turn_renders_text_then_the_time_taken() -> None:
    """Chunks become text, the last (empty) chunk nothing, complete one line with the
    seconds and tokens; the answer is then no longer awaited."""
    r = FrameRenderer("s")
    r.message_sent()
    assert r.answering
    items = feed(r, chunk(1, "Hello"), chunk(2, " world"), chunk(3, "", finish_reason="stop"))
    assert items == [Text("Hello"), Text(" world")]
    assert feed(r, complete(4)) == [Note("(done in 2.4 s, 9 tokens)", Style.DONE)]
    assert not r.answering
    assert r.last_seq("s") == 4


def test_a_stopped_turn_says_so() -> None:
    r = FrameRenderer("s")
    assert feed(r, chunk(1, "Hel"), complete(2, stopped=True, ms=1234)) == [
        Text("Hel"),
        Note("(stopped after 1.2 s)"),
    ]


def test_frames_seen_before_are_not_shown_again() -> None:
    """After a resume that overlaps, frames with a seq already seen are dropped."""
    r = FrameRenderer("s")
    feed(r, chunk(1, "a"), chunk(2, "b"))
    assert feed(r, chunk(1, "a"), chunk(2, "b"), chunk(3, "c")) == [Text("c")]


def test_model_text_is_escaped() -> None:
    r = FrameRenderer("s")
    assert feed(r, chunk(1, "\x1b[2Jgone\r")) == [Text("\\x1b[2Jgone\\r")]


def test_the_resume_frames_start_after_the_last_frame_seen() -> None:
    """Each socket starts with resume(last seen) and a ping, per session."""
    r = FrameRenderer("a")
    feed(r, chunk(1, "x"), complete(2))
    assert json.loads(r.resume_frames()[0]) == {"type": "resume", "last_seq": 2}
    assert json.loads(r.resume_frames()[1]) == {"type": "ping"}
    r.switch("b")
    assert json.loads(r.resume_frames()[0]) == {"type": "resume", "last_seq": 0}
    r.switch("a")
    assert json.loads(r.resume_frames()[0]) == {"type": "resume", "last_seq": 2}


def test_a_replayed_turn_does_not_end_the_awaited_answer() -> None:
    """The pong's seq marks the replay: a replayed complete leaves our answer awaited."""
    r = FrameRenderer("s")
    r.resume_frames()
    r.message_sent()
    feed(r, json.dumps({"type": "pong", "seq": 2, "turn_id": None}))
    feed(r, chunk(1, "old"), complete(2, "t0"))
    assert r.answering
    feed(r, chunk(3, "new", "t1"), complete(4, "t1"))
    assert not r.answering


def test_switching_away_mid_answer_says_where_it_goes_on() -> None:
    r = FrameRenderer("a")
    feed(r, chunk(1, "x"))
    assert r.switch("b") == [Note("the answer goes on in a: /session a shows it")]
    assert not r.answering
    assert r.switch("a") == []
    assert r.answering  # its turn is still running: the resume shows the rest


def test_a_turns_error_ends_it_and_a_reply_does_not_move_the_resume_point() -> None:
    """A turn's error (its code, its turn, the next seq) ends the turn; session_busy is a
    reply carrying the current seq, which is not taken as seen."""
    r = FrameRenderer("s")
    feed(r, chunk(1, "x"))
    busy = feed(r, error(5, "session_busy", "turn t1 of this session is running", "t1"))
    assert busy == [
        Note(
            "error session_busy: turn t1 of this session is running. "
            "Wait for the answer, or /stop it.",
            Style.ERROR,
        )
    ]
    assert r.last_seq("s") == 1
    assert r.answering
    (line,) = feed(r, error(2, "stream_interrupted", "the stream broke", "t1"))
    assert line.text.startswith("error stream_interrupted: the stream broke. ")
    assert "send the message again" in line.text
    assert not r.answering
    assert r.last_seq("s") == 2


@pytest.mark.parametrize(
    ("code", "advice"),
    [
        pytest.param("unauthorized", "--token", id="unauthorized"),
        pytest.param("queue_full", "try again in a moment", id="queue-full"),
        pytest.param("message_too_big", "Shorten the message", id="too-big"),
        pytest.param("internal_error", "its log has the details", id="internal"),
    ],
)
def test_errors_are_one_line_with_advice(code: str, advice: str) -> None:
    (line,) = FrameRenderer("s").feed(error(0, code, "why"))
    assert isinstance(line, Note)
    assert line.style is Style.ERROR
    assert "\n" not in line.text
    assert line.text.startswith(f"error {code}: why. ")
    assert advice in line.text


def test_rate_limited_says_when_to_try_again() -> None:
    (line,) = FrameRenderer("s").feed(error(2, "rate_limited", "429", "t1", retry_after_ms=3000))
    assert isinstance(line, Note)
    assert "try again in 3 s" in line.text


def test_errors_before_a_close_are_left_to_the_close_line() -> None:
    """server_at_capacity and idle_timeout: the close's line says it (and the delay); the
    retry_after is kept for the policy."""
    r = FrameRenderer("s")
    assert r.feed(error(0, "server_at_capacity", "full", retry_after_ms=5000)) == []
    assert r.retry_after == 5.0
    assert r.feed(error(0, "idle_timeout", "no frame for 300 s")) == []


def test_a_restarted_server_resets_the_session_once() -> None:
    """The resume of a seq the server never had (invalid_message "resume: …"): one line,
    the answer in progress is given up, and a resume from 0 is sent."""
    r = FrameRenderer("s")
    feed(r, chunk(1, "x"), complete(2), chunk(3, "part"))
    items = feed(r, error(0, "invalid_message", "resume: last_seq 3 is ahead of … 0"))
    assert items == [
        Note(
            "the server no longer has session s (it restarted?): its history is gone and the "
            "answer in progress with it; the session starts afresh"
        ),
        Resend(json.dumps({"type": "resume", "last_seq": 0})),
    ]
    assert not r.answering
    assert r.last_seq("s") == 0
    assert feed(r, chunk(1, "fresh", "t9")) == [Text("fresh")]


def test_resync_moves_to_the_servers_last_seq() -> None:
    r = FrameRenderer("s")
    items = feed(r, error(9, "resync_required", "gone", missing_from=3, oldest_seq=5, last_seq=9))
    assert len(items) == 1
    assert "following from seq 9" in items[0].text
    assert r.last_seq("s") == 9
    assert feed(r, chunk(10, "on")) == [Text("on")]


@pytest.mark.parametrize("text", ["not json", "[1, 2]"], ids=["not-json", "not-object"])
def test_a_bad_frame_is_one_error_line(text: str) -> None:
    (line,) = FrameRenderer("s").feed(text)
    assert isinstance(line, Note)
    assert line.style is Style.ERROR


def test_pongs_and_unknown_types_show_nothing() -> None:
    r = FrameRenderer("s")
    assert r.feed(json.dumps({"type": "pong", "seq": 0, "turn_id": None})) == []
    assert r.feed(json.dumps({"type": "future", "seq": 1})) == []
