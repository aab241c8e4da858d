"""The scripts in ``examples/`` run as documented: ``python examples/<name>.py``, exit 0.

Each runs in a subprocess with the interpreter running the tests, against the simulated
provider it starts itself (no network); the timeout is generous, the scripts take a few
seconds.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
TIMEOUT = 60.0  # seconds per script


def run_example(name: str) -> str:
    completed = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    return completed.stdout


def test_every_example_is_tested() -> None:
    """A new script in examples/ needs a test here."""
    tested = {
        "basic.py",
        "streaming.py",
        "custom_factory.py",
        "multi_server.py",
        "batch.py",
        "prometheus.py",
        "server_app.py",
        "realtime_relay.py",
        "multi_instance.py",
    }
    assert {path.name for path in EXAMPLES.glob("*.py")} == tested


def test_basic() -> None:
    """Five calls from two sessions all complete; the session header reached the server."""
    out = run_example("basic.py")
    assert "t1-high    -> Simulated reply to: t1-high: hello" in out
    assert "run        -> Simulated reply to: run: hello" in out
    assert "the server saw 5 requests:" in out
    assert "x-session-id=terminal-1 -> ok" in out
    assert "completed 5, failed 0" in out
    assert '"completedRequests": 5' in out


def test_streaming() -> None:
    """The stream opens after one retried 503, streams the reply and frees its slot."""
    out = run_example("streaming.py")
    assert "Simulated reply to: Stream a short greeting, please." in out
    assert "after close: slots in use 0, retries 1, completed 1" in out
    assert "server outcomes: ['status:503', 'ok']" in out


def test_custom_factory() -> None:
    """After sim-a's 429 every attempt, the retry included, goes to sim-b."""
    out = run_example("custom_factory.py")
    assert "sim-a  request 1   rate_limit" in out
    assert "sim-a answered 1 attempt(s), sim-b 6" in out
    assert "request 1 retried on sim-b" in out
    assert "6/6 completed, 0 failed, 1 retried" in out


def test_multi_server() -> None:
    """The conversation started on A continues on B: B's 404, one rebuild, no server ids."""
    out = run_example("multi_server.py")
    assert "[A] <tool call get_weather>" in out
    assert "<recovered: rebuilt after" in out
    assert "Simulated reply to: And in Lyon tomorrow?" in out
    assert "B saw: ['not_found', 'ok']" in out
    assert "previous_response_id sent: False" in out
    assert "server ids sent: []" in out
    assert "stream attempts 2, recoveries 1" in out


def test_batch() -> None:
    """500 LOW items with back-pressure all succeed while HIGH requests keep flowing; the full
    queue refuses nothing (evicted batch items wait for a place again)."""
    out = run_example("batch.py")
    assert "batch: 500/500 items ok" in out
    assert "item 499: Simulated reply to: item 499" in out
    assert "rejected 0, failed 0" in out
    high = int(out.split("high: ")[1].split(" requests")[0])
    assert high >= 3, "HIGH requests flowed during the batch"


def test_server_app() -> None:
    """The app's own route and the chat share one manager; the socket closed cleanly."""
    out = run_example("server_app.py")
    assert "chat: 'Simulated reply to: Hello from the example' (complete, seq 9)" in out
    assert "summary: 'Simulated reply to: a long text'" in out
    assert "connections: total 1, active 0" in out
    assert "manager: 2 requests completed" in out


def test_realtime_relay() -> None:
    """Frames sent before the upstream was ready arrive after the relay's own update, in
    order; the key reaches the upstream, the browser's token does not."""
    out = run_example("realtime_relay.py")
    assert "browser got the answer: 'Simulated reply to: Hi!'" in out
    sent = out.split("the upstream received, in order:\n", 1)[1].splitlines()[:3]
    assert ['"session.update"' in sent[0], '"conversation.item.create"' in sent[1]] == [True, True]
    assert '"response.create"' in sent[2]
    assert "the upstream saw the key: True" in out
    assert "the upstream saw the token: False" in out


def test_multi_instance() -> None:
    """Two managers on one Redis share 600 RPM: all 40 requests complete, the provider saw
    each once, and no second holds more than the shared bucket allows (10 + 9.8/s x 1.25 s)."""
    out = run_example("multi_instance.py")
    assert "instance A: 20 completed" in out
    assert "instance B: 20 completed" in out
    assert "total: 40 completed" in out
    assert "the provider saw 40 requests" in out
    line = out.split("arrivals per second: [", 1)[1].split("]", 1)[0]
    per_second = [int(n) for n in line.split(",")]
    assert sum(per_second) == 40
    assert max(per_second) <= 22
    assert len(per_second) >= 3, "one shared quota: the 40th arrives >= 2.8 s after the first"
