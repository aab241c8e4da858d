"""The rich side of ``llmpool demo``: live progress, the final table and the stats.

Imported only by ``_run.run_demo`` once ``rich`` (the ``demo`` extra) is known to be installed.
On a terminal the progress is a ``rich.live.Live`` display refreshed from the event loop (no
refresh thread: the manager's ``stats()`` must be read on the loop). Anywhere else — a pipe,
a file, CI — nothing is animated: one plain line per finished request, then the report, which
renders a ``DemoSummary``. The top of the demo's modules but ``_run`` and ``_command``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from rich import box
from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn
from rich.table import Table
from rich.text import Text

from llmpool import ConnectionStats

from ._options import DemoOptions, terminal_priority
from ._results import Observer, RequestResult, ServerSummary
from ._summary import DemoSummary, GroupSummary, HopSummary

if TYPE_CHECKING:
    from llmpool.testing import FaultPlan

__all__ = [
    "LineObserver",
    "LiveObserver",
    "build_table",
    "make_console",
    "observer_for",
    "print_header",
    "print_hop",
    "print_report",
    "print_server",
]

_PRIORITY_STYLE = {"high": "bold red", "normal": "yellow", "low": "cyan"}


def make_console() -> Console:
    """A console on stdout; rich detects whether it is a terminal (no control codes if not)."""
    return Console(highlight=False)


def observer_for(console: Console, options: DemoOptions) -> Observer:
    """A live display on a terminal, plain lines anywhere else."""
    if console.is_terminal and not console.is_dumb_terminal:
        return LiveObserver(console, options)
    return LineObserver(console, options)


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


class LineObserver(Observer):
    """One plain line per finished request (for pipes and CI logs)."""

    def __init__(self, console: Console, options: DemoOptions) -> None:
        self._console = console
        self._requests = options.requests

    def finished(self, result: RequestResult) -> None:
        """Print how the request ended."""
        head = (
            f"{result.terminal} [{result.priority.value}] request {result.index}/{self._requests}"
        )
        extra = f"wait {_seconds(result.queue_wait)}s, {_plural(result.attempts, 'attempt')}"
        if result.ok:
            line = f"{head} ok in {result.latency:.3f}s ({extra})"
        else:
            line = f"{head} FAILED after {result.latency:.3f}s ({extra}): {result.error}"
        self._console.print(line, markup=False, soft_wrap=True)


class LiveObserver(Observer):
    """Per-terminal progress bars and the manager's live stats, redrawn every tick."""

    def __init__(self, console: Console, options: DemoOptions) -> None:
        self._requests = options.requests
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(bar_width=20),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            console=console,
        )
        self._tasks: dict[str, TaskID] = {}
        self._failed: dict[str, int] = {}
        self._busy: set[str] = set()
        for number, session in enumerate(options.sessions, start=1):
            priority = terminal_priority(number, options.priority).value
            label = f"{session:<12} [{_PRIORITY_STYLE[priority]}]{priority:<6}[/]"
            self._tasks[session] = self._progress.add_task(
                label, total=options.requests, status="[dim]waiting to start[/]"
            )
            self._failed[session] = 0
        self._stats = Text("")
        self._max_concurrency = options.pool.max_concurrency
        self._live = Live(Group(self._progress, self._stats), console=console, auto_refresh=False)

    def __enter__(self) -> LiveObserver:
        self._live.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._live.refresh()
        self._live.stop()

    def started(self, terminal: str, index: int) -> None:
        """Mark the terminal busy."""
        self._busy.add(terminal)
        self._progress.update(self._tasks[terminal], status="sending")

    def finished(self, result: RequestResult) -> None:
        """Advance the terminal's bar; count a failure."""
        self._busy.discard(result.terminal)
        if not result.ok:
            self._failed[result.terminal] += 1
        done = result.index == self._requests
        failed = self._failed[result.terminal]
        status = "[green]done[/]" if done and not failed else "between requests"
        if failed:
            status = f"[red]{failed} failed[/]" + (", done" if done else "")
        self._progress.update(self._tasks[result.terminal], advance=1, status=status)

    def tick(self, stats: ConnectionStats, live: Mapping[str, str]) -> None:
        """Show what each busy terminal's request is doing and the manager's stats."""
        for terminal in self._busy:
            state = live.get(terminal)
            if state is not None:
                self._progress.update(self._tasks[terminal], status=state)
        depth = stats.queue_depth
        self._stats.truncate(0)
        self._stats.append_text(
            Text.from_markup(
                f"[bold]manager[/]  active {stats.active_connections}/{self._max_concurrency}"
                f"  queued {stats.queued_requests} (high {depth.get('high', 0)}, "
                f"normal {depth.get('normal', 0)}, low {depth.get('low', 0)})"
                f"  retries {stats.retries}  completed {stats.completed_requests}"
                f"  failed {stats.failed_requests}  cooling upstreams {stats.cooling_upstreams}"
            )
        )
        self._live.refresh()


