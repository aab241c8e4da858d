"""``llmpool demo --via-server``: the terminals as WebSocket clients of an in-process server.

The command tests call ``main()`` (plain sync tests: it calls ``anyio.run`` itself) with the
fast plan of ``test_demo`` (latency 0-10 ms, no random faults); each takes about a second.
The terminal's own tests run ``ChatTerminal`` against a served app (``tests/server/helpers``)
and break its socket mid-turn: closed with 1012, cut without a close frame (1006, through a
TCP proxy), refused at capacity (1013).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import SocketAttribute, SocketStream

from llmpool._cli import main
from llmpool._cli.chat._policy import ReconnectPolicy
from llmpool._cli.demo._client import ChatTerminal, TurnEnd
from llmpool._cli.demo._options import DemoOptions
from llmpool._cli.demo._summary import summarize
from llmpool.server import CloseCode
from llmpool.testing import FaultPlan, SimulatedProvider
from llmpool.testing._payloads import REPLY_PREFIX
from tests.integration.fixtures import simulator_fixtures
from tests.server.helpers import KEY, Served, chat, eventually, served

from .helpers import outcome, result, server_summary
from .test_demo import FAST
from .test_demo_summary import _same_shape

CLI_MD = Path(__file__).resolve().parents[2] / "docs" / "cli.md"
QUICK = ReconnectPolicy(initial=0.01, maximum=0.05, jitter=0.0)
"""Reconnects within 10-50 ms: the tests' sockets come back at once."""
LONG = " ".join(f"w{i}" for i in range(30))  # 33 chunks with the reply's prefix

shared_sim, sim = simulator_fixtures("demo-via-server", api_key=KEY)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No real endpoint leaks in, and rich sees a plain pipe."""
    for name in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "FORCE_COLOR", "TTY_COMPATIBLE"):
        monkeypatch.delenv(name, raising=False)


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    code = main(["demo", "--via-server", "--json", *args])
    return code, json.loads(capsys.readouterr().out)


# -- the command -------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_each_terminal_is_one_connection_and_every_turn_completes(
    capsys: pytest.CaptureFixture[str], backend: str
) -> None:
    """3 terminals x 2 requests over the server: exit 0, every terminal in the summary, one
    socket each (total 3, peak 3, none left open, 3 disconnects), 6 completed turns, each
    one streamed request the simulator saw; no hop."""
    code, summary = run_json(
        capsys, "--terminals", "3", "--requests", "2", "--backend", backend, *FAST
    )
    assert code == 0
    assert summary["ok"] is True
    assert list(summary["per_terminal"]) == ["terminal-1", "terminal-2", "terminal-3"]
    for group in summary["per_terminal"].values():
        assert (group["requests"], group["succeeded"], group["failed"]) == (2, 2, 0)
        assert group["latency"]["p50"] is not None
        assert group["queue_wait"]["p50"] is not None
    totals = summary["totals"]
    assert (totals["expected"], totals["succeeded"], totals["attempts"]) == (6, 6, 6)
    server = summary["server"]
    assert server["asgi"] == ("hypercorn" if backend == "trio" else "uvicorn")
    assert re.fullmatch(r"ws://127\.0\.0\.1:\d+", server["url"])
    assert server["connections"] == {"total": 3, "peak": 3, "active": 0, "rejected": 0}
    assert server["turns"] == {"completed": 6}
    assert sum(server["disconnects"].values()) == 3
    if backend == "asyncio":  # hypercorn reports a close the client starts as 1006
        assert server["disconnects"] == {"1000": 3}
    assert server["reconnects"] == 0
    assert summary["simulator"]["paths"] == {"/v1/responses": 6}
    assert summary["stats"]["completedRequests"] == 6  # read from /api/connection-stats
    assert summary["hop"] is None


def test_retries_under_the_manager_are_counted_per_turn(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A scripted 503 and 429 are retried by the manager inside their turns: exit 0, exactly
    two retries, equal to stats(); the attempts are the simulator's requests."""
    plan = {
        "scripted": [
            {"kind": "status", "status": 503, "retry_after": 0.05},
            {"kind": "rate_limit", "retry_after": 0.05},
        ]
    }
    code, summary = run_json(
        capsys, "--terminals", "2", "--requests", "2", *FAST, "--fault-plan", json.dumps(plan)
    )
    assert code == 0
    totals = summary["totals"]
    assert totals["retries"] == 2 == summary["stats"]["retries"]
    assert totals["attempts"] == 6 == summary["simulator"]["requests"]
    assert summary["server"]["turns"] == {"completed": 4}


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_provider_that_always_fails_exits_1(
    capsys: pytest.CaptureFixture[str], backend: str
) -> None:
    """Always 503, one attempt: every turn ends in an upstream_error frame, counted as a
    failure with the request id and the provider's message; the server counts them too."""
    plan = '{"error_rates": {"503": 1.0}, "retry_after": null}'
    code, summary = run_json(
        capsys,
        *("--terminals", "2", "--requests", "2", "--max-attempts", "1", "--backend", backend),
        *FAST,
        *("--fault-plan", plan),
    )
    assert code == 1
    assert summary["ok"] is False
    assert (summary["totals"]["succeeded"], summary["totals"]["failed"]) == (0, 4)
    failures = summary["failures"]
    assert [(f["terminal"], f["request"]) for f in failures] == [
        ("terminal-1", 1), ("terminal-1", 2), ("terminal-2", 1), ("terminal-2", 2),
    ]  # fmt: skip
    assert {f["error"] for f in failures} == {"upstream_error"}
    assert all(f["message"].startswith("Error code: 503") for f in failures)
    assert all(f["request_id"].startswith("req_") for f in failures)
    assert {f["attempts"] for f in failures} == {1}
    assert summary["server"]["turns"] == {"upstream_error": 4}
    assert summary["server"]["connections"]["total"] == 2


