"""The reconnect policy: a decision per close code, backoff with jitter."""

from __future__ import annotations

import pytest

from llmpool._cli.chat._policy import Action, Closed, ReconnectPolicy

POLICY = ReconnectPolicy(initial=0.5, maximum=10.0, jitter=0.5)


@pytest.mark.parametrize(
    ("closed", "action"),
    [
        pytest.param(Closed(1000), Action.ON_DEMAND, id="1000-normal"),
        pytest.param(Closed(1001), Action.ON_DEMAND, id="1001-idle"),
        pytest.param(Closed(1005), Action.RECONNECT, id="1005-no-status"),
        pytest.param(Closed(1006), Action.RECONNECT, id="1006-lost"),
        pytest.param(Closed(1008, "a valid token is required"), Action.EXIT, id="1008-policy"),
        pytest.param(Closed(1009), Action.ON_DEMAND, id="1009-too-big"),
        pytest.param(Closed(1011), Action.RECONNECT, id="1011-server-error"),
        pytest.param(Closed(1012), Action.RECONNECT, id="1012-restart"),
        pytest.param(Closed(1013), Action.RECONNECT, id="1013-capacity"),
        pytest.param(Closed(4000), Action.ON_DEMAND, id="unknown-code"),
        pytest.param(Closed(None, "refused"), Action.RECONNECT, id="connect-refused"),
        pytest.param(Closed(None, "HTTP 503", 503), Action.RECONNECT, id="handshake-503"),
        pytest.param(Closed(None, "HTTP 429", 429), Action.RECONNECT, id="handshake-429"),
        pytest.param(Closed(None, "HTTP 404", 404), Action.EXIT, id="handshake-404"),
        pytest.param(Closed(None, "HTTP 403", 403), Action.EXIT, id="handshake-403"),
    ],
)
def test_the_decision_per_close_code(closed: Closed, action: Action) -> None:
    """Lost, server error, restart, capacity and failed connects reconnect; policy (1008)
    and a 4xx handshake give up; normal, idle and too-big wait for the next message."""
    decision = POLICY.decide(closed, attempt=1)
    assert decision.action is action
    assert (decision.delay > 0) is (action is Action.RECONNECT)


def test_backoff_grows_with_jitter_up_to_the_maximum() -> None:
    """The n-th attempt waits initial * 2**(n-1) plus up to `jitter`, capped at `maximum`."""
    for attempt, base in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 8.0)]:
        waits = [POLICY.backoff(attempt) for _ in range(50)]
        assert all(base <= w <= base + 0.5 for w in waits), (attempt, waits)
        assert len(set(waits)) > 1  # jittered
    assert all(POLICY.backoff(12) <= 10.0 for _ in range(20))


def test_capacity_waits_what_the_server_said() -> None:
    """1013 with retry_after_ms waits that long plus jitter, and says "retrying in"."""
    decision = POLICY.decide(
        Closed(1013, "the server is at capacity (25 connections)"), attempt=1, retry_after=5.0
    )
    assert 5.0 <= decision.delay <= 5.5
    assert decision.explanation.startswith("the server is at capacity (25 connections) (1013)")
    assert f"retrying in {decision.delay:.1f} s" in decision.explanation


def test_the_lines_say_what_follows() -> None:
    """Each decision's line names the code and what the client does next."""
    assert POLICY.decide(Closed(1008, "a valid token is required"), attempt=1).explanation == (
        "the server refused the connection (policy) (1008: a valid token is required): not retrying"
    )
    assert "it was not resent" in POLICY.decide(Closed(1009), attempt=1).explanation
    lost = POLICY.decide(Closed(1012), attempt=1)
    assert (
        lost.explanation == f"the server is restarting (1012): reconnecting in {lost.delay:.1f} s"
    )
    failed = POLICY.decide(Closed(None, "ws://x: refused"), attempt=3).explanation
    assert failed.startswith("cannot connect: ws://x: refused: retrying in ")
    assert failed.endswith("(attempt 3)")
