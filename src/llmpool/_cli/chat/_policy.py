"""When the chat reconnects: a decision per close code, with backoff and jitter.

Pure: the socket's end goes in (its close code, or the failure to open it), a decision comes
out: reconnect after a delay, wait for the user's next message, or give up. The close codes
are those of docs/server.md:

====  =====================  =============================================================
code  meaning                the client
====  =====================  =============================================================
1000  normal                 stays closed; the next message reconnects
1001  idle timeout           stays closed (an idle client holds no slot); the next message
                             reconnects and resumes
1005  no status, 1006 lost   reconnects with backoff and jitter, then resumes
1008  policy (token, id)     gives up: retrying as is cannot help (exit status 1)
1009  message too big        stays closed, the message is not resent; the next one reconnects
1011  server error           reconnects with backoff and jitter
1012  service restart        reconnects with backoff and jitter, then resumes
1013  try again later        reconnects after the server's ``retry_after_ms`` (plus jitter)
====  =====================  =============================================================

A connection that cannot be opened (refused, a timeout, an HTTP 429 or 5xx answer to the
handshake) is retried like a lost one; a 4xx answer (a wrong URL, a proxy refusing) gives
up. The backoff is tenacity's ``wait_exponential_jitter``: ``min(initial * 2**(n-1) +
uniform(0, jitter), maximum)`` seconds before the n-th attempt in a row (the Google Cloud
retry strategy tenacity cites); the count starts again once a connection opens.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from tenacity import RetryCallState, Retrying, wait_exponential_jitter, wait_random
from tenacity.wait import wait_base

__all__ = ["Action", "Closed", "Decision", "ReconnectPolicy"]


class Action(StrEnum):
    """What the client does after a socket ended."""

    RECONNECT = "reconnect"
    """Reconnect after ``Decision.delay`` seconds, then resume."""
    ON_DEMAND = "on_demand"
    """Stay closed; the user's next message or command reconnects."""
    EXIT = "exit"
    """Give up: the chat ends with exit status 1."""


@dataclass(frozen=True, slots=True)
class Closed:
    """How a socket ended.

    Attributes:
        code: the close code (1006 when the connection was lost without one); None when the
            connection could not be opened.
        reason: the close reason, or why the connection could not be opened.
        status: the HTTP status of a refused handshake, if there was an answer.
    """

    code: int | None
    reason: str = ""
    status: int | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do, and one line for the user.

    Attributes:
        action: reconnect, wait for the user, or give up.
        delay: seconds before reconnecting (``RECONNECT`` only; 0 otherwise).
        explanation: what happened and what follows, e.g. ``"the server is restarting
            (1012): reconnecting in 0.7 s"``.
    """

    action: Action
    delay: float
    explanation: str


_MEANING: Final = {
    1000: "the server closed the connection",
    1001: "the server closed the idle connection",
    1005: "the connection closed without a status",
    1006: "the connection was lost",
    1008: "the server refused the connection (policy)",
    1009: "the server refused a message too big",
    1011: "the server failed",
    1012: "the server is restarting",
    1013: "the server is at capacity",
}
_RECONNECT: Final = frozenset({1005, 1006, 1011, 1012, 1013})
_RETRY_STATUS: Final = frozenset({408, 425, 429})
_STATE_OWNER: Final = Retrying()  # RetryCallState needs one; the waits read only the count


def _wait_before(wait: wait_base, attempt: int) -> float:
    state = RetryCallState(_STATE_OWNER, None, (), {})
    state.attempt_number = attempt
    return float(wait(state))


@dataclass(frozen=True, slots=True)
class ReconnectPolicy:
    """Backoff and jitter for reconnecting, and the decision per close code.

    Attributes:
        initial: seconds before the first reconnect (before jitter); default 0.5.
        maximum: the longest wait between two attempts, seconds; default 10.
        jitter: up to this many seconds added at random to each wait; default 0.5.
    """

    initial: float = 0.5
    maximum: float = 10.0
    jitter: float = 0.5

    def backoff(self, attempt: int) -> float:
        """Seconds to wait before the ``attempt``-th reconnect in a row (1 is the first)."""
        wait = wait_exponential_jitter(
            multiplier=self.initial, max=self.maximum, jitter=self.jitter
        )
        return _wait_before(wait, attempt)

    def decide(self, closed: Closed, *, attempt: int, retry_after: float | None = None) -> Decision:
        """What to do after ``closed``.

        Args:
            closed: how the socket ended.
            attempt: how many reconnects in a row this one would be (1 after a connection
                that had opened).
            retry_after: seconds the server said to wait (``retry_after_ms`` of its last
                error frame), if it did.

        Returns:
            The decision, with the delay and a line to show.
        """
        if closed.code is None:
            return self._not_opened(closed, attempt)
        code = closed.code
        meaning = _MEANING.get(code, "the server closed the connection")
        reason = closed.reason
        if code == 1013:
            label = f"{reason or meaning} ({code})"
        elif reason and code in (1008, 1011):
            label = f"{meaning} ({code}: {reason})"
        else:
            label = f"{meaning} ({code})"
        if code in _RECONNECT:
            if code == 1013 and retry_after is not None:
                wait = wait_random(retry_after, retry_after + self.jitter)
                delay = _wait_before(wait, attempt)
                return Decision(Action.RECONNECT, delay, f"{label}: retrying in {delay:.1f} s")
            delay = self.backoff(attempt)
            return Decision(Action.RECONNECT, delay, f"{label}: reconnecting in {delay:.1f} s")
        if code == 1008:
            return Decision(Action.EXIT, 0.0, f"{label}: not retrying")
        if code == 1009:
            return Decision(
                Action.ON_DEMAND, 0.0, f"{label}: it was not resent; the next message reconnects"
            )
        return Decision(Action.ON_DEMAND, 0.0, f"{label}: the next message reconnects")

    def _not_opened(self, closed: Closed, attempt: int) -> Decision:
        status = closed.status
        why = closed.reason or "no answer"
        if status is not None and status < 500 and status not in _RETRY_STATUS:
            return Decision(
                Action.EXIT, 0.0, f"the server refused the connection: {why}: not retrying"
            )
        delay = self.backoff(attempt)
        return Decision(
            Action.RECONNECT,
            delay,
            f"cannot connect: {why}: retrying in {delay:.1f} s (attempt {attempt})",
        )
