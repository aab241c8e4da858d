"""The demo's rich output: live progress, plain lines, and the report rendered from a summary."""

from __future__ import annotations

import io

from rich.console import Console

from llmpool import ConnectionManager, Priority
from llmpool._cli.demo._options import DemoOptions
from llmpool._cli.demo._report import LineObserver, LiveObserver, print_report
from llmpool._cli.demo._summary import summarize

from .helpers import complete_hop, hop_turn, outcome, result


def test_live_observer_draws_progress_and_stats() -> None:
    """On a terminal, the live display shows each terminal and the manager's stats."""
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120)
    options = DemoOptions(terminals=2, requests=1)
    stats = ConnectionManager().stats()
    with LiveObserver(console, options) as observer:
        observer.started("terminal-1", 1)
        observer.tick(stats, {"terminal-1": "attempt 2"})
        observer.finished(result(ok=True))
        observer.started("terminal-2", 1)
        observer.finished(result(ok=False))
    text = out.getvalue()
    assert "terminal-1" in text
    assert "attempt 2" in text
    assert "active 0/3" in text
    assert "failed" in text


def test_line_observer_prints_one_line_per_request() -> None:
    """Off a terminal, each finished request is one plain line."""
    out = io.StringIO()
    console = Console(file=out, width=80)
    observer = LineObserver(console, DemoOptions(requests=1))
    observer.finished(result(ok=True))
    observer.finished(result(ok=False))
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("terminal-1 [high] request 1/1 ok in 0.500s")
    assert lines[1].endswith("APIConnectionError")


def _render(options: DemoOptions, *args: object, **kwargs: object) -> str:
    out = io.StringIO()
    summary = summarize(options, outcome(*args, **kwargs), "simulated")  # type: ignore[arg-type]
    print_report(Console(file=out, width=100), summary)
    return out.getvalue()


def test_report_renders_the_summary() -> None:
    """The table's title, rows per terminal and priority, '-' for a missing percentile; the
    failures; the simulator's counts; the stats by alias; the verdict."""
    options = DemoOptions(terminals=2, requests=1)
    results = (
        result("terminal-1", latency=0.25),
        result("terminal-2", priority=Priority.NORMAL, ok=False, attempts=1, retries=0),
    )
    text = _render(options, results)
    assert "1/2 requests completed in 1.2s" in text
    rows = {line.split()[0] + " " + line.split()[1]: line.split() for line in text.splitlines()
            if line.startswith(("terminal-", "all "))}  # fmt: skip
    assert rows["terminal-1 high"][2:] == ["1", "1", "0", "1", "0.100", "0.100", "0.250", "0.250"]
    assert rows["terminal-2 normal"][2:] == ["1", "0", "1", "0", "0.100", "0.100", "-", "-"]
    assert rows["all all"][2:6] == ["2", "1", "1", "1"]
    assert (
        "  terminal-2 request 1 (req_0123456789abcdef, 1 attempt): "
        "APIConnectionError: Connection error." in text
    )
    assert "simulated provider: 3 HTTP requests (ok 1, rate_limit 1)" in text
    assert '"completedRequests": 0' in text
    assert text.rstrip().endswith("1 of 2 requests did not complete.")


def test_report_says_when_the_hop_did_not_complete() -> None:
    """A failed hop turn is shown with its error, and the verdict names terminal-hop."""
    options = DemoOptions(terminals=1, requests=1)
    hop = (*complete_hop()[:3], hop_turn(3, "east", ok=False, reason="APIConnectionError: x"))
    text = _render(options, (result(),), hop=hop)
    assert "terminal-hop: streamed conversation east -> west -> east; 1 rebuilt, 1 retried" in text
    assert "turn 1 on east [retried: stream cut] tool call get_weather" in text
    assert "turn 3 on east failed: APIConnectionError: x" in text
    assert "terminal-hop did not complete its conversation." in text
    assert "All 1 requests completed." not in text