def test_chat_api_streams_chat_completions(capsys: pytest.CaptureFixture[str]) -> None:
    """--api chat: the server's turns are chat.completions streams."""
    code, summary = run_json(capsys, "--terminals", "2", "--requests", "1", "--api", "chat", *FAST)
    assert code == 0
    assert summary["simulator"]["paths"] == {"/v1/chat/completions": 2}


def test_a_real_endpoint_behind_the_server(capsys: pytest.CaptureFixture[str]) -> None:
    """With a base URL the server is in front of it: no simulator of the demo's, and each
    streamed request carries its terminal's session id (the server's view of the socket)."""
    with SimulatedProvider(api_key="sk-real") as upstream:
        code, summary = run_json(
            capsys,
            *("--terminals", "2", "--requests", "1", "--stagger", "0"),
            *("--base-url", upstream.base_url, "--api-key", "sk-real"),
        )
        seen = upstream.requests
    assert code == 0
    assert summary["config"]["endpoint"] == upstream.base_url
    assert summary["simulator"] is None
    assert {r.headers["x-session-id"] for r in seen} == {"terminal-1", "terminal-2"}
    assert summary["server"]["connections"]["total"] == 2


def test_rich_report_via_server(capsys: pytest.CaptureFixture[str]) -> None:
    """Piped: the header says the server runs, one line per turn, the table with every
    terminal and its adapted caption, the server's counts, the verdict; no control codes."""
    code = main(["demo", "--via-server", "--terminals", "3", "--requests", "1", *FAST])
    out = capsys.readouterr().out
    assert code == 0
    assert "\x1b[" not in out
    assert "via server: llmpool.server in-process on a loopback port (uvicorn on asyncio)" in out
    for n, priority in ((1, "high"), (2, "normal"), (3, "low")):
        assert f"terminal-{n} [{priority}] request 1/1 ok" in out
        assert re.search(rf"^terminal-{n} +{priority} +1 +1 +0 ", out, re.MULTILINE)
    assert "wait: message sent to first attempt" in out
    assert re.search(
        r"llmpool\.server at ws://127\.0\.0\.1:\d+ \(uvicorn\): 3 connections \(peak 3, "
        r"rejected 0, open now 0\)",
        out,
    )
    assert "turns: completed 3; disconnects by close code: 1000 3" in out
    assert "from the server's /api/connection-stats" in out
    assert "terminal-hop" not in out
    assert out.rstrip().endswith("All 3 requests completed.")


