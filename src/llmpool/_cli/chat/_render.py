"""Server frames into what the terminal shows: answer text, one-line notes, frames to send.

Pure: frames in (their JSON text), items out. Per session it keeps the last session ``seq``
seen, so a resume that overlaps shows nothing twice, and the running turn, so Ctrl-C and
``/stop`` know whether an answer is being written.

Which ``error`` frames end a turn: ``chunk`` and ``complete`` are always session frames; an
``error`` is one when its code is one a turn ends with, it names a turn, and its ``seq``
follows the last one seen. Replies (``session_busy``, ``invalid_message``…) carry the
session's current ``seq``, which may run ahead of the frames still on their way (the server
sends replies first), so their ``seq`` is never taken as a resume point.

A server that restarted has lost its sessions: the ``resume`` of a ``seq`` it never had is
answered ``invalid_message``. Then the answer in progress, if any, is lost: the renderer
says so in one line and asks for a ``resume`` from 0, and the session starts afresh under the
same id (what was shown stays on the screen, nothing is repeated).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, TypeAlias

from ._escape import escape_controls

__all__ = ["FrameRenderer", "Item", "Note", "Resend", "Style", "Text"]


class Style(StrEnum):
    """How a note looks."""

    INFO = "info"
    DONE = "done"
    ERROR = "error"
    RAW = "raw"
    """Printed as it is: the client's own text (help, the stats table), never the server's."""


@dataclass(frozen=True, slots=True)
class Text:
    """Answer text, escaped, to be typed out."""

    text: str


@dataclass(frozen=True, slots=True)
class Note:
    """A line of its own (a partial answer line is ended first)."""

    text: str
    style: Style = Style.INFO


@dataclass(frozen=True, slots=True)
class Resend:
    """A frame to send at once (a new ``resume``)."""

    frame: str


Item: TypeAlias = Text | Note | Resend

_TURN_ERRORS: Final = frozenset(
    {
        "queue_full",
        "queue_timeout",
        "rate_limited",
        "upstream_error",
        "stream_interrupted",
        "message_too_big",
        "server_shutting_down",
        "internal_error",
    }
)
"""The codes a turn ends with (``llmpool.server``'s ``_turn``)."""

_ADVICE: Final = {
    "queue_full": "The server's queue is full: try again in a moment.",
    "queue_timeout": "The answer waited too long for a slot: try again.",
    "rate_limited": "The model's API is rate limiting: try again{later}.",
    "upstream_error": "The model's API failed: send the message again.",
    "stream_interrupted": "The answer broke off: send the message again.",
    "session_busy": "Wait for the answer, or /stop it.",
    "message_too_big": "Shorten the message.",
    "server_shutting_down": "Send the message again once reconnected.",
    "internal_error": "The server failed (its log has the details): send the message again.",
    "unauthorized": "Pass the server's token with --token (or LLMPOOL_SERVER_TOKEN).",
}
_CLOSING: Final = frozenset({"server_at_capacity", "idle_timeout"})
"""Errors sent just before a close whose line (reason, what follows) says it all."""


@dataclass(slots=True)
class _Session:
    last_seq: int = 0
    turn_id: str | None = None  # the turn whose frames are arriving
    awaiting: bool = False  # a message was sent and its turn has not ended
    replayed: int = 0  # frames up to this seq were there before our message (a replay)


class FrameRenderer:
    """Turns the frames of the session being followed into items to show.

    Args:
        session_id: the session followed first.
        has_token: whether a token was given (the advice on ``unauthorized`` differs).
    """

    def __init__(self, session_id: str, *, has_token: bool = False) -> None:
        self._sessions: dict[str, _Session] = {}
        self._has_token = has_token
        self.session_id = session_id
        self.retry_after: float | None = None
        """Seconds the server's last error said to wait, if it did."""

    @property
    def _state(self) -> _Session:
        return self._sessions.setdefault(self.session_id, _Session())

    @property
    def answering(self) -> bool:
        """Whether an answer of the current session is awaited or being written."""
        state = self._state
        return state.awaiting or state.turn_id is not None

    def last_seq(self, session_id: str) -> int:
        """The last session frame seen of ``session_id`` (0: none)."""
        state = self._sessions.get(session_id)
        return 0 if state is None else state.last_seq

    def switch(self, session_id: str) -> list[Item]:
        """Follow ``session_id`` from now on; a note if an answer of the one left goes on."""
        left = self.session_id
        items: list[Item] = []
        if self.answering:
            items.append(Note(f"the answer goes on in {left}: /session {left} shows it"))
        self._state.awaiting = False  # what is left of it is shown when we come back
        self.session_id = session_id
        self.retry_after = None
        return items

    def resume_frames(self) -> list[str]:
        """The first frames of a socket: ``resume`` after the last frame seen, and a ``ping``.

        The ``pong`` comes back before the frames the resume sends (the server sends replies
        first), with the session's current ``seq``: the frames up to it are a replay, and the
        end of a replayed turn is not the end of the answer awaited.
        """
        state = self._state
        state.replayed = state.last_seq
        return [_resume(state.last_seq), json.dumps({"type": "ping"})]

    def message_sent(self) -> None:
        """The user's message went out: an answer is awaited."""
        self._state.awaiting = True

    def feed(self, text: str) -> list[Item]:
        """The items for one frame from the server (nothing for a duplicate or a pong)."""
        try:
            frame = json.loads(text)
        except ValueError:
            return [Note("the server sent a frame that is not JSON", Style.ERROR)]
        if not isinstance(frame, dict):
            return [Note("the server sent a frame that is not a JSON object", Style.ERROR)]
        kind = frame.get("type")
        if kind == "chunk":
            return self._chunk(frame)
        if kind == "complete":
            return self._complete(frame)
        if kind == "error":
            return self._error(frame)
        if kind == "pong" and isinstance(frame.get("seq"), int):
            self._state.replayed = max(self._state.replayed, frame["seq"])
        return []  # a pong, or a type from a newer server

    def _take(self, frame: dict[str, Any]) -> bool:
        """Whether a session frame is new; if so it moves the resume point."""
        seq = frame.get("seq")
        state = self._state
        if not isinstance(seq, int) or seq <= state.last_seq:
            return False
        state.last_seq = seq
        return True

    def _chunk(self, frame: dict[str, Any]) -> list[Item]:
        if not self._take(frame):
            return []
        self._state.turn_id = frame.get("turn_id")
        content = frame.get("content")
        return [Text(escape_controls(content))] if isinstance(content, str) and content else []

    def _end_turn(self) -> None:
        state = self._state
        state.turn_id = None
        if state.last_seq > state.replayed:  # not a replayed turn: the one awaited
            state.awaiting = False

    def _complete(self, frame: dict[str, Any]) -> list[Item]:
        if not self._take(frame):
            return []
        self._end_turn()
        seconds = _number(frame.get("processing_time_ms")) / 1000.0
        if frame.get("stopped"):
            return [Note(f"(stopped after {seconds:.1f} s)")]
        usage = frame.get("usage")
        tokens = usage.get("total_tokens") if isinstance(usage, dict) else None
        counted = f", {tokens} tokens" if isinstance(tokens, int) else ""
        return [Note(f"(done in {seconds:.1f} s{counted})", Style.DONE)]

    def _error(self, frame: dict[str, Any]) -> list[Item]:
        code = str(frame.get("error"))
        details = frame.get("error_details")
        details = details if isinstance(details, dict) else {}
        message = escape_controls(str(details.get("message") or ""))
        after = details.get("retry_after_ms")
        self.retry_after = after / 1000.0 if isinstance(after, int | float) else None
        state = self._state
        seq = frame.get("seq")
        if (
            code in _TURN_ERRORS
            and frame.get("turn_id") is not None
            and seq == state.last_seq + 1
            and self._take(frame)
        ):
            self._end_turn()
        elif code == "invalid_message" and message.startswith("resume:"):
            return self._restarted()
        elif code == "resync_required":
            return self._resync(details)
        elif code in _CLOSING or (code == "server_shutting_down" and not state.awaiting):
            return []  # the close that follows says it, with what the client does next
        elif code in ("session_busy", "server_shutting_down", "message_too_big"):
            state.awaiting = False  # our message was refused; a running turn goes on
        return [Note(self._line(code, message), Style.ERROR)]

    def _line(self, code: str, message: str) -> str:
        advice = _ADVICE.get(code, "")
        if code == "rate_limited":
            later = "" if self.retry_after is None else f" in {self.retry_after:.0f} s"
            advice = advice.format(later=later)
        elif code == "unauthorized" and self._has_token:
            advice = "The server refused the token: check --token (or LLMPOOL_SERVER_TOKEN)."
        text = f"error {code}: {message}" if message else f"error {code}"
        return f"{text}. {advice}" if advice else text

    def _restarted(self) -> list[Item]:
        state = self._state
        lost = " and the answer in progress with it" if state.turn_id or state.awaiting else ""
        self._sessions[self.session_id] = _Session()
        note = (
            f"the server no longer has session {self.session_id} (it restarted?): its history "
            f"is gone{lost}; the session starts afresh"
        )
        return [Note(note), Resend(_resume(0))]

    def _resync(self, details: dict[str, Any]) -> list[Item]:
        last = details.get("last_seq")
        if isinstance(last, int):
            self._state.last_seq = last
        missing = details.get("missing_from")
        return [
            Note(
                f"frames from {missing} are no longer kept on the server: part of the answer "
                f"is not shown; following from seq {last}"
            )
        ]


def _resume(last_seq: int) -> str:
    return json.dumps({"type": "resume", "last_seq": last_seq})


def _number(value: object) -> float:
    return float(value) if isinstance(value, int | float) else 0.0