def print_header(
    console: Console, options: DemoOptions, endpoint: str, plan: FaultPlan | None
) -> None:
    """Say what is about to run."""
    priorities = f"all {options.priority.value}" if options.priority else "high/normal/low in turn"
    pool = options.pool
    console.print(
        f"[bold]llmpool demo[/]: {options.terminals} terminals x {options.requests} requests, "
        f"{options.stagger:g}s apart, priorities {priorities}, "
        f"{options.api} API, model {options.model}",
        soft_wrap=True,
    )
    if plan is None:
        console.print(f"endpoint: {endpoint}", markup=False, soft_wrap=True)
    else:
        faults = [f"{status} {rate:.0%}" for status, rate in sorted(plan.error_rates.items())]
        if plan.rate_limit_rate:
            faults.insert(0, f"429 {plan.rate_limit_rate:.0%} (Retry-After {plan.retry_after}s)")
        console.print(
            f"endpoint: simulated provider, latency {plan.latency_min:g}-{plan.latency_max:g}s, "
            f"faults: {', '.join(faults) or 'none'}, seed {plan.seed}",
            markup=False,
            soft_wrap=True,
        )
    console.print(
        f"pool: {pool.pool_size} clients, max concurrency {pool.max_concurrency}, "
        f"queue timeout {pool.queue_timeout:g}s, request timeout {pool.request_timeout:g}s, "
        f"{pool.retry.max_attempts} attempts",
        soft_wrap=True,
    )
    if options.via_server:
        asgi = "hypercorn on trio" if options.backend == "trio" else "uvicorn on asyncio"
        console.print(
            f"via server: llmpool.server in-process on a loopback port ({asgi}) in front of "
            "the manager; one WebSocket session per terminal, each request a streamed chat turn",
            markup=False,
            soft_wrap=True,
        )


def _row(table: Table, terminal: str, priority: str, group: GroupSummary) -> None:
    table.add_row(
        terminal,
        Text(priority, style=_PRIORITY_STYLE.get(priority, "bold")),
        str(group.requests),
        str(group.succeeded),
        Text(str(group.failed), style="bold red" if group.failed else ""),
        str(group.retries),
        _seconds(group.queue_wait.p50),
        _seconds(group.queue_wait.p95),
        _seconds(group.latency.p50),
        _seconds(group.latency.p95),
    )


def build_table(summary: DemoSummary) -> Table:
    """The per-terminal, per-priority and total table of a run's summary."""
    totals = summary.totals
    if summary.server is None:
        caption = "seconds; wait: call to first attempt; lat: call to result (succeeded requests)"
    else:
        caption = (
            "seconds; wait: message sent to first attempt; lat: message sent to complete "
            "(succeeded turns)"
        )
    table = Table(
        title=f"{totals.succeeded}/{totals.expected} requests completed in {totals.elapsed:.1f}s",
        caption=caption,
        box=box.SIMPLE_HEAD,
        padding=(0, 1, 0, 0),
        show_edge=False,
    )
    # Two-line headers keep the table within 80 columns (the width rich assumes for pipes).
    table.add_column("terminal", no_wrap=True)
    table.add_column("priority", no_wrap=True)
    for name in ("reqs", "ok", "failed", "retries"):
        table.add_column(name, justify="right", no_wrap=True)
    for name in ("wait\np50", "wait\np95", "lat\np50", "lat\np95"):
        table.add_column(name, justify="right", no_wrap=True)
    for terminal, row in summary.per_terminal.items():
        _row(table, terminal, row.priority.value, row)
    table.add_section()
    for priority, group in summary.per_priority.items():
        _row(table, "all", priority.value, group)
    table.add_section()
    _row(table, "all", "all", totals)
    return table