def test_a_missing_server_extra_is_named(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the server extra, --via-server names it; exit 2 before any run."""
    monkeypatch.setitem(sys.modules, "httpx_ws", None)  # what an uninstalled package looks like
    assert main(["demo", "--via-server", *FAST]) == 2
    captured = capsys.readouterr()
    assert captured.err == (
        "llmpool demo --via-server needs the 'server' extra: pip install 'llmpool[server]' "
        "(httpx_ws is missing)\n"
    )
    assert captured.out == ""


def test_docs_show_the_server_summary_as_it_is() -> None:
    """docs/cli.md's --via-server JSON has the real server summary's keys and value types."""
    text = CLI_MD.read_text(encoding="utf-8")
    (block,) = re.findall(r"```json\n(.*?)```", text, re.DOTALL)
    options = DemoOptions(terminals=1, requests=1, via_server=True)
    real = summarize(options, outcome((result(),), server=server_summary()), "simulated")
    assert _same_shape(json.loads(block), real.model_dump(mode="json")["server"], "$") == []


# -- the terminal: reconnect and resume --------------------------------------------------------


async def _turn_counts(server: Served) -> dict[str, float]:
    """``llmpool_server_turns_total`` by outcome, from ``/metrics``."""
    text = (await server.http.get("/metrics")).text
    return {
        m[1]: float(m[2])
        for m in re.finditer(r'^llmpool_server_turns_total\{outcome="(\w+)"\} (\S+)$', text, re.M)
    }


async def _mid_turn(server: Served, session: str, frames: int = 3) -> None:
    """Wait until the session's running turn has sent ``frames`` frames."""

    def far_enough() -> bool:
        found = server.runtime.sessions.get(session)
        return found is not None and found.turn is not None and found.last_seq >= frames

    await eventually(far_enough)


def _assert_whole_once(end: TurnEnd) -> None:
    assert end.ok, end
    assert end.text == REPLY_PREFIX + LONG  # every chunk once: nothing lost, nothing twice


@pytest.mark.anyio
async def test_a_turn_closed_with_1012_resumes_and_is_counted_once(
    sim: SimulatedProvider,
) -> None:
    """The server closes the socket with 1012 mid-turn; the terminal reconnects, resumes
    after the last seq it saw and gets the rest: the whole answer once, one turn run, two
    connections."""
    sim.set_fault_plan(FaultPlan(stream_chunk_delay=0.01))
    async with served(sim) as server:
        terminal = ChatTerminal(server.http, server.ws_url("t1"), QUICK)
        ends: list[TurnEnd] = []

        async def run() -> None:
            async with terminal:  # one task opens, uses and closes its sockets
                ends.append(await terminal.turn(LONG))

        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            await _mid_turn(server, "t1")
            for sock in list(server.runtime.sockets):
                sock.close(CloseCode.SERVICE_RESTART, None, "restarting")
        turns = await _turn_counts(server)
        connections = (await server.http.get("/metrics.json")).json()["connections"]
    _assert_whole_once(ends[0])
    assert (terminal.opened, terminal.reconnects) == (2, 1)
    assert turns == {"completed": 1.0}
    assert connections["total"] == 2
    assert len(sim.requests) == 1


class _Proxy:
    """A TCP proxy to the server whose connections ``cut()`` drops (no close frame: 1006)."""

    def __init__(self, target: int) -> None:
        self._target = target
        self._scopes: set[anyio.CancelScope] = set()
        self.port = 0

    async def handle(self, client: SocketStream) -> None:
        async with client, await anyio.connect_tcp("127.0.0.1", self._target) as upstream:
            with anyio.CancelScope() as scope:
                self._scopes.add(scope)
                async with anyio.create_task_group() as tg:

                    async def pipe(source: SocketStream, sink: SocketStream) -> None:
                        async for data in source:
                            await sink.send(data)
                        tg.cancel_scope.cancel()

                    tg.start_soon(pipe, client, upstream)
                    tg.start_soon(pipe, upstream, client)
            self._scopes.discard(scope)

    def cut(self) -> None:
        for scope in self._scopes:
            scope.cancel()


@asynccontextmanager
async def _proxy(target: int) -> AsyncIterator[_Proxy]:
    proxy = _Proxy(target)
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    proxy.port = listener.extra(SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, proxy.handle)
        try:
            yield proxy
        finally:
            tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_a_connection_lost_without_a_close_frame_resumes(sim: SimulatedProvider) -> None:
    """The TCP connection drops mid-turn (1006 on both sides); the terminal reconnects and
    resumes: the whole answer once, one turn run."""
    sim.set_fault_plan(FaultPlan(stream_chunk_delay=0.01))
    async with served(sim) as server, _proxy(server.port) as proxy:
        url = server.ws_url("t2").replace(f":{server.port}/", f":{proxy.port}/")
        terminal = ChatTerminal(server.http, url, QUICK)
        ends: list[TurnEnd] = []

        async def run() -> None:
            async with terminal:  # one task opens, uses and closes its sockets
                ends.append(await terminal.turn(LONG))

        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            await _mid_turn(server, "t2")
            proxy.cut()
        await eventually(lambda: server.runtime.metrics.active == 0)
        turns = await _turn_counts(server)
        prometheus = (await server.http.get("/metrics")).text
    _assert_whole_once(ends[0])
    assert terminal.reconnects == 1
    assert turns == {"completed": 1.0}
    closes = {
        m[1]: float(m[2])
        for m in re.finditer(
            r'^llmpool_server_disconnects_total\{code="(\d+)"\} (\S+)$', prometheus, re.M
        )
    }
    # The dropped connection has no close status: uvicorn says 1005, hypercorn 1006; the
    # second socket closed normally (1000; hypercorn says 1006, see the command's test).
    assert sum(closes.values()) == 2
    assert closes.get("1005", 0) + closes.get("1006", 0) >= 1
    assert set(closes) <= {"1000", "1005", "1006"}
    assert len(sim.requests) == 1


@pytest.mark.anyio
async def test_at_capacity_the_terminal_waits_then_sends_its_message_once(
    sim: SimulatedProvider,
) -> None:
    """The server is full (1 slot, held): the terminal's message is refused with 1013 before
    it is read; the terminal waits the server's retry_after, reconnects, learns from the
    pong that the message never arrived, and sends it again, once the slot is free."""
    async with served(sim, max_connections=1, retry_after=0.02) as server:
        async with anyio.create_task_group() as tg:
            ends: list[TurnEnd] = []
            async with chat(server, "holder") as holder:
                await holder.send(type="ping")
                await holder.recv()
                terminal = ChatTerminal(server.http, server.ws_url("t3"), QUICK)

                async def run() -> None:
                    async with terminal:
                        ends.append(await terminal.turn(LONG))

                tg.start_soon(run)
                await eventually(lambda: server.runtime.metrics.rejected >= 2)
        turns = await _turn_counts(server)
        connections = (await server.http.get("/metrics.json")).json()["connections"]
    _assert_whole_once(ends[0])
    assert terminal.opened >= 3  # refused at least twice, then accepted
    assert turns == {"completed": 1.0}
    assert (connections["total"], connections["peak"]) == (2, 1)  # the holder, then t3
    assert connections["rejected"] == terminal.opened - 1
    assert len(sim.requests) == 1