def print_hop(console: Console, hop: HopSummary) -> None:
    """Print ``terminal-hop``: each streamed request, its instance, recovery and text."""
    path: list[str] = []
    for turn in hop.turns:
        if not path or path[-1] != turn.instance:
            path.append(turn.instance)
    console.print(
        f"[bold]{hop.session}[/]: streamed conversation {' -> '.join(path)}; "
        f"{hop.recoveries} rebuilt, {hop.retries} retried"
    )
    for turn in hop.turns:
        line = Text(f"  turn {turn.turn} on {turn.instance:<4} ")
        if turn.recovered is not None:
            line.append(f"[{turn.recovered}: {turn.reason}] ", style="yellow")
        if not turn.ok:
            line.append(f"failed: {turn.reason}", style="bold red")
        elif turn.tool_calls:
            line.append(f"tool call {', '.join(turn.tool_calls)}", style="cyan")
        else:
            line.append(repr(turn.text))
        if turn.duplicated:
            line.append(" DUPLICATED TEXT", style="bold red")
        console.print(line, soft_wrap=True)


def _counts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{key} {value}" for key, value in counts.items()) or "none"


def print_server(console: Console, server: ServerSummary) -> None:
    """Print what the in-process server counted (``--via-server``)."""
    connections = server.connections
    console.print(
        f"llmpool.server at {server.url} ({server.asgi}): "
        f"{_plural(connections.total, 'connection')} (peak {connections.peak}, "
        f"rejected {connections.rejected}, open now {connections.active}), "
        f"{server.avg_session_duration:g}s open on average; "
        f"turns: {_counts(server.turns)}; disconnects by close code: "
        f"{_counts(server.disconnects)}; terminals reconnected "
        f"{_plural(server.reconnects, 'time')}",
        markup=False,
        soft_wrap=True,
    )


def print_report(console: Console, summary: DemoSummary) -> None:
    """Print the table, the failures, the simulator's view, the hop, the stats and a verdict."""
    console.print()
    console.print(build_table(summary))
    if summary.failures:
        console.print(f"[bold red]Failures ({len(summary.failures)}):[/]")
        for failure in summary.failures:
            console.print(
                f"  {failure.terminal} request {failure.request} "
                f"({failure.request_id or 'never admitted'}, "
                f"{_plural(failure.attempts, 'attempt')}): "
                f"{failure.error}: {failure.message}",
                markup=False,
                soft_wrap=True,
            )
    simulator = summary.simulator
    if simulator is not None:
        outcomes = ", ".join(f"{k} {v}" for k, v in simulator.outcomes.items())
        console.print(
            f"simulated provider: {simulator.requests} HTTP requests ({outcomes})",
            markup=False,
            soft_wrap=True,
        )
    if summary.server is not None:
        print_server(console, summary.server)
    hop = summary.hop
    if hop is not None:
        print_hop(console, hop)
    if summary.server is None:
        console.print("[bold]manager.stats()[/]:")
    else:
        console.print("[bold]manager.stats()[/], from the server's /api/connection-stats:")
    console.print_json(data=summary.stats.model_dump(by_alias=True, mode="json"))
    totals = summary.totals
    if hop is not None and not hop.ok:
        console.print(f"[bold red]{hop.session} did not complete its conversation.[/]")
    if summary.ok:
        console.print(f"[bold green]All {totals.expected} requests completed.[/]")
    else:
        missing = totals.expected - totals.succeeded
        console.print(f"[bold red]{missing} of {totals.expected} requests did not complete.[/]")
